//! The ingest handler against a real moto server: what lands in SQS and S3 for each request,
//! and that nothing lands for a request that is refused.

use std::collections::HashMap;
use std::time::Duration;

use nylas_sync::config::{IngestLimits, WebhookSecret};
use nylas_sync::enqueue_request::Destination;
use nylas_sync::ingest::Ingest;
use nylas_sync::queue::{attr, ClaimCheck};
use nylas_sync::sqs_queue::SqsNotificationSink;
use support::*;

struct Fixture {
    aws: Aws,
    queue_url: String,
    bucket: String,
    ingest: Ingest<SqsNotificationSink>,
}

impl Fixture {
    async fn with_secrets(secrets: &str) -> Self {
        let aws = Aws::connect().await;
        let queue_url = aws.create_queue("notifications").await;
        let bucket = aws.create_bucket("payloads").await;
        let ingest = Ingest::from_env(&ingest_env(&queue_url, &bucket, secrets))
            .await
            .expect("ingest config");
        Self {
            aws,
            queue_url,
            bucket,
            ingest,
        }
    }

    async fn new() -> Self {
        Self::with_secrets("current-secret,previous-secret").await
    }

    async fn nothing_stored(&self) {
        assert!(
            self.aws.drain(&self.queue_url).await.is_empty(),
            "queue must stay empty"
        );
        assert!(
            self.aws.keys(&self.bucket).await.is_empty(),
            "bucket must stay empty"
        );
    }
}

#[tokio::test]
async fn a_signed_notification_is_queued_byte_for_byte_with_routing_attributes() {
    let f = Fixture::new().await;
    let body = message_created("notif-1", "grant-1", "msg-1", 2_000);
    let (status, answer) =
        status_and_body(&f.ingest.handle(signed_post(&body, "current-secret")).await);
    assert_eq!(status, 200, "{answer}");

    let messages = f.aws.drain(&f.queue_url).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.body(), Some(body.as_str()));
    assert_eq!(attribute(m, attr::TYPE).as_deref(), Some("message.created"));
    assert_eq!(attribute(m, attr::GRANT_ID).as_deref(), Some("grant-1"));
    assert_eq!(
        attribute(m, attr::NOTIFICATION_ID).as_deref(),
        Some("notif-1")
    );
    assert_eq!(attribute(m, attr::OBJECT_ID).as_deref(), Some("msg-1"));
    assert_eq!(attribute(m, attr::PAYLOAD).as_deref(), Some("inline"));
    assert!(f.aws.keys(&f.bucket).await.is_empty());
    // S3 is for claim checks: a process that only sees small notifications never builds its
    // client (a large part of a cold start).
    assert!(!f.ingest.sink.s3.is_built());
}

