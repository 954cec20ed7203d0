//! The `/v3` REST API: auth, rate limits, injected faults, and the handlers, each answering in
//! Nylas's shapes (list envelopes, `{request_id, error: {type, message}}` errors).

use std::cmp::Reverse;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::model::{to_value, Grant, GrantStatus};
use crate::{control, lock, webhooks, Shared};

type S = State<Arc<Shared>>;
type ApiResult = Result<Json<Value>, ApiError>;

/// A Nylas-shaped error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// `error.provider_error`: present when the error was passed on from the provider.
    provider_error: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            provider_error: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// A 429 from Nylas's own limiter: `nylas_rate_limit_exceeded`, no `provider_error`.
    fn rate_limited(message: &str, retry_after: Option<u64>) -> Self {
        ApiError {
            retry_after,
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "nylas_rate_limit_exceeded",
                message,
            )
        }
    }

    /// A 429 passed on from the provider: `rate_limit_error` with a `provider_error`.
    fn provider_rate_limited(retry_after: Option<u64>) -> Self {
        ApiError {
            retry_after,
            provider_error: Some(json!({
                "code": 429,
                "message": "Rate Limit Exceeded (injected fault)",
            })),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "Too many requests, please try again shortly.",
            )
        }
    }

    pub(crate) fn into_response_with(self, request_id: String) -> Response {
        let mut error = json!({"type": self.kind, "message": self.message});
        if let (Some(p), Value::Object(o)) = (self.provider_error, &mut error) {
            o.insert("provider_error".into(), p);
        }
        let body = json!({"request_id": request_id, "error": error});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_with(crate::request_id())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let v3 = Router::new()
        .route("/v3/grants", get(list_grants))
        .route("/v3/grants/{grant_id}", get(get_grant))
        .route("/v3/grants/{grant_id}/messages", get(list_messages))
        .route(
            "/v3/grants/{grant_id}/messages/{message_id}",
            get(get_message),
        )
        .route("/v3/grants/{grant_id}/calendars", get(list_calendars))
        .route(
            "/v3/grants/{grant_id}/calendars/{calendar_id}",
            get(get_calendar),
        )
        .route("/v3/grants/{grant_id}/folders", get(list_folders))
        .route("/v3/grants/{grant_id}/folders/{folder_id}", get(get_folder))
        .route("/v3/grants/{grant_id}/events", get(list_events))
        .route("/v3/grants/{grant_id}/events/import", get(import_events))
        .route("/v3/grants/{grant_id}/events/{event_id}", get(get_event))
        .route("/v3/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/v3/webhooks/{webhook_id}",
            get(get_webhook).put(update_webhook).delete(delete_webhook),
        )
        .route(
            "/v3/webhooks/rotate-secret/{webhook_id}",
            post(rotate_secret),
        )
        .route("/v3/webhooks/send-test-event", post(send_test_event))
        .route_layer(middleware::from_fn_with_state(shared.clone(), v3_gate));
    Router::new()
        .merge(v3)
        .merge(control::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn not_found(State(s): S) -> Response {
    ApiError::not_found("no such endpoint").into_response_with(s.request_id())
}

async fn method_not_allowed(State(s): S) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method not allowed on this endpoint",
    )
    .into_response_with(s.request_id())
}

/// The grant a `/v3/grants/{id}/...` path names.
fn grant_of_path(path: &str) -> Option<String> {
    let mut parts = path.split('/').skip(1);
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v3"), Some("grants"), Some(id)) if !id.is_empty() => Some(id.to_string()),
        _ => None,
    }
}

