//! Destination health over real HTTP: `failing` after 95% non-200 attempts over 15 emulated
//! minutes (still receiving), back to `active` when deliveries succeed again, `failed` after 72
//! emulated hours of failing (then nothing is sent, and what is not sent is counted),
//! `PUT /v3/webhooks/{id}` to pause or reactivate, and the test controls.

use crate::common;

use std::time::Duration;

use common::{client, eventually, get_json, start, Receiver, DEADLINE};
use nylas_emulator::{Emulator, EmulatorConfig, MessageSpec};
use serde_json::{json, Value};

async fn put_webhook(emu: &Emulator, id: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .put(format!("{}/v3/webhooks/{id}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn status_over_http(emu: &Emulator, id: &str) -> String {
    let (code, body) = get_json(emu, &format!("/v3/webhooks/{id}")).await;
    assert_eq!(code, 200, "{body}");
    body["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn send(emu: &Emulator, n: usize) {
    let g = emu.grant_ids()[0].clone();
    for _ in 0..n {
        emu.create_message(&g, MessageSpec::default());
    }
}

#[tokio::test]
async fn a_destination_failing_95_percent_becomes_failing_keeps_receiving_and_recovers_when_answers_succeed(
) {
    // At 300x a retry comes at least 0.6 real seconds after its first attempt.
    let emu = start(EmulatorConfig {
        time_scale: 300.0,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    rx.always_answer(Some(500));
    let (dest, _) = emu.register_destination_direct(&rx.url, false);
    assert_eq!(status_over_http(&emu, &dest).await, "active");
    // Fewer failed attempts than the minimum do not make a destination failing.
    send(&emu, 5);
    assert!(eventually(DEADLINE, || rx.count() >= 5).await);
    assert_eq!(status_over_http(&emu, &dest).await, "active");
    send(&emu, 5);
    assert!(eventually(DEADLINE, || emu.destination_status(&dest) == "failing").await);
    let (_, list) = get_json(&emu, "/v3/webhooks").await;
    assert_eq!(list["data"][0]["status"], "failing", "{list}");
    assert!(list["data"][0]["status_updated_at"].as_i64().is_some());
    // Still receiving while failing: the retries arrive, and once answered 200 the share of
    // failures drops below 95% and the destination is active again.
    let before = rx.count();
    rx.always_answer(None);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert!(rx.count() > before);
    assert_eq!(emu.stats().webhooks.deliveries.delivered, 10);
    assert_eq!(status_over_http(&emu, &dest).await, "active");
    emu.shutdown().await;
}

#[tokio::test]
async fn after_72_emulated_hours_of_failing_a_destination_is_failed_receives_nothing_and_put_active_reactivates_it(
) {
    // 72 emulated hours last about 5 real seconds at this scale; the first attempts go out
    // together so they fall inside one 15-minute window (18 real milliseconds).
    let emu = start(EmulatorConfig {
        time_scale: 50_000.0,
        delivery_concurrency: 16,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    rx.always_answer(Some(503));
    let (dest, _) = emu.register_destination_direct(&rx.url, false);
    send(&emu, 10);
    assert!(eventually(DEADLINE, || emu.destination_status(&dest) == "failing").await);
    assert!(
        eventually(Duration::from_secs(20), || emu.destination_status(&dest)
            == "failed")
        .await
    );
    assert_eq!(status_over_http(&emu, &dest).await, "failed");
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let seen = rx.count();
    rx.always_answer(None);
    send(&emu, 3);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count(), seen, "a failed destination gets nothing");
    let d = emu.stats().webhooks.by_destination[&dest].clone();
    assert_eq!(d.dropped_destination_failed, 3, "{d:?}");
    // Nylas never reactivates it by itself; the API does.
    let (code, body) = put_webhook(&emu, &dest, json!({"status": "active"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["status"], "active");
    send(&emu, 1);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(
        rx.count(),
        seen + 1,
        "only what came after the reactivation"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_paused_destination_receives_nothing_and_put_updates_only_the_fields_given() {
    let emu = start(EmulatorConfig::default()).await;
    let rx = Receiver::start().await;
    let other = Receiver::start().await;
    let (dest, _) = emu.register_destination_direct(&rx.url, false);
    let (code, body) = put_webhook(
        &emu,
        &dest,
        json!({"status": "pause", "description": "paused for maintenance"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["status"], "pause");
    assert_eq!(body["data"]["description"], "paused for maintenance");
    assert_eq!(body["data"]["webhook_url"], rx.url.as_str(), "unchanged");
    assert!(body["data"].get("webhook_secret").is_none());
    send(&emu, 2);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 0);
    assert_eq!(
        emu.stats().webhooks.by_destination[&dest].dropped_destination_paused,
        2
    );
    let (code, body) = put_webhook(
        &emu,
        &dest,
        json!({"status": "active", "webhook_url": other.url, "trigger_types": ["message.created"]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["trigger_types"], json!(["message.created"]));
    send(&emu, 1);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!((rx.count(), other.count()), (0, 1));
    // `failed` and `failing` are Nylas's to set, not the API's.
    let (code, body) = put_webhook(&emu, &dest, json!({"status": "failed"})).await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (code, body) = put_webhook(&emu, "no-such-webhook", json!({"status": "active"})).await;
    assert_eq!(code, 404, "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn tests_can_fail_a_destination_at_once_by_library_and_over_http() {
    let emu = start(EmulatorConfig::default()).await;
    let rx = Receiver::start().await;
    let (dest, _) = emu.register_destination_direct(&rx.url, false);
    assert!(emu.fail_destination(&dest));
    assert_eq!(emu.destination_status(&dest), "failed");
    send(&emu, 1);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 0);
    let losses = emu.losses();
    assert_eq!(losses.len(), 1);
    assert_eq!(
        losses[0].reason,
        nylas_emulator::LossReason::DestinationFailed
    );
    assert!(emu.set_destination_status(&dest, "active"));
    assert!(!emu.set_destination_status(&dest, "broken"));
    assert_eq!(emu.destination_status("unknown"), "");
    let http = client();
    let url = format!("{}/_emulator/destinations/{dest}/status", emu.base_url());
    let resp = http
        .post(&url)
        .json(&json!({"status": "failed"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = http
        .get(&url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "failed");
    assert_eq!(status_over_http(&emu, &dest).await, "failed");
    emu.shutdown().await;
}
