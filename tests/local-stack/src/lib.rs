//! The local Lambda host: the real handlers behind the triggers AWS would give them.
//! - `serve_ingest`: an HTTP endpoint; each request becomes the API Gateway HTTP API event Lambda
//!   would deliver, decoded by `lambda_http` exactly as in AWS.
//! - `SqsPoller`: event-source-mapping semantics for an SQS-triggered function: batches of up to
//!   10, `ReportBatchItemFailures` (only successful records are deleted), failed records come back
//!   after the visibility timeout, and SQS's own redrive policy moves them to the DLQ after
//!   `maxReceiveCount`.
//!
//! Used by `make dev` and by the integration tests, so both exercise the same wiring.

pub mod apigw;
pub mod compare;
pub mod day;
pub mod report;
pub mod scenario;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::apigw::{http_api_event, request_from_event, HttpRequestParts};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use axum::body::{Body as AxumBody, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use nylas_sync::ingest::Ingest;
use nylas_sync::queue::NotificationSink;

/// Serves the ingest handler on `listener` until the task is dropped.
pub async fn serve_ingest<S: NotificationSink + 'static>(
    ingest: Arc<Ingest<S>>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(host::<S>).with_state(ingest);
    axum::serve(listener, app).await
}

/// One HTTP request → API Gateway v2 event → the real handler → HTTP response.
async fn host<S: NotificationSink + 'static>(
    State(ingest): State<Arc<Ingest<S>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts = HttpRequestParts {
        method: method.as_str(),
        path: uri.path(),
        raw_query: uri.query().unwrap_or_default(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: &body,
        // Lossless for any bytes; lambda_http decodes it as API Gateway's base64 encoding.
        base64: true,
    };
    let answer = match request_from_event(&http_api_event(&parts)) {
        Ok(req) => ingest.handle(req).await,
        Err(_) => lambda_http::Response::builder()
            .status(400)
            .body(lambda_http::Body::Text("bad request".into()))
            .unwrap_or_default(),
    };
    let (parts, body) = answer.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    Response::from_parts(parts, AxumBody::from(bytes))
}

/// A batch response carrying this item identifier stands for an invocation that crashed
/// before answering: the poller deletes nothing, as Lambda's event source mapping would.
pub const CRASHED: &str = "__invocation_crashed__";

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    pub received: usize,
    pub succeeded: usize,
    pub failed: usize,
}

/// Polls one queue and hands batches to a handler, as Lambda's event source mapping does.
#[derive(Clone)]
pub struct SqsPoller {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub batch_size: i32,
}

impl SqsPoller {
    pub async fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: &str,
    ) -> Result<Self, aws_sdk_sqs::Error> {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        let region = queue_arn
            .split(':')
            .nth(3)
            .unwrap_or("us-east-1")
            .to_string();
        Ok(Self {
            sqs,
            queue_url: queue_url.to_string(),
            queue_arn,
            region,
            batch_size: 10,
        })
    }

    /// Receives one batch (waiting up to `wait_seconds` for one), runs `handler`, deletes the
    /// records it did not report as failed.
    pub async fn poll_once<F, Fut>(
        &self,
        wait_seconds: i32,
        handler: F,
    ) -> Result<PollOutcome, aws_sdk_sqs::Error>
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: Future<Output = SqsBatchResponse>,
    {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_seconds)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        let handles: HashMap<String, String> = messages
            .iter()
            .filter_map(|m| Some((m.message_id.clone()?, m.receipt_handle.clone()?)))
            .collect();
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.lambda_record(m)).collect();
        let received = event.records.len();
        let response = handler(event).await;
        let failed: std::collections::HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        if failed.contains(CRASHED) {
            return Ok(PollOutcome {
                received,
                succeeded: 0,
                failed: received,
            });
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = handles
            .iter()
            .filter(|(id, _)| !failed.contains(*id))
            .enumerate()
            .filter_map(|(i, (_, handle))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let succeeded = entries.len();
        if !entries.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await?;
        }
        Ok(PollOutcome {
            received,
            succeeded,
            failed: failed.len(),
        })
    }

    /// The record as Lambda delivers it.
    fn lambda_record(&self, m: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id.clone();
        r.receipt_handle = m.receipt_handle.clone();
        r.body = m.body.clone();
        r.md5_of_body = m.md5_of_body.clone();
        r.md5_of_message_attributes = m.md5_of_message_attributes.clone();
        r.attributes = m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        r.message_attributes = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        let mut attr = SqsMessageAttribute::default();
                        attr.string_value = v.string_value().map(str::to_string);
                        attr.data_type = Some(v.data_type().to_string());
                        (k.clone(), attr)
                    })
                    .collect()
            })
            .unwrap_or_default();
        r.event_source_arn = Some(self.queue_arn.clone());
        r.event_source = Some("aws:sqs".into());
        r.aws_region = Some(self.region.clone());
        r
    }
}

/// The objects table's date index as `infra/template.yaml` declares it (the template test holds
/// both to `nylas_sync::store`'s constants), for tables created outside CloudFormation.
pub fn with_by_date_index(
    req: aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
) -> Result<
    aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
    aws_sdk_dynamodb::error::BuildError,
> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, ScalarAttributeType,
    };
    use nylas_sync::store::{BY_DATE_INDEX, BY_DATE_PROJECTION, DATE_ATTRIBUTE};
    let mut projection = Projection::builder().projection_type(ProjectionType::Include);
    for a in BY_DATE_PROJECTION {
        projection = projection.non_key_attributes(*a);
    }
    Ok(req
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(DATE_ATTRIBUTE)
                .attribute_type(ScalarAttributeType::N)
                .build()?,
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(BY_DATE_INDEX)
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("grant_id")
                        .key_type(KeyType::Hash)
                        .build()?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(DATE_ATTRIBUTE)
                        .key_type(KeyType::Range)
                        .build()?,
                )
                .projection(projection.build())
                .build()?,
        ))
}
