//! Webhook destinations and deliveries over real HTTP: challenge, signatures, rotation, payload
//! shapes, truncation, gzip, retries, grant lifecycle and silent mode.

use crate::common;

use std::time::Duration;

use common::{client, eventually, start, ChallengeMode, Receiver, DEADLINE};
use nylas_emulator::{Emulator, EmulatorConfig, MessageSpec};
use serde_json::{json, Value};

fn idle() -> EmulatorConfig {
    EmulatorConfig::default()
}

async fn create_webhook(emu: &Emulator, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/v3/webhooks", emu.base_url()))
        .bearer_auth(emu.api_key())
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn all_triggers() -> Value {
    json!([
        "message.created",
        "message.updated",
        "message.deleted",
        "event.created",
        "event.updated",
        "event.deleted",
        "grant.created",
        "grant.updated",
        "grant.deleted",
        "grant.expired"
    ])
}

#[tokio::test]
async fn creating_a_webhook_sends_the_challenge_and_its_secret_verifies_the_deliveries() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    let (status, body) = create_webhook(
        &emu,
        json!({"trigger_types": all_triggers(), "webhook_url": rx.url, "description": "ingest"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rx.challenges().len(),
        1,
        "exactly one challenge was sent first"
    );
    let secret = body["data"]["webhook_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = body["data"]["id"].as_str().unwrap_or_default().to_string();
    assert!(!secret.is_empty());
    assert_eq!(body["data"]["status"], "active");
    assert_eq!(body["data"]["webhook_url"], rx.url.as_str());

    let g = emu.grant_ids()[0].clone();
    let stored = emu.create_message(
        &g,
        MessageSpec {
            subject: Some("hello".into()),
            ..Default::default()
        },
    );
    assert!(eventually(DEADLINE, || rx.count() == 1).await);
    let r = &rx.received()[0];
    assert!(r.signature_verifies_with(&secret));
    assert!(!r.signature_verifies_with("some-other-secret"));
    let n = r.json();
    assert_eq!(n["specversion"], "1.0");
    assert_eq!(n["type"], "message.created");
    assert!(n["source"].is_string());
    assert!(n["id"].is_string());
    assert_eq!(n["webhook_delivery_attempt"], 1);
    assert_eq!(n["data"]["application_id"], emu.application_id());
    assert_eq!(
        n["data"]["object"], stored,
        "the full object, body included"
    );
    assert!(n["data"]["object"]["body"].is_string());
    let t = n["time"].as_i64().unwrap_or_default();
    assert!(
        (t - stored["date"].as_i64().unwrap_or_default()).abs() <= 1,
        "time is the change's emulated time"
    );

    // GET shows the destination without its secret; DELETE removes it.
    let get: Value = client()
        .get(format!("{}/v3/webhooks/{id}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(get["data"]["id"], id.as_str());
    assert!(get["data"].get("webhook_secret").is_none());
    let del = client()
        .delete(format!("{}/v3/webhooks/{id}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status().as_u16(), 200);
    let again = client()
        .get(format!("{}/v3/webhooks/{id}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("get");
    assert_eq!(again.status().as_u16(), 404);
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 1, "a deleted destination gets nothing more");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_destination_that_echoes_the_wrong_challenge_is_refused() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    rx.set_challenge_mode(ChallengeMode::WrongValue);
    let (status, body) = create_webhook(
        &emu,
        json!({"trigger_types": all_triggers(), "webhook_url": rx.url}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(rx.challenges().len(), 1);
    let (status, _) = create_webhook(&emu, json!({"trigger_types": all_triggers(), "webhook_url": "http://127.0.0.1:9/nothing-listens"})).await;
    assert_eq!(status, 400, "an unreachable URL is refused too");
    let (status, _) = create_webhook(&emu, json!({"webhook_url": rx.url})).await;
    assert_eq!(status, 400, "trigger_types is required");
    let list: Value = client()
        .get(format!("{}/v3/webhooks", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    emu.shutdown().await;
}

#[tokio::test]
async fn after_rotation_deliveries_verify_with_the_new_secret_and_not_the_old_one() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    let (_, body) = create_webhook(
        &emu,
        json!({"trigger_types": all_triggers(), "webhook_url": rx.url}),
    )
    .await;
    let old = body["data"]["webhook_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = body["data"]["id"].as_str().unwrap_or_default().to_string();
    let resp: Value = client()
        .post(format!("{}/v3/webhooks/rotate-secret/{id}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    let new = resp["data"]["webhook_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!new.is_empty());
    assert_ne!(new, old);
    let g = emu.grant_ids()[0].clone();
    emu.create_message(&g, MessageSpec::default());
    assert!(eventually(DEADLINE, || rx.count() == 1).await);
    let r = &rx.received()[0];
    assert!(r.signature_verifies_with(&new));
    assert!(!r.signature_verifies_with(&old));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_message_above_1_mb_is_notified_truncated_without_its_body() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    let (_, secret) = emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    let big = emu.create_message(
        &g,
        MessageSpec {
            body_size: Some(1_200_000),
            ..Default::default()
        },
    );
    let id = big["id"].as_str().unwrap_or_default().to_string();
    emu.update_message(
        &g,
        &id,
        nylas_emulator::MessageChange {
            starred: Some(true),
            ..Default::default()
        },
    );
    let small = emu.create_message(
        &g,
        MessageSpec {
            body_size: Some(900_000),
            ..Default::default()
        },
    );
    assert!(eventually(DEADLINE, || rx.count() == 3).await);
    let got = rx.received();
    let kinds: Vec<String> = got.iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "message.created.truncated",
            "message.updated.truncated",
            "message.created"
        ]
    );
    assert!(got.iter().all(|r| r.signature_verifies_with(&secret)));
    let t = got[0].json();
    assert!(t["data"]["object"].get("body").is_none());
    assert_eq!(t["data"]["object"]["id"], id.as_str());
    assert_eq!(t["data"]["object"]["subject"], big["subject"]);
    assert_eq!(got[2].json()["data"]["object"]["body"], small["body"]);
    // The full body is still there to fetch.
    let (status, full) = common::get_json(&emu, &format!("/v3/grants/{g}/messages/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(full["data"]["body"].as_str().map(str::len), Some(1_200_000));
    emu.shutdown().await;
}

#[tokio::test]
async fn compressed_delivery_gzips_the_body_and_signs_the_compressed_bytes() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    let (status, body) = create_webhook(
        &emu,
        json!({"trigger_types": all_triggers(), "webhook_url": rx.url, "compressed_delivery": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["compressed_delivery"], true);
    let secret = body["data"]["webhook_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let g = emu.grant_ids()[0].clone();
    let stored = emu.create_message(
        &g,
        MessageSpec {
            body_size: Some(50_000),
            ..Default::default()
        },
    );
    assert!(eventually(DEADLINE, || rx.count() == 1).await);
    let r = &rx.received()[0];
    assert!(r.is_gzip());
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(r.body.len() < 50_000);
    assert!(
        r.signature_verifies_with(&secret),
        "signed over the compressed bytes"
    );
    assert_eq!(r.json()["data"]["object"], stored);
    emu.shutdown().await;
}

#[tokio::test]
async fn deletes_carry_only_ids_and_events_also_their_calendar() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    let t = emu.truth();
    let mid = t.grants[0].messages[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let event = &t.grants[0].events[0];
    let eid = event["id"].as_str().unwrap_or_default().to_string();
    let cal = event["calendar_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(emu.delete_message(&g, &mid));
    assert!(emu.delete_event(&g, &eid));
    assert!(eventually(DEADLINE, || rx.count() == 2).await);
    let got = rx.received();
    assert_eq!(got[0].kind(), "message.deleted");
    assert_eq!(
        got[0].json()["data"]["object"],
        json!({"id": mid, "grant_id": g, "object": "message"})
    );
    assert_eq!(got[1].kind(), "event.deleted");
    assert_eq!(
        got[1].json()["data"]["object"],
        json!({"id": eid, "grant_id": g, "object": "event", "calendar_id": cal})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn failing_deliveries_are_retried_three_times_over_10_to_20_emulated_minutes_then_dropped() {
    // At 300x the whole retry span takes 2 to 4 real seconds: wide enough to measure.
    let emu = start(EmulatorConfig {
        time_scale: 300.0,
        ..idle()
    })
    .await;
    let rx = Receiver::start().await;
    rx.always_answer(Some(503));
    let (dest, _) = emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got = rx.received();
    assert_eq!(got.len(), 3);
    let attempts: Vec<i64> = got
        .iter()
        .map(|r| r.json()["webhook_delivery_attempt"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    let ids: Vec<Value> = got.iter().map(|r| r.json()["id"].clone()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one notification, retried"
    );
    let span = got[2].at.duration_since(got[0].at).as_secs_f64() * 300.0;
    assert!(
        (500.0..=1500.0).contains(&span),
        "last attempt {span} emulated s after the first"
    );
    let gap1 = got[1].at.duration_since(got[0].at).as_secs_f64();
    let gap2 = got[2].at.duration_since(got[1].at).as_secs_f64();
    assert!(gap2 > gap1, "backoff grows: {gap1} then {gap2}");
    let stats = emu.stats().webhooks;
    assert_eq!(stats.deliveries.failed_attempts, 3);
    assert_eq!(stats.deliveries.dropped_after_retries, 1);
    assert_eq!(stats.deliveries.delivered, 0);
    assert_eq!(stats.by_destination[&dest].attempts, 3);
    // The loss is on record: which notification, of what object, lost when and why.
    let losses = emu.losses();
    assert_eq!(losses.len(), 1, "{losses:?}");
    let loss = &losses[0];
    assert_eq!(
        (loss.destination.as_str(), loss.reason),
        (dest.as_str(), nylas_emulator::LossReason::AfterRetries)
    );
    assert_eq!(Value::from(loss.notification_id.clone()), ids[0]);
    assert_eq!(
        loss.object_id.as_deref(),
        got[0].json()["data"]["object"]["id"].as_str()
    );
    assert!(loss.lost_at - loss.time >= 500, "{loss:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_retried_delivery_that_then_succeeds_counts_as_delivered_and_every_non_200_is_retried() {
    let emu = start(EmulatorConfig {
        time_scale: 1200.0,
        ..idle()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    rx.script(&[429]);
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 2);
    rx.script(&[401]);
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 4, "a 401 is retried like any non-200");
    // A 2xx other than 200 is not a success either; a 400 three times drops the notification.
    rx.script(&[204, 400, 400]);
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 7);
    let attempts: Vec<i64> = rx.received()[4..]
        .iter()
        .map(|r| r.json()["webhook_delivery_attempt"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    let d = emu.stats().webhooks.deliveries;
    assert_eq!(d.delivered, 2);
    assert_eq!(d.rejected, 0);
    assert_eq!(d.failed_attempts, 5);
    assert_eq!(d.non_200_answers, 5);
    assert_eq!(d.no_answers, 0);
    assert_eq!(d.dropped_after_retries, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    let emu = start(EmulatorConfig {
        time_scale: 1200.0,
        delivery_timeout: Duration::from_secs(1),
        ..idle()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    rx.delay_next(1, Duration::from_secs(4));
    let g = emu.grant_ids()[0].clone();
    emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(rx.count(), 2);
    let attempts: Vec<i64> = rx
        .received()
        .iter()
        .map(|r| r.json()["webhook_delivery_attempt"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    let d = emu.stats().webhooks.deliveries;
    assert_eq!((d.failed_attempts, d.delivered), (1, 1));
    assert_eq!((d.no_answers, d.non_200_answers), (1, 0));
    emu.shutdown().await;
}

#[tokio::test]
async fn destinations_only_get_the_triggers_they_subscribed_to() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    let (status, _) = create_webhook(
        &emu,
        json!({"trigger_types": ["event.created"], "webhook_url": rx.url}),
    )
    .await;
    assert_eq!(status, 200);
    let g = emu.grant_ids()[0].clone();
    emu.create_message(&g, MessageSpec::default());
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    emu.create_event(&g, &cal);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds: Vec<String> = rx.received().iter().map(|r| r.kind()).collect();
    assert_eq!(kinds, vec!["event.created"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_expired_grant_is_notified_and_its_changes_are_replayed_after_reauthentication() {
    let emu = start(EmulatorConfig {
        grant_expired_lag_max: Duration::ZERO,
        ..idle()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    emu.expire_grant(&g);
    let m = emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds: Vec<String> = rx.received().iter().map(|r| r.kind()).collect();
    assert_eq!(kinds, vec!["grant.expired"], "nothing else while expired");
    let expired = rx.received()[0].json();
    assert_eq!(expired["data"]["object"]["grant_id"], g.as_str());
    assert!(expired["data"]["object"]["provider"].is_string());
    emu.reauthenticate_grant(&g);
    assert!(eventually(DEADLINE, || rx.count() == 3).await);
    let got = rx.received();
    assert_eq!(got[1].kind(), "grant.updated");
    assert_eq!(
        got[1].json()["data"]["object"]["reauthentication_flag"],
        true
    );
    assert_eq!(got[1].json()["data"]["object"]["code"], 25027);
    assert_eq!(got[2].kind(), "message.created");
    assert_eq!(got[2].json()["data"]["object"]["id"], m["id"]);
    let w = emu.stats().webhooks;
    assert_eq!((w.held_for_expired_grant, w.replayed_after_reauth), (1, 1));
    let new_grant = emu.add_grant();
    emu.delete_grant(&new_grant);
    assert!(eventually(DEADLINE, || rx.count() == 5).await);
    let kinds: Vec<String> = rx.received().iter().skip(3).map(|r| r.kind()).collect();
    assert_eq!(kinds, vec!["grant.created", "grant.deleted"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn silent_changes_reach_the_truth_but_send_no_notification() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    emu.set_silent(true);
    let m = emu.create_message(&g, MessageSpec::default());
    emu.set_silent(false);
    let m2 = emu.create_message(&g, MessageSpec::default());
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["data"]["object"]["id"], m2["id"]);
    let truth = emu.truth();
    assert!(truth.grants[0].messages.iter().any(|x| x["id"] == m["id"]));
    assert_eq!(emu.stats().webhooks.suppressed_silent, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn send_test_event_posts_one_notification_signed_with_the_mock_secret() {
    let emu = start(idle()).await;
    let rx = Receiver::start().await;
    let resp = client()
        .post(format!("{}/v3/webhooks/send-test-event", emu.base_url()))
        .bearer_auth(emu.api_key())
        .json(&json!({"trigger_type": "message.created", "webhook_url": rx.url}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["data"], "success", "{body}");
    assert!(body["request_id"].is_string());
    assert_eq!(rx.count(), 1);
    let r = &rx.received()[0];
    assert!(r.signature_verifies_with("mock-webhook-secret"));
    assert_eq!(r.kind(), "message.created");
    emu.shutdown().await;
}

#[tokio::test]
async fn unasked_suffixes_reach_subscribers_of_the_base_trigger_cleaned_only_its_own_and_unknown_types_reach_catch_all_destinations(
) {
    let emu = start(idle()).await;
    let subscribed = Receiver::start().await;
    let cleaned = Receiver::start().await;
    let catch_all = Receiver::start().await;
    let (status, _) = create_webhook(
        &emu,
        json!({"trigger_types": ["message.created"], "webhook_url": subscribed.url}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = create_webhook(
        &emu,
        json!({"trigger_types": ["message.created.cleaned"], "webhook_url": cleaned.url}),
    )
    .await;
    assert_eq!(status, 200);
    emu.register_destination_direct(&catch_all.url, false);
    let g = emu.grant_ids()[0].clone();
    let object = json!({"id": "m1", "grant_id": g, "object": "message", "body": "# cleaned"});
    emu.emit_notification("message.created.cleaned", &g, object);
    for suffix in ["metadata", "transformed", "truncated"] {
        let object = json!({"id": "m1", "grant_id": g, "object": "message"});
        emu.emit_notification(&format!("message.created.{suffix}"), &g, object);
    }
    emu.emit_notification("booking.created", &g, json!({"grant_id": g}));
    emu.emit_notification("message.createdx", &g, json!({"grant_id": g}));
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds = |r: &Receiver| r.received().iter().map(|x| x.kind()).collect::<Vec<_>>();
    assert_eq!(
        kinds(&subscribed),
        vec![
            "message.created.metadata",
            "message.created.transformed",
            "message.created.truncated"
        ]
    );
    assert_eq!(kinds(&cleaned), vec!["message.created.cleaned"]);
    assert_eq!(
        kinds(&catch_all),
        vec![
            "message.created.cleaned",
            "message.created.metadata",
            "message.created.transformed",
            "message.created.truncated",
            "booking.created",
            "message.createdx"
        ]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_catch_all_destination_lists_real_triggers_and_a_missing_description_is_omitted() {
    let emu = start(idle()).await;
    let catch_all = Receiver::start().await;
    let (catch_all_id, _) = emu.register_destination_direct(&catch_all.url, false);
    let (status, body) = common::get_json(&emu, "/v3/webhooks").await;
    assert_eq!(status, 200);
    let listed = &body["data"][0];
    assert_eq!(listed["id"], catch_all_id.as_str());
    let triggers: Vec<&str> = listed["trigger_types"]
        .as_array()
        .expect("trigger_types")
        .iter()
        .map(|t| t.as_str().expect("a string"))
        .collect();
    assert!(!triggers.contains(&"*"), "{triggers:?}");
    for t in [
        "message.created",
        "event.deleted",
        "grant.expired",
        "message.opened",
    ] {
        assert!(triggers.contains(&t), "{t} missing from {triggers:?}");
    }
    assert!(listed.get("description").is_none(), "{listed}");
    let g = emu.grant_ids()[0].clone();
    let (_, cals) = common::get_json(&emu, &format!("/v3/grants/{g}/calendars")).await;
    for c in cals["data"].as_array().expect("calendars") {
        assert!(
            c.get("description").is_none_or(Value::is_string),
            "description is a string or absent: {c}"
        );
    }

    // Still a catch-all: a kind it does not list reaches it. A PUT with real triggers ends that.
    emu.emit_notification("booking.created", &g, json!({"grant_id": g}));
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(catch_all.of_kind("booking.created").len(), 1);
    let resp = client()
        .put(format!("{}/v3/webhooks/{catch_all_id}", emu.base_url()))
        .bearer_auth(emu.api_key())
        .json(&json!({"trigger_types": ["message.created"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    emu.emit_notification("booking.created", &g, json!({"grant_id": g}));
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    assert_eq!(catch_all.of_kind("booking.created").len(), 1);
    emu.shutdown().await;
}