#[tokio::test]
async fn the_previous_secret_is_accepted_during_rotation() {
    let f = Fixture::new().await;
    let body = message_created("notif-rot", "grant-1", "msg-1", 10);
    let (status, _) =
        status_and_body(&f.ingest.handle(signed_post(&body, "previous-secret")).await);
    assert_eq!(status, 200);
    assert_eq!(f.aws.drain(&f.queue_url).await.len(), 1);
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_notifications_get_401_and_store_nothing() {
    let f = Fixture::new().await;
    let body = message_created("notif-2", "grant-1", "msg-1", 10);
    let tampered = body.replace("Quarterly", "Quarterlx");
    let good = sign("current-secret", body.as_bytes());
    let cases: Vec<(&str, lambda_http::Request)> = vec![
        ("no header", post(Api::Http, body.as_bytes(), &[], false)),
        (
            "empty header",
            post(
                Api::Http,
                body.as_bytes(),
                &[("x-nylas-signature", "")],
                false,
            ),
        ),
        (
            "not hex",
            post(
                Api::Http,
                body.as_bytes(),
                &[("x-nylas-signature", "not-a-signature")],
                false,
            ),
        ),
        ("unknown secret", signed_post(&body, "some-other-secret")),
        (
            "tampered body",
            post(
                Api::Http,
                tampered.as_bytes(),
                &[("x-nylas-signature", &good)],
                false,
            ),
        ),
        (
            "signature in another header",
            post(Api::Http, body.as_bytes(), &[("x-signature", &good)], false),
        ),
    ];
    for (what, req) in cases {
        let (status, answer) = status_and_body(&f.ingest.handle(req).await);
        assert_eq!(status, 401, "{what}: {answer}");
        let json: serde_json::Value = serde_json::from_str(&answer).expect("JSON error");
        assert_eq!(json["error"], "invalid_signature", "{what}");
        // The same two fixed answers whatever was wrong: nothing to learn about the secrets.
        let expected = if what == "no header" || what == "signature in another header" {
            "missing x-nylas-signature"
        } else {
            "invalid x-nylas-signature"
        };
        assert_eq!(json["message"], expected, "{what}");
    }
    f.nothing_stored().await;
}

#[tokio::test]
async fn with_no_secret_configured_every_notification_is_refused_but_challenges_work() {
    let f = Fixture::with_secrets("").await;
    let body = message_created("notif-3", "grant-1", "msg-1", 10);
    assert_eq!(f.ingest.handle(signed_post(&body, "")).await.status(), 401);
    assert_eq!(
        f.ingest
            .handle(get(Api::Http, "challenge=abc"))
            .await
            .status(),
        200
    );
    f.nothing_stored().await;
}

#[tokio::test]
async fn the_challenge_is_echoed_as_plain_text_on_both_api_gateway_payload_formats() {
    let f = Fixture::new().await;
    for api in [Api::Http, Api::Rest] {
        let resp = f.ingest.handle(get(api, "challenge=7f3a%2Bb%20c")).await;
        assert_eq!(resp.status(), 200, "{api:?}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{api:?}"
        );
        assert_eq!(status_and_body(&resp).1, "7f3a+b c", "{api:?}");
    }
    let exact = "c".repeat(1024);
    let resp = f
        .ingest
        .handle(get(Api::Http, &format!("challenge={exact}")))
        .await;
    assert_eq!(status_and_body(&resp), (200, exact));
    f.nothing_stored().await;
}

#[tokio::test]
async fn a_get_without_a_challenge_or_with_one_too_long_gets_400() {
    let f = Fixture::new().await;
    let too_long = format!("challenge={}", "c".repeat(1025));
    for query in ["", "challenge=", "other=1", too_long.as_str()] {
        let (status, body) = status_and_body(&f.ingest.handle(get(Api::Http, query)).await);
        assert_eq!(status, 400, "{query:.40}: {body}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
            "JSON error for {query:.40}"
        );
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let f = Fixture::new().await;
    for method in ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let req = request(
            Api::Http,
            &local_stack::apigw::HttpRequestParts {
                method,
                path: "/webhooks/nylas",
                body: b"{}",
                ..Default::default()
            },
        );
        let resp = f.ingest.handle(req).await;
        assert_eq!(resp.status(), 405, "{method}");
        assert_eq!(resp.headers()["allow"], "GET, POST");
    }
    f.nothing_stored().await;
}

#[tokio::test]
async fn a_base64_encoded_body_is_verified_over_the_decoded_bytes() {
    let f = Fixture::new().await;
    let body = message_created("notif-b64", "grant-1", "msg-1", 100);
    let sig = sign("current-secret", body.as_bytes());
    let req = post(
        Api::Http,
        body.as_bytes(),
        &[("x-nylas-signature", &sig)],
        true,
    );
    assert_eq!(f.ingest.handle(req).await.status(), 200);
    let messages = f.aws.drain(&f.queue_url).await;
    assert_eq!(messages[0].body(), Some(body.as_str()));
}

#[tokio::test]
async fn a_gzip_notification_is_verified_over_the_compressed_bytes_and_queued_decompressed() {
    let f = Fixture::new().await;
    let body = message_created("notif-gz", "grant-1", "msg-1", 5_000);
    let compressed = gzip(body.as_bytes());
    let sig = sign("current-secret", &compressed);
    let req = post(
        Api::Http,
        &compressed,
        &[("x-nylas-signature", &sig), ("content-encoding", "gzip")],
        true,
    );
    let (status, answer) = status_and_body(&f.ingest.handle(req).await);
    assert_eq!(status, 200, "{answer}");
    let messages = f.aws.drain(&f.queue_url).await;
    assert_eq!(messages[0].body(), Some(body.as_str()));
}

#[tokio::test]
async fn a_gzip_body_signed_over_its_decompressed_bytes_is_refused() {
    let f = Fixture::new().await;
    let body = message_created("notif-gz2", "grant-1", "msg-1", 50);
    let sig = sign("current-secret", body.as_bytes());
    let req = post(
        Api::Http,
        &gzip(body.as_bytes()),
        &[("x-nylas-signature", &sig), ("content-encoding", "gzip")],
        true,
    );
    assert_eq!(f.ingest.handle(req).await.status(), 401);
    f.nothing_stored().await;
}

#[tokio::test]
async fn a_signed_gzip_bomb_gets_413_and_stores_nothing() {
    let f = Fixture::new().await;
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let sig = sign("current-secret", &bomb);
    let req = post(
        Api::Http,
        &bomb,
        &[("x-nylas-signature", &sig), ("content-encoding", "gzip")],
        true,
    );
    assert_eq!(f.ingest.handle(req).await.status(), 413);
    f.nothing_stored().await;
}

#[tokio::test]
async fn broken_gzip_and_unknown_encodings_are_refused() {
    let f = Fixture::new().await;
    let mut broken = gzip(message_created("n", "g", "m", 10).as_bytes());
    broken.truncate(broken.len() / 2);
    let sig = sign("current-secret", &broken);
    let req = post(
        Api::Http,
        &broken,
        &[("x-nylas-signature", &sig), ("content-encoding", "gzip")],
        true,
    );
    assert_eq!(f.ingest.handle(req).await.status(), 400);

    let body = message_created("n", "g", "m", 10);
    let sig = sign("current-secret", body.as_bytes());
    let req = post(
        Api::Http,
        body.as_bytes(),
        &[("x-nylas-signature", &sig), ("content-encoding", "br")],
        false,
    );
    assert_eq!(f.ingest.handle(req).await.status(), 415);
    f.nothing_stored().await;
}

#[tokio::test]
async fn signed_notifications_are_queued_whatever_their_shape() {
    // Invariant 4: Nylas retries a refusal, then drops the notification for good, so a signed
    // body is never refused for its content; the consumer parks what it cannot use.
    let f = Fixture::new().await;
    let bodies = [
        "",
        "not json",
        r#"{"id":"n","type":"message.created","time":1"#,
        r#"{"type":"message.created","time":1,"data":{"object":{"id":"m","grant_id":"g"}}}"#,
        r#"{"id":"n-1","type":"message.created","time":1,"data":{"object":{"id":"m"}}}"#,
        r#"{"id":"n-2","type":"message.created","data":{"object":{"id":"m","grant_id":"g"}}}"#,
        r#"{"id":"n-3","type":"message.updated","time":1,"data":{"object":{"grant_id":"g"}}}"#,
        // Shapes Nylas does send: event.* without grant_id, a null calendar_id, tracking.
        r#"{"id":"n-4","type":"event.deleted","time":1,"data":{"object":{"id":"e","object":"event","calendar_id":null}}}"#,
        r#"{"id":"n-5","type":"message.opened","time":1,"data":{"grant_id":"g","object":{"message_id":"m","opens":[]}}}"#,
        r#"{"id":"n-6","type":"message.bounce_detected","time":1,"data":{"grant_id":"g","object":{"message_id":"m"}}}"#,
        r#"{"id":"n-7","type":"thread.replied","time":1,"data":{"grant_id":"g","object":{"message_id":"m","thread_id":"t"}}}"#,
    ];
    for body in bodies {
        let (status, answer) =
            status_and_body(&f.ingest.handle(signed_post(body, "current-secret")).await);
        assert_eq!(status, 200, "{body}: {answer}");
    }
    // Invalid UTF-8, signed.
    let bytes = b"{\"id\":\"\xff\xfe\"}";
    let sig = sign("current-secret", bytes);
    let req = post(Api::Http, bytes, &[("x-nylas-signature", &sig)], true);
    assert_eq!(f.ingest.handle(req).await.status(), 200);
    let queued = f.aws.drain(&f.queue_url).await;
    assert_eq!(queued.len(), bodies.len() + 1);
    let mut texts: Vec<String> = queued.iter().filter_map(|m| m.body.clone()).collect();
    texts.sort();
    for body in bodies {
        assert!(texts.iter().any(|t| t == body), "{body} not queued as sent");
    }
}

#[tokio::test]
async fn unknown_trigger_types_are_accepted_and_queued_for_the_consumer() {
    let f = Fixture::new().await;
    let body = r#"{"specversion":"1.0","type":"booking.created","id":"n-book","time":1723821985,"data":{"object":{"booking_id":"b"}}}"#;
    assert_eq!(
        f.ingest
            .handle(signed_post(body, "current-secret"))
            .await
            .status(),
        200
    );
    let messages = f.aws.drain(&f.queue_url).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        attribute(&messages[0], attr::TYPE).as_deref(),
        Some("booking.created")
    );
    assert_eq!(attribute(&messages[0], attr::GRANT_ID), None);
}

