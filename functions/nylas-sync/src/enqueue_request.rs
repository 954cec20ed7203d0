//! The AWS requests that make one verified notification durable, built without sending them:
//! one SQS `SendMessage` (the body inline, or a claim check pointing at S3) and, for a body too
//! large for SQS, the S3 `PutObject` that goes first. [`crate::sqs_queue::SqsNotificationSink`]
//! sends what [`build`] returns; the benchmarks measure the ingest's CPU up to these requests.
//!
//! Building touches the body twice at most, without copying it: once for its length and once
//! (memchr) for the code points SQS refuses. A claim-checked payload is keyed by notification
//! id, not by a hash of its content, which would be a second full pass over a 1 MiB body.

use std::collections::HashMap;

use aws_sdk_s3::operation::put_object::PutObjectInput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::operation::send_message::SendMessageInput;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::notification::Routing;
use crate::queue::{attr, claim_check_key, ClaimCheck, EnqueueError, Placement};

/// Where the requests go and when a body leaves SQS for S3.
#[derive(Debug, Clone)]
pub struct Destination {
    pub queue_url: String,
    pub bucket: String,
    /// Body plus attributes above this go to S3.
    pub max_message_bytes: usize,
}

/// The requests for one notification, in the order they are sent.
#[derive(Debug)]
pub struct EnqueueRequests {
    pub placement: Placement,
    /// The payload upload, for a claim-checked notification.
    pub put_object: Option<PutObjectInput>,
    pub send_message: SendMessageInput,
}

/// The attributes of a notification message: name and string value.
fn attributes<'r>(
    routing: &'r Routing<'_>,
    payload: &'static str,
) -> impl Iterator<Item = (&'static str, &'r str)> {
    [
        (attr::TYPE, Some(routing.trigger.as_ref())),
        (attr::NOTIFICATION_ID, Some(routing.id.as_ref())),
        (attr::PAYLOAD, Some(payload)),
        (attr::GRANT_ID, routing.grant_id.as_deref()),
        (attr::OBJECT_ID, routing.object_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
}

/// The size of the attributes as SQS counts it (name, data type and value).
fn attributes_size(routing: &Routing<'_>, payload: &'static str) -> usize {
    attributes(routing, payload)
        .map(|(k, v)| k.len() + "String".len() + v.len())
        .sum()
}

/// SQS refuses U+FFFE and U+FFFF (EF BF BE / EF BF BF in UTF-8), which JSON allows raw.
fn sqs_accepts(body: &str) -> bool {
    let b = body.as_bytes();
    memchr::memchr_iter(0xEF, b)
        .all(|i| !(b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF))))
}

