//! `/_emulator`: ground truth, counters, and controls for other processes (faults, outages,
//! pausing activity, deterministic mutations). No auth: it is a test harness, not Nylas.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiError, Params};
use crate::faults::Faults;
use crate::model::{EventChange, MessageChange, MessageSpec, Reauth};
use crate::{webhooks, Shared};

type S = State<Arc<Shared>>;
type R = Result<Json<Value>, ApiError>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/truth", get(truth))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/now", get(now))
        .route("/_emulator/faults", get(get_faults).post(set_faults))
        .route("/_emulator/outage", post(outage))
        .route("/_emulator/pause", post(pause))
        .route("/_emulator/resume", post(resume))
        .route("/_emulator/silent", post(silent))
        .route("/_emulator/wait-idle", get(wait_idle))
        .route("/_emulator/destinations", post(add_destination))
        .route(
            "/_emulator/destinations/{destination_id}/status",
            get(destination_status).post(set_destination_status),
        )
        .route("/_emulator/grants/{grant_id}/update", post(update_grant))
        .route("/_emulator/notifications", post(emit_notification))
        .route("/_emulator/grants", post(add_grant))
        .route("/_emulator/grants/{grant_id}/expire", post(expire_grant))
        .route(
            "/_emulator/grants/{grant_id}/reauthenticate",
            post(reauth_grant),
        )
        .route("/_emulator/grants/{grant_id}/delete", post(delete_grant))
        .route(
            "/_emulator/grants/{grant_id}/messages",
            post(create_message),
        )
        .route(
            "/_emulator/grants/{grant_id}/messages/{message_id}",
            patch(update_message).delete(delete_message),
        )
        .route("/_emulator/grants/{grant_id}/events", post(create_event))
        .route(
            "/_emulator/grants/{grant_id}/events/{event_id}/move-occurrence",
            post(move_occurrence),
        )
        .route(
            "/_emulator/grants/{grant_id}/events/{event_id}/cancel-occurrence",
            post(cancel_occurrence),
        )
        .route(
            "/_emulator/grants/{grant_id}/calendars",
            post(create_calendar),
        )
        .route(
            "/_emulator/grants/{grant_id}/calendars/{calendar_id}",
            patch(update_calendar).delete(delete_calendar),
        )
        .route(
            "/_emulator/grants/{grant_id}/events/{event_id}",
            patch(update_event).delete(delete_event),
        )
        .route("/_emulator/grants/{grant_id}/folders", post(create_folder))
        .route(
            "/_emulator/grants/{grant_id}/folders/{folder_id}",
            patch(update_folder).delete(delete_folder),
        )
}

fn body_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn ok(v: Value) -> R {
    Ok(Json(v))
}

fn found(v: Option<Value>, what: &str) -> R {
    match v {
        Some(v) if !v.is_null() => ok(v),
        _ => Err(ApiError::not_found(format!("{what} not found"))),
    }
}

async fn truth(State(s): S) -> Json<Value> {
    Json(serde_json::to_value(s.truth()).unwrap_or(Value::Null))
}

async fn stats(State(s): S) -> Json<Value> {
    Json(serde_json::to_value(s.stats()).unwrap_or(Value::Null))
}

async fn now(State(s): S) -> Json<Value> {
    Json(json!({"now": s.clock.now(), "time_scale": s.config.time_scale}))
}

async fn get_faults(State(s): S) -> Json<Value> {
    Json(serde_json::to_value(s.faults()).unwrap_or(Value::Null))
}