#[tokio::test]
async fn a_body_above_the_limit_gets_413_before_anything_else() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let mut env = ingest_env(&queue_url, &bucket, "current-secret");
    env.insert("MAX_BODY_BYTES", "10000");
    let ingest = Ingest::from_env(&env).await.expect("config");
    let body = message_created("n-big", "g", "m", 20_000);
    assert_eq!(
        ingest
            .handle(signed_post(&body, "current-secret"))
            .await
            .status(),
        413
    );
    assert!(aws.drain(&queue_url).await.is_empty());
    assert!(aws.keys(&bucket).await.is_empty());
}

#[tokio::test]
async fn a_notification_too_large_for_sqs_goes_to_s3_and_the_message_points_at_it() {
    let f = Fixture::new().await;
    let body = message_created("notif-large", "grant-9", "msg-9", 900_000);
    assert!(!f.ingest.sink.s3.is_built());
    let (status, answer) =
        status_and_body(&f.ingest.handle(signed_post(&body, "current-secret")).await);
    assert_eq!(status, 200, "{answer}");

    let messages = f.aws.drain(&f.queue_url).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(attribute(m, attr::PAYLOAD).as_deref(), Some("s3"));
    assert_eq!(
        attribute(m, attr::NOTIFICATION_ID).as_deref(),
        Some("notif-large")
    );
    let check = ClaimCheck::from_message_body(m.body().unwrap()).expect("claim check body");
    assert_eq!(check.bucket, f.bucket);
    assert_eq!(check.bytes, body.len() as u64);
    assert_eq!(
        f.aws.object(&check.bucket, &check.key).await,
        body.as_bytes()
    );
}

