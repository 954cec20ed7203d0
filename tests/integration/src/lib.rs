//! Support for the integration tests: AWS clients pointed at the moto server that `make test`
//! starts (`AWS_ENDPOINT_URL`), fresh uniquely named resources per test, and signed API Gateway
//! requests built the way Lambda would deliver them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use nylas_sync::apigw::{http_api_event, request_from_event, rest_api_event, HttpRequestParts};
use nylas_sync::aws::{self, AwsTimeouts};

pub use nylas_sync::signature::sign;

/// The moto endpoint; the tests refuse to run against real AWS.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost") => {
            url
        }
        _ => panic!(
            "AWS_ENDPOINT_URL must point at a local moto server; run the tests with `make test` \
             (tests/with-moto starts one)"
        ),
    }
}

/// A name no other test (or earlier run against the same moto) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    pub async fn connect() -> Self {
        endpoint();
        let sdk = aws::sdk_config(AwsTimeouts::BACKGROUND).await;
        Self {
            sqs: aws::sqs_client(&sdk),
            s3: aws::s3_client(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            sdk,
        }
    }

    pub async fn create_queue(&self, prefix: &str) -> String {
        let out = self
            .sqs
            .create_queue()
            .queue_name(unique(prefix))
            .attributes(QueueAttributeName::VisibilityTimeout, "300")
            .send()
            .await
            .expect("create queue");
        out.queue_url().expect("queue url").to_string()
    }

    pub async fn create_bucket(&self, prefix: &str) -> String {
        let name = unique(prefix).to_ascii_lowercase();
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    /// Every message currently visible on the queue (each taken once: visibility 300 s).
    pub async fn drain(&self, queue_url: &str) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// Keys of every object in the bucket.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    pub async fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        out.body
            .collect()
            .await
            .expect("read object")
            .into_bytes()
            .to_vec()
    }
}

/// A string attribute of a received message.
pub fn attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()
        .and_then(|m| m.get(name))
        .and_then(|v| v.string_value())
        .map(str::to_string)
}

/// A `message.created` notification as Nylas sends it, with a body of `body_len` bytes.
pub fn message_created(
    notification_id: &str,
    grant_id: &str,
    message_id: &str,
    body_len: usize,
) -> String {
    serde_json::json!({
        "specversion": "1.0",
        "type": "message.created",
        "source": "/google/emails/realtime",
        "id": notification_id,
        "time": 1_723_821_985,
        "webhook_delivery_attempt": 1,
        "data": {
            "application_id": "app-1",
            "object": {
                "id": message_id,
                "grant_id": grant_id,
                "object": "message",
                "subject": "Quarterly report",
                "from": [{"name": "Ada", "email": "ada@example.com"}],
                "folders": ["INBOX"],
                "unread": true,
                "date": 1_723_821_980,
                "body": "x".repeat(body_len),
            }
        }
    })
    .to_string()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// Which API Gateway payload format to wrap a request in.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    /// HTTP API, payload format 2.0 (what the SAM template deploys).
    Http,
    /// REST API, payload format 1.0.
    Rest,
}

/// Builds the request Lambda would hand the handler.
pub fn request(api: Api, parts: &HttpRequestParts<'_>) -> lambda_http::Request {
    let event = match api {
        Api::Http => http_api_event(parts),
        Api::Rest => rest_api_event(parts),
    };
    request_from_event(&event).expect("valid API Gateway event")
}

/// A POST of `body` with the given extra headers.
pub fn post(api: Api, body: &[u8], headers: &[(&str, &str)], base64: bool) -> lambda_http::Request {
    let parts = HttpRequestParts {
        method: "POST",
        path: "/webhooks/nylas",
        raw_query: "",
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("content-type".to_string(), "application/json".to_string())])
            .collect(),
        body,
        base64,
    };
    request(api, &parts)
}

/// A POST signed with `secret`, as Nylas sends it.
pub fn signed_post(body: &str, secret: &str) -> lambda_http::Request {
    post(
        Api::Http,
        body.as_bytes(),
        &[("x-nylas-signature", &sign(secret, body.as_bytes()))],
        false,
    )
}

/// A GET with the given raw query string.
pub fn get(api: Api, raw_query: &str) -> lambda_http::Request {
    request(
        api,
        &HttpRequestParts {
            method: "GET",
            path: "/webhooks/nylas",
            raw_query,
            ..Default::default()
        },
    )
}

/// The environment of an ingest with the given queue, bucket and local secrets.
pub fn ingest_env<'a>(
    queue_url: &'a str,
    bucket: &'a str,
    secrets: &'a str,
) -> HashMap<&'static str, &'a str> {
    HashMap::from([
        ("NOTIFICATIONS_QUEUE_URL", queue_url),
        ("PAYLOAD_BUCKET", bucket),
        ("NYLAS_WEBHOOK_SECRETS", secrets),
    ])
}

/// Status and body of a handler response.
pub fn status_and_body(resp: &lambda_http::Response<lambda_http::Body>) -> (u16, String) {
    let body = match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    (resp.status().as_u16(), body)
}
