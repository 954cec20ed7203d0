//! Counters of what the emulator served and delivered, for assertions and benchmarks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything `GET /_emulator/stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Emulated Unix seconds when the snapshot was taken.
    pub now: i64,
    pub api: ApiStats,
    pub webhooks: WebhookStats,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiStats {
    pub total: u64,
    /// Keyed by `"<METHOD> <route>"`, e.g. `"GET /v3/grants/{grant_id}/messages"`.
    pub by_endpoint: BTreeMap<String, u64>,
    pub by_grant: BTreeMap<String, u64>,
    /// Keyed by the status code as a string, e.g. `"429"`.
    pub by_status: BTreeMap<String, u64>,
    /// The full breakdown: one row per (endpoint, grant, status).
    pub requests: Vec<ApiRequestCount>,
    /// Answers a slow window held back, counted when the hold begins.
    #[serde(default)]
    pub held_back: u64,
    /// Answers sent gzip-compressed (the request accepted gzip and the body was over 200 bytes),
    /// and the bytes that saved.
    #[serde(default)]
    pub gzipped: u64,
    #[serde(default)]
    pub gzip_bytes_saved: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequestCount {
    pub endpoint: String,
    pub grant_id: Option<String>,
    pub status: u16,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookStats {
    /// Notifications the model produced (before fan-out to destinations).
    pub notifications: u64,
    /// Changes made while silent: no notification exists for them.
    pub suppressed_silent: u64,
    /// Notifications held back because their grant was expired.
    pub held_for_expired_grant: u64,
    /// Held notifications sent after a re-authentication within 72 h.
    pub replayed_after_reauth: u64,
    /// Held notifications thrown away (re-authenticated after 72 h, or grant deleted).
    pub discarded_for_expired_grant: u64,
    /// `grant.expired` notifications not sent because the grant re-authenticated (or was
    /// deleted) before the health check that would have noticed the expiry, or because the
    /// emulator was silent when it came due.
    pub grant_expired_not_sent: u64,
    /// Deliveries (notification x destination) not yet finished, retries included.
    pub pending: u64,
    pub deliveries: DeliveryCounts,
    pub by_destination: BTreeMap<String, DeliveryCounts>,
}

/// Outcomes of deliveries. One notification sent to one destination is one delivery;
/// a delivery makes up to 3 attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryCounts {
    /// Attempts made (HTTP requests sent, or failed by an injected outage).
    pub attempts: u64,
    /// Deliveries answered 2xx.
    pub delivered: u64,
    /// Attempts that failed (timeout, connection error, outage, any answer but 200).
    pub failed_attempts: u64,
    /// Failed attempts that got an HTTP answer other than 200 (a 400 or 401 included).
    pub non_200_answers: u64,
    /// Failed attempts that got no answer: timeout, connection error, injected outage.
    pub no_answers: u64,
    /// Deliveries given up after the third failed attempt.
    pub dropped_after_retries: u64,
    /// Always 0: every answer but 200 is retried (as Nylas does), so no delivery ends early.
    /// Kept so readers of earlier stats still compile; see `non_200_answers`.
    pub rejected: u64,
    /// Deliveries dropped by the `drop_probability` fault: never attempted.
    pub dropped_by_fault: u64,
    /// Extra deliveries made by the `duplicate_probability` fault.
    pub duplicated: u64,
    /// Deliveries held back by the `max_delay` fault.
    pub delayed: u64,
    /// Deliveries abandoned because their destination was deleted or the emulator shut down.
    pub abandoned: u64,
    /// Deliveries never made, or whose retries stopped, because the destination was `failed`:
    /// lost for good, as with Nylas.
    pub dropped_destination_failed: u64,
    /// Deliveries never made, or whose retries stopped, because the destination was paused.
    pub dropped_destination_paused: u64,
}

/// Why a notification never reached a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// Silently never sent (the `drop_probability` fault): nothing tells the receiver.
    Dropped,
    /// All three attempts failed (the endpoint was down or erroring).
    AfterRetries,
    /// The destination was `failed`.
    DestinationFailed,
    /// The destination was paused.
    DestinationPaused,
}

/// One notification a destination never received, for measuring how long each loss lasted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    pub destination: String,
    pub notification_id: String,
    /// The notification's type, e.g. `message.updated`.
    pub kind: String,
    pub grant_id: String,
    /// `data.object.id` (or `message_id` for tracking notifications), if any.
    pub object_id: Option<String>,
    /// The notification's `time`: when the change it reports was made (emulated Unix s).
    pub time: i64,
    /// When it was given up (emulated Unix s).
    pub lost_at: i64,
    pub reason: LossReason,
}

/// One notification the model produced, as a state of its object: what a store holding that
/// object as of `time` should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    pub grant_id: String,
    /// The notification's type, e.g. `message.updated`.
    pub kind: String,
    pub object_id: String,
    /// The notification's `time`.
    pub time: i64,
    /// The object's state after the change, as far as a sync cares: `deleted`; a message's
    /// `unread`, `starred` and `folders`; any other object's JSON.
    pub state: String,
}