async fn set_faults(State(s): S, body: Bytes) -> R {
    let f: Faults = body_json(&body)?;
    s.set_faults(f.clone());
    ok(serde_json::to_value(f).unwrap_or(Value::Null))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct OutageBody {
    down: Option<bool>,
    /// `start` or `end`, the same as `down: true|false`.
    action: Option<String>,
}

async fn outage(State(s): S, body: Bytes) -> R {
    let b: OutageBody = body_json(&body)?;
    let down = match (b.down, b.action.as_deref()) {
        (Some(d), _) => d,
        (None, Some("start")) => true,
        (None, Some("end")) => false,
        _ => {
            return Err(ApiError::invalid(
                r#"send {"down": true|false} or {"action": "start"|"end"}"#,
            ))
        }
    };
    s.set_outage(down);
    ok(json!({"down": down}))
}

async fn pause(State(s): S) -> R {
    s.pause();
    ok(json!({"paused": true}))
}

async fn resume(State(s): S) -> R {
    s.resume();
    ok(json!({"paused": false}))
}

#[derive(Default, Deserialize)]
struct SilentBody {
    silent: bool,
}

async fn silent(State(s): S, body: Bytes) -> R {
    let b: SilentBody = body_json(&body)?;
    s.set_silent(b.silent);
    ok(json!({"silent": b.silent}))
}

async fn wait_idle(State(s): S, RawQuery(q): RawQuery) -> R {
    let p = Params::parse(q)?;
    let ms = p
        .get("timeout_ms")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid("timeout_ms must be an integer"))
        })
        .transpose()?
        .unwrap_or(30_000);
    let idle = s.wait_idle(Duration::from_millis(ms)).await;
    ok(json!({"idle": idle}))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DestinationBody {
    url: String,
    compressed: bool,
    trigger_types: Option<Vec<String>>,
}

async fn add_destination(State(s): S, body: Bytes) -> R {
    let b: DestinationBody = body_json(&body)?;
    if reqwest::Url::parse(&b.url).is_err() {
        return Err(ApiError::invalid("url must be an absolute URL"));
    }
    let triggers = b.trigger_types.unwrap_or_else(|| vec!["*".to_string()]);
    let (id, secret) = webhooks::register(&s, &b.url, triggers, b.compressed, None, vec![]);
    ok(json!({"id": id, "webhook_secret": secret}))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct GrantBody {
    /// `google` (default) or `icloud`.
    provider: Option<String>,
}

async fn add_grant(State(s): S, body: Bytes) -> R {
    let b: GrantBody = body_json(&body)?;
    let provider = b.provider.unwrap_or_else(|| "google".to_string());
    let id = s.mutate(|m, now, out| m.add_grant_with(&provider, now, out));
    ok(json!({"grant_id": id}))
}

async fn destination_status(State(s): S, Path(id): Path<String>) -> R {
    let info = webhooks::info(&s, &id)
        .ok_or_else(|| ApiError::not_found(format!("destination {id} not found")))?;
    ok(json!({"id": id, "status": info.status}))
}

#[derive(Default, Deserialize)]
struct StatusBody {
    status: String,
}

/// `{"status": "active"|"pause"|"failing"|"failed"}`: `failed` at once, as after 72 h of failing.
async fn set_destination_status(State(s): S, Path(id): Path<String>, body: Bytes) -> R {
    let b: StatusBody = body_json(&body)?;
    if !webhooks::STATUSES.contains(&b.status.as_str()) {
        return Err(ApiError::invalid(
            "status must be active, pause, failing or failed",
        ));
    }
    if !webhooks::set_status(&s, &id, &b.status) {
        return Err(ApiError::not_found(format!("destination {id} not found")));
    }
    destination_status(State(s), Path(id)).await
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct NotificationBody {
    #[serde(rename = "type")]
    kind: String,
    grant_id: Option<String>,
    /// Tracking and deliverability triggers: the message they are about.
    message_id: Option<String>,
    /// Any other trigger: `data.object` as given (default `{"grant_id": ...}`).
    object: Option<Value>,
}

/// `{"type", "grant_id"?, "message_id"?, "object"?}`: a tracking or deliverability notification
/// shaped as Nylas sends it (`emit_tracking`), or any other type with `object` as given
/// (`emit_notification`). The grant defaults to the first one; the message to its newest.
async fn emit_notification(State(s): S, body: Bytes) -> R {
    let b: NotificationBody = body_json(&body)?;
    if b.kind.is_empty() {
        return Err(ApiError::invalid("type is required"));
    }
    let grant = match b.grant_id {
        Some(g) => g,
        None => crate::lock(&s.model)
            .grant_ids()
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("no grant"))?,
    };
    let id = if crate::tracking::is_tracking(&b.kind) {
        let message = b.message_id.unwrap_or_else(|| {
            crate::lock(&s.model)
                .grants
                .get(&grant)
                .and_then(|g| g.message_order.iter().next().map(|(_, id)| id.0.clone()))
                .unwrap_or_else(|| "emulated-tracked-message".to_string())
        });
        s.emit_tracking(&b.kind, &grant, &message)
    } else {
        let object = b.object.unwrap_or_else(|| json!({"grant_id": grant}));
        s.emit_notification(&b.kind, &grant, object)
    };
    ok(json!({"id": id, "type": b.kind, "grant_id": grant}))
}

/// An ordinary grant update: `grant.updated` with code 25014.
async fn update_grant(State(s): S, Path(grant_id): Path<String>) -> R {
    grant_exists(&s, &grant_id)?;
    s.mutate(|m, now, out| m.update_grant(&grant_id, now, out));
    ok(json!({"grant_id": grant_id, "updated": true}))
}

fn grant_exists(s: &Shared, grant_id: &str) -> Result<(), ApiError> {
    if crate::lock(&s.model).grants.contains_key(grant_id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("grant {grant_id} not found")))
    }
}