/// Everything in front of the handlers: auth, rate limits, injected faults, slow responses,
/// and the request counters.
async fn v3_gate(State(s): S, req: Request, next: Next) -> Response {
    let endpoint = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string())
    );
    let grant = grant_of_path(req.uri().path());
    let gzip_ok = accepts_gzip(&req);
    let resp = match gate_checks(&s, &req, grant.as_deref()) {
        Err(e) => e.into_response_with(s.request_id()),
        Ok(()) => {
            let faults = s.faults();
            let cap = faults.request_timeout();
            let slow = faults.slow_response.unwrap_or_default();
            if slow >= cap {
                // Nylas gives up on a request after 90 s: 504 `provider_error` at the cap.
                tokio::time::sleep(cap).await;
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "provider_error",
                    "Provider request timed out.",
                )
                .into_response_with(s.request_id())
            } else {
                if !slow.is_zero() {
                    tokio::time::sleep(slow).await;
                }
                let issued = s.clock.now();
                // A slow window holds the computed answer back: it shows the state when the
                // request arrived, not when the caller gets it.
                let held = faults.held_back(issued);
                let answer = TOKEN_ISSUED_AT.scope(issued, next.run(req)).await;
                if held.is_zero() {
                    answer
                } else if slow + held >= cap {
                    lock(&s.stats).held_back += 1;
                    tokio::time::sleep(cap.saturating_sub(slow)).await;
                    ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "provider_error",
                        "Provider request timed out.",
                    )
                    .into_response_with(s.request_id())
                } else {
                    lock(&s.stats).held_back += 1;
                    tokio::time::sleep(held).await;
                    answer
                }
            }
        }
    };
    let status = resp.status().as_u16();
    lock(&s.stats).record_api(endpoint, grant, status);
    if gzip_ok {
        let (resp, saved) = gzip_response(resp).await;
        if let Some(saved) = saved {
            let mut stats = lock(&s.stats);
            stats.gzipped += 1;
            stats.gzip_bytes_saved += saved;
        }
        resp
    } else {
        resp
    }
}

/// Responses at or below this size are sent uncompressed even when gzip is accepted.
const GZIP_MIN_BYTES: usize = 200;

fn accepts_gzip(req: &Request) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// `Content-Encoding: gzip` for a body above `GZIP_MIN_BYTES`, as Nylas does when the request
/// sends `Accept-Encoding: gzip`.
/// The answer, compressed when it is worth it, and the bytes compression saved (if it was).
async fn gzip_response(resp: Response) -> (Response, Option<u64>) {
    if resp.headers().contains_key(header::CONTENT_ENCODING) {
        return (resp, None);
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if bytes.len() <= GZIP_MIN_BYTES {
        return (Response::from_parts(parts, Body::from(bytes)), None);
    }
    let compressed = crate::delivery::gzip(&bytes);
    let saved = bytes.len().saturating_sub(compressed.len()) as u64;
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(header::CONTENT_LENGTH);
    (
        Response::from_parts(parts, Body::from(compressed)),
        Some(saved),
    )
}

tokio::task_local! {
    /// Emulated time at which the current request's page tokens are issued.
    static TOKEN_ISSUED_AT: i64;
}

fn gate_checks(s: &Shared, req: &Request, grant: Option<&str>) -> Result<(), ApiError> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .is_some_and(|token| token == s.config.api_key);
    if !authorized {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized: a valid API key is required as 'Authorization: Bearer <key>'",
        ));
    }
    let faults = s.faults();
    let (key, limit) = match grant {
        // `/v3/grants/{id}` itself is a Grants endpoint, limited per application.
        Some(g) if req.uri().path().trim_end_matches('/').matches('/').count() > 3 => {
            (format!("grant:{g}"), s.config.rate_limit_per_grant)
        }
        _ => (
            "application".to_string(),
            s.config.rate_limit_per_application,
        ),
    };
    if !within_rate_limit(s, key, limit) {
        return Err(ApiError::rate_limited(
            "Too many requests: the rate limit was exceeded",
            faults.retry_after_secs,
        ));
    }
    let now = s.clock.now();
    page_token_fresh(s, req, &faults, now)?;
    let (storm, outage5xx, roll429, roll5xx) = {
        let mut rng = lock(&s.fault_rng);
        (
            faults.api_429_windows.iter().any(|w| w.contains(now)),
            faults.api_5xx_windows.iter().any(|w| w.contains(now)),
            rng.chance(faults.api_429_probability),
            rng.chance(faults.api_5xx_probability),
        )
    };
    if storm || roll429 {
        return Err(ApiError::provider_rate_limited(faults.retry_after_secs));
    }
    if outage5xx || roll5xx {
        let choices = [
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            (StatusCode::BAD_GATEWAY, "provider_error"),
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            (StatusCode::GATEWAY_TIMEOUT, "provider_error"),
        ];
        let (status, kind) = choices[lock(&s.fault_rng).below(choices.len())];
        return Err(ApiError::new(status, kind, "Server error (injected fault)"));
    }
    Ok(())
}