#[tokio::test]
async fn a_body_with_characters_sqs_refuses_goes_through_s3() {
    let f = Fixture::new().await;
    let body = r#"{"id":"n-ffff","type":"message.created","time":1,"data":{"object":{"id":"m","grant_id":"g","subject":"odd \uFFFF"}}}"#
        .replace("\\uFFFF", "\u{FFFF}");
    assert_eq!(
        f.ingest
            .handle(signed_post(&body, "current-secret"))
            .await
            .status(),
        200
    );
    let messages = f.aws.drain(&f.queue_url).await;
    let check = ClaimCheck::from_message_body(messages[0].body().unwrap()).expect("claim check");
    assert_eq!(
        f.aws.object(&check.bucket, &check.key).await,
        body.as_bytes()
    );
}

#[tokio::test]
async fn when_the_queue_does_not_exist_the_answer_is_503_so_nylas_retries() {
    let aws = Aws::connect().await;
    let bucket = aws.create_bucket("payloads").await;
    let missing = format!("{}/123456789012/{}", endpoint(), unique("missing"));
    let ingest = Ingest::from_env(&ingest_env(&missing, &bucket, "current-secret"))
        .await
        .expect("config");
    let body = message_created("notif-503", "grant-1", "msg-1", 10);
    let (status, answer) =
        status_and_body(&ingest.handle(signed_post(&body, "current-secret")).await);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("enqueue_failed"));
}

#[tokio::test]
async fn when_the_bucket_does_not_exist_a_large_notification_gets_503_and_is_not_queued() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let missing_bucket = unique("missing").to_ascii_lowercase();
    let ingest = Ingest::from_env(&ingest_env(&queue_url, &missing_bucket, "current-secret"))
        .await
        .expect("config");
    let body = message_created("notif-503b", "grant-1", "msg-1", 400_000);
    assert_eq!(
        ingest
            .handle(signed_post(&body, "current-secret"))
            .await
            .status(),
        503
    );
    assert!(aws.drain(&queue_url).await.is_empty());
}

