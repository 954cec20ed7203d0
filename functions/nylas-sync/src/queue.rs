//! The notifications queue's protocol, in one place: what a queued notification looks like
//! (its routing attributes, and the claim check that stands for a body too large for SQS), the
//! two ports (the ingest's [`NotificationSink`], the consumer's [`NotificationSource`]) and the
//! queue-side decisions, as pure functions: when and how a rate-limited record comes back
//! ([`redelivery`]), and what a record whose claim-checked payload is gone still says
//! ([`stand_in_notification`]).
//!
//! The SQS and S3 adapters live in [`crate::sqs_queue`]; [`crate::enqueue_request`] builds the
//! ingest's requests. This module depends on neither.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use serde::{Deserialize, Serialize};

use crate::notification::{ObjectKind, Routing};

/// SQS message attribute names set on every notification message.
pub mod attr {
    pub const TYPE: &str = "nylas_type";
    pub const NOTIFICATION_ID: &str = "notification_id";
    pub const GRANT_ID: &str = "grant_id";
    pub const OBJECT_ID: &str = "object_id";
    /// `inline` (the body is the notification) or `s3` (the body is a [`super::ClaimCheck`]).
    pub const PAYLOAD: &str = "payload";
    /// How many times the consumer has deferred this notification (re-sent it with a delay
    /// after a 429); absent on a first delivery.
    pub const DEFERRALS: &str = "deferrals";
}

/// The message body that stands for a notification stored in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCheck {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct ClaimCheckEnvelope {
    claim_check: ClaimCheck,
}

impl ClaimCheck {
    pub fn to_message_body(&self) -> String {
        // Serialising a struct of strings and a number cannot fail.
        serde_json::to_string(&ClaimCheckEnvelope {
            claim_check: self.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a pointer from a message body, if that is what it is.
    pub fn from_message_body(body: &str) -> Option<Self> {
        serde_json::from_str::<ClaimCheckEnvelope>(body)
            .ok()
            .map(|e| e.claim_check)
    }
}

/// Where a notification was put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Inline,
    ClaimCheck(ClaimCheck),
}

/// Why a notification could not be made durable. Retryable by the sender (the ingest answers 503).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("SQS did not accept the message: {0}")]
    Sqs(String),
    #[error("S3 did not store the payload: {0}")]
    S3(String),
}

/// The port the ingest writes verified notifications to.
pub trait NotificationSink: Send + Sync {
    /// Makes `body` durable; returns only once the queue has accepted it.
    fn enqueue(
        &self,
        routing: &Routing<'_>,
        body: String,
    ) -> impl Future<Output = Result<Placement, EnqueueError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// The consumer's side.

/// What a queued record holds, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The notification's JSON text (the body, or the claim-checked object read back from S3).
    Notification(String),
    /// The claim check's object is gone (expired or deleted): only the message's attributes
    /// remain to say what it was about (see [`stand_in_notification`]).
    Gone(ClaimCheck),
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// S3 did not answer: try again later.
    #[error("{0}")]
    Retry(String),
    /// The payload can never be read as text.
    #[error("{0}")]
    Permanent(String),
}

/// What became of a record the consumer could not process for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A copy waits in the queue (`DelaySeconds`): the record itself is acknowledged.
    Deferred { delay_s: u32, deferrals: u32 },
    /// Reported failed, hidden for `visibility_s` first (this counts a receive).
    Hidden { visibility_s: u32 },
    /// Reported failed; the queue's own visibility timeout brings it back.
    Failed,
}

impl Settled {
    /// Whether the record must be reported as a batch item failure.
    pub fn report_failed(self) -> bool {
        !matches!(self, Settled::Deferred { .. })
    }
}

/// The port the consumer reads queued notifications through and hands rate-limited records back to.
pub trait NotificationSource: Send + Sync {
    /// The notification a record stands for: its body, or the claim-checked payload from S3.
    fn read(&self, record: &SqsMessage) -> impl Future<Output = Result<Payload, ReadError>> + Send;

    /// Arranges a later retry of a record Nylas rate-limited (`retry_after`), as [`redelivery`]
    /// decides; never sooner than the queue's own retry.
    fn retry_later(
        &self,
        record: &SqsMessage,
        retry_after: Duration,
    ) -> impl Future<Output = Settled> + Send;
}

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY_S: u32 = 900;
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY_S: u32 = 43_200;

/// How rate-limited records are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeliveryPolicy {
    /// The first backoff; it doubles with each deferral and receive, up to [`MAX_DELAY_S`].
    pub backoff_base_s: u32,
    /// Deferrals (re-sends with a delay) before a record falls back to counting receives, so a
    /// notification cannot circle for ever: 8 deferrals of at most 15 min span about 1.5 h.
    pub max_deferrals: u32,
}