/// The page-token expiry faults: a token older than `page_token_max_age_secs` (emulated), or
/// one that loses the `page_token_expiry_probability` roll, is refused with 400.
fn page_token_fresh(
    s: &Shared,
    req: &Request,
    faults: &crate::faults::Faults,
    now: i64,
) -> Result<(), ApiError> {
    if faults.page_token_max_age_secs.is_none() && faults.page_token_expiry_probability <= 0.0 {
        return Ok(());
    }
    let Ok(p) = Params::parse(req.uri().query().map(str::to_string)) else {
        return Ok(());
    };
    let Some(token) = p.get("page_token") else {
        return Ok(());
    };
    let too_old = faults
        .page_token_max_age_secs
        .zip(token_issued_at(token))
        .is_some_and(|(max, issued)| now - issued > max as i64);
    if too_old || lock(&s.fault_rng).chance(faults.page_token_expiry_probability) {
        return Err(ApiError::invalid(
            "page_token has expired or is invalid: restart the listing without it",
        ));
    }
    Ok(())
}

/// A fixed one-second window per key.
fn within_rate_limit(s: &Shared, key: String, limit: u32) -> bool {
    let now = Instant::now();
    let mut windows = lock(&s.rate_windows);
    let w = windows.entry(key).or_insert((now, 0));
    if now.duration_since(w.0) >= Duration::from_secs(1) {
        *w = (now, 0);
    }
    w.1 += 1;
    w.1 <= limit
}

/// Query parameters, parsed leniently into strings and strictly on use.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        let raw = raw.unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
            .map(Params)
            .map_err(|_| ApiError::invalid("malformed query string"))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(format!(
                "{name} must be true or false, not '{other}'"
            ))),
        }
    }

    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::invalid(format!("{name} must be an integer")))
            })
            .transpose()
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.int("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
            Some(_) => Err(ApiError::invalid(format!(
                "limit must be between 1 and {max}"
            ))),
        }
    }

    fn select(&self) -> Option<Vec<String>> {
        self.get("select").map(|s| {
            s.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        })
    }
}

fn apply_select(v: Value, select: &Option<Vec<String>>) -> Value {
    match (select, v) {
        (Some(fields), Value::Object(mut o)) => {
            let mut picked = Map::new();
            for f in fields {
                if let Some(x) = o.remove(f) {
                    picked.insert(f.clone(), x);
                }
            }
            Value::Object(picked)
        }
        (_, v) => v,
    }
}

/// Page tokens carry the sort key of the last item returned, so pages never shift when items
/// are inserted or deleted between requests, and (after a `-`) the emulated time they were
/// issued, for the expiry fault.
fn encode_token(kind: &str, key: &str) -> String {
    let issued = TOKEN_ISSUED_AT.try_with(|t| *t).unwrap_or(0);
    format!("{}-{issued}", hex::encode(format!("{kind}:{key}")))
}

fn token_issued_at(token: &str) -> Option<i64> {
    token.rsplit_once('-')?.1.parse().ok()
}

fn decode_token(kind: &str, token: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid("invalid page_token");
    let token = token.split_once('-').map_or(token, |(t, _)| t);
    let raw = hex::decode(token).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.strip_prefix(&format!("{kind}:"))
        .map(str::to_string)
        .ok_or_else(bad)
}

fn list_envelope(s: &Shared, data: Vec<Value>, next_cursor: Option<String>) -> Json<Value> {
    Json(json!({"request_id": s.request_id(), "data": data, "next_cursor": next_cursor}))
}

fn object_envelope(s: &Shared, data: Value) -> Json<Value> {
    Json(json!({"request_id": s.request_id(), "data": data}))
}

/// The grant, if the caller may read its data: 404 when unknown or deleted, 401 when expired.
fn readable_grant<'a>(
    model: &'a crate::model::Model,
    grant_id: &str,
) -> Result<&'a Grant, ApiError> {
    let g = model
        .grants
        .get(grant_id)
        .ok_or_else(|| ApiError::not_found(format!("grant {grant_id} not found")))?;
    if g.status == GrantStatus::Expired {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("grant {grant_id} is expired: the user must re-authenticate"),
        ));
    }
    Ok(g)
}

