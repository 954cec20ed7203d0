//! The `/v3` REST API over real HTTP: auth, envelopes, errors, pagination, filters, rate limits.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{client, get_json, ids, start};
use nylas_emulator::{EmulatorConfig, Faults, MessageChange, MessageSpec};
use serde_json::Value;

fn idle(grants: usize) -> EmulatorConfig {
    EmulatorConfig {
        grants,
        ..EmulatorConfig::default()
    }
}

/// Pages through a listing by `next_cursor`, running `between` after each page.
async fn page_all(
    emu: &nylas_emulator::Emulator,
    path: &str,
    mut between: impl FnMut(usize),
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for page in 0..1000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}page_token={t}"),
            None => path.to_string(),
        };
        let (status, body) = get_json(emu, &url).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["data"].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
        between(page);
    }
    panic!("listing never ended");
}

#[tokio::test]
async fn requests_without_the_right_api_key_are_refused_in_nylas_error_shape() {
    let emu = start(idle(1)).await;
    let url = format!("{}/v3/grants", emu.base_url());
    for auth in [None, Some("Bearer wrong-key"), Some("Basic dGVzdA==")] {
        let mut req = client().get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 401);
        let body: Value = resp.json().await.expect("json");
        assert!(body["request_id"].is_string());
        assert!(body["error"]["type"].is_string());
        assert!(body["error"]["message"].is_string());
    }
    let (status, _) = get_json(&emu, "/v3/grants").await;
    assert_eq!(status, 200);
    // The emulator's own controls need no key.
    let resp = client()
        .get(format!("{}/_emulator/stats", emu.base_url()))
        .send()
        .await
        .expect("stats");
    assert_eq!(resp.status().as_u16(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn grants_are_listed_with_offset_pagination() {
    let emu = start(idle(5)).await;
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (status, body) = get_json(&emu, &format!("/v3/grants?limit=2&offset={offset}")).await;
        assert_eq!(status, 200);
        assert_eq!(body["limit"], 2);
        assert_eq!(body["offset"], offset);
        assert!(body["request_id"].is_string());
        let page = ids(&body);
        if page.is_empty() {
            break;
        }
        seen.extend(page);
        offset += 2;
    }
    let mut expected = emu.grant_ids();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
    let (_, one) = get_json(&emu, &format!("/v3/grants/{}", expected[0])).await;
    assert_eq!(one["data"]["grant_status"], "valid");
    emu.shutdown().await;
}

#[tokio::test]
async fn messages_are_listed_newest_first_and_every_message_appears_exactly_once_across_pages() {
    let emu = start(idle(1)).await;
    let g = emu.grant_ids()[0].clone();
    let base = emu.now() - 10_000;
    for i in 0..40 {
        // Several share a date, so the id tie-break matters.
        emu.create_message(
            &g,
            MessageSpec {
                date: Some(base + i / 3),
                ..MessageSpec::default()
            },
        );
    }
    let all = page_all(&emu, &format!("/v3/grants/{g}/messages?limit=7"), |_| {}).await;
    let got: Vec<String> = all
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an id was repeated");
    assert_eq!(got.len(), emu.truth().grants[0].messages.len());
    let keys: Vec<(i64, String)> = all
        .iter()
        .map(|m| {
            (
                m["date"].as_i64().unwrap_or_default(),
                m["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted, "not newest first");
    let m = &all[0];
    for field in [
        "id",
        "grant_id",
        "object",
        "thread_id",
        "subject",
        "from",
        "to",
        "cc",
        "bcc",
        "reply_to",
        "date",
        "body",
        "snippet",
        "folders",
        "unread",
        "starred",
        "attachments",
        "metadata",
    ] {
        assert!(m.get(field).is_some(), "message lacks {field}");
    }
    assert!(
        m.get("updated_at").is_none(),
        "Nylas messages have no updated_at"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn pagination_never_skips_or_repeats_while_messages_are_created_and_deleted_between_pages() {
    let emu = start(EmulatorConfig {
        initial_messages_per_grant: 0,
        ..idle(1)
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let base = emu.now() - 100_000;
    let mut originals = Vec::new();
    for i in 0..60 {
        let m = emu.create_message(
            &g,
            MessageSpec {
                date: Some(base + i * 10),
                ..MessageSpec::default()
            },
        );
        originals.push((
            base + i * 10,
            m["id"].as_str().unwrap_or_default().to_string(),
        ));
    }
    // Newest first: originals[59] is on page 1.
    let mut deleted = HashSet::new();
    let emu2 = emu.clone();
    let g2 = g.clone();
    let mut created = 0;
    let all = page_all(&emu, &format!("/v3/grants/{g}/messages?limit=10"), |page| {
        // Delete one already returned and one not yet returned; insert messages newer than
        // everything, older than everything and in the middle of the unread range.
        let seen = 59usize.checked_sub(page * 10);
        let ahead = 59usize.checked_sub((page + 1) * 10 + 3);
        for (_, id) in [seen, ahead].into_iter().flatten().map(|i| &originals[i]) {
            if emu2.delete_message(&g2, id) {
                deleted.insert(id.clone());
            }
        }
        for date in [base + 1_000_000, base - 5, base + 55 - (page as i64) * 100] {
            emu2.create_message(
                &g2,
                MessageSpec {
                    date: Some(date),
                    ..MessageSpec::default()
                },
            );
            created += 1;
        }
    })
    .await;
    assert!(created > 0);
    let got: Vec<String> = all
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an id was repeated across pages");
    for (_, id) in &originals {
        assert!(
            got.contains(id) || deleted.contains(id),
            "message {id} existed throughout the listing but was skipped"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn pagination_stays_consistent_while_background_activity_changes_the_mailbox() {
    let emu = start(EmulatorConfig {
        events_per_minute: 3000.0,
        time_scale: 10.0,
        initial_messages_per_grant: 120,
        ..idle(1)
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let before: HashSet<String> = emu.truth().grants[0]
        .messages
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    let all = page_all(&emu, &format!("/v3/grants/{g}/messages?limit=5"), |_| {}).await;
    let after: HashSet<String> = emu.truth().grants[0]
        .messages
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    let got: Vec<String> = all
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an id was repeated across pages");
    // Present before and after the listing (so never deleted during it): must have been listed.
    for id in before.intersection(&after) {
        assert!(got.contains(id), "message {id} was skipped");
    }
    assert_ne!(before, after, "the mailbox changed while it was listed");
    emu.shutdown().await;
}

#[tokio::test]
async fn message_filters_narrow_the_listing_and_select_trims_fields() {
    let emu = start(EmulatorConfig {
        initial_messages_per_grant: 0,
        ..idle(1)
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let t = emu.now() - 1000;
    let a = emu.create_message(
        &g,
        MessageSpec {
            date: Some(t),
            folders: Some(vec!["INBOX".into()]),
            unread: Some(true),
            ..Default::default()
        },
    );
    let b = emu.create_message(
        &g,
        MessageSpec {
            date: Some(t + 100),
            folders: Some(vec!["ARCHIVE".into()]),
            unread: Some(false),
            starred: Some(true),
            ..Default::default()
        },
    );
    let c = emu.create_message(
        &g,
        MessageSpec {
            date: Some(t + 200),
            folders: Some(vec!["INBOX".into()]),
            unread: Some(false),
            ..Default::default()
        },
    );
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();
    let q = |query: String| {
        let emu = emu.clone();
        let g = g.clone();
        async move {
            ids(&get_json(&emu, &format!("/v3/grants/{g}/messages?{query}"))
                .await
                .1)
        }
    };
    assert_eq!(
        q(format!("received_after={}", t + 50)).await,
        vec![id(&c), id(&b)]
    );
    assert_eq!(
        q(format!("received_before={}", t + 150)).await,
        vec![id(&b), id(&a)]
    );
    assert_eq!(q("in=INBOX".into()).await, vec![id(&c), id(&a)]);
    assert_eq!(q("unread=true".into()).await, vec![id(&a)]);
    assert_eq!(q("starred=true".into()).await, vec![id(&b)]);
    emu.update_message(
        &g,
        &id(&a),
        MessageChange {
            unread: Some(false),
            ..Default::default()
        },
    );
    assert!(q("unread=true".into()).await.is_empty());
    let (_, body) = get_json(
        &emu,
        &format!("/v3/grants/{g}/messages?select=id,subject&limit=1"),
    )
    .await;
    let obj = body["data"][0].as_object().cloned().unwrap_or_default();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, vec!["id", "subject"]);
    let (status, one) = get_json(&emu, &format!("/v3/grants/{g}/messages/{}", id(&b))).await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["id"], b["id"]);
    assert_eq!(one["data"]["body"], b["body"]);
    let (status, err) = get_json(&emu, &format!("/v3/grants/{g}/messages?unread=maybe")).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    emu.shutdown().await;
}

#[tokio::test]
async fn limit_defaults_to_50_and_above_200_is_rejected() {
    let emu = start(EmulatorConfig {
        initial_messages_per_grant: 210,
        ..idle(1)
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let (_, body) = get_json(&emu, &format!("/v3/grants/{g}/messages")).await;
    assert_eq!(ids(&body).len(), 50);
    assert!(body["next_cursor"].is_string());
    let (_, body) = get_json(&emu, &format!("/v3/grants/{g}/messages?limit=200")).await;
    assert_eq!(ids(&body).len(), 200);
    let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/messages?limit=201")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/messages?page_token=garbage")).await;
    assert_eq!(status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_or_deleted_objects_answer_404_not_found_error() {
    let emu = start(idle(1)).await;
    let g = emu.grant_ids()[0].clone();
    let m = emu.truth().grants[0].messages[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    emu.delete_message(&g, &m);
    for path in [
        "/v3/grants/no-such-grant/messages".to_string(),
        format!("/v3/grants/{g}/messages/{m}"),
        format!("/v3/grants/{g}/messages/nope"),
        format!("/v3/grants/{g}/events/nope?calendar_id={cal}"),
        format!("/v3/grants/{g}/events?calendar_id=no-such-calendar"),
        "/v3/webhooks/nope".to_string(),
        "/v3/no-such-endpoint".to_string(),
    ] {
        let (status, body) = get_json(&emu, &path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["type"], "not_found_error", "{path}");
        assert!(body["request_id"].is_string());
    }
    let ids_deleted = &emu.truth().grants[0].deleted_message_ids;
    assert!(ids_deleted.contains(&m));
    emu.shutdown().await;
}

#[tokio::test]
async fn events_require_a_calendar_id_and_hide_cancelled_events_unless_asked() {
    let emu = start(EmulatorConfig {
        initial_events_per_grant: 0,
        recurring_series_per_grant: 0,
        time_scale: 100.0,
        ..idle(1)
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let (status, body) = get_json(&emu, &format!("/v3/grants/{g}/events")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (_, cals) = get_json(&emu, &format!("/v3/grants/{g}/calendars")).await;
    let cal = cals["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(cals["data"][0]["is_primary"], true);
    let e1 = emu.create_event(&g, &cal);
    let e2 = emu.create_event(&g, &cal);
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();
    let listed = |q: String| {
        let emu = emu.clone();
        let g = g.clone();
        async move {
            let mut v = ids(&get_json(
                &emu,
                &format!(
                    "/v3/grants/{g}/events?calendar_id={}&{q}",
                    emu.primary_calendar_id(&g).unwrap_or_default()
                ),
            )
            .await
            .1);
            v.sort();
            v
        }
    };
    let mut both = vec![id(&e1), id(&e2)];
    both.sort();
    assert_eq!(listed(String::new()).await, both);
    let cancelled = emu.cancel_event(&g, &id(&e1));
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(listed(String::new()).await, vec![id(&e2)]);
    assert_eq!(listed("show_cancelled=true".into()).await, both);
    // updated_after: only what changed after the cut, on the emulated clock.
    let cut = emu.now();
    assert!(common::eventually(common::DEADLINE, || emu.now() > cut + 1).await);
    let updated = emu.update_event(&g, &id(&e2), Default::default());
    assert!(updated["updated_at"].as_i64().unwrap_or_default() > cut);
    assert_eq!(listed(format!("updated_after={cut}")).await, vec![id(&e2)]);
    let (status, one) = get_json(
        &emu,
        &format!("/v3/grants/{g}/events/{}?calendar_id={cal}", id(&e1)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["status"], "cancelled");
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/events/{}", id(&e1))).await;
    assert_eq!(status, 400, "calendar_id is required on a single event too");
    emu.delete_event(&g, &id(&e1));
    let (status, _) = get_json(
        &emu,
        &format!("/v3/grants/{g}/events/{}?calendar_id={cal}", id(&e1)),
    )
    .await;
    assert_eq!(status, 404);
    let t = emu.truth();
    assert_eq!(t.grants[0].deleted_events[0].id, id(&e1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_grant_above_its_rate_limit_gets_429_with_retry_after_and_other_grants_do_not() {
    let emu = start(EmulatorConfig {
        rate_limit_per_grant: 5,
        faults: Faults {
            retry_after_secs: Some(2),
            ..Faults::default()
        },
        ..idle(2)
    })
    .await;
    let gs = emu.grant_ids();
    let http = client();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..20 {
        let resp = http
            .get(format!(
                "{}/v3/grants/{}/messages?limit=1",
                emu.base_url(),
                gs[0]
            ))
            .bearer_auth(emu.api_key())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        if status == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = resp.json().await.expect("json");
            // Nylas's own limiter, not the provider's: no `provider_error`.
            assert_eq!(body["error"]["type"], "nylas_rate_limit_exceeded");
            assert!(body["error"].get("provider_error").is_none(), "{body}");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 200).count() >= 5);
    assert_eq!(retry_after.as_deref(), Some("2"));
    let (status, _) = get_json(&emu, &format!("/v3/grants/{}/messages?limit=1", gs[1])).await;
    assert_eq!(status, 200, "the limit is per grant");
    let stats = emu.stats();
    assert!(stats.api.by_status.get("429").copied().unwrap_or(0) >= 1);
    assert!(stats.api.by_grant.get(&gs[0]).copied().unwrap_or(0) >= 20);
    // Once the one-second window has passed, the grant is served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get_json(&emu, &format!("/v3/grants/{}/messages?limit=1", gs[0])).await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still limited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn an_expired_grant_answers_401_until_reauthenticated_and_a_deleted_grant_404() {
    let emu = start(idle(2)).await;
    let gs = emu.grant_ids();
    emu.expire_grant(&gs[0]);
    let (status, _) = get_json(&emu, &format!("/v3/grants/{}/messages", gs[0])).await;
    assert_eq!(status, 401);
    let (_, invalid) = get_json(&emu, "/v3/grants?grant_status=invalid").await;
    assert_eq!(ids(&invalid), vec![gs[0].clone()]);
    emu.reauthenticate_grant(&gs[0]);
    let (status, _) = get_json(&emu, &format!("/v3/grants/{}/messages", gs[0])).await;
    assert_eq!(status, 200);
    emu.delete_grant(&gs[1]);
    let (status, body) = get_json(&emu, &format!("/v3/grants/{}/messages", gs[1])).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
    let truth: Value = client()
        .get(format!("{}/_emulator/truth", emu.base_url()))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("json");
    assert_eq!(truth["deleted_grant_ids"][0], gs[1].as_str());
    assert_eq!(truth["grants"].as_array().map(Vec::len), Some(1));
    emu.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_by_endpoint_grant_and_status_over_http() {
    let emu = start(idle(1)).await;
    let g = emu.grant_ids()[0].clone();
    for _ in 0..3 {
        get_json(&emu, &format!("/v3/grants/{g}/messages")).await;
    }
    get_json(&emu, &format!("/v3/grants/{g}/events")).await;
    let stats: Value = client()
        .get(format!("{}/_emulator/stats", emu.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stats["api"]["by_endpoint"]["GET /v3/grants/{grant_id}/messages"],
        3
    );
    assert_eq!(stats["api"]["by_grant"][g.as_str()], 4);
    assert_eq!(stats["api"]["by_status"]["400"], 1);
    emu.shutdown().await;
}
