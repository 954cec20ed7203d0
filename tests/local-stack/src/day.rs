//! The day scenario's measures, as plain functions over what the run recorded: how long each lost
//! notification stayed lost in a strategy's store (loss to repair), and what a strategy's AWS
//! usage costs per grant-month at list prices.

use std::collections::HashMap;

use nylas_emulator::{Loss, LossReason, ObjectChange};
use nylas_sync::store::{Source, WriteEvent};
use serde::Serialize;

/// How long the losses of one strategy's destination lasted, in emulated seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Repairs {
    /// Losses something tells the receiver about (an outage's retries, a `failed` destination),
    /// each from when the endpoint could be reached again (the end of the outage it fell in, or
    /// the change itself) to when the store's state of that object is right again; sorted.
    pub signal_s: Vec<f64>,
    /// Silent drops, from the change to its repair; sorted.
    pub silent_s: Vec<f64>,
    /// Losses whose object the store still holds wrong at the end of the run.
    pub open: usize,
    /// The slowest repairs and the open losses, one line each, for a look.
    pub slowest: Vec<String>,
}

impl Repairs {
    pub fn signal_count(&self) -> usize {
        self.signal_s.len()
    }
}

/// The state of a deleted object in the truth's changes (`nylas_emulator::ObjectChange::state`).
const DELETED: &str = "deleted";

/// `[start, end]` emulated Unix seconds in which the endpoint could not be reached.
pub type Window = (i64, i64);

/// One object's history: the truth's states over time, and the store's writes of it.
#[derive(Default)]
struct Object<'a> {
    /// (time, state), in time order.
    truth: Vec<(i64, &'a str)>,
    /// When a change created it (`*.created`), if one did: with no write yet, the store holds
    /// nothing of an object created during the run, which is right once the object is deleted.
    created_at: Option<i64>,
    /// (written at, s; the span in which the state it carries was seen, s), in write order: a
    /// notification's state is its time's; a read's is somewhere between when the read began
    /// and the write (a listing page can arrive well after the read began).
    writes: Vec<(f64, (i64, i64))>,
}

impl Object<'_> {
    /// The truth's state at `t` (`None`: as it was when the run began).
    fn truth_at(&self, t: i64) -> Option<&str> {
        let i = self.truth.partition_point(|(at, _)| *at <= t);
        i.checked_sub(1).map(|i| self.truth[i].1)
    }

    /// Whether the state the store holds at `t` (the newest written by then) is the truth's at
    /// `t`: the truth's state at some moment of the span in which that state was seen.
    fn right_at(&self, t: f64) -> bool {
        let truth = self.truth_at(t as i64);
        let Some((from, to)) = self
            .writes
            .iter()
            .take_while(|(at, _)| *at <= t)
            .map(|(_, seen)| *seen)
            .max_by_key(|(from, _)| *from)
        else {
            // Nothing written in the run: the store holds what it held before the object's
            // first change (nothing, if that change created it).
            let born_in_run = self
                .created_at
                .is_some_and(|c| self.truth.first().is_some_and(|(first, _)| c <= *first));
            return truth.is_none() || (born_in_run && truth == Some(DELETED));
        };
        std::iter::once(from)
            .chain(
                self.truth
                    .iter()
                    .map(|(at, _)| *at)
                    .filter(|at| *at > from && *at <= to),
            )
            .any(|at| self.truth_at(at) == truth)
    }
}