async fn list_grants(State(s): S, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q)?;
    let limit = p.limit(10, 200)?;
    let offset = p.int("offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    let status = p.get("grant_status");
    if let Some(st) = status {
        if st != "valid" && st != "invalid" {
            return Err(ApiError::invalid("grant_status must be valid or invalid"));
        }
    }
    let sort_by = p.get("sort_by").unwrap_or("created_at");
    if sort_by != "created_at" && sort_by != "updated_at" {
        return Err(ApiError::invalid(
            "sort_by must be created_at or updated_at",
        ));
    }
    let ascending = match p.get("order_by").unwrap_or("desc") {
        "asc" => true,
        "desc" => false,
        _ => return Err(ApiError::invalid("order_by must be asc or desc")),
    };
    let model = lock(&s.model);
    let mut grants: Vec<&Grant> = model
        .grants
        .values()
        .filter(|g| status.is_none_or(|st| st == g.status_str()))
        .collect();
    grants.sort_by_key(|g| {
        let t = if sort_by == "updated_at" {
            g.updated_at
        } else {
            g.created_at
        };
        (t, g.seq)
    });
    if !ascending {
        grants.reverse();
    }
    let data: Vec<Value> = grants
        .into_iter()
        .skip(offset as usize)
        .take(limit)
        .map(Grant::api_object)
        .collect();
    Ok(Json(json!({
        "request_id": s.request_id(), "data": data, "limit": limit, "offset": offset,
    })))
}

async fn get_grant(State(s): S, Path(grant_id): Path<String>) -> ApiResult {
    let model = lock(&s.model);
    let g = model
        .grants
        .get(&grant_id)
        .ok_or_else(|| ApiError::not_found(format!("grant {grant_id} not found")))?;
    Ok(object_envelope(&s, g.api_object()))
}