impl Default for RedeliveryPolicy {
    fn default() -> Self {
        Self {
            backoff_base_s: 30,
            max_deferrals: 8,
        }
    }
}

impl RedeliveryPolicy {
    /// `RATE_LIMIT_BACKOFF_SECONDS` (default 30), `RATE_LIMIT_MAX_DEFERRALS` (default 8).
    pub fn from_env(env: &impl crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let d = Self::default();
        Ok(Self {
            backoff_base_s: env
                .number_or("RATE_LIMIT_BACKOFF_SECONDS", u64::from(d.backoff_base_s))?
                .clamp(1, u64::from(MAX_DELAY_S)) as u32,
            max_deferrals: env
                .number_or("RATE_LIMIT_MAX_DEFERRALS", u64::from(d.max_deferrals))?
                .min(100) as u32,
        })
    }
}

/// What the queue says about a record's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordHistory {
    /// SQS's `ApproximateReceiveCount` of this copy (1 on its first receive).
    pub receive_count: u32,
    /// Earlier deferrals of the notification ([`attr::DEFERRALS`]).
    pub deferrals: u32,
    /// When this copy was sent (`SentTimestamp`, Unix ms).
    pub sent_at_ms: Option<i64>,
}

impl RecordHistory {
    pub fn of(record: &SqsMessage) -> Self {
        let number = |v: Option<&String>| v.and_then(|n| n.trim().parse::<i64>().ok());
        Self {
            receive_count: number(record.attributes.get("ApproximateReceiveCount"))
                .map_or(1, |n| n.clamp(1, i64::from(u32::MAX)) as u32),
            deferrals: number(
                record
                    .message_attributes
                    .get(attr::DEFERRALS)
                    .and_then(|a| a.string_value.as_ref()),
            )
            .map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32),
            sent_at_ms: number(record.attributes.get("SentTimestamp")),
        }
    }
}

/// How a rate-limited record comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Send a copy (same body and attributes, `deferrals` counted) with `DelaySeconds`
    /// `delay_s` and acknowledge the record: the wait costs no receive, so a 429 burst cannot
    /// walk a notification to the DLQ. If the send fails: [`Redelivery::Hide`] for `delay_s`.
    Defer { delay_s: u32, deferrals: u32 },
    /// Report the record failed, hidden for `visibility_s`: used once the deferrals are spent
    /// (receives then count toward `maxReceiveCount`), or for a wait longer than SQS can delay.
    Hide { visibility_s: u32 },
}

/// The pure rule for a record Nylas answered 429: it waits at least its `Retry-After`, at least
/// the queue's own retry (`queue_visibility_s`: the wait of any other failure) and at least an
/// exponential backoff in its attempts so far (deferrals plus receives), capped at SQS's 15 min
/// delay; it is deferred while it has deferrals left and the wait fits a delay.
pub fn redelivery(
    retry_after: Duration,
    history: RecordHistory,
    queue_visibility_s: Option<u32>,
    policy: &RedeliveryPolicy,
) -> Redelivery {
    let attempts = history
        .deferrals
        .saturating_add(history.receive_count.saturating_sub(1));
    let backoff = u64::from(policy.backoff_base_s.max(1))
        .saturating_mul(1u64 << attempts.min(32))
        .min(u64::from(MAX_DELAY_S));
    let retry_after_s = retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
    let wait = backoff
        .max(retry_after_s)
        .max(u64::from(queue_visibility_s.unwrap_or(0)))
        .max(1);
    if history.deferrals < policy.max_deferrals && wait <= u64::from(MAX_DELAY_S) {
        Redelivery::Defer {
            delay_s: wait as u32,
            deferrals: history.deferrals.saturating_add(1),
        }
    } else {
        Redelivery::Hide {
            visibility_s: wait.min(u64::from(MAX_VISIBILITY_S)) as u32,
        }
    }
}

/// The trigger a notification of type `trigger` stands for once its payload is gone: a fetch of
/// the object (`<kind>.<verb>.truncated`) or its delete; `None` for what names no syncable
/// object (grants, folders, tracking triggers...).
pub fn stand_in_trigger(trigger: &str) -> Option<String> {
    if !matches!(
        ObjectKind::of(trigger),
        ObjectKind::Message | ObjectKind::Event | ObjectKind::Calendar
    ) {
        return None;
    }
    let mut parts = trigger.split('.');
    let (noun, verb) = (parts.next()?, parts.next()?);
    match verb {
        "deleted" => Some(format!("{noun}.deleted")),
        "created" | "updated" => Some(format!("{noun}.{verb}.truncated")),
        _ => None,
    }
}

