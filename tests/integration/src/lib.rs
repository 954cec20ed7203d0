//! Support for the integration tests: AWS clients pointed at the moto server that `make test`
//! starts (`AWS_ENDPOINT_URL`), fresh uniquely named resources per test, and signed API Gateway
//! requests built the way Lambda would deliver them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use local_stack::apigw::{http_api_event, request_from_event, rest_api_event, HttpRequestParts};
use nylas_sync::aws::{self, AwsTimeouts};

pub use nylas_sync::signature::sign;

pub mod emf;

/// The `id` of an object the emulator answered with.
pub fn id_of(v: &serde_json::Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

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

    /// The messages of a queue once at least one is visible (delayed ones become visible after
    /// their delay): polls until then, at most `within`.
    pub async fn drain_within(&self, queue_url: &str, within: Duration) -> Vec<Message> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let got = self.drain(queue_url).await;
            if !got.is_empty() || tokio::time::Instant::now() >= until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
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

// ---------------------------------------------------------------------------------------------
// DynamoDB tables and the whole pipeline: emulator → ingest (HTTP) → SQS → consumer → DynamoDB.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use nylas_emulator::{Emulator, EmulatorConfig};
use nylas_sync::clock::Clock;
use nylas_sync::consumer::Consumer;
use nylas_sync::grants::GrantStatus;
use nylas_sync::ingest::Ingest;
use nylas_sync::jobs::{JobKind, ReconcileJob};
use nylas_sync::reconcile::{Reconciler, RunReport};
use nylas_sync::store::{ObjectRef, StoredObject};

impl Aws {
    pub fn ddb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// A table keyed as the contract says: objects (`grant_id`, `sk`) or grants (`grant_id`).
    pub async fn create_table(&self, prefix: &str, with_sort_key: bool) -> String {
        let name = unique(prefix);
        let mut req = self
            .ddb()
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("grant_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("grant_id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            );
        if with_sort_key {
            req = req
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("sk")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .unwrap(),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("sk")
                        .key_type(KeyType::Range)
                        .build()
                        .unwrap(),
                );
            req = local_stack::with_by_date_index(req).expect("date index");
        }
        req.send().await.expect("create table");
        name
    }

    /// A queue with the given visibility timeout and, optionally, a DLQ after `max_receives`.
    pub async fn create_queue_with(
        &self,
        prefix: &str,
        visibility_s: u32,
        dlq_after: Option<u32>,
    ) -> (String, Option<String>) {
        let mut req = self
            .sqs
            .create_queue()
            .queue_name(unique(prefix))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_s.to_string(),
            );
        let mut dlq_url = None;
        if let Some(max) = dlq_after {
            let dlq = self.create_queue(&format!("{prefix}-dlq")).await;
            let arn = self
                .sqs
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("dlq arn")
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .expect("dlq arn");
            req = req.attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
            );
            dlq_url = Some(dlq);
        }
        let url = req
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        (url, dlq_url)
    }

    /// Messages sent with a delay that has not passed yet (a deferred record's copy).
    pub async fn delayed(&self, queue_url: &str) -> u64 {
        self.sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|a| {
                a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Visible plus in-flight messages.
    pub async fn queue_depth(&self, queue_url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// Everything the consumer needs, against moto and an emulator.
pub struct Pipeline {
    pub aws: Aws,
    pub emulator: Emulator,
    pub consumer: Arc<Consumer>,
    pub notifications: local_stack::SqsPoller,
    pub notifications_dlq: String,
    pub reconcile_queue: String,
    pub objects_table: String,
    pub grants_table: String,
    pub bucket: String,
    pub webhook_secret: String,
    /// The emulator's destination for the pipeline's ingest.
    pub destination_id: String,
    pub reconciler: Arc<Reconciler>,
    ingest_task: tokio::task::JoinHandle<std::io::Result<()>>,
    env: HashMap<&'static str, String>,
}

/// The emulator's clock, for the functions under test: object times, notification times and
/// the functions' versions, cursors and leases then all run on the same (scaled) time.
pub struct EmulatorClock(pub Emulator);

impl Clock for EmulatorClock {
    fn now_ms(&self) -> i64 {
        self.0.now() * 1000
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.ingest_task.abort();
    }
}

/// Settings for a pipeline.
pub struct PipelineOptions {
    pub emulator: EmulatorConfig,
    pub consumer: Vec<(&'static str, String)>,
    /// Visibility timeout of the notifications queue, seconds.
    pub visibility_s: u32,
    pub max_receives: u32,
    /// Extra environment of the reconciler (e.g. `DRIFT_SWEEP_EVERY_RUNS`).
    pub reconciler: Vec<(&'static str, String)>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            emulator: EmulatorConfig {
                initial_messages_per_grant: 0,
                initial_events_per_grant: 0,
                recurring_series_per_grant: 0,
                ..EmulatorConfig::default()
            },
            consumer: vec![],
            visibility_s: 2,
            max_receives: 5,
            reconciler: vec![],
        }
    }
}

impl Pipeline {
    pub async fn start(options: PipelineOptions) -> Self {
        let aws = Aws::connect().await;
        let (queue_url, dlq) = aws
            .create_queue_with(
                "notifications",
                options.visibility_s,
                Some(options.max_receives),
            )
            .await;
        let reconcile_queue = aws.create_queue("reconcile").await;
        let bucket = aws.create_bucket("payloads").await;
        let objects_table = aws.create_table("objects", true).await;
        let grants_table = aws.create_table("grants", false).await;
        let emulator = Emulator::start(options.emulator).await.expect("emulator");

        // The ingest's URL must exist before the destination (and its secret) does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ingest");
        let url = format!(
            "http://{}/webhooks/nylas",
            listener.local_addr().expect("addr")
        );
        let (destination_id, webhook_secret) = emulator.register_destination_direct(&url, false);
        let ingest = Ingest::from_env(&ingest_env(&queue_url, &bucket, &webhook_secret))
            .await
            .expect("ingest");
        let ingest_task = tokio::spawn(local_stack::serve_ingest(Arc::new(ingest), listener));

        let base_url = emulator.base_url();
        let mut env: HashMap<&str, String> = HashMap::from([
            ("OBJECTS_TABLE", objects_table.clone()),
            ("GRANTS_TABLE", grants_table.clone()),
            ("PAYLOAD_BUCKET", bucket.clone()),
            ("RECONCILE_QUEUE_URL", reconcile_queue.clone()),
            ("NYLAS_API_URI", base_url),
            ("NYLAS_API_KEY", emulator.api_key().to_string()),
        ]);
        let base_env = env.clone();
        env.extend(options.consumer);
        let consumer_env: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut consumer = Consumer::from_env(&consumer_env).await.expect("consumer");
        consumer.clock = Arc::new(EmulatorClock(emulator.clone()));
        let consumer = Arc::new(consumer);
        let mut reconciler_env = base_env.clone();
        reconciler_env.extend(options.reconciler);
        let reconciler = Arc::new(build_reconciler(&reconciler_env, &emulator).await);
        let notifications = local_stack::SqsPoller::new(aws.sqs.clone(), &queue_url)
            .await
            .expect("poller");
        Self {
            aws,
            emulator,
            consumer,
            notifications,
            notifications_dlq: dlq.expect("dlq"),
            reconcile_queue,
            objects_table,
            grants_table,
            bucket,
            webhook_secret,
            destination_id,
            reconciler,
            ingest_task,
            env: reconciler_env,
        }
    }

    /// A reconciler like the pipeline's, talking to Nylas at `nylas_uri` instead.
    pub async fn reconciler_via(&self, nylas_uri: &str) -> Reconciler {
        let mut env = self.env.clone();
        env.insert("NYLAS_API_URI", nylas_uri.to_string());
        build_reconciler(&env, &self.emulator).await
    }

    /// Registers every emulator grant as active (their `grant.created` predates the destination).
    pub async fn register_grants(&self) {
        for g in self.emulator.grant_ids() {
            self.consumer
                .grants
                .set_status(&g, GrantStatus::Active, 1, &[])
                .await
                .expect("register grant");
        }
    }

    /// Runs one reconcile job for `grant` with the pipeline's reconciler, with time to spare.
    pub async fn reconcile(&self, grant: &str, kind: JobKind) -> RunReport {
        let job = ReconcileJob::new(grant, kind, None);
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        self.reconciler
            .run(&job, deadline)
            .await
            .expect("reconcile")
    }

    pub fn grant(&self) -> String {
        self.emulator
            .grant_ids()
            .into_iter()
            .next()
            .expect("a grant")
    }

    /// Delivers every pending webhook and runs the consumer until the queue is empty (failed
    /// records included: they come back after the visibility timeout). Panics after `deadline`.
    pub async fn settle(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        assert!(
            self.emulator.wait_for_deliveries_idle(deadline).await,
            "emulator deliveries did not finish"
        );
        loop {
            // Four concurrent invocations, as the event source mapping scales out on a backlog.
            let polls = (0..4).map(|_| {
                let consumer = Arc::clone(&self.consumer);
                self.notifications
                    .poll_once(1, |event| async move { consumer.handle(event).await })
            });
            let received: usize = futures::future::join_all(polls)
                .await
                .into_iter()
                .map(|r| r.expect("poll").received)
                .sum();
            if received == 0
                && self.aws.queue_depth(&self.notifications.queue_url).await == (0, 0)
                && self.aws.delayed(&self.notifications.queue_url).await == 0
            {
                return;
            }
            if tokio::time::Instant::now() >= until {
                let depth = self.aws.queue_depth(&self.notifications.queue_url).await;
                panic!(
                    "queue did not drain in {deadline:?}: depth {depth:?}, counters {:?}",
                    self.consumer.counters
                );
            }
        }
    }

    pub async fn stored(&self, grant: &str, object_ref: &ObjectRef) -> Option<StoredObject> {
        self.consumer
            .objects
            .get(grant, object_ref)
            .await
            .expect("read store")
    }

    /// Differences between the store and the emulator's truth for messages (and events, if
    /// `events`): missing or stale objects, and deleted ones that are not tombstones. An event
    /// outside the reconciler's events window is missing only if the store never heard of it.
    pub async fn diff_against_truth(&self, events: bool) -> Vec<String> {
        let truth = self.emulator.truth();
        let window = self.reconciler.settings.events_window;
        let mut diffs = Vec::new();
        for g in &truth.grants {
            let grant = &g.grant_id;
            let mut expect: Vec<(ObjectRef, Option<&serde_json::Value>, bool)> = Vec::new();
            for m in &g.messages {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                expect.push((ObjectRef::Message { id }, Some(m), true));
            }
            for id in &g.deleted_message_ids {
                expect.push((ObjectRef::Message { id: id.clone() }, None, true));
            }
            if events {
                for e in &g.events {
                    let r = ObjectRef::Event {
                        calendar_id: e["calendar_id"].as_str().unwrap_or_default().into(),
                        id: e["id"].as_str().unwrap_or_default().into(),
                    };
                    let cancelled = e["status"] == "cancelled";
                    let required = window.covers(e, truth.now);
                    expect.push((r, if cancelled { None } else { Some(e) }, required));
                }
                for d in &g.deleted_events {
                    expect.push((
                        ObjectRef::Event {
                            calendar_id: d.calendar_id.clone(),
                            id: d.id.clone(),
                        },
                        None,
                        true,
                    ));
                }
            }
            for (r, want, required) in expect {
                let got = self.stored(grant, &r).await;
                match (want, got) {
                    (Some(_), None) if !required => {}
                    (Some(want), Some(got))
                        if !got.deleted && got.object.as_ref() == Some(want) => {}
                    (Some(_), None) => diffs.push(format!("missing {grant} {}", r.sort_key())),
                    (Some(_), Some(got)) if got.deleted => {
                        diffs.push(format!("deleted but present {grant} {}", r.sort_key()))
                    }
                    (Some(want), Some(got)) => diffs.push(format!(
                        "stale {grant} {}: store {} vs truth {}",
                        r.sort_key(),
                        short(got.object.as_ref()),
                        short(Some(want))
                    )),
                    (None, Some(got)) if !got.deleted => {
                        diffs.push(format!("resurrected {grant} {}", r.sort_key()))
                    }
                    (None, _) => {}
                }
            }
        }
        diffs
    }
}

impl Pipeline {
    /// Differences between the store's folders and the emulator's truth: missing, stale, or
    /// deleted at Nylas and live in the store.
    pub async fn diff_folders_against_truth(&self) -> Vec<String> {
        let truth = self.emulator.truth();
        let mut diffs = Vec::new();
        for g in &truth.grants {
            let grant = &g.grant_id;
            for f in &g.folders {
                let id = f["id"].as_str().unwrap_or_default().to_string();
                let got = self
                    .stored(grant, &ObjectRef::Folder { id: id.clone() })
                    .await;
                match got {
                    Some(s) if !s.deleted && s.object.as_ref() == Some(f) => {}
                    Some(s) if !s.deleted => diffs.push(format!("stale {grant} folder#{id}")),
                    _ => diffs.push(format!("missing {grant} folder#{id}")),
                }
            }
            for id in &g.deleted_folder_ids {
                let got = self
                    .stored(grant, &ObjectRef::Folder { id: id.clone() })
                    .await;
                if got.is_some_and(|s| !s.deleted) {
                    diffs.push(format!("resurrected {grant} folder#{id}"));
                }
            }
        }
        diffs
    }
}

fn short(v: Option<&serde_json::Value>) -> String {
    let mut v = v.cloned().unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        if let Some(b) = m.get("body").and_then(|b| b.as_str()) {
            let len = b.len();
            m.insert(
                "body".into(),
                serde_json::Value::String(format!("<{len} bytes>")),
            );
        }
    }
    let text = v.to_string();
    text.chars().take(400).collect()
}

impl Pipeline {
    /// Puts notification bodies straight on the notifications queue (as the ingest would), in
    /// order; returns their SQS message ids.
    pub async fn enqueue_raw(&self, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::new();
        for b in bodies {
            let out = self
                .aws
                .sqs
                .send_message()
                .queue_url(&self.notifications.queue_url)
                .message_body(b)
                .send()
                .await
                .expect("send");
            ids.push(out.message_id.expect("id"));
        }
        ids
    }

    /// Runs the consumer on one batch (up to 10 visible records); returns the records received
    /// and those reported failed.
    pub async fn run_batch(&self) -> (Vec<String>, Vec<String>) {
        let seen = Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
        let consumer = Arc::clone(&self.consumer);
        let log = Arc::clone(&seen);
        self.notifications
            .poll_once(1, |event| async move {
                let ids: Vec<String> = event
                    .records
                    .iter()
                    .filter_map(|r| r.message_id.clone())
                    .collect();
                let response = consumer.handle(event).await;
                let failed = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                *log.lock().unwrap() = (ids, failed);
                response
            })
            .await
            .expect("poll");
        let out = seen.lock().unwrap().clone();
        out
    }

    /// Waits until the emulator's clock has moved to a new second, so that the next change gets a
    /// later notification `time` than the previous one.
    pub async fn next_second(&self) {
        let start = self.emulator.now();
        while self.emulator.now() == start {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A notification as Nylas sends it, for records put on the queue by hand.
pub fn notification(kind: &str, time: i64, object: &serde_json::Value) -> String {
    serde_json::json!({
        "specversion": "1.0", "type": kind, "source": "/google/emails/realtime",
        "id": unique("n"), "time": time, "webhook_delivery_attempt": 1,
        "data": {"application_id": "app", "object": object}
    })
    .to_string()
}

async fn build_reconciler(env: &HashMap<&'static str, String>, emulator: &Emulator) -> Reconciler {
    let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut r = Reconciler::from_env(&env).await.expect("reconciler");
    r.clock = Arc::new(EmulatorClock(emulator.clone()));
    r
}

/// A proxy in front of the emulator that answers the first request whose path contains
/// `hold_path` only when told to: it forwards the request at once (so the answer is Nylas's state
/// when the read began), tells the test (`reached`), then waits for `release`. Every other
/// request passes straight through. Models a slow Nylas answer during which things change.
pub struct HoldingProxy {
    pub uri: String,
    pub reached: Arc<tokio::sync::Notify>,
    pub release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[derive(Clone)]
struct HoldState {
    upstream: String,
    hold_path: String,
    held: Arc<std::sync::atomic::AtomicBool>,
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl HoldingProxy {
    pub async fn start(upstream: &str, hold_path: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let uri = format!("http://{}", listener.local_addr().expect("addr"));
        let state = HoldState {
            upstream: upstream.to_string(),
            hold_path: hold_path.to_string(),
            held: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            reached: Arc::new(tokio::sync::Notify::new()),
            release: Arc::new(tokio::sync::Notify::new()),
        };
        let (reached, release) = (state.reached.clone(), state.release.clone());
        let app = axum::Router::new()
            .fallback(hold_or_forward)
            .with_state(state);
        let task = tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            uri,
            reached,
            release,
            task,
        }
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hold_or_forward(
    axum::extract::State(s): axum::extract::State<HoldState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut upstream = reqwest::Client::new().get(format!("{}{path_and_query}", s.upstream));
    if let Some(a) = req.headers().get("authorization") {
        upstream = upstream.header("authorization", a.to_str().unwrap_or_default());
    }
    let resp = upstream.send().await.expect("upstream");
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let body = resp.text().await.unwrap_or_default();
    let hold = req.uri().path().contains(&s.hold_path)
        && !s.held.swap(true, std::sync::atomic::Ordering::SeqCst);
    if hold {
        s.reached.notify_one();
        s.release.notified().await;
    }
    (status, body).into_response()
}

impl Pipeline {
    /// A consumer like the pipeline's, talking to Nylas at `nylas_uri` instead.
    pub async fn consumer_via(&self, nylas_uri: &str) -> Consumer {
        self.consumer_with(&[("NYLAS_API_URI", nylas_uri.to_string())])
            .await
    }

    /// A consumer like the pipeline's, with some of its environment replaced.
    pub async fn consumer_with(&self, overrides: &[(&'static str, String)]) -> Consumer {
        let mut env = self.env.clone();
        env.extend(overrides.iter().cloned());
        let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut consumer = Consumer::from_env(&env).await.expect("consumer");
        consumer.clock = Arc::new(EmulatorClock(self.emulator.clone()));
        consumer
    }
}
