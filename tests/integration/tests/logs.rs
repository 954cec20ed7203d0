//! What the functions log, read back through the JSON subscriber they use. A test binary of its
//! own: `tracing` caches, per process, whether a log site has a subscriber, and the other
//! integration tests run the same log sites on other threads with none, which made this test's
//! scoped subscriber miss lines when they shared a process.

use nylas_sync::ingest::Ingest;
use support::*;

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_request_logs_one_json_line_with_its_outcome_and_never_a_secret_signature_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = nylas_sync::telemetry::json_subscriber(
        tracing_subscriber::EnvFilter::new("info"),
        move || writer.clone(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = message_created("notif-log", "grant-log", "msg-log", 10)
        .replace("Quarterly report", "BODY-MARKER");
    let signature = sign("current-secret", body.as_bytes());
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let aws = Aws::connect().await;
            let queue_url = aws.create_queue("notifications").await;
            let bucket = aws.create_bucket("payloads").await;
            let ingest = Ingest::from_env(&ingest_env(
                &queue_url,
                &bucket,
                "current-secret,previous-secret",
            ))
            .await
            .expect("ingest config");
            assert_eq!(
                ingest
                    .handle(signed_post(&body, "current-secret"))
                    .await
                    .status(),
                200
            );
            assert_eq!(
                ingest
                    .handle(signed_post(&body, "wrong-secret"))
                    .await
                    .status(),
                401
            );
        })
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|l: &serde_json::Value| l["message"] == "request")
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["outcome"], "queued");
    assert_eq!(lines[0]["notification_id"], "notif-log");
    assert_eq!(lines[0]["grant_id"], "grant-log");
    assert_eq!(lines[1]["outcome"], "invalid_signature");
    assert_eq!(lines[1]["status"], 401);
    for secret_or_body in [
        "current-secret",
        "wrong-secret",
        signature.as_str(),
        "BODY-MARKER",
    ] {
        assert!(
            !text.contains(secret_or_body),
            "log holds {secret_or_body}: {text}"
        );
    }
}
