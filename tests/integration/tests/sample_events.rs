//! The sample events in `events/` (used with `cargo lambda invoke --data-file`) go through the
//! real handler and give the answers the README promises.

use nylas_sync::apigw::request_from_event;
use nylas_sync::ingest::Ingest;
use support::*;

fn sample(name: &str) -> lambda_http::Request {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let event: serde_json::Value = serde_json::from_str(&text).expect("sample is JSON");
    request_from_event(&event).expect("sample is an API Gateway event")
}

#[tokio::test]
async fn each_sample_event_gets_the_documented_answer() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let ingest = Ingest::from_env(&ingest_env(&queue_url, &bucket, "local-dev-secret"))
        .await
        .expect("config");

    let challenge = ingest.handle(sample("apigw-v2-challenge.json")).await;
    assert_eq!(
        status_and_body(&challenge),
        (200, "sample-challenge-7f3a".to_string())
    );
    assert_eq!(
        ingest
            .handle(sample("apigw-v2-bad-signature.json"))
            .await
            .status(),
        401
    );
    assert!(aws.drain(&queue_url).await.is_empty());

    assert_eq!(
        ingest
            .handle(sample("apigw-v2-message-created.json"))
            .await
            .status(),
        200
    );
    assert_eq!(
        ingest
            .handle(sample("apigw-v2-message-created-gzip.json"))
            .await
            .status(),
        200
    );
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
