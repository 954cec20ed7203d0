//! The SQS and S3 adapters of the notifications queue's protocol ([`crate::queue`]): the ingest's
//! [`SqsNotificationSink`] (S3 upload of a large body, then the message) and the consumer's
//! [`SqsNotificationSource`] (claim checks read back from S3; rate-limited records re-sent with
//! a delay, or hidden). They carry out what the protocol's pure functions decide, nothing more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};

use crate::enqueue_request::{self, Destination};
use crate::notification::Routing;
use crate::queue::{
    attr, redelivery, ClaimCheck, EnqueueError, NotificationSink, NotificationSource, Payload,
    Placement, ReadError, RecordHistory, Redelivery, RedeliveryPolicy, Settled,
};

/// The SQS (+ S3 for large bodies) sink: sends the requests [`enqueue_request::build`]
/// decides (the S3 upload first, then the message).
#[derive(Clone)]
pub struct SqsNotificationSink {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: crate::aws::LazyS3,
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

/// A queue a record came from: its URL and its visibility timeout (the wait of an ordinary retry).
#[derive(Debug, Clone)]
struct QueueInfo {
    url: String,
    visibility_s: Option<u32>,
}

/// The consumer's SQS (+ S3) source.
pub struct SqsNotificationSource {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: crate::aws::LazyS3,
    pub policy: RedeliveryPolicy,
    /// By queue ARN, looked up once per cold start.
    queues: Mutex<HashMap<String, QueueInfo>>,
}

impl SqsNotificationSource {
    pub fn new(sqs: aws_sdk_sqs::Client, s3: crate::aws::LazyS3, policy: RedeliveryPolicy) -> Self {
        Self {
            sqs,
            s3,
            policy,
            queues: Mutex::new(HashMap::new()),
        }
    }

    async fn read_claim_check(&self, check: ClaimCheck) -> Result<Payload, ReadError> {
        let out = match self
            .s3
            .get_object()
            .bucket(&check.bucket)
            .key(&check.key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Payload::Gone(check))
            }
            Err(e) => {
                return Err(ReadError::Retry(
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                ))
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ReadError::Retry(e.to_string()))?
            .into_bytes();
        String::from_utf8(bytes.to_vec())
            .map(Payload::Notification)
            .map_err(|_| ReadError::Permanent("claim-checked payload is not UTF-8".into()))
    }

    async fn queue(&self, arn: &str) -> Option<QueueInfo> {
        if let Some(q) = self.queues.lock().ok().and_then(|m| m.get(arn).cloned()) {
            return Some(q);
        }
        // arn:aws:sqs:<region>:<account>:<name>
        let mut parts = arn.rsplitn(3, ':');
        let name = parts.next()?;
        let account = parts.next()?;
        let url = self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .ok()?
            .queue_url?;
        let visibility_s = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .ok()
            .and_then(|o| o.attributes)
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout)?.parse().ok());
        let info = QueueInfo { url, visibility_s };
        if let Ok(mut m) = self.queues.lock() {
            m.insert(arn.to_string(), info.clone());
        }
        Some(info)
    }

    /// Sends a copy of `record` (same body, same attributes, `deferrals` set) delayed by `delay_s`.
    async fn defer(
        &self,
        queue_url: &str,
        record: &SqsMessage,
        delay_s: u32,
        deferrals: u32,
    ) -> Result<(), String> {
        let mut attributes = HashMap::new();
        for (name, a) in &record.message_attributes {
            if name == attr::DEFERRALS {
                continue;
            }
            let data_type = a.data_type.as_deref().unwrap_or("String");
            let mut value = MessageAttributeValue::builder().data_type(data_type);
            if let Some(s) = &a.string_value {
                value = value.string_value(s);
            } else if let Some(b) = &a.binary_value {
                value = value.binary_value(aws_sdk_sqs::primitives::Blob::new(b.0.clone()));
            } else {
                continue;
            }
            attributes.insert(name.clone(), value.build().map_err(|e| e.to_string())?);
        }
        attributes.insert(
            attr::DEFERRALS.to_string(),
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(deferrals.to_string())
                .build()
                .map_err(|e| e.to_string())?,
        );
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(record.body.as_deref().unwrap_or_default())
            .set_message_attributes(Some(attributes))
            .delay_seconds(delay_s as i32)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }

    async fn hide(&self, queue_url: &str, record: &SqsMessage, visibility_s: u32) -> Settled {
        let Some(handle) = record.receipt_handle.as_deref() else {
            return Settled::Failed;
        };
        match self
            .sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(visibility_s as i32)
            .send()
            .await
        {
            Ok(_) => Settled::Hidden { visibility_s },
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not delay record");
                Settled::Failed
            }
        }
    }
}

impl NotificationSource for SqsNotificationSource {
    async fn read(&self, record: &SqsMessage) -> Result<Payload, ReadError> {
        let body = record.body.as_deref().unwrap_or_default();
        match ClaimCheck::from_message_body(body) {
            Some(check) => self.read_claim_check(check).await,
            None => Ok(Payload::Notification(body.to_string())),
        }
    }

    async fn retry_later(&self, record: &SqsMessage, retry_after: Duration) -> Settled {
        let Some(queue) = (match record.event_source_arn.as_deref() {
            Some(arn) => self.queue(arn).await,
            None => None,
        }) else {
            return Settled::Failed;
        };
        let history = RecordHistory::of(record);
        match redelivery(retry_after, history, queue.visibility_s, &self.policy) {
            Redelivery::Defer { delay_s, deferrals } => {
                match self.defer(&queue.url, record, delay_s, deferrals).await {
                    Ok(()) => Settled::Deferred { delay_s, deferrals },
                    Err(e) => {
                        tracing::warn!(error = %e, "could not defer record: hiding it instead");
                        self.hide(&queue.url, record, delay_s).await
                    }
                }
            }
            Redelivery::Hide { visibility_s } => self.hide(&queue.url, record, visibility_s).await,
        }
    }
}
