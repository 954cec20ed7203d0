//! Webhook delivery as Nylas does it: one signed CloudEvents POST per notification and
//! destination, optional gzip, a timeout per attempt, up to 3 attempts with exponential backoff
//! (the last 10 to 20 emulated minutes after the first), then the notification is dropped.
//! Every answer but 200, and every timeout, is retried. Each attempt feeds the destination's
//! health (`webhooks::Destination::record_attempt`); `failed` and paused destinations get nothing.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::model::Notification;
use crate::stats::{DeliveryEvent, LossReason};
use crate::{lock, Shared};

pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// Lowercase hex HMAC-SHA256 of `body` keyed with `secret`: the `x-nylas-signature` header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Counts deliveries in flight (retries included) for `wait_for_deliveries_idle`; a guard lives
/// exactly as long as the work it stands for, however that work ends.
pub(crate) struct PendingGuard(Arc<AtomicUsize>);

impl PendingGuard {
    pub(crate) fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        PendingGuard(counter.clone())
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A notification on its way from the model to the fan-out.
pub(crate) struct Outgoing {
    pub(crate) notification: Arc<Notification>,
    pub(crate) guard: PendingGuard,
}

/// One notification for one destination.
pub(crate) struct Job {
    notification: Arc<Notification>,
    _guard: PendingGuard,
    /// Emulated seconds to hold the first attempt back (the reorder fault).
    delay: f64,
}

#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
    source: &'a str,
    id: &'a str,
    time: i64,
    webhook_delivery_attempt: u32,
    data: EnvelopeData<'a>,
}

#[derive(Serialize)]
struct EnvelopeData<'a> {
    application_id: &'a str,
    /// Tracking and deliverability notifications carry the grant here, not in `object`.
    #[serde(skip_serializing_if = "Option::is_none")]
    grant_id: Option<&'a str>,
    object: &'a Value,
}

pub(crate) fn envelope_bytes(app_id: &str, n: &Notification, attempt: u32) -> Vec<u8> {
    let env = Envelope {
        specversion: "1.0",
        kind: &n.kind,
        source: n.source,
        id: &n.id,
        time: n.time,
        webhook_delivery_attempt: attempt,
        data: EnvelopeData {
            application_id: app_id,
            grant_id: n.grant_in_data.then_some(n.grant_id.as_str()),
            object: &n.object,
        },
    };
    serde_json::to_vec(&env).unwrap_or_default()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Fans each notification out to the destinations subscribed to its trigger, applying the
/// drop, duplicate and delay faults.
pub(crate) async fn run_dispatcher(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        let faults = shared.faults();
        let max_delay = faults.max_delay.as_secs_f64();
        let now = shared.clock.now();
        lock(&shared.stats).record_change(&out.notification);
        let mut dests = lock(&shared.destinations);
        for d in dests.values_mut() {
            if !d.subscribes(&out.notification) {
                continue;
            }
            if let Some(e) = d.refuses(now) {
                let mut stats = lock(&shared.stats);
                stats.record_delivery(&d.info.id, e);
                stats.record_loss(&d.info.id, &out.notification, e.loss_reason(), now);
                continue;
            }
            let (drop_it, duplicate) = {
                let mut rng = lock(&shared.fault_rng);
                (
                    rng.chance(faults.drop_probability),
                    rng.chance(faults.duplicate_probability),
                )
            };
            let mut stats = lock(&shared.stats);
            if drop_it {
                stats.record_delivery(&d.info.id, DeliveryEvent::DroppedByFault);
                stats.record_loss(&d.info.id, &out.notification, LossReason::Dropped, now);
                continue;
            }
            let copies = if duplicate { 2 } else { 1 };
            for copy in 0..copies {
                if copy == 1 {
                    stats.record_delivery(&d.info.id, DeliveryEvent::Duplicated);
                }
                let delay = if max_delay > 0.0 {
                    lock(&shared.fault_rng).f64() * max_delay
                } else {
                    0.0
                };
                if delay > 0.0 {
                    stats.record_delivery(&d.info.id, DeliveryEvent::Delayed);
                }
                let job = Job {
                    notification: out.notification.clone(),
                    _guard: PendingGuard::new(&shared.pending),
                    delay,
                };
                // A closed queue means the destination is being deleted: the job just ends.
                let _ = d.tx.send(job);
            }
        }
        drop(dests);
        drop(out.guard);
    }
}

