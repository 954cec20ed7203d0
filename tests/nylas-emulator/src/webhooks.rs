//! Webhook destinations: creation (after the challenge), secrets and their rotation, updates
//! (`PUT /v3/webhooks/{id}`), and their health (`active`, `failing`, `failed`, `pause`).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::delivery::run_destination;
use crate::stats::DeliveryEvent;
use crate::{lock, Shared};

/// The span over which a destination's attempts are judged (Nylas: 15 minutes), emulated seconds.
pub(crate) const HEALTH_WINDOW_SECS: i64 = 15 * 60;
/// Share of non-200 attempts in the window that makes a destination `failing` (Nylas: 95%).
pub(crate) const FAILING_SHARE: f64 = 0.95;
/// Attempts the window must hold before a destination can become `failing` (Nylas does not
/// publish one; without it a single failed attempt would be "100% over 15 minutes").
pub(crate) const HEALTH_MIN_ATTEMPTS: usize = 10;
/// How long a destination stays `failing` before it becomes `failed` (Nylas: 72 hours).
pub(crate) const FAILED_AFTER_SECS: i64 = 72 * 3600;

/// Statuses as `GET /v3/webhooks` shows them (the spec's enum: `active`, `pause`, `failing`, `failed`).
pub(crate) const STATUSES: &[&str] = &["active", "pause", "failing", "failed"];

/// A destination as `GET /v3/webhooks/{id}` shows it (never with its secret).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WebhookInfo {
    pub(crate) id: String,
    /// Omitted when never set: the spec types it as a string, never `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// Real trigger names only: a catch-all destination lists `EMITTED_TRIGGERS`.
    pub(crate) trigger_types: Vec<String>,
    pub(crate) webhook_url: String,
    pub(crate) status: String,
    pub(crate) notification_email_addresses: Vec<String>,
    pub(crate) compressed_delivery: bool,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) status_updated_at: i64,
}

pub(crate) struct Destination {
    pub(crate) info: WebhookInfo,
    pub(crate) secret: String,
    pub(crate) tx: mpsc::UnboundedSender<crate::delivery::Job>,
    /// Attempts of the last `HEALTH_WINDOW_SECS`: (emulated time, answered 200).
    attempts: VecDeque<(i64, bool)>,
    /// When the destination became `failing`.
    failing_since: Option<i64>,
    /// Registered with the catch-all `*` (an emulator convenience, no Nylas trigger): gets every
    /// notification, including kinds `emit_notification` makes up, while `trigger_types` lists
    /// real names.
    all_triggers: bool,
}

/// Every trigger the emulator's model and controls send, as a catch-all (`*`) destination
/// lists them: all are in the spec's `trigger_types` enum and the official SDK's.
pub(crate) const EMITTED_TRIGGERS: &[&str] = &[
    "message.created",
    "message.updated",
    "message.deleted",
    "event.created",
    "event.updated",
    "event.deleted",
    "calendar.created",
    "calendar.updated",
    "calendar.deleted",
    "folder.created",
    "folder.updated",
    "folder.deleted",
    "grant.created",
    "grant.updated",
    "grant.deleted",
    "grant.expired",
    "message.opened",
    "message.opened.legacy",
    "message.link_clicked",
    "message.link_clicked.legacy",
    "thread.replied",
    "thread.replied.legacy",
    "message.bounce_detected",
];

/// The triggers to list and whether the destination takes everything: `*` is replaced by
/// `EMITTED_TRIGGERS` (keeping any other names given, without repeats).
fn expand_catch_all(triggers: Vec<String>) -> (Vec<String>, bool) {
    if !triggers.iter().any(|t| t == "*") {
        return (triggers, false);
    }
    let mut listed: Vec<String> = EMITTED_TRIGGERS.iter().map(|t| t.to_string()).collect();
    for t in triggers {
        if t != "*" && !listed.contains(&t) {
            listed.push(t);
        }
    }
    (listed, true)
}