/// What a claim-checked record whose payload is gone still says, as a notification the consumer
/// can act on: its attributes name the trigger, the notification, the grant and the object, so
/// it is treated like a truncated notification (`<kind>.<verb>.truncated`: fetch the current
/// object) or, for a `*.deleted`, a delete. Its `time` is when the message was sent, never later
/// than `now_s` (the consumer's clock). `None` when the attributes cannot name a syncable object
/// (no ids, a grant or folder notification): nothing to recover it by.
pub fn stand_in_notification(record: &SqsMessage, now_s: i64) -> Option<String> {
    let attribute = |name: &str| {
        record
            .message_attributes
            .get(name)
            .and_then(|a| a.string_value.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let stand_in = stand_in_trigger(attribute(attr::TYPE)?)?;
    let grant_id = attribute(attr::GRANT_ID)?;
    let object_id = attribute(attr::OBJECT_ID)?;
    let time = RecordHistory::of(record)
        .sent_at_ms
        .map_or(now_s, |ms| (ms / 1000).min(now_s));
    let id = attribute(attr::NOTIFICATION_ID).unwrap_or_default();
    Some(
        serde_json::json!({
            "id": id,
            "type": stand_in,
            "time": time,
            "data": {"object": {"id": object_id, "grant_id": grant_id}},
        })
        .to_string(),
    )
}

/// `notifications/<grant id>/<notification id>.json`, or `notifications/<notification id>.json`
/// for a notification that names no grant: a grant's purge deletes its folder (invariant 8), and
/// the bucket's lifecycle expires the rest. A redelivery of the same notification lands on the
/// same object (it differs at most in `webhook_delivery_attempt`), as a content hash would make
/// it, without hashing the body again. Ids are printable ASCII of at most 256 bytes (checked by
/// the routing parse); anything but `[A-Za-z0-9._-]` is percent-encoded, so each id is one path
/// segment whatever it holds, and a flat key never falls inside a grant's folder.
pub fn claim_check_key(routing: &Routing<'_>) -> String {
    let id = routing.id.as_bytes();
    let grant = routing.grant_id.as_deref().unwrap_or_default().as_bytes();
    let mut key =
        String::with_capacity("notifications//.json".len() + (grant.len() + id.len()) * 3);
    key.push_str(NOTIFICATIONS_PREFIX);
    if !grant.is_empty() {
        push_segment(&mut key, grant);
        key.push('/');
    }
    push_segment(&mut key, id);
    key.push_str(".json");
    key
}

/// Where claim-checked notifications are kept in the payload bucket.
pub const NOTIFICATIONS_PREFIX: &str = "notifications/";

/// The folder of a grant's claim-checked notifications (see [`claim_check_key`]).
pub fn grant_notifications_prefix(grant_id: &str) -> String {
    let mut key = String::from(NOTIFICATIONS_PREFIX);
    push_segment(&mut key, grant_id.as_bytes());
    key.push('/');
    key
}

fn push_segment(key: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            key.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(key, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessageAttribute;

    #[test]
    fn a_claim_check_round_trips_through_a_message_body() {
        let c = ClaimCheck {
            bucket: "b".into(),
            key: "notifications/x.json".into(),
            bytes: 300_000,
        };
        assert_eq!(ClaimCheck::from_message_body(&c.to_message_body()), Some(c));
        assert_eq!(
            ClaimCheck::from_message_body(r#"{"type":"message.created"}"#),
            None
        );
    }

    fn history(receive_count: u32, deferrals: u32) -> RecordHistory {
        RecordHistory {
            receive_count,
            deferrals,
            sent_at_ms: None,
        }
    }

    const POLICY: RedeliveryPolicy = RedeliveryPolicy {
        backoff_base_s: 30,
        max_deferrals: 8,
    };

    #[test]
    fn a_rate_limited_record_is_deferred_at_least_its_retry_after_and_the_queues_retry() {
        // Retry-After 2 s on a queue that retries after 360 s: the record waits 360 s, not 2.
        assert_eq!(
            redelivery(Duration::from_secs(2), history(1, 0), Some(360), &POLICY),
            Redelivery::Defer {
                delay_s: 360,
                deferrals: 1
            }
        );
        // A Retry-After longer than the backoff and the queue's retry wins (rounded up).
        assert_eq!(
            redelivery(
                Duration::from_millis(600_500),
                history(1, 0),
                Some(360),
                &POLICY
            ),
            Redelivery::Defer {
                delay_s: 601,
                deferrals: 1
            }
        );
    }

    #[test]
    fn the_backoff_grows_with_deferrals_and_receives_up_to_sqs_longest_delay() {
        let delay = |receives, deferrals| match redelivery(
            Duration::ZERO,
            history(receives, deferrals),
            None,
            &POLICY,
        ) {
            Redelivery::Defer { delay_s, .. } => delay_s,
            Redelivery::Hide { .. } => panic!("deferrals left"),
        };
        assert_eq!(
            [
                delay(1, 0),
                delay(1, 1),
                delay(1, 2),
                delay(2, 2),
                delay(1, 7)
            ],
            [30, 60, 120, 240, 900]
        );
    }

    #[test]
    fn deferrals_are_capped_and_then_the_record_is_hidden_counting_receives() {
        assert_eq!(
            redelivery(Duration::from_secs(5), history(1, 8), Some(360), &POLICY),
            Redelivery::Hide { visibility_s: 900 }
        );
        // A wait longer than SQS can delay a message: hidden for all of it.
        assert_eq!(
            redelivery(
                Duration::from_secs(3_600),
                history(1, 0),
                Some(360),
                &POLICY
            ),
            Redelivery::Hide {
                visibility_s: 3_600
            }
        );
        assert_eq!(
            redelivery(Duration::from_secs(86_400), history(1, 0), None, &POLICY),
            Redelivery::Hide {
                visibility_s: MAX_VISIBILITY_S
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn a_rate_limited_record_never_comes_back_sooner_than_asked_nor_defers_for_ever(
            retry_after in 0u64..100_000,
            receives in 0u32..50,
            deferrals in 0u32..50,
            visibility in proptest::option::of(0u32..43_200),
        ) {
            let h = history(receives, deferrals);
            let floor = retry_after.max(u64::from(visibility.unwrap_or(0))).min(u64::from(MAX_VISIBILITY_S));
            match redelivery(Duration::from_secs(retry_after), h, visibility, &POLICY) {
                Redelivery::Defer { delay_s, deferrals: d } => {
                    proptest::prop_assert!(u64::from(delay_s) >= floor && (1..=MAX_DELAY_S).contains(&delay_s));
                    proptest::prop_assert!(d == deferrals + 1 && d <= POLICY.max_deferrals);
                }
                Redelivery::Hide { visibility_s } => {
                    proptest::prop_assert!(u64::from(visibility_s) >= floor && visibility_s >= 1);
                }
            }
        }
    }

    fn queued(attrs: &[(&str, &str)], sent_at_ms: Option<i64>) -> SqsMessage {
        let mut m = SqsMessage::default();
        for (k, v) in attrs {
            let mut a = SqsMessageAttribute::default();
            a.string_value = Some(v.to_string());
            a.data_type = Some("String".into());
            m.message_attributes.insert(k.to_string(), a);
        }
        if let Some(t) = sent_at_ms {
            m.attributes.insert("SentTimestamp".into(), t.to_string());
        }
        m
    }

    #[test]
    fn the_history_of_a_record_is_read_from_its_attributes() {
        let mut m = queued(&[(attr::DEFERRALS, "3")], Some(1_700_000_000_123));
        m.attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
        assert_eq!(
            RecordHistory::of(&m),
            RecordHistory {
                receive_count: 2,
                deferrals: 3,
                sent_at_ms: Some(1_700_000_000_123)
            }
        );
        assert_eq!(RecordHistory::of(&SqsMessage::default()), history(1, 0));
    }

    #[test]
    fn a_record_whose_payload_is_gone_stands_for_a_fetch_or_a_delete_of_its_object() {
        let ids = [
            (attr::NOTIFICATION_ID, "n-1"),
            (attr::GRANT_ID, "g-1"),
            (attr::OBJECT_ID, "m-1"),
        ];
        let with = |trigger: &str| {
            let mut a = ids.to_vec();
            a.push((attr::TYPE, trigger));
            queued(&a, Some(1_700_000_000_999))
        };
        let parse = |s: Option<String>| -> serde_json::Value {
            serde_json::from_str(&s.expect("a stand-in")).unwrap()
        };
        let n = parse(stand_in_notification(
            &with("message.created"),
            1_800_000_000,
        ));
        assert_eq!(n["type"], "message.created.truncated");
        assert_eq!(n["id"], "n-1");
        assert_eq!(n["time"], 1_700_000_000);
        assert_eq!(n["data"]["object"]["id"], "m-1");
        assert_eq!(n["data"]["object"]["grant_id"], "g-1");
        let n = parse(stand_in_notification(
            &with("message.updated.metadata"),
            1_800_000_000,
        ));
        assert_eq!(n["type"], "message.updated.truncated");
        let n = parse(stand_in_notification(&with("event.deleted"), 1_800_000_000));
        assert_eq!(n["type"], "event.deleted");
        // Never later than the consumer's clock.
        let n = parse(stand_in_notification(
            &with("calendar.updated"),
            1_600_000_000,
        ));
        assert_eq!(n["time"], 1_600_000_000);
        // Nothing to recover a grant or folder notification, or one without ids, by.
        assert_eq!(stand_in_notification(&with("grant.created"), 1), None);
        assert_eq!(stand_in_notification(&with("folder.updated"), 1), None);
        assert_eq!(
            stand_in_notification(&queued(&[(attr::TYPE, "message.created")], None), 1),
            None
        );
    }
}
