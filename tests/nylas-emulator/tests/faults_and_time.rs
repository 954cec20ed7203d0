//! Fault injection, the emulated clock, seeded activity, and the `/_emulator` controls.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{client, eventually, get_json, start, Receiver, DEADLINE};
use nylas_emulator::{EmulatorConfig, FaultWindow, Faults, MessageSpec, SlowWindow};
use serde_json::{json, Value};

#[tokio::test]
async fn with_drop_probability_1_nothing_is_delivered_and_every_drop_is_counted() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            drop_probability: 1.0,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    for _ in 0..5 {
        emu.create_message(&g, MessageSpec::default());
    }
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 0);
    assert_eq!(emu.stats().webhooks.deliveries.dropped_by_fault, 5);
    let losses = emu.losses();
    assert_eq!(losses.len(), 5);
    assert!(losses
        .iter()
        .all(|l| l.reason == nylas_emulator::LossReason::Dropped
            && l.kind == "message.created"
            && l.grant_id == g
            && l.object_id.is_some()));
    emu.shutdown().await;
}

#[tokio::test]
async fn with_duplicate_probability_1_each_notification_arrives_twice_with_the_same_id() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            duplicate_probability: 1.0,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    for _ in 0..3 {
        emu.create_message(&g, MessageSpec::default());
    }
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let ids: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 3);
    assert_eq!(emu.stats().webhooks.deliveries.duplicated, 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn random_delays_reorder_notifications_but_deliver_them_all() {
    let emu = start(EmulatorConfig {
        time_scale: 60.0,
        faults: Faults {
            max_delay: Duration::from_secs(60),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    let created: Vec<Value> = (0..20)
        .map(|_| emu.create_message(&g, MessageSpec::default())["id"].clone())
        .collect();
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let arrived: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| r.json()["data"]["object"]["id"].clone())
        .collect();
    assert_eq!(arrived.len(), 20);
    assert_ne!(arrived, created, "arrival order differs from change order");
    let a: HashSet<String> = arrived.iter().map(Value::to_string).collect();
    let c: HashSet<String> = created.iter().map(Value::to_string).collect();
    assert_eq!(a, c);
    assert_eq!(emu.stats().webhooks.deliveries.delayed, 20);
    emu.shutdown().await;
}

#[tokio::test]
async fn during_an_endpoint_outage_attempts_fail_and_the_retry_after_it_succeeds() {
    // At 300x the first retry comes 0.7 to 1.3 real seconds later: time to end the outage.
    let emu = start(EmulatorConfig {
        time_scale: 300.0,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    emu.set_outage(true);
    emu.create_message(&g, MessageSpec::default());
    assert!(
        eventually(DEADLINE, || emu.stats().webhooks.deliveries.failed_attempts
            >= 1)
        .await
    );
    assert_eq!(rx.count(), 0);
    emu.set_outage(false);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].json()["webhook_delivery_attempt"]
            .as_i64()
            .unwrap_or(0)
            >= 2
    );
    assert_eq!(emu.stats().webhooks.deliveries.delivered, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_outage_window_longer_than_the_retry_span_loses_the_notification() {
    let emu = start(EmulatorConfig {
        time_scale: 1200.0,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    emu.set_faults(Faults {
        outages: vec![FaultWindow::starting_at(
            emu.now() - 1,
            Duration::from_secs(3600),
        )],
        ..Faults::default()
    });
    let g = emu.grant_ids()[0].clone();
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 0);
    let d = emu.stats().webhooks.deliveries;
    assert_eq!((d.failed_attempts, d.dropped_after_retries), (3, 1));
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_429s_and_5xx_answer_in_nylas_shape_until_cleared() {
    let emu = start(EmulatorConfig::default()).await;
    let g = emu.grant_ids()[0].clone();
    let path = format!("/v3/grants/{g}/messages");
    emu.set_faults(Faults {
        api_429_probability: 1.0,
        retry_after_secs: Some(7),
        ..Faults::default()
    });
    let resp = client()
        .get(format!("{}{path}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let body: Value = resp.json().await.expect("json");
    // An injected 429 stands for the provider's: `rate_limit_error` with its `provider_error`.
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["provider_error"].is_object(), "{body}");
    emu.set_faults(Faults {
        api_5xx_windows: vec![FaultWindow::starting_at(
            emu.now() - 1,
            Duration::from_secs(3600),
        )],
        ..Faults::default()
    });
    let (status, body) = get_json(&emu, &path).await;
    assert!((500..600).contains(&status), "{status}");
    assert!(body["error"]["type"].is_string());
    emu.set_faults(Faults {
        api_429_windows: vec![FaultWindow::starting_at(
            emu.now() + 100_000,
            Duration::from_secs(10),
        )],
        ..Faults::default()
    });
    let (status, _) = get_json(&emu, &path).await;
    assert_eq!(status, 200, "a window in the future does not apply yet");
    emu.shutdown().await;
}

#[tokio::test]
async fn slow_responses_hold_every_answer_back() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            slow_response: Some(Duration::from_millis(400)),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let started = Instant::now();
    let (status, _) = get_json(&emu, "/v3/grants").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_slow_window_set_over_http_holds_answers_back_with_the_state_they_were_read_at() {
    let emu = start(EmulatorConfig::default()).await;
    let g = emu.grant_ids()[0].clone();
    let http = client();
    let base = emu.base_url();
    let now = emu.now();
    // Open now for an hour of emulated time: every answer held back 1.5 s (real).
    let r = http
        .post(format!("{base}/_emulator/faults"))
        .json(&json!({"slow_windows": [{"from": now - 1, "until": now + 3600, "delay_ms": 1500}]}))
        .send()
        .await
        .expect("faults");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(emu.faults().slow_windows.len(), 1);
    let url = format!("{base}/v3/grants/{g}/messages?limit=200");
    let before = emu.truth().grants[0].messages.len();
    let started = Instant::now();
    let listing = tokio::spawn({
        let http = http.clone();
        let key = emu.api_key().to_string();
        async move {
            let resp = http.get(url).bearer_auth(key).send().await.expect("list");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            (status, body)
        }
    });
    // A change lands while the answer is held back: it is in the truth, not in the answer.
    assert!(
        eventually(DEADLINE, || emu.stats().api.held_back == 1).await,
        "the listing was answered and held back"
    );
    let created = emu.create_message(&g, MessageSpec::default());
    let (status, body) = listing.await.expect("join");
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(emu.truth().grants[0].messages.len(), before + 1);
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        before,
        "the answer is the state when it was read"
    );
    assert!(!ids.contains(&created["id"].as_str().unwrap_or_default()));
    // A window that has not opened yet holds nothing back.
    emu.set_faults(Faults {
        slow_windows: vec![SlowWindow::starting_at(
            emu.now() + 100_000,
            Duration::from_secs(10),
            Duration::from_secs(5),
        )],
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, _) = get_json(&emu, "/v3/grants").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_outages_pause_and_silence_can_be_driven_over_http() {
    let emu = start(EmulatorConfig {
        time_scale: 300.0,
        ..EmulatorConfig::default()
    })
    .await;
    let http = client();
    let base = emu.base_url();
    let r = http
        .post(format!("{base}/_emulator/faults"))
        .json(&json!({"api_5xx_probability": 1.0}))
        .send()
        .await
        .expect("faults");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(emu.faults().api_5xx_probability, 1.0);
    let (status, _) = get_json(&emu, "/v3/grants").await;
    assert!(status >= 500);
    http.post(format!("{base}/_emulator/faults"))
        .json(&json!({}))
        .send()
        .await
        .expect("clear");
    let (status, _) = get_json(&emu, "/v3/grants").await;
    assert_eq!(status, 200);

    let rx = Receiver::start().await;
    let dest: Value = http
        .post(format!("{base}/_emulator/destinations"))
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .expect("dest")
        .json()
        .await
        .expect("json");
    let secret = dest["webhook_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    http.post(format!("{base}/_emulator/outage"))
        .json(&json!({"action": "start"}))
        .send()
        .await
        .expect("outage");
    let g = emu.grant_ids()[0].clone();
    let m: Value = http
        .post(format!("{base}/_emulator/grants/{g}/messages"))
        .json(&json!({"subject": "over http"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert_eq!(m["subject"], "over http");
    assert!(
        eventually(DEADLINE, || emu.stats().webhooks.deliveries.failed_attempts
            >= 1)
        .await
    );
    http.post(format!("{base}/_emulator/outage"))
        .json(&json!({"down": false}))
        .send()
        .await
        .expect("outage end");
    let idle: Value = http
        .get(format!("{base}/_emulator/wait-idle?timeout_ms=30000"))
        .send()
        .await
        .expect("idle")
        .json()
        .await
        .expect("json");
    assert_eq!(idle["idle"], true);
    assert_eq!(rx.count(), 1);
    assert!(rx.received()[0].signature_verifies_with(&secret));

    http.post(format!("{base}/_emulator/silent"))
        .json(&json!({"silent": true}))
        .send()
        .await
        .expect("silent");
    let mid = m["id"].as_str().unwrap_or_default();
    let r = http
        .delete(format!("{base}/_emulator/grants/{g}/messages/{mid}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let truth: Value = http
        .get(format!("{base}/_emulator/truth"))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("json");
    assert!(truth["grants"][0]["deleted_message_ids"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == mid)));
    assert_eq!(emu.stats().webhooks.suppressed_silent, 1);
    let r = http
        .post(format!("{base}/_emulator/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status().as_u16(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_emulated_clock_runs_time_scale_times_faster_and_object_times_follow_it() {
    let emu = start(EmulatorConfig {
        time_scale: 600.0,
        start_time: Some(1_700_000_000),
        ..EmulatorConfig::default()
    })
    .await;
    let t0 = emu.now();
    assert!((1_700_000_000..1_700_000_000 + 600).contains(&t0));
    let real = Instant::now();
    assert!(eventually(DEADLINE, || emu.now() >= t0 + 300).await);
    let elapsed = real.elapsed().as_secs_f64();
    assert!(elapsed < 5.0, "300 emulated s took {elapsed} real s");
    let g = emu.grant_ids()[0].clone();
    let m = emu.create_message(&g, MessageSpec::default());
    let date = m["date"].as_i64().unwrap_or_default();
    assert!(
        (date - emu.now()).abs() <= 60,
        "date {date} follows the emulated clock {}",
        emu.now()
    );
    let now: Value = client()
        .get(format!("{}/_emulator/now", emu.base_url()))
        .send()
        .await
        .expect("now")
        .json()
        .await
        .expect("json");
    assert!(now["now"].as_i64().unwrap_or_default() >= t0 + 300);
    emu.shutdown().await;
}

#[tokio::test]
async fn background_activity_changes_mailboxes_at_the_configured_rate_and_pauses_on_request() {
    let emu = start(EmulatorConfig {
        grants: 2,
        events_per_minute: 60.0,
        time_scale: 60.0,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    // 60/min per grant at 60x: about 2 changes per real second across both grants.
    assert!(eventually(DEADLINE, || rx.count() >= 4).await);
    let kinds: HashSet<String> = rx.received().iter().map(|r| r.kind()).collect();
    assert!(
        kinds
            .iter()
            .all(|k| k.starts_with("message.") || k.starts_with("event.")),
        "{kinds:?}"
    );
    emu.pause_activity();
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let before = rx.count();
    let t = emu.now();
    assert!(eventually(DEADLINE, || emu.now() >= t + 60).await);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), before, "no change while paused");
    emu.resume_activity();
    assert!(eventually(DEADLINE, || rx.count() > before).await);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_and_start_time_give_the_same_grants_and_content() {
    let config = EmulatorConfig {
        grants: 3,
        seed: 42,
        start_time: Some(1_700_000_000),
        time_scale: 1e-6,
        ..EmulatorConfig::default()
    };
    let a = start(config.clone()).await;
    let b = start(config).await;
    let c = start(EmulatorConfig {
        seed: 43,
        grants: 3,
        ..EmulatorConfig::default()
    })
    .await;
    assert_eq!(a.grant_ids(), b.grant_ids());
    assert_ne!(a.grant_ids(), c.grant_ids());
    assert_eq!(a.truth(), b.truth());
    let ga = a.grant_ids()[0].clone();
    assert_eq!(
        a.create_message(&ga, MessageSpec::default()),
        b.create_message(&ga, MessageSpec::default())
    );
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}