async fn expire_grant(State(s): S, Path(grant_id): Path<String>) -> R {
    grant_exists(&s, &grant_id)?;
    s.mutate(|m, now, out| m.expire_grant(&grant_id, now, out));
    ok(json!({"grant_id": grant_id, "grant_status": "invalid"}))
}

async fn reauth_grant(State(s): S, Path(grant_id): Path<String>) -> R {
    grant_exists(&s, &grant_id)?;
    let r = s.mutate(|m, now, out| m.reauthenticate_grant(&grant_id, now, out));
    let replayed = r.replayed;
    s.record_reauth(r);
    ok(json!({"grant_id": grant_id, "grant_status": "valid", "replayed": replayed}))
}

async fn delete_grant(State(s): S, Path(grant_id): Path<String>) -> R {
    grant_exists(&s, &grant_id)?;
    let discarded = s.mutate(|m, now, out| m.delete_grant(&grant_id, now, out));
    s.record_reauth(Reauth {
        replayed: 0,
        discarded,
    });
    ok(json!({"grant_id": grant_id, "deleted": true}))
}

async fn create_message(State(s): S, Path(grant_id): Path<String>, body: Bytes) -> R {
    let spec: MessageSpec = body_json(&body)?;
    found(
        s.mutate(|m, now, out| m.create_message(&grant_id, spec, now, out)),
        "grant",
    )
}

