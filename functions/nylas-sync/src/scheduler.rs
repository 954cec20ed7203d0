//! The scheduler: on each EventBridge tick, finds the grants due a reconcile and sends one job
//! per grant to the reconcile queue, ten per `SendMessageBatch` (the fewest calls), several
//! batches in flight, each job with a random `DelaySeconds` so the load on Nylas is spread over
//! the interval instead of arriving at once.
//!
//! Grants are found with a parallel scan (segments scanned concurrently) filtered to active
//! grants not reconciled recently. A scan reads every grant item, but grant items are small and
//! the table is read once per interval; a sparse "due" index would have to be rewritten on every
//! run and status change. Beyond about a million grants the scan's read cost and time grow
//! linearly (tens of seconds per million at 4 segments): there, shard the work (one scheduler
//! invocation per segment range) or move to a sparse GSI keyed by a shard and the next due time,
//! queried per shard.

use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use crate::aws::{self, AwsTimeouts};
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Env};
use crate::grants::GrantStore;
use crate::jobs::{JobKind, JobQueue, ReconcileJob, MAX_DELAY_SECONDS};
use crate::store::StoreError;

/// What a scheduler invocation does, from its event. The reconcile tick fans out the due grants
/// and then reads the webhook destination; the destination's own, shorter schedule (its
/// EventBridge input `{"watch_only": true}`) only reads the destination, so a `failed` one is
/// reactivated and caught up within minutes while grants keep their interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    FanOutAndWatch,
    WatchOnly,
}

impl Tick {
    pub fn of(event: &serde_json::Value) -> Self {
        match event.get("watch_only").and_then(serde_json::Value::as_bool) {
            Some(true) => Self::WatchOnly,
            _ => Self::FanOutAndWatch,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The schedule's interval: a grant reconciled less than (interval − spread) ago is skipped.
    pub interval_s: i64,
    /// Jobs are delayed by a random 0..=spread seconds (at most 900, SQS's limit).
    pub spread_s: i32,
    pub scan_segments: i32,
    /// Batches in flight at once.
    pub send_concurrency: usize,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            interval_s: 1800,
            spread_s: MAX_DELAY_SECONDS,
            scan_segments: 4,
            send_concurrency: 16,
        }
    }
}

impl SchedulerSettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let interval_s = env.number_or("RECONCILE_INTERVAL_SECONDS", d.interval_s as u64)? as i64;
        let spread = env.number_or(
            "RECONCILE_SPREAD_SECONDS",
            (interval_s / 2).min(MAX_DELAY_SECONDS as i64) as u64,
        )?;
        Ok(Self {
            interval_s,
            spread_s: spread.min(MAX_DELAY_SECONDS as u64) as i32,
            scan_segments: env
                .number_or("SCAN_SEGMENTS", d.scan_segments as u64)?
                .clamp(1, 64) as i32,
            send_concurrency: d.send_concurrency,
        })
    }
}

/// Metric names the scheduler emits (EMF, dimension `Function`).
pub mod metric {
    /// Reconcile jobs enqueued by one tick.
    pub const JOBS_SENT: &str = "ReconcileJobsSent";
    /// `SendMessageBatch` calls made (ceil(jobs / 10)).
    pub const BATCH_CALLS: &str = "SendMessageBatchCalls";
    /// Seconds one fan-out took.
    pub const FAN_OUT_SECONDS: &str = "FanOutSeconds";
    pub const ALL: &[&str] = &[JOBS_SENT, BATCH_CALLS, FAN_OUT_SECONDS];
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] crate::jobs::JobQueueError),
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FanOut {
    pub grants: u64,
    pub batch_calls: u64,
    pub seconds: f64,
}

pub struct Scheduler {
    pub grants: GrantStore,
    pub jobs: JobQueue,
    pub settings: SchedulerSettings,
    pub clock: Arc<dyn Clock>,
}

