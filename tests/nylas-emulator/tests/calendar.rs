//! Events and calendars over real HTTP: Nylas's default one-month window, recurring series
//! (expansion, exceptions, cancelled and deleted occurrences), `events/import`, calendar updates
//! and deletes, iCloud's one-year limit, and the seeded calendar content.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, get_json, ids, start, Receiver, DEADLINE};
use nylas_emulator::{occurrence_id, Emulator, EmulatorConfig, EventSpec};
use serde_json::Value;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 2025-06-16T00:00:00Z, a Monday.
const T0: i64 = 1_750_032_000;

fn bare() -> EmulatorConfig {
    EmulatorConfig {
        start_time: Some(T0),
        initial_events_per_grant: 0,
        recurring_series_per_grant: 0,
        ..EmulatorConfig::default()
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

fn spec(start: i64, len: i64, recurrence: Option<&[&str]>) -> EventSpec {
    EventSpec {
        title: None,
        start_time: start,
        end_time: start + len,
        recurrence: recurrence.map(|r| r.iter().map(|s| s.to_string()).collect()),
    }
}

/// Every item of a listing, following `next_cursor`.
async fn all(emu: &Emulator, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let url = match &token {
            Some(t) => format!("{path}&page_token={t}"),
            None => path.to_string(),
        };
        let (status, body) = get_json(emu, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        out.extend(body["data"].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    out
}

fn id_set(items: &[Value]) -> BTreeSet<String> {
    items.iter().map(id).collect()
}

#[tokio::test]
async fn the_default_window_is_the_next_month_and_explicit_windows_reach_past_and_far_future() {
    let emu = start(bare()).await;
    let g = emu.grant_ids()[0].clone();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let now = emu.now();
    let past = id(&emu.create_event_spec(&g, &cal, spec(now - 200 * DAY, 3600, None)));
    let soon = id(&emu.create_event_spec(&g, &cal, spec(now + 3 * DAY, 3600, None)));
    let across = id(&emu.create_event_spec(&g, &cal, spec(now - 3600, 7200, None)));
    let late = id(&emu.create_event_spec(&g, &cal, spec(now + 40 * DAY, 3600, None)));
    let far = id(&emu.create_event_spec(&g, &cal, spec(now + 300 * DAY, 3600, None)));
    let base = format!("/v3/grants/{g}/events?calendar_id={cal}");
    let listed = id_set(&all(&emu, &base).await);
    assert_eq!(
        listed,
        BTreeSet::from([soon.clone(), across.clone()]),
        "no start/end: from now to one month later, overlapping events included"
    );
    let wide = format!("{base}&start={}&end={}", now - 400 * DAY, now + 400 * DAY);
    assert_eq!(
        id_set(&all(&emu, &wide).await),
        BTreeSet::from([past.clone(), soon, across, late.clone(), far.clone()])
    );
    // Only `start`: the window is the month after it.
    let q = format!("{base}&start={}", now - 201 * DAY);
    assert_eq!(id_set(&all(&emu, &q).await), BTreeSet::from([past]));
    let q = format!("{base}&start={}&end={}", now + 35 * DAY, now + 301 * DAY);
    assert_eq!(id_set(&all(&emu, &q).await), BTreeSet::from([late, far]));
    let (status, body) = get_json(&emu, &format!("{base}&start={}&end={}", now, now - 1)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // `primary` names the primary calendar.
    let q = format!("/v3/grants/{g}/events?calendar_id=primary");
    assert_eq!(all(&emu, &q).await.len(), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn recurring_masters_expand_into_occurrences_unless_expand_recurring_is_false() {
    let emu = start(bare()).await;
    let g = emu.grant_ids()[0].clone();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let now = emu.now();
    let dtstart = T0 - 3 * WEEK + 10 * 3600;
    let master = emu.create_event_spec(
        &g,
        &cal,
        spec(dtstart, 1800, Some(&["RRULE:FREQ=WEEKLY;COUNT=10"])),
    );
    let mid = id(&master);
    assert_eq!(master["recurrence"][0], "RRULE:FREQ=WEEKLY;COUNT=10");
    let single = id(&emu.create_event_spec(&g, &cal, spec(now + DAY, 3600, None)));
    let base = format!("/v3/grants/{g}/events?calendar_id={cal}");
    let expanded = all(&emu, &base).await;
    // Occurrences 3..=7 start in [now, now + 30 days).
    let want: BTreeSet<String> = (3..=7)
        .map(|k| occurrence_id(&mid, dtstart + k * WEEK))
        .chain([single.clone()])
        .collect();
    assert_eq!(id_set(&expanded), want);
    let first = expanded
        .iter()
        .find(|e| id(e) == occurrence_id(&mid, dtstart + 3 * WEEK))
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["master_event_id"], mid.as_str());
    assert_eq!(first["when"]["start_time"], dtstart + 3 * WEEK);
    assert_eq!(first["when"]["end_time"], dtstart + 3 * WEEK + 1800);
    assert_eq!(first["original_start_time"], dtstart + 3 * WEEK);
    assert!(first.get("recurrence").is_none(), "{first}");
    assert!(id(&first).ends_with("_20250616T100000Z"), "{first}");
    let unexpanded = all(&emu, &format!("{base}&expand_recurring=false")).await;
    assert_eq!(id_set(&unexpanded), BTreeSet::from([mid.clone(), single]));
    // A series that overlaps the window only through its past occurrences is still listed.
    let q = format!(
        "{base}&expand_recurring=false&start={}&end={}",
        T0 - WEEK,
        T0 - 1
    );
    assert_eq!(id_set(&all(&emu, &q).await), BTreeSet::from([mid.clone()]));
    let q = format!(
        "{base}&expand_recurring=false&start={}",
        dtstart + 10 * WEEK
    );
    assert!(all(&emu, &q).await.is_empty(), "the series has ended");
    // master_event_id narrows to one series' occurrences.
    let q = format!("{base}&master_event_id={mid}");
    assert_eq!(all(&emu, &q).await.len(), 5);
    // An occurrence is readable by id, past ones included; a non-occurrence is not.
    let occ = occurrence_id(&mid, dtstart + WEEK);
    let (status, one) = get_json(
        &emu,
        &format!("/v3/grants/{g}/events/{occ}?calendar_id={cal}"),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["master_event_id"], mid.as_str());
    let not = occurrence_id(&mid, dtstart + WEEK + 60);
    let (status, _) = get_json(
        &emu,
        &format!("/v3/grants/{g}/events/{not}?calendar_id={cal}"),
    )
    .await;
    assert_eq!(status, 404);
    let beyond = occurrence_id(&mid, dtstart + 10 * WEEK);
    let (status, _) = get_json(
        &emu,
        &format!("/v3/grants/{g}/events/{beyond}?calendar_id={cal}"),
    )
    .await;
    assert_eq!(status, 404, "COUNT=10 ends the series");
    let (status, _) = get_json(
        &emu,
        &format!("/v3/grants/{g}/events/{mid}?calendar_id={cal}"),
    )
    .await;
    assert_eq!(status, 200);
    // Unsupported rules are refused.
    let bad = emu.create_event_spec(&g, &cal, spec(now, 60, Some(&["RRULE:FREQ=YEARLY"])));
    assert!(bad.is_null());
    emu.shutdown().await;
}

/// A bare emulator with a receiving destination and, on its first grant's primary calendar, an
/// hour-long weekly series starting at 09:00 on `T0`.
struct WeeklySeries {
    emu: Emulator,
    rx: Receiver,
    g: String,
    cal: String,
    dtstart: i64,
    mid: String,
}

async fn weekly_series() -> WeeklySeries {
    let emu = start(bare()).await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let dtstart = T0 + 9 * 3600;
    let mid =
        id(&emu.create_event_spec(&g, &cal, spec(dtstart, 3600, Some(&["RRULE:FREQ=WEEKLY"]))));
    WeeklySeries {
        emu,
        rx,
        g,
        cal,
        dtstart,
        mid,
    }
}

#[tokio::test]
async fn moved_cancelled_and_deleted_occurrences_show_as_nylas_shows_them() {
    let WeeklySeries {
        emu,
        rx,
        g,
        cal,
        dtstart,
        mid,
    } = weekly_series().await;
    let (o1, o2, o3) = (dtstart + WEEK, dtstart + 2 * WEEK, dtstart + 3 * WEEK);
    let moved = emu.move_occurrence(&g, &mid, o1, o1 + 7200, o1 + 10_800);
    assert_eq!(id(&moved), occurrence_id(&mid, o1));
    assert_eq!(moved["master_event_id"], mid.as_str());
    assert_eq!(moved["original_start_time"], o1);
    assert_eq!(moved["when"]["start_time"], o1 + 7200);
    assert!(emu.cancel_occurrence(&g, &mid, o2));
    assert!(
        !emu.cancel_occurrence(&g, &mid, o2 + 1),
        "no such occurrence"
    );
    assert!(emu.move_occurrence(&g, "nope", o1, o1, o1).is_null());
    assert!(emu.delete_event(&g, &occurrence_id(&mid, o3)));
    assert!(eventually(DEADLINE, || rx.count() == 4).await);
    let got: Vec<Value> = rx.received().iter().map(|r| r.json()).collect();
    assert_eq!(got[0]["type"], "event.created");
    assert_eq!(got[1]["type"], "event.updated");
    assert_eq!(got[1]["data"]["object"]["id"], occurrence_id(&mid, o1));
    assert_eq!(got[2]["type"], "event.updated");
    assert_eq!(got[2]["data"]["object"]["id"], mid.as_str());
    assert_eq!(
        got[2]["data"]["object"]["cancelled_occurrences"],
        serde_json::json!([occurrence_id(&mid, o2)])
    );
    assert_eq!(got[3]["type"], "event.deleted");
    assert_eq!(got[3]["data"]["object"]["id"], occurrence_id(&mid, o3));
    assert_eq!(got[3]["data"]["object"]["master_event_id"], mid.as_str());
    let base = format!(
        "/v3/grants/{g}/events?calendar_id={cal}&start={T0}&end={}",
        T0 + 5 * WEEK
    );
    let listed = all(&emu, &base).await;
    let want: BTreeSet<String> = [dtstart, o1, dtstart + 4 * WEEK]
        .iter()
        .map(|s| occurrence_id(&mid, *s))
        .collect();
    assert_eq!(id_set(&listed), want, "cancelled and deleted are gone");
    let moved_listed = listed.iter().find(|e| id(e) == occurrence_id(&mid, o1));
    assert_eq!(
        moved_listed.map(|e| e["when"]["start_time"].clone()),
        Some(Value::from(o1 + 7200))
    );
    let with_cancelled = all(&emu, &format!("{base}&show_cancelled=true")).await;
    let cancelled: Vec<&Value> = with_cancelled
        .iter()
        .filter(|e| e["status"] == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(id(cancelled[0]), occurrence_id(&mid, o2));
    let unexpanded = all(&emu, &format!("{base}&expand_recurring=false")).await;
    assert_eq!(
        id_set(&unexpanded),
        BTreeSet::from([mid.clone(), occurrence_id(&mid, o1)])
    );
    let path = |o: i64| {
        format!(
            "/v3/grants/{g}/events/{}?calendar_id={cal}",
            occurrence_id(&mid, o)
        )
    };
    assert_eq!(get_json(&emu, &path(o3)).await.0, 404, "deleted stays gone");
    assert_eq!(
        get_json(&emu, &path(o2)).await.1["data"]["status"],
        "cancelled"
    );
    // The truth holds what a mirror holds: the master and its two exceptions, no occurrences.
    let t = emu.truth();
    let truth_ids = id_set(&t.grants[0].events);
    assert_eq!(
        truth_ids,
        BTreeSet::from([
            mid.clone(),
            occurrence_id(&mid, o1),
            occurrence_id(&mid, o2)
        ])
    );
    assert!(t.grants[0]
        .deleted_events
        .iter()
        .any(|d| d.id == occurrence_id(&mid, o3)));
    // Deleting the master takes its exceptions with it, with one event.deleted.
    assert!(emu.delete_event(&g, &mid));
    assert!(eventually(DEADLINE, || rx.count() == 5).await);
    assert_eq!(
        rx.received()[4].json()["data"]["object"]["id"],
        mid.as_str()
    );
    let t = emu.truth();
    assert!(t.grants[0].events.is_empty());
    let deleted: BTreeSet<String> = t.grants[0]
        .deleted_events
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert!(truth_ids.is_subset(&deleted));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_series_takes_its_exceptions_with_it() {
    let WeeklySeries {
        emu,
        rx,
        g,
        cal,
        dtstart,
        mid,
    } = weekly_series().await;
    let o1 = dtstart + WEEK;
    let moved = id(&emu.move_occurrence(&g, &mid, o1, o1 + 7200, o1 + 10_800));
    assert_eq!(emu.cancel_event(&g, &mid)["status"], "cancelled");
    assert!(eventually(DEADLINE, || rx.count() == 3).await);
    let last = rx.received()[2].json();
    assert_eq!(
        (last["type"].as_str(), last["data"]["object"]["id"].as_str()),
        (Some("event.updated"), Some(mid.as_str())),
        "one notification, the master's"
    );
    let get = format!("/v3/grants/{g}/events/{moved}?calendar_id={cal}");
    assert_eq!(get_json(&emu, &get).await.1["data"]["status"], "cancelled");
    let import = format!(
        "/v3/grants/{g}/events/import?calendar_id={cal}&start={T0}&end={}",
        T0 + 5 * WEEK
    );
    let imported = all(&emu, &import).await;
    let exception = imported.iter().find(|e| id(e) == moved);
    assert_eq!(
        exception.map(|e| e["status"].clone()),
        Some(Value::from("cancelled")),
        "import lists the exception, cancelled"
    );
    let events = format!(
        "/v3/grants/{g}/events?calendar_id={cal}&start={T0}&end={}",
        T0 + 5 * WEEK
    );
    let listed = all(&emu, &events).await;
    assert!(
        listed.is_empty(),
        "nothing of the series is live: {listed:?}"
    );
    let t = emu.truth();
    assert!(t.grants[0]
        .events
        .iter()
        .all(|e| e["status"] == "cancelled"));
    emu.shutdown().await;
}

#[tokio::test]
async fn import_returns_masters_exceptions_and_singles_unexpanded_in_max_results_pages() {
    let emu = start(EmulatorConfig {
        start_time: Some(T0),
        initial_events_per_grant: 7,
        recurring_series_per_grant: 2,
        ..EmulatorConfig::default()
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let now = emu.now();
    let cancelled_single = id(&emu.create_event_spec(&g, &cal, spec(now + DAY, 3600, None)));
    emu.cancel_event(&g, &cancelled_single);
    let truth = emu.truth().grants[0].events.clone();
    let masters = truth.iter().filter(|e| e["recurrence"].is_array()).count();
    let exceptions = truth
        .iter()
        .filter(|e| e["master_event_id"].is_string())
        .count();
    assert_eq!((masters, exceptions), (2, 4));
    let base = format!(
        "/v3/grants/{g}/events/import?calendar_id={cal}&start={}&end={}",
        now - 2 * 365 * DAY,
        now + 2 * 365 * DAY
    );
    let mut pages = 0;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("{base}&max_results=3&page_token={t}"),
            None => format!("{base}&max_results=3"),
        };
        let (status, body) = get_json(&emu, &url).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["request_id"].is_string());
        let data = body["data"].as_array().cloned().unwrap_or_default();
        assert!(data.len() <= 3);
        seen.extend(data);
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert!(pages >= 5, "{pages} pages");
    let want: BTreeSet<String> = truth
        .iter()
        .filter(|e| e["status"] != "cancelled" || e["master_event_id"].is_string())
        .map(id)
        .collect();
    assert_eq!(seen.len(), want.len(), "nothing repeated");
    assert_eq!(
        id_set(&seen),
        want,
        "masters, exceptions (cancelled ones too) and live single events"
    );
    assert!(!id_set(&seen).contains(&cancelled_single));
    // Without start/end, the default window applies here too.
    let default = all(
        &emu,
        &format!("/v3/grants/{g}/events/import?calendar_id={cal}"),
    )
    .await;
    assert!(default.len() < seen.len());
    assert!(default
        .iter()
        .all(|e| e["recurrence"].is_array() || e["when"]["end_time"].as_i64() > Some(now - 1)));
    let (status, _) = get_json(&emu, &format!("{base}&max_results=501")).await;
    assert_eq!(status, 400);
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/events/import")).await;
    assert_eq!(status, 400, "calendar_id is required");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_deleted_calendar_takes_its_events_and_only_calendar_deleted_is_sent() {
    let emu = start(bare()).await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    let g = emu.grant_ids()[0].clone();
    let primary = emu.primary_calendar_id(&g).unwrap_or_default();
    let cal = id(&emu.create_calendar(&g, "Team"));
    let renamed = emu.update_calendar(&g, &cal, "Team (renamed)");
    assert_eq!(renamed["name"], "Team (renamed)");
    let single = id(&emu.create_event_spec(&g, &cal, spec(T0 - 100 * DAY, 3600, None)));
    let mid = id(&emu.create_event_spec(
        &g,
        &cal,
        spec(T0, 3600, Some(&["RRULE:FREQ=DAILY;COUNT=5"])),
    ));
    assert!(emu.cancel_occurrence(&g, &mid, T0 + DAY));
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let before = rx.count();
    assert!(emu.delete_calendar(&g, &cal));
    assert!(!emu.delete_calendar(&g, &cal), "already gone");
    assert!(
        !emu.delete_calendar(&g, &primary),
        "the primary calendar stays"
    );
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds: Vec<String> = rx.received().iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds[..3],
        ["calendar.created", "calendar.updated", "event.created"]
    );
    assert_eq!(kinds[before..], ["calendar.deleted"]);
    let deleted = rx.received()[before].json();
    assert_eq!(deleted["data"]["object"]["id"], cal.as_str());
    assert_eq!(deleted["data"]["object"]["grant_id"], g.as_str());
    let t = emu.truth();
    assert_eq!(t.grants[0].deleted_calendar_ids, vec![cal.clone()]);
    let gone: BTreeSet<String> = t.grants[0]
        .deleted_events
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(
        gone,
        BTreeSet::from([single, mid.clone(), occurrence_id(&mid, T0 + DAY)])
    );
    assert!(t.grants[0].events.is_empty());
    let (status, _) = get_json(&emu, &format!("/v3/grants/{g}/events?calendar_id={cal}")).await;
    assert_eq!(status, 404);
    let (_, cals) = get_json(&emu, &format!("/v3/grants/{g}/calendars")).await;
    assert_eq!(ids(&cals), vec![primary]);
    emu.shutdown().await;
}

#[tokio::test]
async fn icloud_grants_refuse_windows_over_a_year_and_ignore_show_cancelled() {
    let emu = start(bare()).await;
    let g = emu.add_grant_with("icloud");
    let (_, grant) = get_json(&emu, &format!("/v3/grants/{g}")).await;
    assert_eq!(grant["data"]["provider"], "icloud");
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let e = id(&emu.create_event_spec(&g, &cal, spec(T0 + DAY, 3600, None)));
    emu.cancel_event(&g, &e);
    for path in ["events", "events/import"] {
        let base = format!("/v3/grants/{g}/{path}?calendar_id={cal}");
        let (status, body) =
            get_json(&emu, &format!("{base}&start={T0}&end={}", T0 + 366 * DAY)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let (status, _) =
            get_json(&emu, &format!("{base}&start={T0}&end={}", T0 + 365 * DAY)).await;
        assert_eq!(status, 200);
    }
    let q = format!("/v3/grants/{g}/events?calendar_id={cal}&show_cancelled=true");
    assert!(
        all(&emu, &q).await.is_empty(),
        "show_cancelled is not supported on iCloud"
    );
    // A Google grant takes any window.
    let google = emu.grant_ids()[0].clone();
    let gcal = emu.primary_calendar_id(&google).unwrap_or_default();
    let (status, _) = get_json(
        &emu,
        &format!(
            "/v3/grants/{google}/events?calendar_id={gcal}&start={T0}&end={}",
            T0 + 900 * DAY
        ),
    )
    .await;
    assert_eq!(status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn seeded_grants_hold_past_and_far_future_events_and_a_series_with_exceptions() {
    let emu = start(EmulatorConfig {
        start_time: Some(T0),
        initial_events_per_grant: 6,
        ..EmulatorConfig::default()
    })
    .await;
    let g = emu.grant_ids()[0].clone();
    let cal = emu.primary_calendar_id(&g).unwrap_or_default();
    let events = emu.truth().grants[0].events.clone();
    let start = |e: &Value| e["when"]["start_time"].as_i64().unwrap_or_default();
    assert!(events.iter().any(|e| start(e) < T0 - 180 * DAY));
    assert!(events.iter().any(|e| start(e) > T0 + 365 * DAY));
    let masters: Vec<&Value> = events
        .iter()
        .filter(|e| e["recurrence"].is_array())
        .collect();
    assert_eq!(masters.len(), 1);
    let mid = id(masters[0]);
    let exceptions: Vec<&Value> = events
        .iter()
        .filter(|e| e["master_event_id"] == mid.as_str())
        .collect();
    assert_eq!(exceptions.len(), 2);
    assert!(exceptions
        .iter()
        .any(|e| e["status"] == "cancelled" && start(e) > T0 && start(e) < T0 + 30 * DAY));
    assert!(exceptions.iter().any(|e| e["status"] != "cancelled"
        && start(e) < T0
        && e["original_start_time"].as_i64() != Some(start(e))));
    // The default window sees a few weeks of the series and few of the single events.
    let listed = all(&emu, &format!("/v3/grants/{g}/events?calendar_id={cal}")).await;
    let occurrences = listed
        .iter()
        .filter(|e| e["master_event_id"] == mid.as_str())
        .count();
    assert!((3..=5).contains(&occurrences), "{occurrences}");
    // Turned off, there is no series.
    let plain = start_plain().await;
    assert!(plain.truth().grants[0]
        .events
        .iter()
        .all(|e| e.get("recurrence").is_none()));
    plain.shutdown().await;
    emu.shutdown().await;
}

async fn start_plain() -> Emulator {
    start(EmulatorConfig {
        recurring_series_per_grant: 0,
        ..EmulatorConfig::default()
    })
    .await
}

#[tokio::test]
async fn activity_over_past_future_and_recurring_events_keeps_import_equal_to_the_truth() {
    let emu = start(EmulatorConfig {
        start_time: Some(T0),
        grants: 2,
        events_per_minute: 600.0,
        time_scale: 600.0,
        seed: 7,
        ..EmulatorConfig::default()
    })
    .await;
    let rx = Receiver::start().await;
    emu.register_destination_direct(&rx.url, false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    emu.pause_activity();
    assert!(emu.wait_for_deliveries_idle(DEADLINE).await);
    let kinds: BTreeSet<String> = rx.received().iter().map(|r| r.kind()).collect();
    for k in ["event.created", "event.updated", "event.deleted"] {
        assert!(kinds.contains(k), "{k} in {kinds:?}");
    }
    let cancelled_occurrences = rx
        .received()
        .iter()
        .any(|r| r.json()["data"]["object"]["cancelled_occurrences"].is_array());
    assert!(cancelled_occurrences, "the activity cancels occurrences");
    let now = emu.now();
    let t = emu.truth();
    let mut far = 0;
    for (i, g) in emu.grant_ids().iter().enumerate() {
        let cal = emu.primary_calendar_id(g).unwrap_or_default();
        let path = format!(
            "/v3/grants/{g}/events/import?calendar_id={cal}&start={}&end={}&max_results=500",
            now - 5 * 365 * DAY,
            now + 5 * 365 * DAY
        );
        let imported = id_set(&all(&emu, &path).await);
        let want: BTreeSet<String> = t.grants[i]
            .events
            .iter()
            .filter(|e| e["status"] != "cancelled" || e["master_event_id"].is_string())
            .map(id)
            .collect();
        assert_eq!(imported, want, "grant {g}");
        far += t.grants[i]
            .events
            .iter()
            .filter(|e| {
                let s = e["when"]["start_time"].as_i64().unwrap_or_default();
                !(now..now + 30 * DAY).contains(&s)
            })
            .count();
    }
    assert!(
        far > 10,
        "most events fall outside the default window: {far}"
    );
    emu.shutdown().await;
}