#[tokio::test]
async fn when_sqs_does_not_answer_the_ingest_gives_up_in_time_with_503() {
    // A TCP listener that accepts connections and never answers: SQS hanging.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let aws = Aws::connect().await;
    let hanging = aws_sdk_sqs::config::Builder::from(&aws.sdk)
        .endpoint_url(format!("http://{addr}"))
        .build();
    let ingest = Ingest {
        secrets: vec![WebhookSecret::new("current-secret")].into(),
        limits: IngestLimits {
            enqueue_timeout: Duration::from_millis(300),
            ..IngestLimits::default()
        },
        sink: SqsNotificationSink {
            sqs: aws_sdk_sqs::Client::from_conf(hanging),
            s3: aws.s3.clone().into(),
            destination: Destination {
                queue_url: format!("http://{addr}/123456789012/q"),
                bucket: "unused".into(),
                max_message_bytes: 262_144,
            },
        },
    };
    let body = message_created("notif-slow", "grant-1", "msg-1", 10);
    let started = std::time::Instant::now();
    let (status, answer) =
        status_and_body(&ingest.handle(signed_post(&body, "current-secret")).await);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("enqueue_timeout"), "{answer}");
    // The bound, not a speed measurement: the answer came from the timeout, not from the SDK's own.
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test]
async fn secrets_are_read_from_secrets_manager_when_secrets_arn_is_set() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let secret = aws
        .secrets
        .create_secret()
        .name(unique("nylas-sync"))
        .secret_string(r#"{"nylas_api_key":"key","webhook_secrets":["from-secrets-manager"]}"#)
        .send()
        .await
        .expect("create secret");
    let arn = secret.arn().unwrap();
    let env = HashMap::from([
        ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
        ("PAYLOAD_BUCKET", bucket.as_str()),
        ("SECRETS_ARN", arn),
    ]);
    let ingest = Ingest::from_env(&env)
        .await
        .expect("config from Secrets Manager");
    let body = message_created("notif-sm", "grant-1", "msg-1", 10);
    assert_eq!(
        ingest
            .handle(signed_post(&body, "from-secrets-manager"))
            .await
            .status(),
        200
    );
    assert_eq!(
        ingest
            .handle(signed_post(&body, "current-secret"))
            .await
            .status(),
        401
    );
    assert_eq!(aws.drain(&queue_url).await.len(), 1);
}

#[tokio::test]
async fn a_missing_or_unreadable_configuration_fails_the_start_naming_what_is_wrong() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let cases: [(HashMap<&str, &str>, &str); 4] = [
        (
            HashMap::from([("PAYLOAD_BUCKET", "b"), ("NYLAS_WEBHOOK_SECRETS", "s")]),
            "NOTIFICATIONS_QUEUE_URL",
        ),
        (
            HashMap::from([
                ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
                ("NYLAS_WEBHOOK_SECRETS", "s"),
            ]),
            "PAYLOAD_BUCKET",
        ),
        (
            HashMap::from([
                ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
                ("PAYLOAD_BUCKET", "b"),
            ]),
            "NYLAS_WEBHOOK_SECRETS",
        ),
        (
            HashMap::from([
                ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
                ("PAYLOAD_BUCKET", "b"),
                (
                    "SECRETS_ARN",
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent",
                ),
            ]),
            "SECRETS_ARN",
        ),
    ];
    for (env, name) in cases {
        let err = Ingest::from_env(&env).await.err().expect("start must fail");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

#[tokio::test]
async fn a_signed_notification_through_a_rest_api_v1_event_is_queued() {
    let f = Fixture::new().await;
    let body = message_created("notif-v1", "grant-1", "msg-1", 300);
    let sig = sign("current-secret", body.as_bytes());
    for base64 in [false, true] {
        let req = post(
            Api::Rest,
            body.as_bytes(),
            &[("x-nylas-signature", &sig)],
            base64,
        );
        assert_eq!(f.ingest.handle(req).await.status(), 200, "base64={base64}");
    }
    let forged = post(
        Api::Rest,
        body.as_bytes(),
        &[("x-nylas-signature", &"ab".repeat(32))],
        false,
    );
    assert_eq!(f.ingest.handle(forged).await.status(), 401);
    let queued = f.aws.drain(&f.queue_url).await;
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|m| m.body() == Some(body.as_str())));
}