async fn update_message(
    State(s): S,
    Path((grant_id, message_id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let change: MessageChange = body_json(&body)?;
    found(
        s.mutate(|m, now, out| m.update_message(&grant_id, &message_id, change, now, out)),
        "message",
    )
}

async fn delete_message(State(s): S, Path((grant_id, message_id)): Path<(String, String)>) -> R {
    let deleted = s.mutate(|m, now, out| m.delete_message(&grant_id, &message_id, now, out));
    found(deleted.then(|| json!({"deleted": true})), "message")
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct EventBody {
    calendar_id: Option<String>,
    /// With `start_time`, the event is exactly `EventSpec` (`title`, `start_time`, `end_time`,
    /// `recurrence`); without, a generated event in the next two weeks.
    #[serde(flatten)]
    spec: crate::calendar::EventSpec,
}

async fn create_event(State(s): S, Path(grant_id): Path<String>, body: Bytes) -> R {
    let b: EventBody = body_json(&body)?;
    let calendar = match b.calendar_id {
        Some(c) => Some(c),
        None => crate::lock(&s.model)
            .grants
            .get(&grant_id)
            .and_then(|g| g.primary_calendar_id()),
    };
    let Some(calendar) = calendar else {
        return Err(ApiError::not_found("grant not found"));
    };
    let exact = serde_json::from_slice::<Value>(&body)
        .is_ok_and(|v| v.get("start_time").is_some_and(|t| !t.is_null()));
    if exact {
        let spec = b.spec;
        return match s
            .mutate(|m, now, out| m.create_event_spec(&grant_id, &calendar, spec, now, out))
        {
            Some(v) => ok(v),
            None => Err(ApiError::invalid(
                "unknown grant or calendar, end_time before start_time, or unsupported recurrence",
            )),
        };
    }
    found(
        s.mutate(|m, now, out| m.create_event(&grant_id, &calendar, now, out)),
        "grant or calendar",
    )
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct OccurrenceBody {
    original_start: i64,
    start_time: i64,
    end_time: i64,
}

async fn move_occurrence(
    State(s): S,
    Path((grant_id, master_id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let b: OccurrenceBody = body_json(&body)?;
    found(
        s.mutate(|m, now, out| {
            m.move_occurrence(
                &grant_id,
                &master_id,
                b.original_start,
                b.start_time,
                b.end_time,
                now,
                out,
            )
        }),
        "occurrence",
    )
}

async fn cancel_occurrence(
    State(s): S,
    Path((grant_id, master_id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let b: OccurrenceBody = body_json(&body)?;
    let done = s.mutate(|m, now, out| {
        m.cancel_occurrence(&grant_id, &master_id, b.original_start, now, out)
    });
    found(done.then(|| json!({"cancelled": true})), "occurrence")
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CalendarBody {
    name: String,
}

async fn create_calendar(State(s): S, Path(grant_id): Path<String>, body: Bytes) -> R {
    let b: CalendarBody = body_json(&body)?;
    found(
        s.mutate(|m, now, out| m.create_calendar(&grant_id, &b.name, now, out)),
        "grant",
    )
}

async fn update_calendar(
    State(s): S,
    Path((grant_id, calendar_id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let b: CalendarBody = body_json(&body)?;
    found(
        s.mutate(|m, now, out| m.update_calendar(&grant_id, &calendar_id, &b.name, now, out)),
        "calendar",
    )
}

async fn delete_calendar(State(s): S, Path((grant_id, calendar_id)): Path<(String, String)>) -> R {
    let deleted = s.mutate(|m, now, out| m.delete_calendar(&grant_id, &calendar_id, now, out));
    found(
        deleted.then(|| json!({"deleted": true})),
        "secondary calendar",
    )
}

async fn update_event(
    State(s): S,
    Path((grant_id, event_id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let change: EventChange = body_json(&body)?;
    found(
        s.mutate(|m, now, out| m.update_event(&grant_id, &event_id, change, now, out)),
        "event",
    )
}

async fn delete_event(State(s): S, Path((grant_id, event_id)): Path<(String, String)>) -> R {
    let deleted = s.mutate(|m, now, out| m.delete_event(&grant_id, &event_id, now, out));
    found(deleted.then(|| json!({"deleted": true})), "event")
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct FolderBody {
    name: String,
}

/// 400 for a name Nylas refuses (empty or over 1024 characters; Gmail also refuses a taken one).
fn check_folder_name(
    s: &Shared,
    grant_id: &str,
    folder_id: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let model = crate::lock(&s.model);
    let Some(g) = model.grants.get(grant_id) else {
        return Err(ApiError::not_found("grant not found"));
    };
    if name.is_empty() || name.chars().count() > 1024 {
        return Err(ApiError::invalid("name must be 1 to 1024 characters"));
    }
    if g.folders
        .values()
        .any(|f| f.name.eq_ignore_ascii_case(name) && Some(f.id.as_str()) != folder_id)
    {
        return Err(ApiError::invalid("a folder with this name exists"));
    }
    Ok(())
}

async fn create_folder(State(s): S, Path(grant_id): Path<String>, body: Bytes) -> R {
    let b: FolderBody = body_json(&body)?;
    check_folder_name(&s, &grant_id, None, &b.name)?;
    found(
        s.mutate(|m, now, out| m.create_folder(&grant_id, &b.name, now, out)),
        "grant",
    )
}

async fn update_folder(
    State(s): S,
    Path((grant_id, folder_id)): Path<(String, String)>,
    body: Bytes,
) -> R {
    let b: FolderBody = body_json(&body)?;
    check_folder_name(&s, &grant_id, Some(&folder_id), &b.name)?;
    found(
        s.mutate(|m, now, out| m.update_folder(&grant_id, &folder_id, &b.name, now, out)),
        "user folder",
    )
}

async fn delete_folder(State(s): S, Path((grant_id, folder_id)): Path<(String, String)>) -> R {
    let deleted = s.mutate(|m, now, out| m.delete_folder(&grant_id, &folder_id, now, out));
    found(deleted.then(|| json!({"deleted": true})), "user folder")
}