async fn list_messages(
    State(s): S,
    Path(grant_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    let limit = p.limit(50, 200)?;
    let select = p.select();
    let after = p.int("received_after")?;
    let before = p.int("received_before")?;
    let unread = p.bool("unread")?;
    let starred = p.bool("starred")?;
    let folder = p.get("in");
    let thread = p.get("thread_id");
    let start = match p.get("page_token") {
        None => Bound::Unbounded,
        Some(t) => {
            let key = decode_token("m", t)?;
            let (date, id) = key
                .split_once(':')
                .and_then(|(d, id)| Some((d.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| ApiError::invalid("invalid page_token"))?;
            Bound::Excluded((Reverse(date), Reverse(id)))
        }
    };
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let mut data = Vec::new();
    let mut last_key = None;
    let mut more = false;
    for (Reverse(date), Reverse(id)) in g.message_order.range((start, Bound::Unbounded)) {
        // Newest first: past `received_after`, nothing further can match.
        if after.is_some_and(|a| *date <= a) {
            break;
        }
        let Some(m) = g.messages.get(id) else {
            continue;
        };
        let keep = before.is_none_or(|b| m.date < b)
            && unread.is_none_or(|u| m.unread == u)
            && starred.is_none_or(|st| m.starred == st)
            && folder.is_none_or(|f| m.folders.iter().any(|x| x == f))
            && thread.is_none_or(|t| m.thread_id == t);
        if !keep {
            continue;
        }
        if data.len() == limit {
            more = true;
            break;
        }
        data.push(apply_select(to_value(m), &select));
        last_key = Some(format!("{date}:{id}"));
    }
    let next = if more {
        last_key.map(|k| encode_token("m", &k))
    } else {
        None
    };
    Ok(list_envelope(&s, data, next))
}

async fn get_message(
    State(s): S,
    Path((grant_id, message_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let m = g
        .messages
        .get(&message_id)
        .ok_or_else(|| ApiError::not_found(format!("message {message_id} not found")))?;
    Ok(object_envelope(&s, apply_select(to_value(m), &p.select())))
}

async fn list_calendars(
    State(s): S,
    Path(grant_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    let limit = p.limit(50, 200)?;
    let select = p.select();
    let start = match p.get("page_token") {
        None => Bound::Unbounded,
        Some(t) => Bound::Excluded(decode_token("c", t)?),
    };
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let mut items = g.calendars.range::<String, _>((start, Bound::Unbounded));
    let page: Vec<_> = items.by_ref().take(limit).collect();
    let next = match (items.next(), page.last()) {
        (Some(_), Some((id, _))) => Some(encode_token("c", id)),
        _ => None,
    };
    let data = page
        .into_iter()
        .map(|(_, c)| apply_select(to_value(c), &select))
        .collect();
    Ok(list_envelope(&s, data, next))
}

async fn get_calendar(
    State(s): S,
    Path((grant_id, calendar_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let c = g
        .calendars
        .get(&calendar_id)
        .ok_or_else(|| ApiError::not_found(format!("calendar {calendar_id} not found")))?;
    Ok(object_envelope(&s, apply_select(to_value(c), &p.select())))
}

async fn list_folders(
    State(s): S,
    Path(grant_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    let limit = p.limit(50, 200)?;
    let select = p.select();
    let start = match p.get("page_token") {
        None => Bound::Unbounded,
        Some(t) => Bound::Excluded(decode_token("f", t)?),
    };
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let mut items = g.folders.range::<String, _>((start, Bound::Unbounded));
    let page: Vec<_> = items.by_ref().take(limit).collect();
    let next = match (items.next(), page.last()) {
        (Some(_), Some((id, _))) => Some(encode_token("f", id)),
        _ => None,
    };
    let data = page
        .into_iter()
        .map(|(_, f)| apply_select(to_value(f), &select))
        .collect();
    Ok(list_envelope(&s, data, next))
}

async fn get_folder(
    State(s): S,
    Path((grant_id, folder_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let f = g
        .folders
        .get(&folder_id)
        .ok_or_else(|| ApiError::not_found(format!("folder {folder_id} not found")))?;
    Ok(object_envelope(&s, apply_select(to_value(f), &p.select())))
}

/// The `[start, end)` window of an events listing, with Nylas's defaults: `start` = the time of
/// the request, `end` = one month after `start`. 400 when `start` is after `end`, and on iCloud
/// when the window is longer than a year.
fn event_window(p: &Params, g: &Grant, now: i64) -> Result<(i64, i64), ApiError> {
    let start = p.int("start")?.unwrap_or(now);
    let end = p
        .int("end")?
        .unwrap_or(start + crate::calendar::DEFAULT_WINDOW_SECS);
    if start > end {
        return Err(ApiError::invalid("start cannot be later than end"));
    }
    if g.is_icloud() && end - start > crate::calendar::ICLOUD_MAX_WINDOW_SECS {
        return Err(ApiError::invalid(
            "the difference between start and end can't be greater than one year for iCloud accounts",
        ));
    }
    Ok((start, end))
}

fn listed_calendar(p: &Params, g: &Grant) -> Result<String, ApiError> {
    let calendar_id = p
        .get("calendar_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::invalid("calendar_id is required"))?;
    g.resolve_calendar(calendar_id)
        .ok_or_else(|| ApiError::not_found(format!("calendar {calendar_id} not found")))
}

/// One page of `items` (ordered by id) after the page token's id.
fn event_page(
    s: &Shared,
    items: Vec<crate::model::Event>,
    kind: &str,
    token: Option<&str>,
    limit: usize,
    select: &Option<Vec<String>>,
) -> ApiResult {
    let after = token.map(|t| decode_token(kind, t)).transpose()?;
    let mut rest = items
        .into_iter()
        .filter(|e| after.as_ref().is_none_or(|a| e.id > *a));
    let page: Vec<_> = rest.by_ref().take(limit).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some(last)) => Some(encode_token(kind, &last.id)),
        _ => None,
    };
    let data = page
        .iter()
        .map(|e| apply_select(to_value(e), select))
        .collect();
    Ok(list_envelope(s, data, next))
}

async fn list_events(
    State(s): S,
    Path(grant_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    if p.get("calendar_id").is_none_or(str::is_empty) {
        return Err(ApiError::invalid("calendar_id is required"));
    }
    let limit = p.limit(50, 200)?;
    let select = p.select();
    let updated_after = p.int("updated_after")?;
    let updated_before = p.int("updated_before")?;
    let show_cancelled = p.bool("show_cancelled")?.unwrap_or(false);
    let expand = p.bool("expand_recurring")?.unwrap_or(true);
    let now = s.clock.now();
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let calendar_id = listed_calendar(&p, g)?;
    let (from, to) = event_window(&p, g, now)?;
    let icloud = g.is_icloud();
    let query = crate::calendar::EventQuery {
        calendar_id: &calendar_id,
        from,
        to,
        expand,
        // Not supported on iCloud: ignored there.
        show_cancelled: show_cancelled && !icloud,
        import: false,
        updated_after,
        updated_before,
        master_event_id: p.get("master_event_id").filter(|_| !icloud),
    };
    event_page(
        &s,
        g.query_events(&query),
        "e",
        p.get("page_token"),
        limit,
        &select,
    )
}

/// `GET /v3/grants/{id}/events/import`: masters, exceptions and single events in the window,
/// unexpanded. `max_results` (the spec names the query parameter `limit`; both are read)
/// defaults to 50, at most 500.
async fn import_events(
    State(s): S,
    Path(grant_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    if p.get("calendar_id").is_none_or(str::is_empty) {
        return Err(ApiError::invalid("calendar_id is required"));
    }
    let limit = match p.int("max_results")? {
        Some(n) if (1..=500).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::invalid("max_results must be between 1 and 500")),
        None => p.limit(50, 500)?,
    };
    let select = p.select();
    let now = s.clock.now();
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let calendar_id = listed_calendar(&p, g)?;
    let (from, to) = event_window(&p, g, now)?;
    let query = crate::calendar::EventQuery {
        calendar_id: &calendar_id,
        from,
        to,
        expand: false,
        show_cancelled: false,
        import: true,
        updated_after: None,
        updated_before: None,
        master_event_id: None,
    };
    event_page(
        &s,
        g.query_events(&query),
        "i",
        p.get("page_token"),
        limit,
        &select,
    )
}

async fn get_event(
    State(s): S,
    Path((grant_id, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q)?;
    if p.get("calendar_id").is_none_or(str::is_empty) {
        return Err(ApiError::invalid("calendar_id is required"));
    }
    let model = lock(&s.model);
    let g = readable_grant(&model, &grant_id)?;
    let calendar_id = p
        .get("calendar_id")
        .and_then(|c| g.resolve_calendar(c))
        .unwrap_or_default();
    // Single events, masters, exceptions and (expanded) occurrences alike.
    let e = g
        .find_event(&event_id)
        .filter(|e| e.calendar_id == calendar_id)
        .ok_or_else(|| ApiError::not_found(format!("event {event_id} not found")))?;
    Ok(object_envelope(&s, apply_select(to_value(&e), &p.select())))
}

async fn list_webhooks(State(s): S) -> ApiResult {
    let data = webhooks::list(&s).iter().map(to_value).collect();
    Ok(list_envelope(&s, data, None))
}

async fn get_webhook(State(s): S, Path(id): Path<String>) -> ApiResult {
    let info = webhooks::info(&s, &id)
        .ok_or_else(|| ApiError::not_found(format!("webhook {id} not found")))?;
    Ok(object_envelope(&s, to_value(&info)))
}

/// `PUT /v3/webhooks/{id}`: only the fields given change; `status` `active` reactivates (a
/// `failed` destination included), `pause` stops every delivery until reactivated.
async fn update_webhook(State(s): S, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("request body must be a JSON object"))?;
    let Value::Object(o) = v else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    let present = |k: &str| o.get(k).filter(|v| !v.is_null());
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match present(k) {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::invalid(format!("{k} must be a string"))),
        }
    };
    let mut u = webhooks::Update {
        description: text("description")?,
        webhook_url: text("webhook_url")?,
        status: text("status")?,
        ..webhooks::Update::default()
    };
    if let Some(url) = &u.webhook_url {
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| ApiError::invalid("webhook_url must be an absolute http(s) URL"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(ApiError::invalid(
                "webhook_url must be an absolute http(s) URL",
            ));
        }
    }
    if let Some(st) = &u.status {
        if st != "active" && st != "pause" {
            return Err(ApiError::invalid("status must be active or pause"));
        }
    }
    if let Some(t) = present("trigger_types") {
        let t = string_list(Some(t), "trigger_types")?;
        if t.is_empty() {
            return Err(ApiError::invalid("trigger_types must not be empty"));
        }
        u.trigger_types = Some(t);
    }
    if let Some(e) = present("notification_email_addresses") {
        u.notification_email_addresses =
            Some(string_list(Some(e), "notification_email_addresses")?);
    }
    u.compressed_delivery = match present("compressed_delivery") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::invalid("compressed_delivery must be a boolean")),
    };
    let info = webhooks::update(&s, &id, u)
        .ok_or_else(|| ApiError::not_found(format!("webhook {id} not found")))?;
    Ok(object_envelope(&s, to_value(&info)))
}

async fn delete_webhook(State(s): S, Path(id): Path<String>) -> ApiResult {
    if !webhooks::delete(&s, &id) {
        return Err(ApiError::not_found(format!("webhook {id} not found")));
    }
    Ok(object_envelope(&s, json!({"status": "success"})))
}

async fn rotate_secret(State(s): S, Path(id): Path<String>) -> ApiResult {
    let secret = webhooks::rotate(&s, &id)
        .ok_or_else(|| ApiError::not_found(format!("webhook {id} not found")))?;
    let mut data = webhooks::info(&s, &id)
        .map(|i| to_value(&i))
        .unwrap_or(json!({}));
    if let Value::Object(o) = &mut data {
        o.insert("webhook_secret".into(), Value::String(secret));
    }
    Ok(object_envelope(&s, data))
}

fn string_list(v: Option<&Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid(format!("{field} must be an array of strings"))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(format!(
            "{field} must be an array of strings"
        ))),
    }
}

async fn create_webhook(State(s): S, body: Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("request body must be a JSON object"))?;
    let Value::Object(o) = v else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    let url = o
        .get("webhook_url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("webhook_url is required"))?
        .to_string();
    let parsed = reqwest::Url::parse(&url)
        .map_err(|_| ApiError::invalid("webhook_url must be an absolute http(s) URL"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(ApiError::invalid(
            "webhook_url must be an absolute http(s) URL",
        ));
    }
    let triggers = string_list(o.get("trigger_types"), "trigger_types")?;
    if triggers.is_empty() {
        return Err(ApiError::invalid(
            "trigger_types is required and must not be empty",
        ));
    }
    let emails = string_list(
        o.get("notification_email_addresses"),
        "notification_email_addresses",
    )?;
    let description = o
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let compressed = match o.get("compressed_delivery") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("compressed_delivery must be a boolean")),
    };
    webhooks::challenge(&s, &url)
        .await
        .map_err(ApiError::invalid)?;
    let (id, secret) = webhooks::register(&s, &url, triggers, compressed, description, emails);
    let mut data = webhooks::info(&s, &id)
        .map(|i| to_value(&i))
        .unwrap_or(json!({}));
    if let Value::Object(o) = &mut data {
        o.insert("webhook_secret".into(), Value::String(secret));
    }
    Ok(object_envelope(&s, data))
}

/// The secret Nylas signs `send-test-event` notifications with.
const MOCK_WEBHOOK_SECRET: &str = "mock-webhook-secret";

/// `POST /v3/webhooks/send-test-event`: one mock notification of `trigger_type`, signed with
/// `mock-webhook-secret`, sent once to `webhook_url` (no retries); answers `data: "success"`.
async fn send_test_event(State(s): S, body: Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("request body must be a JSON object"))?;
    let kind = v
        .get("trigger_type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("trigger_type is required"))?
        .to_string();
    let url = v
        .get("webhook_url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("webhook_url is required"))?
        .to_string();
    reqwest::Url::parse(&url)
        .map_err(|_| ApiError::invalid("webhook_url must be an absolute http(s) URL"))?;
    let now = s.clock.now();
    let n = if crate::tracking::is_tracking(&kind) {
        let object = crate::tracking::object(
            &kind,
            &s.config.application_id,
            "mock-grant-id",
            "mock-message-id",
            now,
        );
        let mut n = lock(&s.model).notification(
            &kind,
            crate::tracking::source(&kind),
            now,
            "mock-grant-id",
            object,
        );
        n.grant_in_data = crate::tracking::grant_in_data(&kind);
        n
    } else {
        let noun = kind.split('.').next().unwrap_or("object").to_string();
        let object = json!({"id": "mock-object-id", "grant_id": "mock-grant-id", "object": noun});
        lock(&s.model).notification(&kind, "/nylas/test", now, "mock-grant-id", object)
    };
    match crate::delivery::post_signed(&s, &url, MOCK_WEBHOOK_SECRET, false, &n, 1).await {
        Some(200) => Ok(object_envelope(&s, json!("success"))),
        Some(status) => Err(ApiError::invalid(format!(
            "webhook_url answered the test event with status {status}"
        ))),
        None => Err(ApiError::invalid("webhook_url could not be reached")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_other_kinds() {
        let t = encode_token("m", "1700000000:abc");
        assert_eq!(
            decode_token("m", &t).ok().as_deref(),
            Some("1700000000:abc")
        );
        assert!(decode_token("e", &t).is_err());
        assert!(decode_token("m", "zz").is_err());
    }

    #[test]
    fn grant_is_read_from_grant_scoped_paths_only() {
        assert_eq!(
            grant_of_path("/v3/grants/g1/messages").as_deref(),
            Some("g1")
        );
        assert_eq!(grant_of_path("/v3/grants"), None);
        assert_eq!(grant_of_path("/v3/webhooks/x"), None);
    }
}