impl Scheduler {
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let sdk = aws::sdk_config(AwsTimeouts::BACKGROUND.from_env(env)?).await;
        Self::from_env_with(env, &sdk)
    }

    /// As [`Scheduler::from_env`], with an AWS configuration the caller already built.
    pub fn from_env_with(env: &impl Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let grants_table = env.required("GRANTS_TABLE")?;
        let queue_url = env.required("RECONCILE_QUEUE_URL")?;
        let settings = SchedulerSettings::from_env(env)?;
        Ok(Self {
            grants: GrantStore {
                ddb: aws_sdk_dynamodb::Client::new(sdk),
                table: grants_table,
            },
            jobs: JobQueue {
                sqs: aws::sqs_client(sdk),
                queue_url,
            },
            settings,
            clock: Arc::new(SystemClock),
        })
    }

    /// Scans the due grants and enqueues their jobs. The segments are scanned concurrently and
    /// feed one batcher, so every `SendMessageBatch` but the last carries ten jobs: ceil(N/10) calls.
    pub async fn fan_out(&self) -> Result<FanOut, ScheduleError> {
        let now_s = self.clock.now_ms() / 1000;
        let due_before =
            now_s - (self.settings.interval_s - i64::from(self.settings.spread_s)).max(0);
        // A grant whose next run falls within the spread is due now: its job's delay may bring
        // it to the run at about that time.
        let due_next = now_s + i64::from(self.settings.spread_s);
        let out = self
            .send_jobs(due_before, due_next, self.settings.spread_s, |g| {
                ReconcileJob {
                    scheduled_at: Some(now_s),
                    ..ReconcileJob::new(g, JobKind::Incremental, None)
                }
            })
            .await?;
        let mut emf = crate::metrics::Emf::new("scheduler");
        emf.count(metric::JOBS_SENT, out.grants)
            .count(metric::BATCH_CALLS, out.batch_calls)
            .sample(
                metric::FAN_OUT_SECONDS,
                crate::metrics::Unit::Seconds,
                out.seconds,
            );
        emf.flush();
        Ok(out)
    }

    /// A catch-up of every active grant from `since` (Unix s): what the webhooks of a
    /// destination that stopped receiving would have delivered. Same fan-out as a tick, but
    /// sent without the tick's spread: the losses are known and every minute counts, and the
    /// reconciler's event source (`MaximumConcurrency`) already paces a burst of jobs.
    pub async fn catch_up_all(&self, since: i64) -> Result<FanOut, ScheduleError> {
        self.send_jobs(i64::MAX, i64::MAX, 0, |g| {
            ReconcileJob::new(g, JobKind::CatchUp, Some(since))
        })
        .await
    }

    /// Sends `job(grant)` for every active grant due by `due_next` (or, never having recorded
    /// a next run, last reconciled before `due_before`), each delayed by a random 0..=`spread_s`.
    async fn send_jobs(
        &self,
        due_before: i64,
        due_next: i64,
        spread_s: i32,
        job: impl Fn(String) -> ReconcileJob + Sync,
    ) -> Result<FanOut, ScheduleError> {
        let started = Instant::now();
        let job = &job;
        let segments = self.settings.scan_segments;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<String>>(segments as usize * 2);
        let scans = async move {
            let results: Vec<Result<(), ScheduleError>> = stream::iter(0..segments)
                .map(|segment| {
                    let tx = tx.clone();
                    async move {
                        let mut start = None;
                        loop {
                            let (ids, next) = self
                                .grants
                                .scan_due(segment, segments, due_before, due_next, start)
                                .await?;
                            if !ids.is_empty() && tx.send(ids).await.is_err() {
                                return Ok(()); // the batcher stopped on an error; it reports it
                            }
                            match next {
                                Some(k) => start = Some(k),
                                None => return Ok(()),
                            }
                        }
                    }
                })
                .buffer_unordered(segments as usize)
                .collect()
                .await;
            results.into_iter().collect::<Result<(), ScheduleError>>()
        };
        // Grant ids in, batches of ten out, several in flight.
        let batches = tokio_stream_of_batches(rx)
            .map(|chunk: Vec<String>| async move {
                let jobs: Vec<(ReconcileJob, i32)> = chunk
                    .into_iter()
                    .map(|g| (job(g), jitter(spread_s)))
                    .collect();
                self.jobs.send_batch(&jobs).await.map(|_| jobs.len() as u64)
            })
            .buffer_unordered(self.settings.send_concurrency)
            .collect::<Vec<_>>();
        let (scanned, sent) = tokio::join!(scans, batches);
        scanned?;
        let mut out = FanOut::default();
        for r in sent {
            out.grants += r?;
            out.batch_calls += 1;
        }
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// A random delay in `0..=spread_s` seconds (0 when there is no spread).
fn jitter(spread_s: i32) -> i32 {
    if spread_s <= 0 {
        return 0;
    }
    // Uniform enough for spreading load; not for anything secret.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    (mixed % (spread_s as u64 + 1)) as i32
}

/// Regroups the id lists coming from the scan segments into chunks of exactly ten (the last one
/// may be shorter), in arrival order.
fn tokio_stream_of_batches(
    rx: tokio::sync::mpsc::Receiver<Vec<String>>,
) -> impl futures::Stream<Item = Vec<String>> {
    stream::unfold(
        (rx, Vec::<String>::new(), false),
        |(mut rx, mut buf, mut closed)| async move {
            loop {
                if buf.len() >= 10 {
                    let rest = buf.split_off(10);
                    return Some((std::mem::replace(&mut buf, rest), (rx, buf, closed)));
                }
                if closed {
                    return if buf.is_empty() {
                        None
                    } else {
                        Some((std::mem::take(&mut buf), (rx, Vec::new(), true)))
                    };
                }
                match rx.recv().await {
                    Some(ids) => buf.extend(ids),
                    None => closed = true,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::Tick;
    use serde_json::json;

    #[test]
    fn only_the_destinations_schedule_skips_the_fan_out() {
        assert_eq!(Tick::of(&json!({"watch_only": true})), Tick::WatchOnly);
        let scheduled =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(Tick::of(&scheduled), Tick::FanOutAndWatch);
        for other in [
            json!(null),
            json!([]),
            json!({"watch_only": "yes"}),
            json!({"watch_only": false}),
        ] {
            assert_eq!(Tick::of(&other), Tick::FanOutAndWatch, "{other}");
        }
    }
}
