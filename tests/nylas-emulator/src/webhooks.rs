//! Webhook destinations: creation (after the challenge), secrets and their rotation.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::delivery::run_destination;
use crate::{lock, Shared};

/// A destination as `GET /v3/webhooks/{id}` shows it (never with its secret).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WebhookInfo {
    pub(crate) id: String,
    pub(crate) description: Option<String>,
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
}

impl Destination {
    pub(crate) fn subscribes(&self, n: &crate::model::Notification) -> bool {
        self.info.trigger_types.iter().any(|t| n.matches_trigger(t))
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
    lock(&shared.destinations).get(id).map(|d| d.info.clone())
}

pub(crate) fn list(shared: &Shared) -> Vec<WebhookInfo> {
    lock(&shared.destinations)
        .values()
        .map(|d| d.info.clone())
        .collect()
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
