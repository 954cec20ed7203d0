//! The notifications queue: verified notification bodies go to SQS with routing attributes; a
//! body too large for one SQS message goes to S3 and the message carries a pointer to it
//! (a claim check), which the consumer resolves.

use std::future::Future;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::notification::Routing;

/// SQS message attribute names set on every notification message.
pub mod attr {
    pub const TYPE: &str = "nylas_type";
    pub const NOTIFICATION_ID: &str = "notification_id";
    pub const GRANT_ID: &str = "grant_id";
    pub const OBJECT_ID: &str = "object_id";
    /// `inline` (the body is the notification) or `s3` (the body is a [`super::ClaimCheck`]).
    pub const PAYLOAD: &str = "payload";
}

/// The message body that stands for a notification stored in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCheck {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct ClaimCheckEnvelope {
    claim_check: ClaimCheck,
}

impl ClaimCheck {
    pub fn to_message_body(&self) -> String {
        // Serialising a struct of strings and a number cannot fail.
        serde_json::to_string(&ClaimCheckEnvelope {
            claim_check: self.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a pointer from a message body, if that is what it is.
    pub fn from_message_body(body: &str) -> Option<Self> {
        serde_json::from_str::<ClaimCheckEnvelope>(body)
            .ok()
            .map(|e| e.claim_check)
    }
}

/// Where a notification was put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Inline,
    ClaimCheck(ClaimCheck),
}

/// Why a notification could not be made durable. Retryable by the sender (the ingest answers 503).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("SQS did not accept the message: {0}")]
    Sqs(String),
    #[error("S3 did not store the payload: {0}")]
    S3(String),
}

/// The port the ingest writes verified notifications to.
pub trait NotificationSink: Send + Sync {
    /// Makes `body` durable; returns only once the queue has accepted it.
    fn enqueue(
        &self,
        routing: &Routing<'_>,
        body: String,
    ) -> impl Future<Output = Result<Placement, EnqueueError>> + Send;
}

/// The SQS (+ S3 for large bodies) adapter.
#[derive(Clone)]
pub struct SqsNotificationSink {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub queue_url: String,
    pub bucket: String,
    /// Body plus attributes above this go to S3.
    pub max_message_bytes: usize,
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

/// SQS refuses a few code points that JSON allows raw in strings (U+FFFE, U+FFFF). A body that
/// holds one goes through S3 rather than being refused, which would make Nylas retry in vain.
fn sqs_accepts(body: &str) -> bool {
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8; memchr finds the rare lead byte fast.
    let b = body.as_bytes();
    memchr::memchr_iter(0xEF, b)
        .all(|i| !(b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF))))
}

/// Content-addressed key: a retried delivery of the same bytes lands on the same object.
fn payload_key(body: &[u8]) -> String {
    format!("notifications/{}.json", hex::encode(Sha256::digest(body)))
}

impl NotificationSink for SqsNotificationSink {
    async fn enqueue(
        &self,
        routing: &Routing<'_>,
        body: String,
    ) -> Result<Placement, EnqueueError> {
        let (_, inline_attr_bytes) = attributes(routing, "inline");
        let (placement, message_body, payload) =
            if body.len() + inline_attr_bytes <= self.max_message_bytes && sqs_accepts(&body) {
                (Placement::Inline, body, "inline")
            } else {
                let check = ClaimCheck {
                    bucket: self.bucket.clone(),
                    key: payload_key(body.as_bytes()),
                    bytes: body.len() as u64,
                };
                self.s3
                    .put_object()
                    .bucket(&check.bucket)
                    .key(&check.key)
                    .content_type("application/json")
                    .body(ByteStream::from(body.into_bytes()))
                    .send()
                    .await
                    .map_err(|e| {
                        EnqueueError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                    })?;
                let message = check.to_message_body();
                (Placement::ClaimCheck(check), message, "s3")
            };
        let (attrs, _) = attributes(routing, payload);
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message_body);
        for (name, value) in attrs {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| EnqueueError::Sqs(e.to_string()))?;
            send = send.message_attributes(name, value);
        }
        send.send().await.map_err(|e| {
            EnqueueError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        })?;
        Ok(placement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_check_round_trips_through_a_message_body() {
        let c = ClaimCheck {
            bucket: "b".into(),
            key: "notifications/x.json".into(),
            bytes: 300_000,
        };
        assert_eq!(ClaimCheck::from_message_body(&c.to_message_body()), Some(c));
        assert_eq!(
            ClaimCheck::from_message_body(r#"{"type":"message.created"}"#),
            None
        );
    }

    #[test]
    fn non_characters_sqs_refuses_are_detected() {
        assert!(sqs_accepts("{\"a\":\"é ✓ 𝄞\"}"));
        assert!(!sqs_accepts("{\"a\":\"\u{FFFF}\"}"));
        assert!(!sqs_accepts("{\"a\":\"\u{FFFE}\"}"));
    }

    #[test]
    fn payload_keys_are_content_addressed() {
        assert_eq!(payload_key(b"a"), payload_key(b"a"));
        assert_ne!(payload_key(b"a"), payload_key(b"b"));
    }
}
