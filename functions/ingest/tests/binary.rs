//! The ingest binary itself, under a stand-in of the Lambda Runtime API with moto behind it: the
//! event's bytes go from the Runtime API to the handler through `raw_event` and
//! `ProxyEvent::read`, and every invocation is answered, none fails.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bench::runtime_api::{CallKind, RuntimeApi};
use nylas_sync::signature::sign;
use serde_json::{json, Value};
use support::Aws;

const SECRET: &str = "binary-test-secret";

struct Ingest {
    api: RuntimeApi,
    child: Child,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ingest {
    async fn start(queue_url: &str, bucket: &str) -> Self {
        let api = RuntimeApi::start().await.expect("runtime API stand-in");
        let child = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env("AWS_LAMBDA_RUNTIME_API", api.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", "ingest")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("NOTIFICATIONS_QUEUE_URL", queue_url)
            .env("PAYLOAD_BUCKET", bucket)
            .env("NYLAS_WEBHOOK_SECRETS", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the ingest binary starts");
        Self { api, child }
    }

    /// Hands the process one event; its answer (a response) or its invocation error.
    async fn invoke(&mut self, event: Vec<u8>) -> CallKind {
        let id = self.api.invoke(event);
        loop {
            let call = self
                .api
                .next_call(Duration::from_secs(30))
                .await
                .expect("the ingest answers within 30 s");
            match call.kind {
                CallKind::Next => continue,
                CallKind::Response { ref request_id, .. }
                | CallKind::Error { ref request_id, .. }
                    if *request_id == id =>
                {
                    return call.kind
                }
                other => panic!("unexpected call {other:?}"),
            }
        }
    }

    async fn answer(&mut self, event: Vec<u8>) -> (u16, Value) {
        match self.invoke(event).await {
            CallKind::Response { body, .. } => {
                let answer: Value = serde_json::from_slice(&body).expect("a proxy response");
                let status = answer["statusCode"].as_u64().expect("a status") as u16;
                let body = serde_json::from_str(answer["body"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null);
                (status, body)
            }
            other => panic!("an invocation error: {other:?}"),
        }
    }
}

fn http_api_event(method: &str, body: &str, headers: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhooks/nylas",
        "rawQueryString": "challenge=abc \"<>",
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": "/webhooks/nylas"}},
        "body": body,
        "isBase64Encoded": false,
    }))
    .expect("JSON")
}

#[tokio::test]
async fn the_binary_reads_each_event_from_its_bytes_and_answers_every_one() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("binary-notifications").await;
    let bucket = aws.create_bucket("binary-payloads").await;
    let mut ingest = Ingest::start(&queue_url, &bucket).await;

    // A notification whose body is dense with what the event's JSON string escapes.
    let html =
        "<p style=\"margin:0\">R\u{e9}sum\u{e9} \u{2014} \\n &amp; \u{1f600}</p>\n".repeat(100);
    let body = json!({
        "specversion": "1.0", "type": "message.created", "id": "n-bin-1", "time": 1_723_821_985,
        "data": {"object": {"id": "m-bin-1", "grant_id": "g-bin", "object": "message", "body": html}},
    })
    .to_string();
    let signed = http_api_event(
        "POST",
        &body,
        json!({"X-Nylas-Signature": sign(SECRET, body.as_bytes())}),
    );
    assert_eq!(ingest.answer(signed).await.0, 200);
    let queued = aws.drain(&queue_url).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].body(),
        Some(body.as_str()),
        "exactly the signed bytes"
    );

    let forged = http_api_event("POST", &body, json!({"x-nylas-signature": "00"}));
    assert_eq!(ingest.answer(forged).await.0, 401);

    let challenge = http_api_event("GET", "", json!({}));
    let (status, _) = ingest.answer(challenge).await;
    assert_eq!(status, 200);

    // Not an event, not JSON, a body that is no text once decoded: answered 400, never failed.
    for event in [
        b"not json".to_vec(),
        b"[1,2]".to_vec(),
        b"{\"body\":\"\\ud800\",\"httpMethod\":\"POST\"}".to_vec(),
        b"{\"body\":\"x\"".to_vec(),
    ] {
        let (status, answer) = ingest.answer(event).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "invalid_event", "{answer}");
    }
    assert!(
        aws.drain(&queue_url).await.is_empty(),
        "nothing unsigned queued"
    );
}