/// Feeds one destination. Without a delay fault, first attempts start in notification order
/// (at most `delivery_concurrency` in flight).
pub(crate) async fn run_destination(
    shared: Arc<Shared>,
    dest_id: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
    permits: Arc<Semaphore>,
) {
    while let Some(job) = rx.recv().await {
        if job.delay > 0.0 {
            let s = shared.clone();
            let id = dest_id.clone();
            let p = permits.clone();
            shared.spawn(async move {
                s.clock.sleep(job.delay).await;
                deliver(s, id, job, None, p).await;
            });
        } else {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            shared.spawn(deliver(
                shared.clone(),
                dest_id.clone(),
                job,
                Some(permit),
                permits.clone(),
            ));
        }
    }
}

enum Attempt {
    Delivered,
    /// Answered, but not 200.
    Non200,
    /// Timeout, connection error or injected outage.
    NoAnswer,
    Gone,
    /// The destination is `failed` or paused: nothing is sent.
    Refused(DeliveryEvent),
}

async fn deliver(
    shared: Arc<Shared>,
    dest_id: String,
    job: Job,
    mut permit: Option<OwnedSemaphorePermit>,
    permits: Arc<Semaphore>,
) {
    let first = shared.clock.now_f64();
    // d, then 2d: the third attempt lands 3d after the first, with 3d in [600, 1200) s.
    let d = 200.0 + 200.0 * lock(&shared.fault_rng).f64();
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            let offset = d * f64::from((1u32 << (attempt - 1)) - 1);
            shared.clock.sleep_until(first + offset).await;
        }
        let held = match permit.take() {
            Some(p) => p,
            None => match permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let outcome = attempt_once(&shared, &dest_id, &job.notification, attempt).await;
        drop(held);
        let mut stats = lock(&shared.stats);
        match outcome {
            Attempt::Delivered => {
                stats.record_delivery(&dest_id, DeliveryEvent::Delivered);
                return;
            }
            Attempt::Gone => {
                stats.record_delivery(&dest_id, DeliveryEvent::Abandoned);
                return;
            }
            Attempt::Refused(e) => {
                stats.record_delivery(&dest_id, e);
                let now = shared.clock.now();
                stats.record_loss(&dest_id, &job.notification, e.loss_reason(), now);
                return;
            }
            Attempt::Non200 | Attempt::NoAnswer => {
                stats.record_delivery(&dest_id, DeliveryEvent::FailedAttempt);
                stats.record_delivery(
                    &dest_id,
                    if matches!(outcome, Attempt::Non200) {
                        DeliveryEvent::Non200Answer
                    } else {
                        DeliveryEvent::NoAnswer
                    },
                );
                if attempt == MAX_ATTEMPTS {
                    stats.record_delivery(&dest_id, DeliveryEvent::DroppedAfterRetries);
                    let now = shared.clock.now();
                    stats.record_loss(&dest_id, &job.notification, LossReason::AfterRetries, now);
                }
            }
        }
    }
}

async fn attempt_once(shared: &Shared, dest_id: &str, n: &Notification, attempt: u32) -> Attempt {
    let now = shared.clock.now();
    let target = {
        let mut dests = lock(&shared.destinations);
        match dests.get_mut(dest_id) {
            None => return Attempt::Gone,
            Some(d) => match d.refuses(now) {
                Some(e) => return Attempt::Refused(e),
                None => (
                    d.info.webhook_url.clone(),
                    d.secret.clone(),
                    d.info.compressed_delivery,
                ),
            },
        }
    };
    let (url, secret, compressed) = target;
    lock(&shared.stats).record_delivery(dest_id, DeliveryEvent::Attempt);
    let outcome = if shared.in_outage() {
        Attempt::NoAnswer
    } else {
        // Only 200 counts: Nylas retries every other answer, a 400 or 401 included.
        match post_signed(shared, &url, &secret, compressed, n, attempt).await {
            Some(200) => Attempt::Delivered,
            Some(_) => Attempt::Non200,
            None => Attempt::NoAnswer,
        }
    };
    let done = shared.clock.now();
    if let Some(d) = lock(&shared.destinations).get_mut(dest_id) {
        d.record_attempt(done, matches!(outcome, Attempt::Delivered));
    }
    outcome
}

/// One signed POST of a notification. The answer's status, or `None` on a timeout or a
/// connection error.
pub(crate) async fn post_signed(
    shared: &Shared,
    url: &str,
    secret: &str,
    compressed: bool,
    n: &Notification,
    attempt: u32,
) -> Option<u16> {
    let json = envelope_bytes(&shared.config.application_id, n, attempt);
    let body = if compressed { gzip(&json) } else { json };
    let signature = sign(secret, &body);
    let mut req = shared
        .http
        .post(url)
        .timeout(shared.config.delivery_timeout)
        .header("content-type", "application/json")
        .header("x-nylas-signature", signature);
    if compressed {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::sign;

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
