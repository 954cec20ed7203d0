//! The AWS requests that make one verified notification durable, built without sending them:
//! one SQS `SendMessage` (the body inline, or a claim check pointing at S3) and, for a body too
//! large for SQS, the S3 `PutObject` that goes first.
//!
//! The benchmarks measure the ingest's CPU per request up to these requests (no network); the
//! same decisions as [`crate::queue::SqsNotificationSink`] (attributes, inline limit, characters
//! SQS refuses, content-addressed key). Building a request never sends anything.

use aws_sdk_s3::operation::put_object::PutObjectInput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::operation::send_message::SendMessageInput;
use aws_sdk_sqs::types::MessageAttributeValue;
use sha2::{Digest, Sha256};

use crate::notification::Routing;
use crate::queue::{attr, ClaimCheck, EnqueueError, Placement};

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

/// The attributes of a notification message, and their size as SQS counts it.
fn attributes(
    routing: &Routing<'_>,
    payload: &'static str,
) -> (Vec<(&'static str, String)>, usize) {
    let mut list = vec![
        (attr::TYPE, routing.trigger.to_string()),
        (attr::NOTIFICATION_ID, routing.id.to_string()),
        (attr::PAYLOAD, payload.to_string()),
    ];
    if let Some(g) = &routing.grant_id {
        list.push((attr::GRANT_ID, g.to_string()));
    }
    if let Some(o) = &routing.object_id {
        list.push((attr::OBJECT_ID, o.to_string()));
    }
    let size = list
        .iter()
        .map(|(k, v)| k.len() + "String".len() + v.len())
        .sum();
    (list, size)
}

/// SQS refuses U+FFFE and U+FFFF (EF BF BE / EF BF BF in UTF-8), which JSON allows raw.
fn sqs_accepts(body: &str) -> bool {
    let b = body.as_bytes();
    memchr::memchr_iter(0xEF, b)
        .all(|i| !(b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF))))
}

/// Content-addressed key: a retried delivery of the same bytes lands on the same object.
fn payload_key(body: &[u8]) -> String {
    format!("notifications/{}.json", hex::encode(Sha256::digest(body)))
}

/// Builds the requests that [`crate::queue::SqsNotificationSink`] sends for `body`.
pub fn build(
    destination: &Destination,
    routing: &Routing<'_>,
    body: String,
) -> Result<EnqueueRequests, EnqueueError> {
    let (_, inline_attr_bytes) = attributes(routing, "inline");
    let inline =
        body.len() + inline_attr_bytes <= destination.max_message_bytes && sqs_accepts(&body);
    let (placement, put_object, message_body, payload) = if inline {
        (Placement::Inline, None, body, "inline")
    } else {
        let check = ClaimCheck {
            bucket: destination.bucket.clone(),
            key: payload_key(body.as_bytes()),
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
    let (attrs, _) = attributes(routing, payload);
    let mut send = SendMessageInput::builder()
        .queue_url(&destination.queue_url)
        .message_body(message_body);
    for (name, value) in attrs {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| EnqueueError::Sqs(e.to_string()))?;
        send = send.message_attributes(name, value);
    }
    let send_message = send.build().map_err(|e| EnqueueError::Sqs(e.to_string()))?;
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

    #[test]
    fn a_body_sqs_would_refuse_goes_to_s3() {
        let text = body(3).replace("xxx", "\u{FFFF}");
        let routing = parse_routing(text.as_bytes()).unwrap();
        let r = build(&destination(), &routing, text.clone()).unwrap();
        assert!(matches!(r.placement, Placement::ClaimCheck(_)));
    }
}
