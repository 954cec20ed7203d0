//! The `nylas-sync` binary against moto (AWS) and the Nylas emulator: each command's effect on
//! Secrets Manager, DynamoDB, SQS and the emulator, and a secret rotation during which the real
//! ingest handler accepts notifications signed with the old and the new secret, then only the new.
//! Run with `tests/with-moto cargo test -p nylas-sync-cli`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageAttributeValue;
use nylas_emulator::{Emulator, EmulatorConfig, MessageSpec};
use nylas_sync::ingest::Ingest;
use serde_json::{json, Value};
use support::{message_created, signed_post, status_and_body, unique, Aws};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` and `env` (plus the AWS variables tests/with-moto exported).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nylas-sync"));
    cmd.args(args);
    for var in [
        "SECRETS_ARN",
        "NYLAS_API_URI",
        "NYLAS_API_KEY",
        "GRANTS_TABLE",
        "OBJECTS_TABLE",
        "RECONCILE_QUEUE_URL",
        "RECONCILE_DLQ_URL",
        "NOTIFICATIONS_QUEUE_URL",
        "NOTIFICATIONS_DLQ_URL",
        "SECRETS_REFRESH_SECONDS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Blocking wait off the runtime: the ingest served by this test must answer the challenge.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run nylas-sync");
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ nylas-sync {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

async fn create_secret(aws: &Aws, doc: &Value) -> String {
    aws.secrets
        .create_secret()
        .name(unique("nylas-sync"))
        .secret_string(doc.to_string())
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("arn")
        .to_string()
}

async fn read_secret(aws: &Aws, arn: &str) -> Value {
    let out = aws
        .secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .expect("read secret");
    serde_json::from_str(out.secret_string().expect("string")).expect("json")
}

fn secrets_of(doc: &Value) -> Vec<String> {
    doc["webhook_secrets"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// The destinations the emulator holds, through its API (as an operator would list them).
async fn destinations(emu: &Emulator) -> Vec<Value> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{}/v3/webhooks", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("list webhooks")
        .json()
        .await
        .expect("json");
    answer["data"].as_array().cloned().unwrap_or_default()
}

/// The real ingest, configured from Secrets Manager, served over HTTP as API Gateway would.
struct ServedIngest {
    ingest: Arc<Ingest<nylas_sync::sqs_queue::SqsNotificationSink>>,
    url: String,
    queue_url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for ServedIngest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_ingest(aws: &Aws, arn: &str, refresh_seconds: &str) -> ServedIngest {
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let env = HashMap::from([
        ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
        ("PAYLOAD_BUCKET", bucket.as_str()),
        ("SECRETS_ARN", arn),
        ("SECRETS_REFRESH_SECONDS", refresh_seconds),
    ]);
    let ingest = Arc::new(Ingest::from_env(&env).await.expect("ingest"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhooks/nylas", listener.local_addr().unwrap());
    let task = tokio::spawn(local_stack::serve_ingest(Arc::clone(&ingest), listener));
    ServedIngest {
        ingest,
        url,
        queue_url,
        task,
    }
}

/// Notification ids on the queue (each message taken once).
async fn queued_ids(aws: &Aws, queue_url: &str) -> Vec<String> {
    aws.drain(queue_url)
        .await
        .iter()
        .map(|m| support::attribute(m, "notification_id").expect("notification_id"))
        .collect()
}

async fn status_of(ingest: &ServedIngest, body: &str, secret: &str) -> u16 {
    status_and_body(&ingest.ingest.handle(signed_post(body, secret)).await).0
}

#[tokio::test]
async fn register_then_rotate_accepts_old_and_new_secrets_during_the_change_then_only_the_new() {
    let aws = Aws::connect().await;
    let emu = Emulator::start(EmulatorConfig {
        initial_messages_per_grant: 0,
        initial_events_per_grant: 0,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let arn = create_secret(
        &aws,
        &json!({"nylas_api_key": emu.api_key(), "webhook_secrets": []}),
    )
    .await;
    // Refresh on every failure: the rate limit has its own tests; here the order of events matters.
    let ingest = serve_ingest(&aws, &arn, "0").await;
    let base = emu.base_url();
    let env = [
        ("SECRETS_ARN", arn.as_str()),
        ("NYLAS_API_URI", base.as_str()),
    ];

    // register-webhook: the emulator runs the challenge against the real ingest, then the
    // secret it returns is stored as current.
    let run = cli(
        &[
            "register-webhook",
            "--url",
            &ingest.url,
            "--triggers",
            "message.created,message.updated,message.deleted",
            "--settle-seconds",
            "0",
        ],
        &env,
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let listed = destinations(&emu).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let webhook_id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["webhook_url"], ingest.url.as_str());
    assert_eq!(
        listed[0]["trigger_types"],
        json!(["message.created", "message.updated", "message.deleted"])
    );
    assert!(run.stdout.contains(&webhook_id), "{}", run.stdout);
    let doc = read_secret(&aws, &arn).await;
    assert_eq!(doc["webhook_id"], webhook_id.as_str());
    assert_eq!(doc["nylas_api_key"], emu.api_key());
    assert!(doc.get("rotating_until").is_none(), "{doc}");
    let first = secrets_of(&doc);
    assert_eq!(first.len(), 1);
    let s1 = first[0].clone();
    assert!(
        !run.stdout.contains(&s1) && !run.stderr.contains(&s1),
        "the secret is never printed"
    );

    // The emulator's deliveries, signed with that secret, reach the queue.
    let grant = emu.grant_ids()[0].clone();
    emu.create_message(&grant, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(Duration::from_secs(30)).await);
    assert_eq!(queued_ids(&aws, &ingest.queue_url).await.len(), 1);

    // rotate-secret: Nylas signs with the new secret at once; both verify at the ingest.
    let run = cli(&["rotate-secret", "--settle-seconds", "0"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let doc = read_secret(&aws, &arn).await;
    let during = secrets_of(&doc);
    assert_eq!(during.len(), 2);
    let s2 = during[0].clone();
    assert_ne!(s2, s1);
    assert_eq!(during[1], s1, "the previous secret is kept second");
    assert!(doc.get("rotating_until").is_none(), "{doc}");

    let old_signed = message_created("n-old-during", &grant, "m-1", 10);
    let new_signed = message_created("n-new-during", &grant, "m-2", 10);
    assert_eq!(status_of(&ingest, &old_signed, &s1).await, 200);
    assert_eq!(status_of(&ingest, &new_signed, &s2).await, 200);
    emu.create_message(&grant, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(Duration::from_secs(30)).await);
    let during_ids = queued_ids(&aws, &ingest.queue_url).await;
    assert_eq!(during_ids.len(), 3, "{during_ids:?}");
    assert!(during_ids.contains(&"n-old-during".to_string()));
    assert!(during_ids.contains(&"n-new-during".to_string()));
    let deliveries = emu.stats().webhooks.deliveries;
    assert_eq!(deliveries.delivered, 2);
    assert_eq!(deliveries.non_200_answers, 0);
    assert_eq!(deliveries.failed_attempts, 0);

    // rotate-secret --finish: only the new secret verifies afterwards.
    let run = cli(&["rotate-secret", "--finish"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(secrets_of(&read_secret(&aws, &arn).await), vec![s2.clone()]);
    let old_after = message_created("n-old-after", &grant, "m-3", 10);
    let new_after = message_created("n-new-after", &grant, "m-4", 10);
    assert_eq!(status_of(&ingest, &old_after, &s1).await, 401);
    assert_eq!(status_of(&ingest, &new_after, &s2).await, 200);
    assert_eq!(queued_ids(&aws, &ingest.queue_url).await, ["n-new-after"]);

    // A second rotation keeps the current secret as previous and drops nothing else.
    let run = cli(&["rotate-secret", "--settle-seconds", "0"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let list = secrets_of(&read_secret(&aws, &arn).await);
    assert_eq!(list.len(), 2);
    assert_eq!(list[1], s2);
    emu.shutdown().await;
}

#[tokio::test]
async fn notifications_sent_while_the_secret_rotates_are_all_accepted_none_rejected() {
    let aws = Aws::connect().await;
    // About ten notifications a second; a retry comes 2-3 s after a failed attempt.
    let emu = Emulator::start(EmulatorConfig {
        initial_messages_per_grant: 0,
        initial_events_per_grant: 0,
        events_per_minute: 5.0,
        time_scale: 120.0,
        grants: 1,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    emu.pause_activity();
    let arn = create_secret(
        &aws,
        &json!({"nylas_api_key": emu.api_key(), "webhook_secrets": []}),
    )
    .await;
    // The ingest as deployed, but with a 1 s refresh interval; the CLI settles for as long.
    let ingest = serve_ingest(&aws, &arn, "1").await;
    let base = emu.base_url();
    let env = [
        ("SECRETS_ARN", arn.as_str()),
        ("NYLAS_API_URI", base.as_str()),
        ("SECRETS_REFRESH_SECONDS", "1"),
    ];
    let run = cli(&["register-webhook", "--url", &ingest.url], &env).await;
    assert!(run.ok, "{}", run.stderr);

    emu.resume_activity();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = cli(&["rotate-secret"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    emu.pause_activity();
    assert!(
        emu.wait_for_deliveries_idle(Duration::from_secs(120)).await,
        "deliveries (retries included) did not finish"
    );

    let stats = emu.stats().webhooks;
    eprintln!("deliveries: {stats:?}");
    let d = &stats.deliveries;
    assert!(stats.notifications >= 10, "too little traffic: {stats:?}");
    assert_eq!(d.non_200_answers, 0, "{stats:?}");
    assert_eq!(d.dropped_after_retries, 0, "{stats:?}");
    assert_eq!(d.delivered, stats.notifications, "{stats:?}");
    let ids: BTreeSet<String> = queued_ids(&aws, &ingest.queue_url)
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len() as u64, stats.notifications);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_registration_whose_challenge_fails_changes_nothing() {
    let aws = Aws::connect().await;
    let emu = Emulator::start(EmulatorConfig {
        delivery_timeout: Duration::from_secs(2),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let original = json!({"nylas_api_key": emu.api_key(), "webhook_secrets": ["keep-me"]});
    let arn = create_secret(&aws, &original).await;
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhooks/nylas", closed.local_addr().unwrap());
    drop(closed);
    let base = emu.base_url();
    let run = cli(
        &["register-webhook", "--url", &url, "--settle-seconds", "0"],
        &[("SECRETS_ARN", &arn), ("NYLAS_API_URI", &base)],
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("challenge"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(read_secret(&aws, &arn).await, original);
    assert!(destinations(&emu).await.is_empty());

    // Bad input is refused before anything is touched.
    let run = cli(
        &["register-webhook", "--url", "not a url"],
        &[("SECRETS_ARN", &arn), ("NYLAS_API_URI", &base)],
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("--url"), "{}", run.stderr);
    let run = cli(
        &["register-webhook", "--url", &url],
        &[("NYLAS_API_URI", &base)],
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("SECRETS_ARN"), "{}", run.stderr);
    assert_eq!(read_secret(&aws, &arn).await, original);
    emu.shutdown().await;
}

#[tokio::test]
async fn rotating_without_a_known_webhook_is_a_clear_error_that_changes_nothing() {
    let aws = Aws::connect().await;
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let original = json!({"nylas_api_key": emu.api_key(), "webhook_secrets": ["a"]});
    let arn = create_secret(&aws, &original).await;
    let base = emu.base_url();
    let env = [
        ("SECRETS_ARN", arn.as_str()),
        ("NYLAS_API_URI", base.as_str()),
    ];
    let run = cli(&["rotate-secret", "--settle-seconds", "0"], &env).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("--webhook-id"), "{}", run.stderr);
    assert_eq!(read_secret(&aws, &arn).await, original);
    // An id Nylas does not know: its 404 is reported, the mark removed, the secrets kept.
    let run = cli(
        &[
            "rotate-secret",
            "--webhook-id",
            "no-such-webhook",
            "--settle-seconds",
            "0",
        ],
        &env,
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
    assert_eq!(read_secret(&aws, &arn).await, original);
    emu.shutdown().await;
}

async fn put_grant(aws: &Aws, table: &str, attrs: &[(&str, AttributeValue)]) {
    let mut req = aws.ddb().put_item().table_name(table);
    for (k, v) in attrs {
        req = req.item(*k, v.clone());
    }
    req.send().await.expect("put grant");
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[tokio::test]
async fn status_shows_each_grant_and_a_summary_tolerating_missing_attributes() {
    let aws = Aws::connect().await;
    let grants = aws.create_table("grants", false).await;
    let objects = aws.create_table("objects", true).await;
    let now = nylas_sync::clock::now_ms() / 1000;
    put_grant(
        &aws,
        &grants,
        &[
            ("grant_id", s("g-synced")),
            ("status", s("active")),
            ("provider", s("google")),
            ("status_changed_at", n((now - 86_400) * 1000)),
            ("messages_received_after", n(now - 600)),
            ("last_reconcile_at", n(now - 300)),
            ("last_reconcile_outcome", s("ok")),
            ("last_recovered", n(1)),
            ("recovered_total", n(3)),
        ],
    )
    .await;
    // A grant the reconciler has not reached: none of its attributes exist yet.
    put_grant(
        &aws,
        &grants,
        &[("grant_id", s("g-new")), ("status", s("active"))],
    )
    .await;
    put_grant(
        &aws,
        &grants,
        &[("grant_id", s("g-gone")), ("status", s("expired"))],
    )
    .await;
    // The scheduler's record of the webhook destination's last incident: not a grant.
    let incident = nylas_sync::destination::Incident {
        status: "failed".into(),
        lost_from: now - 4 * 86_400,
        seen_at: now - 3_600,
        repaired_at: Some(now - 3_500),
        reactivated: true,
    };
    put_grant(
        &aws,
        &grants,
        &[
            ("grant_id", s(nylas_sync::grants::DESTINATION_ITEM)),
            ("incident", s(&serde_json::to_string(&incident).unwrap())),
        ],
    )
    .await;
    // Objects as the consumer and the reconciler write them (only the bookkeeping attributes).
    for (sk, deleted, source, age) in [
        ("message#m1", false, Some("webhook"), 120),
        ("message#m2", false, Some("reconcile"), 60),
        ("message#m3", true, Some("fetch"), 200),
        ("calendar#c1", false, None, 0),
    ] {
        let mut put = aws
            .ddb()
            .put_item()
            .table_name(&objects)
            .item("grant_id", s("g-synced"))
            .item("sk", s(sk))
            .item("deleted", AttributeValue::Bool(deleted));
        if let Some(source) = source {
            put = put
                .item("source", s(source))
                .item("written_at", n((now - age) * 1000));
        }
        put.send().await.unwrap();
    }
    let env = [
        ("GRANTS_TABLE", grants.as_str()),
        ("OBJECTS_TABLE", objects.as_str()),
    ];

    let run = cli(&["status", "--json"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let v: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(v["grants"], 3);
    assert_eq!(v["by_status"], json!({"active": 2, "expired": 1}));
    assert_eq!(v["destination_last_incident"]["status"], "failed");
    assert_eq!(v["destination_last_incident"]["reactivated"], true);
    assert_eq!(v["active_never_reconciled"], 1);
    assert_eq!(v["last_outcomes"], json!({"ok": 1}));
    assert_eq!(v["recovered_total"], 3);
    assert_eq!(
        v["stalest"][0]["grant_id"], "g-new",
        "never reconciled comes first"
    );
    let age = v["oldest_cursor_age_seconds"].as_i64().unwrap();
    assert!((600..700).contains(&age), "{age}");

    let run = cli(&["status", "g-synced", "--json"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let g: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(g["status"], "active");
    assert_eq!(g["last_reconcile_outcome"], "ok");
    assert_eq!(g["recovered_total"], 3);
    assert_eq!(
        g["objects"]["messages"],
        json!({"stored": 2, "tombstones": 1})
    );
    assert_eq!(
        g["objects"]["calendars"],
        json!({"stored": 1, "tombstones": 0})
    );
    // The last webhook: the newest object written from a notification (webhook or its fetch).
    assert_eq!(g["last_webhook_at"], now - 120);
    assert_eq!(
        g["objects"]["last_written_by_reconcile_ms"],
        (now - 60) * 1000
    );

    let run = cli(&["status", "g-synced"], &env).await;
    assert!(run.ok);
    assert!(
        run.stdout.contains("last reconcile") && run.stdout.contains(": ok"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 in the last run, 3 in total"),
        "{}",
        run.stdout
    );
    let run = cli(&["status", "g-new"], &env).await;
    assert!(run.ok);
    assert!(run.stdout.contains("none yet"), "{}", run.stdout);
    assert!(
        run.stdout.contains("last webhook     none stored"),
        "{}",
        run.stdout
    );
    let run = cli(&["status"], &env).await;
    assert!(run.ok);
    assert!(
        run.stdout
            .contains("destination      last incident: failed seen 1h"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("reactivated, every grant caught up"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("grants           3 (active 2, expired 1)"),
        "{}",
        run.stdout
    );

    let run = cli(&["status", "g-unknown"], &env).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("g-unknown"), "{}", run.stderr);
}

fn jobs_of(messages: &[aws_sdk_sqs::types::Message]) -> Vec<Value> {
    let mut jobs: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    jobs.sort_by_key(|j| j["grant_id"].as_str().unwrap().to_string());
    jobs
}

#[tokio::test]
async fn reconcile_and_backfill_enqueue_jobs_and_refuse_what_the_reconciler_would_ignore() {
    let aws = Aws::connect().await;
    let grants = aws.create_table("grants", false).await;
    let queue = aws.create_queue("reconcile").await;
    let active: Vec<String> = (0..23).map(|i| format!("g-{i:02}")).collect();
    for g in &active {
        put_grant(
            &aws,
            &grants,
            &[("grant_id", s(g)), ("status", s("active"))],
        )
        .await;
    }
    for g in ["x-expired", "x-deleted"] {
        put_grant(&aws, &grants, &[("grant_id", s(g)), ("status", s(&g[2..]))]).await;
    }
    let env = [
        ("GRANTS_TABLE", grants.as_str()),
        ("RECONCILE_QUEUE_URL", queue.as_str()),
    ];

    let run = cli(&["reconcile", "--all"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("23 active grants"), "{}", run.stdout);
    let jobs = jobs_of(&aws.drain(&queue).await);
    assert_eq!(jobs.len(), 23);
    let ids: Vec<&str> = jobs
        .iter()
        .map(|j| j["grant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, active.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(jobs.iter().all(|j| j["kind"] == "incremental"));

    let run = cli(&["reconcile", "g-05"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        jobs_of(&aws.drain(&queue).await),
        [json!({"grant_id": "g-05", "kind": "incremental"})]
    );

    let run = cli(&["backfill", "g-07", "--since", "2024-01-02"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        jobs_of(&aws.drain(&queue).await),
        [json!({"grant_id": "g-07", "kind": "backfill", "since": 1_704_153_600})]
    );

    for (args, why) in [
        (vec!["reconcile", "x-expired"], "expired"),
        (vec!["reconcile", "nobody"], "not in"),
        (
            vec!["backfill", "g-07", "--since", "last tuesday"],
            "not a date",
        ),
        (vec!["backfill", "g-07", "--since", "2999-01-01"], "future"),
    ] {
        let run = cli(&args, &env).await;
        assert!(!run.ok, "{args:?}");
        assert!(run.stderr.contains(why), "{args:?}: {}", run.stderr);
    }
    let run = cli(&["reconcile", "g-01"], &[("GRANTS_TABLE", grants.as_str())]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("RECONCILE_QUEUE_URL"), "{}", run.stderr);
    assert!(
        aws.drain(&queue).await.is_empty(),
        "refusals enqueue nothing"
    );
}

fn string_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

#[tokio::test]
async fn redrive_reports_each_dead_letter_and_moves_it_back_with_its_attributes() {
    let aws = Aws::connect().await;
    let (notifications, notifications_dlq) =
        aws.create_queue_with("notifications", 30, Some(3)).await;
    let notifications_dlq = notifications_dlq.unwrap();
    let (reconcile, reconcile_dlq) = aws.create_queue_with("reconcile", 30, Some(3)).await;
    let reconcile_dlq = reconcile_dlq.unwrap();

    let body = message_created("n-dead-1", "g-1", "m-1", 10);
    aws.sqs
        .send_message()
        .queue_url(&notifications_dlq)
        .message_body(&body)
        .message_attributes("nylas_type", string_attr("message.created"))
        .message_attributes("notification_id", string_attr("n-dead-1"))
        .message_attributes("grant_id", string_attr("g-1"))
        .message_attributes("payload", string_attr("inline"))
        .send()
        .await
        .unwrap();
    // A message put there without attributes: described from its body.
    let bare = message_created("n-dead-2", "g-2", "m-2", 10);
    aws.sqs
        .send_message()
        .queue_url(&notifications_dlq)
        .message_body(&bare)
        .send()
        .await
        .unwrap();
    let job = r#"{"grant_id":"g-3","kind":"backfill","since":1704153600}"#;
    aws.sqs
        .send_message()
        .queue_url(&reconcile_dlq)
        .message_body(job)
        .send()
        .await
        .unwrap();

    let env = [
        ("NOTIFICATIONS_DLQ_URL", notifications_dlq.as_str()),
        ("NOTIFICATIONS_QUEUE_URL", notifications.as_str()),
        ("RECONCILE_DLQ_URL", reconcile_dlq.as_str()),
        ("RECONCILE_QUEUE_URL", reconcile.as_str()),
    ];
    let run = cli(&["redrive", "--dry-run"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("would move")
            && run
                .stdout
                .contains("notification message.created id=n-dead-1 grant=g-1")
            && run
                .stdout
                .contains("notification message.created id=n-dead-2 grant=g-2")
            && run
                .stdout
                .contains("reconcile job backfill grant=g-3 since=2024-01-02T00:00:00Z"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("Quarterly report"),
        "bodies are never printed"
    );
    // Nothing moved, and the dead letters are visible again at once.
    assert_eq!(aws.queue_depth(&notifications_dlq).await, (2, 0));
    assert_eq!(aws.queue_depth(&reconcile_dlq).await, (1, 0));
    assert_eq!(aws.queue_depth(&notifications).await, (0, 0));

    // The source queue found from the DLQ's redrive policy when only the DLQ is named.
    let run = cli(&["redrive", "--queue", &notifications_dlq], &[]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("2 message(s) moved"), "{}", run.stdout);
    let run = cli(&["redrive"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("moved") && run.stdout.contains("g-3"),
        "{}",
        run.stdout
    );

    assert_eq!(aws.queue_depth(&notifications_dlq).await, (0, 0));
    assert_eq!(aws.queue_depth(&reconcile_dlq).await, (0, 0));
    let mut moved = aws.drain(&notifications).await;
    moved.sort_by_key(|m| m.body().unwrap().len());
    assert_eq!(moved.len(), 2);
    let with_attrs = moved
        .iter()
        .find(|m| m.body() == Some(body.as_str()))
        .expect("moved");
    assert_eq!(
        support::attribute(with_attrs, "notification_id").as_deref(),
        Some("n-dead-1")
    );
    assert_eq!(
        support::attribute(with_attrs, "nylas_type").as_deref(),
        Some("message.created")
    );
    assert!(moved.iter().any(|m| m.body() == Some(bare.as_str())));
    let jobs = aws.drain(&reconcile).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].body(), Some(job));

    let run = cli(&["redrive"], &[]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("NOTIFICATIONS_DLQ_URL"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn redrive_reports_claim_checks_whose_payload_is_gone_and_skips_what_nothing_can_recover() {
    // Lossless issue, defect 17: redrive gave a claim check whose payload had expired a fresh
    // life, with nothing saying it could never be read.
    let aws = Aws::connect().await;
    let (notifications, dlq) = aws.create_queue_with("notifications", 30, Some(3)).await;
    let dlq = dlq.unwrap();
    let bucket = aws.create_bucket("payloads").await;
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("notifications/n%3Akept.json")
        .body(
            message_created("n-kept", "g-1", "m-1", 10)
                .into_bytes()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let check = |key: &str| {
        json!({"claim_check": {"bucket": bucket, "key": key, "bytes": 300_000}}).to_string()
    };
    let send = |body: String, attrs: Vec<(&'static str, String)>| {
        let mut req = aws.sqs.send_message().queue_url(&dlq).message_body(body);
        for (k, v) in attrs {
            req = req.message_attributes(k, string_attr(&v));
        }
        req.send()
    };
    let attrs = |id: &str, object: Option<&str>| {
        let mut a = vec![
            ("nylas_type", "message.created".to_string()),
            ("notification_id", id.to_string()),
            ("grant_id", "g-1".to_string()),
            ("payload", "s3".to_string()),
        ];
        if let Some(o) = object {
            a.push(("object_id", o.to_string()));
        }
        a
    };
    send(
        check("notifications/n%3Akept.json"),
        attrs("n-kept", Some("m-1")),
    )
    .await
    .unwrap();
    send(
        check("notifications/expired.json"),
        attrs("n-expired", Some("m-2")),
    )
    .await
    .unwrap();
    send(
        check("notifications/nameless.json"),
        attrs("n-nameless", None),
    )
    .await
    .unwrap();

    let env = [
        ("NOTIFICATIONS_DLQ_URL", dlq.as_str()),
        ("NOTIFICATIONS_QUEUE_URL", notifications.as_str()),
    ];
    let run = cli(&["redrive", "--dry-run"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    let line = |stdout: &str, id: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!("id={id} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line(&run.stdout, "n-expired").contains("would move")
            && line(&run.stdout, "n-expired").contains("payload gone")
            && line(&run.stdout, "n-expired").contains("fetch the object from Nylas"),
        "{}",
        run.stdout
    );
    assert!(
        line(&run.stdout, "n-nameless").starts_with("skipped")
            && line(&run.stdout, "n-nameless").contains("payload gone"),
        "{}",
        run.stdout
    );
    assert!(!line(&run.stdout, "n-kept").contains("payload gone"));
    assert_eq!(aws.queue_depth(&dlq).await, (3, 0));

    let run = cli(&["redrive"], &env).await;
    assert!(run.ok, "{}", run.stderr);
    // The payload still there is renewed: its lifecycle restarts with the message's new life.
    assert!(
        line(&run.stdout, "n-kept").contains("payload renewed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("2 message(s) moved to")
            && run.stdout.contains("1 skipped (payload gone)"),
        "{}",
        run.stdout
    );
    let moved: BTreeSet<String> = aws
        .drain(&notifications)
        .await
        .iter()
        .filter_map(|m| support::attribute(m, "notification_id"))
        .collect();
    assert_eq!(
        moved,
        BTreeSet::from(["n-kept".to_string(), "n-expired".to_string()])
    );
    let left = aws.drain(&dlq).await;
    assert_eq!(left.len(), 1, "the unrecoverable one stays in the DLQ");
    assert_eq!(
        support::attribute(&left[0], "notification_id").as_deref(),
        Some("n-nameless")
    );
}