impl Destination {
    pub(crate) fn subscribes(&self, n: &crate::model::Notification) -> bool {
        self.all_triggers || self.info.trigger_types.iter().any(|t| n.matches_trigger(t))
    }

    fn set_status(&mut self, status: &str, now: i64) {
        if self.info.status != status {
            self.info.status = status.to_string();
            self.info.status_updated_at = now;
        }
        match status {
            "failing" => {
                self.failing_since.get_or_insert(now);
            }
            "active" => {
                // Reactivated: judged afresh from now on.
                self.failing_since = None;
                self.attempts.clear();
            }
            _ => {}
        }
    }

    /// A destination `failing` for 72 emulated hours becomes `failed` (checked whenever it is
    /// looked at, so no timer is needed).
    pub(crate) fn refresh(&mut self, now: i64) {
        if self.info.status == "failing"
            && self
                .failing_since
                .is_some_and(|t| now - t >= FAILED_AFTER_SECS)
        {
            self.set_status("failed", now);
        }
    }

    /// The counter to bump when this destination must not be sent anything now (`failed` or paused).
    pub(crate) fn refuses(&mut self, now: i64) -> Option<DeliveryEvent> {
        self.refresh(now);
        match self.info.status.as_str() {
            "failed" => Some(DeliveryEvent::DroppedDestinationFailed),
            "pause" => Some(DeliveryEvent::DroppedDestinationPaused),
            _ => None,
        }
    }

    /// Records one attempt's outcome and moves `active` <-> `failing` on the share of non-200
    /// attempts over the last 15 emulated minutes.
    pub(crate) fn record_attempt(&mut self, now: i64, ok: bool) {
        self.refresh(now);
        if self.info.status != "active" && self.info.status != "failing" {
            return;
        }
        self.attempts.push_back((now, ok));
        while self
            .attempts
            .front()
            .is_some_and(|(t, _)| *t <= now - HEALTH_WINDOW_SECS)
        {
            self.attempts.pop_front();
        }
        let total = self.attempts.len();
        let failed = self.attempts.iter().filter(|(_, ok)| !ok).count();
        let mostly_failed = failed as f64 >= FAILING_SHARE * total as f64;
        if self.info.status == "active" && total >= HEALTH_MIN_ATTEMPTS && mostly_failed {
            self.set_status("failing", now);
        } else if self.info.status == "failing" && !mostly_failed {
            self.set_status("active", now);
        }
    }

    /// Sets a status by hand (`PUT /v3/webhooks/{id}` or a test). `active` starts afresh.
    pub(crate) fn force_status(&mut self, status: &str, now: i64) {
        if status == "failed" {
            self.failing_since.get_or_insert(now - FAILED_AFTER_SECS);
        }
        if status == "failing" {
            self.failing_since = Some(now);
        }
        self.set_status(status, now);
    }
}

fn new_secret(shared: &Shared) -> String {
    lock(&shared.secret_rng).hex(64)
}

pub(crate) fn new_challenge(shared: &Shared) -> String {
    lock(&shared.secret_rng).hex(32)
}

/// Adds a destination and starts its delivery queue. Returns `(id, secret)`.
pub(crate) fn register(
    shared: &Arc<Shared>,
    url: &str,
    trigger_types: Vec<String>,
    compressed: bool,
    description: Option<String>,
    notification_email_addresses: Vec<String>,
) -> (String, String) {
    let id = lock(&shared.secret_rng).uuid();
    let secret = new_secret(shared);
    let now = shared.clock.now();
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(shared.config.delivery_concurrency.max(1)));
    let (trigger_types, all_triggers) = expand_catch_all(trigger_types);
    let dest = Destination {
        info: WebhookInfo {
            id: id.clone(),
            description,
            trigger_types,
            webhook_url: url.to_string(),
            status: "active".into(),
            notification_email_addresses,
            compressed_delivery: compressed,
            created_at: now,
            updated_at: now,
            status_updated_at: now,
        },
        secret: secret.clone(),
        tx,
        attempts: VecDeque::new(),
        failing_since: None,
        all_triggers,
    };
    lock(&shared.destinations).insert(id.clone(), dest);
    shared.spawn(run_destination(shared.clone(), id.clone(), rx, permits));
    (id, secret)
}

