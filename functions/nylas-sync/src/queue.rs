//! The notifications queue: verified notification bodies go to SQS with routing attributes; a
//! body too large for one SQS message goes to S3 and the message carries a pointer to it
//! (a claim check), which the consumer resolves.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::enqueue_request;
pub use crate::enqueue_request::Destination;
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

/// The SQS (+ S3 for large bodies) adapter: sends the requests [`crate::enqueue_request::build`]
/// decides (the S3 upload first, then the message).
#[derive(Clone)]
pub struct SqsNotificationSink {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub destination: Destination,
}

impl NotificationSink for SqsNotificationSink {
    async fn enqueue(
        &self,
        routing: &Routing<'_>,
        body: String,
    ) -> Result<Placement, EnqueueError> {
        let requests = enqueue_request::build(&self.destination, routing, body)?;
        if let Some(put) = requests.put_object {
            self.s3
                .put_object()
                .set_bucket(put.bucket)
                .set_key(put.key)
                .set_content_type(put.content_type)
                .body(put.body)
                .send()
                .await
                .map_err(|e| {
                    EnqueueError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                })?;
        }
        let send = requests.send_message;
        self.sqs
            .send_message()
            .set_queue_url(send.queue_url)
            .set_message_body(send.message_body)
            .set_message_attributes(send.message_attributes)
            .send()
            .await
            .map_err(|e| {
                EnqueueError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(requests.placement)
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
}