/// Builds the requests that [`crate::sqs_queue::SqsNotificationSink`] sends for `body`.
pub fn build(
    destination: &Destination,
    routing: &Routing<'_>,
    body: String,
) -> Result<EnqueueRequests, EnqueueError> {
    let inline_attr_bytes = attributes_size(routing, "inline");
    let inline =
        body.len() + inline_attr_bytes <= destination.max_message_bytes && sqs_accepts(&body);
    let (placement, put_object, message_body, payload) = if inline {
        (Placement::Inline, None, body, "inline")
    } else {
        let check = ClaimCheck {
            bucket: destination.bucket.clone(),
            key: claim_check_key(routing),
            bytes: body.len() as u64,
        };
        let put = PutObjectInput::builder()
            .bucket(&check.bucket)
            .key(&check.key)
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()))
            .build()
            .map_err(|e| EnqueueError::S3(e.to_string()))?;
        let message = check.to_message_body();
        (Placement::ClaimCheck(check), Some(put), message, "s3")
    };
    let mut attrs = HashMap::with_capacity(5);
    for (name, value) in attributes(routing, payload) {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| EnqueueError::Sqs(e.to_string()))?;
        attrs.insert(name.to_string(), value);
    }
    let send_message = SendMessageInput::builder()
        .queue_url(&destination.queue_url)
        .message_body(message_body)
        .set_message_attributes(Some(attrs))
        .build()
        .map_err(|e| EnqueueError::Sqs(e.to_string()))?;
    Ok(EnqueueRequests {
        placement,
        put_object,
        send_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::parse_routing;

    fn destination() -> Destination {
        Destination {
            queue_url: "http://sqs/q".into(),
            bucket: "payloads".into(),
            max_message_bytes: 262_144,
        }
    }

    fn body(len: usize) -> String {
        format!(
            r#"{{"id":"n-1","type":"message.created","time":1,"data":{{"object":{{"id":"m-1","grant_id":"g-1","body":"{}"}}}}}}"#,
            "x".repeat(len)
        )
    }

    #[test]
    fn a_small_body_is_sent_inline_with_its_routing_attributes() {
        let text = body(10);
        let routing = parse_routing(text.as_bytes()).unwrap();
        let r = build(&destination(), &routing, text.clone()).unwrap();
        assert_eq!(r.placement, Placement::Inline);
        assert!(r.put_object.is_none());
        assert_eq!(r.send_message.message_body(), Some(text.as_str()));
        let attrs = r.send_message.message_attributes().unwrap();
        let get = |k: &str| attrs.get(k).and_then(|v| v.string_value()).unwrap();
        assert_eq!(get(attr::TYPE), "message.created");
        assert_eq!(get(attr::NOTIFICATION_ID), "n-1");
        assert_eq!(get(attr::GRANT_ID), "g-1");
        assert_eq!(get(attr::OBJECT_ID), "m-1");
        assert_eq!(get(attr::PAYLOAD), "inline");
    }

    #[test]
    fn a_body_over_the_limit_becomes_an_upload_and_a_claim_check() {
        let text = body(300_000);
        let routing = parse_routing(text.as_bytes()).unwrap();
        let r = build(&destination(), &routing, text.clone()).unwrap();
        let Placement::ClaimCheck(check) = &r.placement else {
            panic!("expected a claim check")
        };
        assert_eq!(check.bytes, text.len() as u64);
        let put = r.put_object.as_ref().unwrap();
        assert_eq!(put.key(), Some(check.key.as_str()));
        assert_eq!(put.bucket(), Some("payloads"));
        assert_eq!(
            ClaimCheck::from_message_body(r.send_message.message_body().unwrap()).as_ref(),
            Some(check)
        );
        let attrs = r.send_message.message_attributes().unwrap();
        assert_eq!(attrs[attr::PAYLOAD].string_value(), Some("s3"));
    }

    /// The S3 key a body too large for SQS is stored under.
    fn claim_check_key(text: &str) -> String {
        let routing = parse_routing(text.as_bytes()).unwrap();
        match build(&destination(), &routing, text.to_string())
            .unwrap()
            .placement
        {
            Placement::ClaimCheck(c) => c.key,
            Placement::Inline => panic!("expected a claim check"),
        }
    }

    #[test]
    fn payloads_are_keyed_by_grant_and_notification_id_as_safe_path_segments() {
        let text = body(300_000);
        let key =
            |id: &str| claim_check_key(&text.replace(r#""id":"n-1""#, &format!(r#""id":"{id}""#)));
        assert_eq!(key("n-1"), "notifications/g-1/n-1.json");
        assert_eq!(key("a/../b%c"), "notifications/g-1/a%2F..%2Fb%25c.json");
        assert!(key("n-1").starts_with(&crate::queue::grant_notifications_prefix("g-1")));
        let odd_grant =
            claim_check_key(&text.replace(r#""grant_id":"g-1""#, r#""grant_id":"../x""#));
        assert_eq!(odd_grant, "notifications/..%2Fx/n-1.json");
        assert!(odd_grant.starts_with(&crate::queue::grant_notifications_prefix("../x")));
        // A notification that names no grant is kept outside every grant's folder.
        let no_grant = claim_check_key(&text.replace(r#","grant_id":"g-1""#, ""));
        assert_eq!(no_grant, "notifications/n-1.json");
    }

    #[test]
    fn the_same_notification_redelivered_lands_on_the_same_key() {
        let first = body(300_000);
        let retry = first.replace(r#""time":1"#, r#""time":1,"webhook_delivery_attempt":2"#);
        assert_ne!(first, retry);
        assert_eq!(claim_check_key(&first), claim_check_key(&retry));
    }

    #[test]
    fn non_characters_sqs_refuses_are_detected() {
        assert!(sqs_accepts("{\"a\":\"é ✓ 𝄞\"}"));
        assert!(!sqs_accepts("{\"a\":\"\u{FFFF}\"}"));
        assert!(!sqs_accepts("{\"a\":\"\u{FFFE}\"}"));
    }

    #[test]
    fn a_body_sqs_would_refuse_goes_to_s3() {
        let text = body(3).replace("xxx", "\u{FFFF}");
        let routing = parse_routing(text.as_bytes()).unwrap();
        let r = build(&destination(), &routing, text.clone()).unwrap();
        assert!(matches!(r.placement, Placement::ClaimCheck(_)));
    }
}