/// How long each loss left the store wrong: for a lost notification of an object
/// (`message.*`, `event.*`, `calendar.*`, `folder.*`), the first moment from its time on at which
/// the state the store holds equals the truth (a write of that object at least as new, or a later
/// change that made the stored state right again, e.g. a flag toggled back). `changes` are every
/// state the truth went through; `writes` are one strategy's (their `written_at` on the emulated
/// clock, and their version: when the state each carries was seen).
pub fn repairs(
    losses: &[&Loss],
    changes: &[ObjectChange],
    writes: &[WriteEvent],
    outages: &[Window],
) -> Repairs {
    let mut objects: HashMap<(&str, &str, &str), Object> = HashMap::new();
    for c in changes {
        let Some((kind, _)) = c.kind.split_once('.') else {
            continue;
        };
        let o = objects
            .entry((c.grant_id.as_str(), kind, c.object_id.as_str()))
            .or_default();
        o.truth.push((c.time, c.state.as_str()));
        if c.kind.ends_with(".created") {
            o.created_at = Some(o.created_at.map_or(c.time, |t| t.min(c.time)));
        }
    }
    for w in writes {
        let (Some((kind, _)), Some(id)) =
            (w.sort_key.split_once('#'), w.sort_key.rsplit('#').next())
        else {
            continue;
        };
        objects
            .entry((w.grant_id.as_str(), kind, id))
            .or_default()
            .writes
            .push((w.written_at as f64 / 1000.0, {
                let seen = w.version.div_euclid(1000);
                match w.source {
                    Source::Webhook => (seen, seen),
                    Source::Fetch | Source::Reconcile => (seen, w.written_at.div_euclid(1000)),
                }
            }));
    }
    for o in objects.values_mut() {
        o.truth.sort_by_key(|(t, _)| *t);
        o.writes.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut out = Repairs::default();
    let mut lines: Vec<(f64, String)> = Vec::new();
    for loss in losses {
        let Some(id) = loss.object_id.as_deref() else {
            continue;
        };
        let Some((kind, _)) = loss.kind.split_once('.') else {
            continue;
        };
        if !matches!(kind, "message" | "event" | "calendar" | "folder") {
            continue;
        }
        let signal = loss.reason != LossReason::Dropped;
        let from = if signal {
            outages
                .iter()
                .find(|(s, e)| *s <= loss.lost_at && loss.lost_at <= *e)
                .map_or(loss.time, |(_, e)| (*e).max(loss.time))
        } else {
            loss.time
        };
        let right_again = objects
            .get(&(loss.grant_id.as_str(), kind, id))
            .and_then(|o| {
                // The moments the answer can change: the loss, each later write, each later change.
                let mut moments: Vec<f64> = std::iter::once(loss.time as f64)
                    .chain(o.writes.iter().map(|(at, _)| *at))
                    .chain(o.truth.iter().map(|(t, _)| *t as f64))
                    .filter(|m| *m >= loss.time as f64)
                    .collect();
                moments.sort_by(f64::total_cmp);
                moments.into_iter().find(|m| o.right_at(*m))
            });
        let repaired = right_again.map(|at| (at - from as f64).max(0.0));
        let line = |d: String| {
            format!(
                "{:?} {} {}/{} at {} (lost at {}): {d}",
                loss.reason, loss.kind, loss.grant_id, id, loss.time, loss.lost_at
            )
        };
        match (repaired, signal) {
            (Some(d), true) => out.signal_s.push(d),
            (Some(d), false) => out.silent_s.push(d),
            (None, _) => out.open += 1,
        }
        match repaired {
            Some(d) => lines.push((d, line(format!("repaired {d:.0} s after {from}")))),
            None => lines.push((f64::INFINITY, line("open".into()))),
        }
    }
    lines.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.slowest = lines.into_iter().take(8).map(|(_, l)| l).collect();
    out.signal_s.sort_by(f64::total_cmp);
    out.silent_s.sort_by(f64::total_cmp);
    out
}

/// What one strategy used over the run, as AWS bills it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub lambda_requests: u64,
    /// Billed duration times configured memory.
    pub lambda_gb_seconds: f64,
    pub sqs_requests: u64,
    pub dynamodb_write_units: f64,
    pub dynamodb_read_units: f64,
    pub s3_puts: u64,
    pub s3_gets: u64,
}

/// List prices, us-east-1, arm64 Lambda, DynamoDB on demand, S3 Standard, SQS standard; free
/// tiers left out (they are per account, not per grant).
pub mod price {
    pub const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
    pub const LAMBDA_PER_GB_SECOND: f64 = 0.000_013_333_4;
    pub const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
    pub const DYNAMODB_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
    pub const DYNAMODB_PER_READ_UNIT: f64 = 0.125 / 1e6;
    pub const S3_PER_PUT: f64 = 0.005 / 1e3;
    pub const S3_PER_GET: f64 = 0.0004 / 1e3;
}