impl ObjectChange {
    fn of(n: &crate::model::Notification) -> Option<Self> {
        let object_id = object_id(n)?;
        let state = if n.kind.ends_with(".deleted") {
            "deleted".to_string()
        } else if n.kind.starts_with("message.") {
            serde_json::json!([n.object["unread"], n.object["starred"], n.object["folders"]])
                .to_string()
        } else {
            n.object.to_string()
        };
        Some(ObjectChange {
            grant_id: n.grant_id.clone(),
            kind: n.kind.clone(),
            object_id,
            time: n.time,
            state,
        })
    }
}

/// The object a notification is about: `data.object.id`, or `message_id` for tracking ones.
fn object_id(n: &crate::model::Notification) -> Option<String> {
    ["id", "message_id"]
        .iter()
        .find_map(|k| n.object.get(*k).and_then(serde_json::Value::as_str))
        .map(str::to_string)
}

#[derive(Default)]
pub(crate) struct StatsRecorder {
    /// Every notification the model produced, as a state of its object, in production order.
    pub(crate) changes: Vec<ObjectChange>,
    /// Every notification a destination never received, in the order they were given up.
    pub(crate) losses: Vec<Loss>,
    pub(crate) api: BTreeMap<(String, Option<String>, u16), u64>,
    pub(crate) webhooks: WebhookStats,
    pub(crate) held_back: u64,
    pub(crate) gzipped: u64,
    pub(crate) gzip_bytes_saved: u64,
}

/// One counter of `DeliveryCounts`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DeliveryEvent {
    Attempt,
    Delivered,
    FailedAttempt,
    Non200Answer,
    NoAnswer,
    DroppedAfterRetries,
    DroppedDestinationFailed,
    DroppedDestinationPaused,
    DroppedByFault,
    Duplicated,
    Delayed,
    Abandoned,
}

impl DeliveryEvent {
    /// The loss a refusal stands for (only `DroppedDestinationFailed` and `...Paused` are
    /// refusals).
    pub(crate) fn loss_reason(self) -> LossReason {
        match self {
            DeliveryEvent::DroppedDestinationPaused => LossReason::DestinationPaused,
            _ => LossReason::DestinationFailed,
        }
    }
}

impl DeliveryCounts {
    fn bump(&mut self, e: DeliveryEvent) {
        let c = match e {
            DeliveryEvent::Attempt => &mut self.attempts,
            DeliveryEvent::Delivered => &mut self.delivered,
            DeliveryEvent::FailedAttempt => &mut self.failed_attempts,
            DeliveryEvent::Non200Answer => &mut self.non_200_answers,
            DeliveryEvent::NoAnswer => &mut self.no_answers,
            DeliveryEvent::DroppedAfterRetries => &mut self.dropped_after_retries,
            DeliveryEvent::DroppedDestinationFailed => &mut self.dropped_destination_failed,
            DeliveryEvent::DroppedDestinationPaused => &mut self.dropped_destination_paused,
            DeliveryEvent::DroppedByFault => &mut self.dropped_by_fault,
            DeliveryEvent::Duplicated => &mut self.duplicated,
            DeliveryEvent::Delayed => &mut self.delayed,
            DeliveryEvent::Abandoned => &mut self.abandoned,
        };
        *c += 1;
    }
}

impl StatsRecorder {
    pub(crate) fn record_api(&mut self, endpoint: String, grant: Option<String>, status: u16) {
        *self.api.entry((endpoint, grant, status)).or_default() += 1;
    }

    /// Records the state `n` carries (before any fault or destination).
    pub(crate) fn record_change(&mut self, n: &crate::model::Notification) {
        if let Some(c) = ObjectChange::of(n) {
            self.changes.push(c);
        }
    }

    /// Records that `n` will never reach `destination`, and why.
    pub(crate) fn record_loss(
        &mut self,
        destination: &str,
        n: &crate::model::Notification,
        reason: LossReason,
        now: i64,
    ) {
        let object_id = object_id(n);
        self.losses.push(Loss {
            destination: destination.to_string(),
            notification_id: n.id.clone(),
            kind: n.kind.clone(),
            grant_id: n.grant_id.clone(),
            object_id,
            time: n.time,
            lost_at: now,
            reason,
        });
    }

    pub(crate) fn record_delivery(&mut self, destination: &str, e: DeliveryEvent) {
        self.webhooks.deliveries.bump(e);
        self.webhooks
            .by_destination
            .entry(destination.to_string())
            .or_default()
            .bump(e);
    }

    pub(crate) fn snapshot(&self, now: i64, pending: u64) -> Stats {
        let mut api = ApiStats::default();
        for ((endpoint, grant, status), count) in &self.api {
            api.total += count;
            *api.by_endpoint.entry(endpoint.clone()).or_default() += count;
            if let Some(g) = grant {
                *api.by_grant.entry(g.clone()).or_default() += count;
            }
            *api.by_status.entry(status.to_string()).or_default() += count;
            api.requests.push(ApiRequestCount {
                endpoint: endpoint.clone(),
                grant_id: grant.clone(),
                status: *status,
                count: *count,
            });
        }
        api.held_back = self.held_back;
        api.gzipped = self.gzipped;
        api.gzip_bytes_saved = self.gzip_bytes_saved;
        let mut webhooks = self.webhooks.clone();
        webhooks.pending = pending;
        Stats { now, api, webhooks }
    }
}
