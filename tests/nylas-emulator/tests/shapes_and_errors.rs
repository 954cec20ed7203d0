//! Notification shapes and REST errors and limits over real HTTP: tracking and deliverability
//! triggers, the `event.*` shape faults, grant codes and the `grant.expired` lag, Nylas's own
//! 429 vs the provider's, 504 after the request timeout, expiring page tokens, gzip answers,
//! `send-test-event`.

use crate::common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{client, get_json, start, Receiver, DEADLINE};
use nylas_emulator::{Emulator, EmulatorConfig, Faults};
use serde_json::{json, Value};

async fn create_webhook(emu: &Emulator, triggers: Value, url: &str) -> String {
    let resp = client()
        .post(format!("{}/v3/webhooks", emu.base_url()))
        .bearer_auth(emu.api_key())
        .json(&json!({"trigger_types": triggers, "webhook_url": url}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    body["data"]["id"].as_str().unwrap_or_default().to_string()
}

const TRACKING: &[&str] = &[
    "message.opened",
    "message.opened.legacy",
    "message.link_clicked",
    "message.link_clicked.legacy",
    "thread.replied",
    "thread.replied.legacy",
    "message.bounce_detected",
];

#[tokio::test]
async fn tracking_and_deliverability_notifications_carry_message_id_and_no_id_and_reach_only_their_subscribers(
) {
    let emu = start(EmulatorConfig::default()).await;
    let opened = Receiver::start().await;
    let created = Receiver::start().await;
    let catch_all = Receiver::start().await;
    create_webhook(&emu, json!(["message.opened"]), &opened.url).await;
    create_webhook(&emu, json!(["message.created"]), &created.url).await;
    emu.register_destination_direct(&catch_all.url, false);
    let g = emu.grant_ids()[0].clone();
    for kind in TRACKING {
        emu.emit_tracking(kind, &g, "msg-1");
    }
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got = catch_all.received();
    assert_eq!(got.len(), TRACKING.len());
    for (r, kind) in got.iter().zip(TRACKING) {
        let n = r.json();
        assert_eq!(n["type"], *kind);
        assert_eq!(n["data"]["object"]["message_id"], "msg-1", "{n}");
        assert!(n["data"]["object"].get("id").is_none(), "{n}");
        // Deliverability carries the grant at `data.grant_id`, tracking in the object.
        if *kind == "message.bounce_detected" {
            assert_eq!(n["data"]["grant_id"], g.as_str(), "{n}");
            assert!(n["data"]["object"].get("grant_id").is_none(), "{n}");
        } else {
            assert_eq!(n["data"]["object"]["grant_id"], g.as_str(), "{n}");
            assert!(n["data"].get("grant_id").is_none(), "{n}");
        }
        assert_eq!(n["data"]["application_id"], emu.application_id());
        assert!(n["time"].is_i64());
    }
    let kinds: Vec<String> = opened.received().iter().map(|r| r.kind()).collect();
    assert_eq!(kinds, vec!["message.opened"], "not the .legacy form");
    assert_eq!(created.count(), 0);
    // Over HTTP too, about the grant's newest message by default.
    let newest = emu.truth().grants[0].messages[0]["id"].clone();
    let resp = client()
        .post(format!("{}/_emulator/notifications", emu.base_url()))
        .json(&json!({"type": "thread.replied", "grant_id": g}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let last = catch_all.received().last().unwrap().json();
    assert_eq!(last["type"], "thread.replied");
    assert_eq!(last["data"]["object"]["message_id"], newest);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_event_shape_faults_drop_grant_id_and_null_the_deleted_calendar_id() {
    let emu = start(EmulatorConfig::default()).await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let resp = client()
        .post(format!("{}/_emulator/faults", emu.base_url()))
        .json(&json!({
            "event_missing_grant_id_probability": 1.0,
            "event_deleted_null_calendar_probability": 1.0,
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let g = emu.grant_ids()[0].clone();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let e = emu.create_event(&g, &cal);
    let eid = e["id"].as_str().unwrap_or_default().to_string();
    assert!(emu.delete_event(&g, &eid));
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got = rx.received();
    let created = got.iter().find(|r| r.kind() == "event.created").unwrap();
    let deleted = got.iter().find(|r| r.kind() == "event.deleted").unwrap();
    let created = created.json();
    assert!(created["data"]["object"].get("grant_id").is_none());
    assert_eq!(created["data"]["object"]["id"], eid.as_str());
    let deleted = deleted.json();
    assert!(deleted["data"]["object"].get("grant_id").is_none());
    assert!(
        deleted["data"]["object"]["calendar_id"].is_null(),
        "{deleted}"
    );
    assert_eq!(deleted["data"]["object"]["id"], eid.as_str());
    // The truth is untouched by the shape of its notifications.
    assert!(emu.truth().grants[0]
        .deleted_events
        .iter()
        .any(|d| d.id == eid && d.calendar_id == cal));
    // Off again: the ordinary shape.
    emu.set_faults(Faults::default());
    emu.create_event(&g, &cal);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let last = rx.received().last().unwrap().json();
    assert_eq!(last["data"]["object"]["grant_id"], g.as_str());
    emu.shutdown().await;
}

#[tokio::test]
async fn grant_notifications_carry_nylas_codes_and_an_ordinary_update_is_25014() {
    let emu = start(EmulatorConfig {
        grant_expired_lag_max: Duration::ZERO,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.add_grant();
    assert!(emu.update_grant(&g));
    emu.expire_grant(&g);
    assert!(
        emu.update_grant(&g),
        "an ordinary update of an expired grant"
    );
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/messages")).await;
    assert_eq!(status, 401, "an ordinary update does not bring it back");
    emu.reauthenticate_grant(&g);
    emu.delete_grant(&g);
    assert!(!emu.update_grant("no-such-grant"));
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got: Vec<(String, Value)> = rx
        .received()
        .iter()
        .map(|r| (r.kind(), r.json()["data"]["object"].clone()))
        .collect();
    let codes: Vec<(&str, i64)> = got
        .iter()
        .map(|(k, o)| (k.as_str(), o["code"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("grant.created", 25012),
            ("grant.updated", 25014),
            ("grant.expired", 25009),
            ("grant.updated", 25014),
            ("grant.updated", 25027),
            ("grant.deleted", 25013),
        ]
    );
    assert_eq!(got[1].1["reauthentication_flag"], false);
    assert_eq!(got[4].1["reauthentication_flag"], true);
    assert!(got[0].1["login_id"].is_string());
    for (_, o) in &got {
        assert_eq!(o["grant_id"], g.as_str());
        assert!(o["integration_id"].is_string() && o["provider"].is_string());
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn grant_expired_lags_the_expiry_by_up_to_the_configured_maximum_while_the_api_answers_401_at_once(
) {
    // 600 emulated seconds last one real second.
    let emu = start(EmulatorConfig {
        time_scale: 600.0,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    let broke = emu.now();
    emu.expire_grant(&g);
    let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/messages")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "unauthorized");
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let got = rx.of_kind("grant.expired");
    assert_eq!(got.len(), 1);
    let time = got[0].json()["time"].as_i64().unwrap_or(0);
    assert!(
        (broke..=broke + 601).contains(&time),
        "noticed {}s after the expiry",
        time - broke
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_grant_reauthenticated_before_its_expiry_was_noticed_sends_no_grant_expired() {
    let emu = start(EmulatorConfig {
        time_scale: 6000.0,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    emu.expire_grant(&g);
    emu.reauthenticate_grant(&g);
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds: Vec<String> = rx.received().iter().map(|r| r.kind()).collect();
    assert_eq!(kinds, vec!["grant.updated"]);
    assert_eq!(emu.stats().webhooks.grant_expired_not_sent, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn nylas_own_rate_limit_and_a_provider_429_answer_different_error_types() {
    let emu = start(EmulatorConfig {
        rate_limit_per_application: 1,
        ..EmulatorConfig::default()
    })
    .await;
    let mut limited = None;
    for _ in 0..5 {
        let (status, body) = get_json(&emu, "/v3/grants").await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let body = limited.expect("the limiter answers 429");
    assert_eq!(body["error"]["type"], "nylas_rate_limit_exceeded");
    assert!(body["error"].get("provider_error").is_none());
    assert!(body["request_id"].is_string());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    emu.set_faults(Faults {
        api_429_probability: 1.0,
        retry_after_secs: Some(3),
        ..Faults::default()
    });
    let g = emu.grant_ids()[0].clone();
    let resp = client()
        .get(format!("{}/v3/grants/{g}/messages", emu.base_url()))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["provider_error"].is_object(), "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_answered_504_provider_error_at_the_timeout() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            slow_response: Some(Duration::from_secs(30)),
            request_timeout: Some(Duration::from_millis(200)),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let started = Instant::now();
    let (status, body) = get_json(&emu, "/v3/grants").await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "provider_error");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(
        took < Duration::from_secs(10),
        "cut at the timeout: {took:?}"
    );
    // Below the timeout the answer is just late.
    emu.set_faults(Faults {
        slow_response: Some(Duration::from_millis(100)),
        request_timeout: Some(Duration::from_millis(200)),
        ..Faults::default()
    });
    let (status, _) = get_json(&emu, "/v3/grants").await;
    assert_eq!(status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn page_tokens_older_than_the_configured_age_or_unlucky_answer_400_and_a_fresh_listing_works()
{
    // 120 emulated seconds last 0.2 real seconds.
    let emu = start(EmulatorConfig {
        time_scale: 600.0,
        ..EmulatorConfig::default()
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let first = format!("/v3/grants/{g}/messages?limit=2");
    emu.set_faults(Faults {
        page_token_max_age_secs: Some(60),
        ..Faults::default()
    });
    let (_, page) = get_json(&emu, &first).await;
    let token = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let next = format!("{first}&page_token={token}");
    let (status, _) = get_json(&emu, &next).await;
    assert_eq!(status, 200, "a fresh token works");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, body) = get_json(&emu, &next).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = get_json(&emu, &first).await;
    assert_eq!(status, 200, "restarting the listing works");
    emu.set_faults(Faults {
        page_token_expiry_probability: 1.0,
        ..Faults::default()
    });
    let (_, page) = get_json(&emu, &first).await;
    let token = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (status, _) = get_json(&emu, &format!("{first}&page_token={token}")).await;
    assert_eq!(status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn accept_encoding_gzip_gets_a_gzip_answer_above_200_bytes() {
    let emu = start(EmulatorConfig::default()).await;
    let g = emu.grant_ids()[0].clone();
    let get = |path: String, gzip: bool| {
        let mut req = client()
            .get(format!("{}{path}", emu.base_url()))
            .bearer_auth(emu.api_key());
        if gzip {
            req = req.header("accept-encoding", "gzip");
        }
        req.send()
    };
    let resp = get(format!("/v3/grants/{g}/messages"), true)
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let raw = resp.bytes().await.expect("body");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut plain)
        .expect("valid gzip");
    let body: Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(5));
    // Without the header: plain JSON; a small answer is never compressed.
    let resp = get(format!("/v3/grants/{g}/messages"), false)
        .await
        .expect("request");
    assert!(resp.headers().get("content-encoding").is_none());
    let resp = get("/v3/webhooks".to_string(), true)
        .await
        .expect("request");
    assert!(resp.headers().get("content-encoding").is_none());
    let body: Value = resp.json().await.expect("plain json");
    assert!(body["data"].is_array());
    emu.shutdown().await;
}

#[tokio::test]
async fn send_test_event_answers_success_and_shapes_a_tracking_trigger_like_a_real_one() {
    let emu = start(EmulatorConfig::default()).await;
    let rx = Receiver::start().await;
    let resp = client()
        .post(format!("{}/v3/webhooks/send-test-event", emu.base_url()))
        .bearer_auth(emu.api_key())
        .json(&json!({"trigger_type": "message.opened", "webhook_url": rx.url}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["data"], "success");
    let r = &rx.received()[0];
    assert!(r.signature_verifies_with("mock-webhook-secret"));
    let n = r.json();
    assert_eq!(n["type"], "message.opened");
    assert!(n["data"]["object"]["message_id"].is_string());
    assert!(n["data"]["object"].get("id").is_none());
    emu.shutdown().await;
}
