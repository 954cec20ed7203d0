//! The sample events in `events/` (used with `cargo lambda invoke --data-file`) are read with each
//! function's input type, as the Lambda runtime reads them, and give the answers the README
//! promises: the ingest's through the binary's own entry point, the consumer's against moto.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use nylas_sync::ingest::Ingest;
use nylas_sync::jobs::{JobKind, ReconcileJob};
use nylas_sync::notification::parse_routing;
use nylas_sync::proxy_event::{ProxyEvent, ProxyResponse};
use nylas_sync::sqs_queue::SqsNotificationSink;
use support::*;

fn sample_bytes(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A sample read as `lambda_runtime` reads the invocation's bytes into the handler's input type.
macro_rules! sample {
    ($name:expr) => {
        serde_json::from_slice(&sample_bytes($name))
            .unwrap_or_else(|e| panic!("{} is not the handler's input: {e}", $name))
    };
}

/// The ingest's sample read as its binary reads the invocation's bytes.
async fn invoke_ingest(ingest: &Ingest<SqsNotificationSink>, name: &str) -> ProxyResponse {
    let bytes = sample_bytes(name);
    let event = ProxyEvent::read(&bytes);
    assert!(event.is_object, "{name} is not an API Gateway event");
    let by_serde: ProxyEvent = sample!(name);
    assert_eq!(event, by_serde, "{name}");
    ingest.handle_event(event).await
}

#[tokio::test]
async fn each_ingest_sample_event_gets_the_documented_answer() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let ingest = Ingest::from_env(&ingest_env(&queue_url, &bucket, "local-dev-secret"))
        .await
        .expect("config");

    let challenge = invoke_ingest(&ingest, "apigw-v2-challenge.json").await;
    assert_eq!(
        (challenge.status_code, challenge.body.as_str()),
        (200, "sample-challenge-7f3a")
    );
    let forged = invoke_ingest(&ingest, "apigw-v2-bad-signature.json").await;
    assert_eq!(forged.status_code, 401);
    assert!(aws.drain(&queue_url).await.is_empty());

    let plain = invoke_ingest(&ingest, "apigw-v2-message-created.json").await;
    assert_eq!(plain.status_code, 200, "{}", plain.body);
    let gzipped = invoke_ingest(&ingest, "apigw-v2-message-created-gzip.json").await;
    assert_eq!(gzipped.status_code, 200, "{}", gzipped.body);
    let queued = aws.drain(&queue_url).await;
    assert_eq!(queued.len(), 2);
    assert_eq!(
        queued[0].body(),
        queued[1].body(),
        "the gzip sample carries the same notification"
    );
    assert_eq!(
        attribute(&queued[0], "notification_id").as_deref(),
        Some("sample-notification-1")
    );
}

#[test]
fn the_consumer_sample_is_an_sqs_batch_of_the_notification_the_ingest_queues() {
    let batch: SqsEvent = sample!("sqs-consumer-message-created.json");
    assert_eq!(batch.records.len(), 1);
    let record = &batch.records[0];
    let body = record.body.as_deref().expect("a body");
    let routing = parse_routing(body.as_bytes()).expect("a routable notification");
    assert_eq!(routing.trigger.as_ref(), "message.created");
    assert_eq!(routing.grant_id.as_deref(), Some("sample-grant-1"));
    // The same notification the signed API Gateway sample carries.
    let apigw: ProxyEvent = sample!("apigw-v2-message-created.json");
    assert_eq!(apigw.body.as_deref(), Some(body.as_bytes()));
}

#[tokio::test]
async fn the_consumer_sample_is_stored_by_the_consumer() {
    let pipeline = Pipeline::start(PipelineOptions::default()).await;
    pipeline
        .consumer
        .grants
        .set_status(
            "sample-grant-1",
            nylas_sync::grants::GrantStatus::Active,
            1,
            &[],
        )
        .await
        .expect("register grant");
    let answer = pipeline
        .consumer
        .handle(sample!("sqs-consumer-message-created.json"))
        .await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "the record is not retried"
    );
    let stored = pipeline
        .stored(
            "sample-grant-1",
            &nylas_sync::store::ObjectRef::Message {
                id: "sample-message-1".into(),
            },
        )
        .await;
    assert!(stored.is_some(), "the sample message is stored");
}

#[test]
fn the_reconciler_sample_is_an_sqs_batch_of_one_reconcile_job() {
    let batch: SqsEvent = sample!("sqs-reconciler-job.json");
    assert_eq!(batch.records.len(), 1);
    let body = batch.records[0].body.as_deref().expect("a body");
    let job: ReconcileJob = serde_json::from_str(body).expect("a reconcile job");
    assert_eq!(
        job,
        ReconcileJob::new("sample-grant-1", JobKind::Incremental, None)
    );
}

#[test]
fn the_scheduler_sample_is_an_eventbridge_scheduled_event() {
    // The scheduler takes any JSON (it needs nothing from the event); the sample is the real shape.
    let _: serde_json::Value = sample!("eventbridge-scheduler.json");
    let event: EventBridgeEvent<serde_json::Value> = sample!("eventbridge-scheduler.json");
    assert_eq!(event.detail_type, "Scheduled Event");
    assert_eq!(event.source, "aws.events");
    assert_eq!(
        nylas_sync::scheduler::Tick::of(&sample!("eventbridge-scheduler.json")),
        nylas_sync::scheduler::Tick::FanOutAndWatch
    );
}

#[test]
fn the_destination_watch_sample_is_the_input_of_its_schedule() {
    assert_eq!(
        nylas_sync::scheduler::Tick::of(&sample!("eventbridge-destination-watch.json")),
        nylas_sync::scheduler::Tick::WatchOnly
    );
}