/// A new secret, used from the next attempt on; the old one stops at once.
pub(crate) fn rotate(shared: &Shared, id: &str) -> Option<String> {
    let secret = new_secret(shared);
    let now = shared.clock.now();
    let mut dests = lock(&shared.destinations);
    let d = dests.get_mut(id)?;
    d.secret = secret.clone();
    d.info.updated_at = now;
    Some(secret)
}

pub(crate) fn info(shared: &Shared, id: &str) -> Option<WebhookInfo> {
    let now = shared.clock.now();
    lock(&shared.destinations).get_mut(id).map(|d| {
        d.refresh(now);
        d.info.clone()
    })
}

pub(crate) fn list(shared: &Shared) -> Vec<WebhookInfo> {
    let now = shared.clock.now();
    lock(&shared.destinations)
        .values_mut()
        .map(|d| {
            d.refresh(now);
            d.info.clone()
        })
        .collect()
}

/// Sets a destination's status (`active`, `pause`, `failing` or `failed`). False when the
/// destination or the status is unknown.
pub(crate) fn set_status(shared: &Shared, id: &str, status: &str) -> bool {
    if !STATUSES.contains(&status) {
        return false;
    }
    let now = shared.clock.now();
    let mut dests = lock(&shared.destinations);
    let Some(d) = dests.get_mut(id) else {
        return false;
    };
    d.force_status(status, now);
    d.info.updated_at = now;
    true
}

/// The fields `PUT /v3/webhooks/{id}` may change; `None` leaves a field as it is.
#[derive(Default)]
pub(crate) struct Update {
    pub(crate) description: Option<String>,
    pub(crate) trigger_types: Option<Vec<String>>,
    pub(crate) webhook_url: Option<String>,
    /// `active` or `pause`.
    pub(crate) status: Option<String>,
    pub(crate) notification_email_addresses: Option<Vec<String>>,
    pub(crate) compressed_delivery: Option<bool>,
}

pub(crate) fn update(shared: &Shared, id: &str, u: Update) -> Option<WebhookInfo> {
    let now = shared.clock.now();
    let mut dests = lock(&shared.destinations);
    let d = dests.get_mut(id)?;
    d.refresh(now);
    if let Some(v) = u.description {
        d.info.description = Some(v);
    }
    if let Some(v) = u.trigger_types {
        (d.info.trigger_types, d.all_triggers) = expand_catch_all(v);
    }
    if let Some(v) = u.webhook_url {
        d.info.webhook_url = v;
    }
    if let Some(v) = u.notification_email_addresses {
        d.info.notification_email_addresses = v;
    }
    if let Some(v) = u.compressed_delivery {
        d.info.compressed_delivery = v;
    }
    if let Some(v) = u.status {
        d.force_status(&v, now);
    }
    d.info.updated_at = now;
    Some(d.info.clone())
}

/// Removes a destination; deliveries still queued or waiting to retry are abandoned.
pub(crate) fn delete(shared: &Shared, id: &str) -> bool {
    lock(&shared.destinations).remove(id).is_some()
}

/// Sends `GET <url>?challenge=<value>` and checks the body is exactly the value.
pub(crate) async fn challenge(shared: &Shared, url: &str) -> Result<(), String> {
    let value = new_challenge(shared);
    let resp = shared
        .http
        .get(url)
        .query(&[("challenge", value.as_str())])
        .timeout(shared.config.delivery_timeout)
        .send()
        .await
        .map_err(|e| format!("the challenge request to webhook_url failed: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Err(format!(
            "webhook_url answered the challenge with status {}",
            resp.status().as_u16()
        ));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the challenge answer failed: {e}"))?;
    if body.as_ref() != value.as_bytes() {
        return Err("webhook_url did not echo the challenge value".into());
    }
    Ok(())
}