/// Dollars, by service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bill {
    pub lambda: f64,
    pub sqs: f64,
    pub dynamodb: f64,
    pub s3: f64,
}

impl Bill {
    pub fn of(u: &Usage) -> Self {
        Bill {
            lambda: u.lambda_requests as f64 * price::LAMBDA_PER_REQUEST
                + u.lambda_gb_seconds * price::LAMBDA_PER_GB_SECOND,
            sqs: u.sqs_requests as f64 * price::SQS_PER_REQUEST,
            dynamodb: u.dynamodb_write_units * price::DYNAMODB_PER_WRITE_UNIT
                + u.dynamodb_read_units * price::DYNAMODB_PER_READ_UNIT,
            s3: u.s3_puts as f64 * price::S3_PER_PUT + u.s3_gets as f64 * price::S3_PER_GET,
        }
    }

    pub fn total(&self) -> f64 {
        self.lambda + self.sqs + self.dynamodb + self.s3
    }

    /// This bill, run over `grant_days`, scaled to one grant for 30 days.
    pub fn per_grant_month(&self, grant_days: f64) -> Self {
        let k = if grant_days > 0.0 {
            30.0 / grant_days
        } else {
            0.0
        };
        Bill {
            lambda: self.lambda * k,
            sqs: self.sqs * k,
            dynamodb: self.dynamodb * k,
            s3: self.s3 * k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(kind: &str, id: &str, time: i64, lost_at: i64, reason: LossReason) -> Loss {
        Loss {
            destination: "d".into(),
            notification_id: format!("n-{id}-{time}"),
            kind: kind.into(),
            grant_id: "g".into(),
            object_id: Some(id.into()),
            time,
            lost_at,
            reason,
        }
    }

    fn change(kind: &str, id: &str, time: i64, state: &str) -> ObjectChange {
        ObjectChange {
            grant_id: "g".into(),
            kind: kind.into(),
            object_id: id.into(),
            time,
            state: state.into(),
        }
    }

    fn write(sort_key: &str, seen_at: i64, written_at_s: i64) -> WriteEvent {
        WriteEvent {
            grant_id: "g".into(),
            sort_key: sort_key.into(),
            source: Source::Reconcile,
            tombstone: false,
            changed_at: None,
            version: seen_at * 1000,
            written_at: written_at_s * 1000,
        }
    }

    #[test]
    fn a_loss_lasts_until_the_store_holds_a_state_at_least_as_new() {
        let silent = loss("message.updated", "m1", 1_000, 1_000, LossReason::Dropped);
        let changes = [
            change("message.created", "m1", 500, "read"),
            change("message.updated", "m1", 1_000, "unread"),
            change("message.created", "m2", 1_500, "new"),
        ];
        let writes = [
            write("message#m1", 500, 600),
            // A notification of before the loss, written after it: still wrong.
            WriteEvent {
                source: Source::Webhook,
                ..write("message#m1", 900, 1_100)
            },
            write("message#m2", 1_500, 1_200),
            write("message#m1", 1_300, 1_400),
            write("message#m1", 2_000, 2_100),
        ];
        let r = repairs(&[&silent], &changes, &writes, &[]);
        assert_eq!(r.silent_s, vec![400.0]);
        assert!(r.signal_s.is_empty());
        assert_eq!(r.open, 0);
    }

    #[test]
    fn a_listing_that_began_before_a_change_and_was_written_after_it_may_have_seen_it() {
        // A page read during a slow listing: its state is somewhere in [read began, written].
        let silent = loss("message.updated", "m1", 1_000, 1_000, LossReason::Dropped);
        let changes = [
            change("message.created", "m1", 500, "read"),
            change("message.updated", "m1", 1_000, "unread"),
        ];
        let writes = [
            write("message#m1", 500, 600),
            write("message#m1", 990, 1_050),
        ];
        let r = repairs(&[&silent], &changes, &writes, &[]);
        assert_eq!(r.silent_s, vec![50.0]);
        assert_eq!(r.open, 0);
    }

    #[test]
    fn a_change_undone_by_a_later_one_lasts_until_then_with_no_write() {
        // Marked unread, then read again, both notifications lost: wrong in between only.
        let first = loss("message.updated", "m1", 1_000, 1_000, LossReason::Dropped);
        let second = loss("message.updated", "m1", 1_600, 1_600, LossReason::Dropped);
        let changes = [
            change("message.created", "m1", 500, "read"),
            change("message.updated", "m1", 1_000, "unread"),
            change("message.updated", "m1", 1_600, "read"),
        ];
        let writes = [write("message#m1", 500, 520)];
        let r = repairs(&[&first, &second], &changes, &writes, &[]);
        assert_eq!(r.silent_s, vec![0.0, 600.0]);
        assert_eq!(r.open, 0);
    }

    #[test]
    fn a_loss_in_an_outage_counts_from_its_end_and_what_stays_wrong_is_open() {
        let outage = (5_000, 8_600);
        let in_outage = loss(
            "event.updated",
            "e1",
            5_100,
            6_000,
            LossReason::AfterRetries,
        );
        let failed = loss(
            "message.created",
            "m9",
            9_000,
            9_000,
            LossReason::DestinationFailed,
        );
        let never = loss("message.deleted", "m5", 9_100, 9_100, LossReason::Dropped);
        let grant = loss("grant.expired", "g", 9_200, 9_200, LossReason::Dropped);
        let changes = [
            change("event.updated", "e1", 5_100, "moved"),
            change("message.created", "m9", 9_000, "new"),
            change("message.deleted", "m5", 9_100, "deleted"),
        ];
        let writes = [
            write("event#cal-1#e1", 8_650, 8_700),
            write("message#m9", 9_100, 9_250),
        ];
        let r = repairs(
            &[&in_outage, &failed, &never, &grant],
            &changes,
            &writes,
            &[outage],
        );
        assert_eq!(r.signal_s, vec![100.0, 250.0]);
        assert!(r.silent_s.is_empty());
        assert_eq!(
            r.open, 1,
            "the lost delete stays wrong; grant losses are not objects"
        );
    }

    #[test]
    fn an_object_created_and_deleted_in_the_run_and_never_written_is_right_from_its_deletion() {
        // Both notifications lost, the message gone before any read found it: the store never
        // held it, which is right from the deletion on (wrong before it).
        let created = loss("message.created", "m7", 1_000, 1_000, LossReason::Dropped);
        let deleted = loss("message.deleted", "m7", 1_300, 1_300, LossReason::Dropped);
        let changes = [
            change("message.created", "m7", 1_000, "new"),
            change("message.deleted", "m7", 1_300, "deleted"),
        ];
        let r = repairs(&[&created, &deleted], &changes, &[], &[]);
        assert_eq!(r.silent_s, vec![0.0, 300.0]);
        assert_eq!(r.open, 0);
        // The same deletion of an object that existed before the run stays open (the store
        // still holds it): `a_loss_in_an_outage_counts_from_its_end_and_what_stays_wrong_is_open`.
        let r = repairs(&[&deleted], &changes[1..], &[], &[]);
        assert_eq!(r.open, 1);
    }

    #[test]
    fn the_bill_is_usage_at_list_prices_scaled_to_a_grant_month() {
        let usage = Usage {
            lambda_requests: 1_000_000,
            lambda_gb_seconds: 75_000.0,
            sqs_requests: 2_500_000,
            dynamodb_write_units: 1_000_000.0,
            dynamodb_read_units: 4_000_000.0,
            s3_puts: 2_000,
            s3_gets: 10_000,
        };
        let b = Bill::of(&usage);
        assert!((b.lambda - (0.20 + 1.000_005)).abs() < 1e-6, "{b:?}");
        assert!((b.sqs - 1.0).abs() < 1e-9);
        assert!((b.dynamodb - (0.625 + 0.5)).abs() < 1e-9);
        assert!((b.s3 - (0.01 + 0.004)).abs() < 1e-9);
        // Two grants for half a day: one grant-day; a month is 30 of them.
        let m = b.per_grant_month(1.0);
        assert!((m.total() - 30.0 * b.total()).abs() < 1e-9);
        assert_eq!(Bill::of(&usage).per_grant_month(0.0).total(), 0.0);
    }
}
