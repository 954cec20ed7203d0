//! The reconciler: one grant per job, the "pull safety" half of the hybrid.
//!
//! 1. **Lease**: a conditional update on the grant (`lease_until < now`, status active) before
//!    any work; two jobs for one grant cannot both run, and a crashed run's lease expires.
//! 2. **Messages**: take the poll start time first, list `received_after = cursor − overlap`
//!    page by page (`limit=200`), write each message through the same monotonic path as the
//!    consumer (unchanged ones skipped by content hash), and only after the last page is stored
//!    advance the cursor to the poll start (never backwards, only while holding the lease).
//! 3. **Events**: list calendars, then per calendar `updated_after = cursor − overlap` with
//!    `show_cancelled=true`; cancelled events become tombstones.
//! 4. **Drift sweep** every N runs (and after a re-authentication): messages have no
//!    `updated_after`, so flag and folder changes and deletes can only be found by comparing a
//!    recent window (listed with `select` of the fields that change) with the store. Objects the
//!    store has that Nylas no longer lists are tombstoned only after a GET answers 404, so a
//!    paging hiccup never deletes data. Events and calendars that vanished are found the same way.
//! 5. **Missed-webhook signal**: every object a scheduled run had to create or repair, whose
//!    change is older than a grace period (so a webhook still in flight is not counted), is
//!    counted per run and per grant (`recovered`). Backfills and catch-ups after an expiry do
//!    not count: what they find was never going to arrive by webhook.
//!
//! A 429 ends the run early and re-enqueues the job after `Retry-After`; a run about to exceed
//! the function's time checkpoints (cursor unchanged, listing position in the next job) and
//! re-enqueues; any other failure releases the lease with the cursor where it was.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::Value;

use crate::cadence::{Cadence, Evidence};
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Env};
use crate::event_window::{self, EventWindow};
use crate::grants::{Grant, GrantStatus, GrantStore, RunRecord};
use crate::jobs::{JobKind, JobQueue, JobQueueError, ReconcileJob, MAX_DELAY_SECONDS};
use crate::nylas::{NylasClient, NylasError, Unauthorized};
use crate::store::{
    content_hash, Flags, ObjectRef, ObjectState, ObjectStore, PutOutcome, Source, StoreError,
    Summary,
};
use crate::sweep;
use crate::versions;

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// Listed again before each cursor, for late-arriving mail and clock skew.
    pub overlap_s: i64,
    /// A drift sweep every this many runs (48 at a 30-minute interval: daily).
    pub sweep_every_runs: i64,
    pub sweep_window_days: i64,
    /// Older slices (of `sweep_window_days` each) a sweep walks through after the recent window.
    pub sweep_older_slices: usize,
    /// Days of recent mail every plain run compares with the store (0: none).
    pub recent_sweep_days: i64,
    pub lease_ms: i64,
    /// A change younger than this may still have its webhook in flight: not counted as missed.
    pub grace_s: i64,
    /// How far back a grant without a cursor is listed.
    pub backfill_days: i64,
    /// Time kept in hand before the function's deadline to checkpoint.
    pub safety_margin: Duration,
    /// `limit` of every listing (Nylas's maximum, 200, outside tests).
    pub page_size: u32,
    /// The events the store mirrors: a window around each run's start.
    pub events_window: EventWindow,
    /// How the interval between a grant's scheduled runs follows the evidence of loss.
    pub cadence: Cadence,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            overlap_s: 600,
            sweep_every_runs: 48,
            sweep_window_days: 7,
            sweep_older_slices: 8,
            recent_sweep_days: 2,
            lease_ms: 900_000,
            grace_s: 300,
            backfill_days: 30,
            safety_margin: Duration::from_secs(20),
            page_size: 200,
            events_window: EventWindow::default(),
            cadence: Cadence::default(),
        }
    }
}

impl ReconcileSettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            overlap_s: env.number_or("RECONCILE_OVERLAP_SECONDS", d.overlap_s as u64)? as i64,
            sweep_every_runs: env
                .number_or("DRIFT_SWEEP_EVERY_RUNS", d.sweep_every_runs as u64)?
                .max(1) as i64,
            sweep_window_days: env.number_or("DRIFT_WINDOW_DAYS", d.sweep_window_days as u64)?
                as i64,
            sweep_older_slices: env.number_or("DRIFT_OLDER_SLICES", d.sweep_older_slices as u64)?
                as usize,
            recent_sweep_days: env.number_or("RECENT_SWEEP_DAYS", d.recent_sweep_days as u64)?
                as i64,
            lease_ms: env.number_or("LEASE_SECONDS", (d.lease_ms / 1000) as u64)? as i64 * 1000,
            grace_s: env.number_or("MISSED_GRACE_SECONDS", d.grace_s as u64)? as i64,
            backfill_days: env.number_or("BACKFILL_DAYS", d.backfill_days as u64)? as i64,
            safety_margin: d.safety_margin,
            page_size: d.page_size,
            events_window: EventWindow::from_env(env)?,
            cadence: Cadence::from_env(env)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Nylas: {0}")]
    Nylas(#[from] NylasError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] JobQueueError),
}

/// Metric names the reconciler emits (EMF, namespace `METRICS_NAMESPACE`, dimension `Function`).
pub mod metric {
    /// Jobs that ran to the end (cursors advanced).
    pub const GRANTS_RECONCILED: &str = "GrantsReconciled";
    /// Jobs skipped: the grant's lease was held, or the grant is not active.
    pub const RUNS_SKIPPED: &str = "ReconcileRunsSkipped";
    /// Jobs that failed (retried by SQS; the DLQ after maxReceiveCount).
    pub const RUNS_FAILED: &str = "ReconcileRunsFailed";
    /// Jobs continued by a new job (out of time, or Nylas answered 429).
    pub const RUNS_REQUEUED: &str = "ReconcileRunsRequeued";
    pub const PAGES: &str = "ReconcilePages";
    pub const OBJECTS_WRITTEN: &str = "ReconcileObjectsWritten";
    /// The missed-webhook signal: objects a scheduled run had to create or repair.
    pub const OBJECTS_RECOVERED: &str = "ObjectsRecovered";
    /// Per job: seconds between the message cursor and the run's start (how far behind the grant was).
    pub const CURSOR_LAG: &str = "CursorLagSeconds";
    pub const NYLAS_CALLS: &str = "NylasCalls";
    /// DynamoDB read units the invocation's reads of the objects table consumed (see
    /// [`crate::store::ReadMeter`]): what a drift sweep slice costs, flat in the mailbox's size.
    pub const STORE_READ_UNITS: &str = "StoreReadUnits";
    pub const ALL: &[&str] = &[
        GRANTS_RECONCILED,
        RUNS_SKIPPED,
        RUNS_FAILED,
        RUNS_REQUEUED,
        PAGES,
        OBJECTS_WRITTEN,
        OBJECTS_RECOVERED,
        CURSOR_LAG,
        NYLAS_CALLS,
        STORE_READ_UNITS,
    ];
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Completed,
    /// Another run holds the lease, or the grant is not active: nothing done.
    Skipped,
    /// Out of time: continued by a new job from where this one stopped.
    Checkpointed,
    /// Nylas answered 429: the job was re-enqueued after `Retry-After`, from where it stopped.
    RateLimited,
    /// The lease was held: a job carrying work was sent again to wait for it.
    Deferred,
    /// Nylas no longer authorises the grant: marked invalid, no retry.
    GrantInvalid,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub grant_id: String,
    /// Seconds between the message cursor and this run's start, if the grant had a cursor.
    pub cursor_lag_s: Option<i64>,
    pub outcome: RunOutcome,
    pub recovered: i64,
    pub pages: u64,
    pub written: u64,
    pub swept: bool,
    /// Evidence of loss asked for the recent window only, and it was swept.
    pub swept_recent: bool,
}

/// Counters since the cold start.
#[derive(Debug, Default)]
pub struct ReconcileCounters {
    pub runs: AtomicU64,
    pub skipped: AtomicU64,
    pub pages: AtomicU64,
    pub written: AtomicU64,
    pub unchanged: AtomicU64,
    pub recovered: AtomicU64,
}

pub struct Reconciler {
    pub objects: ObjectStore,
    pub grants: GrantStore,
    pub jobs: JobQueue,
    pub nylas: NylasClient,
    pub settings: ReconcileSettings,
    pub clock: Arc<dyn Clock>,
    pub counters: ReconcileCounters,
    owner_prefix: String,
    run_seq: AtomicU64,
}

/// What the running job accumulates.
#[derive(Default)]
struct Run {
    /// The lease owner of this run (conditional writes to the grant).
    owner: String,
    /// Only a scheduled run over a grant already in sync counts misses: a backfill finds what
    /// predates the webhooks, a catch-up what Nylas never sent while the grant was expired.
    count_missed: bool,
    recovered: i64,
    pages: u64,
    written: u64,
    swept: bool,
    swept_recent: bool,
    /// Recent mail was compared in place of the listing by cursor (which still runs if the
    /// comparison `left_unfetched` messages)...
    compared_recent: bool,
    /// ...this many days back from the run's start (the sweep does not compare them again).
    compared_days: i64,
    /// The most messages a comparison fetches one by one (`None`: all)...
    fetch_at_most: Option<usize>,
    /// ...and whether it left some for a listing.
    left_unfetched: bool,
    /// What this run adds to the grant's count toward the periodic sweep (see [`Cadence`]).
    sweep_credit: i64,
    messages_cursor: Option<i64>,
    events_cursors: HashMap<String, i64>,
}

enum Progress {
    Done,
    Checkpoint(ReconcileJob),
    /// Nylas answered 429 during the message listing: continue from this position later.
    RateLimited(ReconcileJob, Duration),
}

/// What becomes of a job whose grant's lease could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMiss {
    /// Nothing is lost: the grant is not active, or a plain scheduled run is already running.
    Drop,
    /// Sent again after this many seconds: the job carries work nobody else will do.
    Defer(i32),
}

/// Whether a run lists the grant's calendars, or takes the ones the store holds. Calendar
/// webhooks keep them current and the drift sweep repairs what a lost one missed (it needs the
/// listing to tombstone a calendar Nylas deleted), so a plain incremental run spends no call on
/// them; a first sync, a backfill, a catch-up and a run that sweeps list them.
pub fn lists_calendars(kind: JobKind, synced_before: bool, sweeps: bool) -> bool {
    sweeps || !synced_before || kind != JobKind::Incremental
}

/// How many days of recent mail a run that does not run the drift sweep compares with the store
/// (a listing of ids and flags, [`sweep::compare`]) besides its listing by cursor. Messages have
/// no `updated_after`: this is how a plain run finds a flag change, a move or a delete whose
/// webhook was lost, so a silent loss on recent mail lasts at most one interval. Evidence of
/// loss asks for the drift sweep's whole recent window; a first sync or a backfill needs none.
pub fn recent_sweep_days(
    kind: JobKind,
    synced_before: bool,
    evidence: bool,
    settings: &ReconcileSettings,
) -> i64 {
    match kind {
        JobKind::Incremental if evidence => settings.sweep_window_days.max(1),
        JobKind::Incremental if synced_before => settings.recent_sweep_days.max(0),
        _ => 0,
    }
}

/// How many days of mail a run may compare in place of its listing by cursor: a plain run its
/// recent days; a catch-up the drift sweep's recent window, which it sweeps anyway (so a
/// destination incident of minutes costs a comparison, not a listing of every message since the
/// loss began on top of it).
pub fn compare_window_days(kind: JobKind, recent_days: i64, settings: &ReconcileSettings) -> i64 {
    match kind {
        JobKind::Incremental => recent_days,
        JobKind::CatchUp => settings.sweep_window_days.max(1),
        JobKind::Backfill | JobKind::Purge => 0,
    }
}

/// Whether a run compares recent mail in place of listing messages from its cursor (unless it
/// comes on evidence of loss, or the comparison finds more than a few messages missing): a plain
/// run or a catch-up (not a continuation) whose window, `recent_days` back from `poll_start`,
/// reaches back past `listed_from` (the cursor, or the catch-up's start, less the overlap). The
/// comparison finds everything the listing would (a message it lacks is fetched), in a listing of
/// ids and flags only.
pub fn compares_instead_of_listing(
    job: &ReconcileJob,
    recent_days: i64,
    listed_from: i64,
    poll_start: i64,
) -> bool {
    matches!(job.kind, JobKind::Incremental | JobKind::CatchUp)
        && job.page_token.is_none()
        && job.poll_start.is_none()
        && recent_days > 0
        && listed_from >= poll_start.saturating_sub(recent_days.saturating_mul(86_400))
}

/// How often a run sent on evidence of loss tries again for a lease another run holds (that run
/// may have begun before the loss, so it may not cover it; it usually ends in seconds).
pub const AFTER_LOSS_RETRY_S: i64 = 15;

/// A continuation (a listing position or a poll start) or a backfill that finds its active
/// grant's lease held waits until the lease can expire; a run sent on evidence of loss (a
/// redelivery, a catch-up) tries again within [`AFTER_LOSS_RETRY_S`]; anything else is dropped.
pub fn when_lease_unavailable(job: &ReconcileJob, grant: Option<&Grant>, now_ms: i64) -> LeaseMiss {
    let Some(grant) = grant.filter(|g| g.status == GrantStatus::Active) else {
        return LeaseMiss::Drop;
    };
    // Seconds until the lease can expire.
    let wait_s = grant
        .lease_until
        .map_or(0, |until| (until - now_ms).max(0) / 1000 + 1);
    if job.after_loss || job.kind == JobKind::CatchUp {
        return LeaseMiss::Defer(wait_s.clamp(1, AFTER_LOSS_RETRY_S) as i32);
    }
    let carries_work =
        job.page_token.is_some() || job.poll_start.is_some() || job.kind == JobKind::Backfill;
    if !carries_work {
        return LeaseMiss::Drop;
    }
    LeaseMiss::Defer(wait_s.clamp(5, i64::from(MAX_DELAY_SECONDS)) as i32)
}

/// SQS delay for a job Nylas rate-limited (its `Retry-After`, within SQS's limit).
fn retry_delay(after: Duration) -> i32 {
    after.as_secs().min(MAX_DELAY_SECONDS as u64) as i32
}

impl Reconciler {
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let settings = ReconcileSettings::from_env(env)?;
        let b = crate::backend::SyncBackend::from_env(env).await?;
        Ok(Self::new(
            b.objects,
            b.grants,
            b.jobs,
            b.nylas,
            settings,
            Arc::new(SystemClock),
        ))
    }

    pub fn new(
        objects: ObjectStore,
        grants: GrantStore,
        jobs: JobQueue,
        nylas: NylasClient,
        settings: ReconcileSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let owner_prefix = format!("{}-{}", std::process::id(), crate::clock::now_ms());
        Self {
            objects,
            grants,
            jobs,
            nylas,
            settings,
            clock,
            counters: ReconcileCounters::default(),
            owner_prefix,
            run_seq: AtomicU64::new(0),
        }
    }

    /// Processes an SQS batch of jobs (one grant each), one after the other.
    pub async fn handle(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let calls_before = self.nylas.calls.snapshot();
        let reads_before = self.objects.reads.units();
        let mut emf = crate::metrics::Emf::new("reconciler");
        let (mut completed, mut skipped, mut failed, mut requeued) = (0u64, 0u64, 0u64, 0u64);
        let (mut pages, mut written, mut recovered) = (0u64, 0u64, 0u64);
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let job: ReconcileJob = match serde_json::from_str(
                record.body.as_deref().unwrap_or_default(),
            ) {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(message_id = %id, error = %crate::json_error_summary(&e), "not a reconcile job");
                    failed += 1;
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = id;
                    response.batch_item_failures.push(f);
                    continue;
                }
            };
            match self.run(&job, deadline).await {
                Ok(report) => {
                    tracing::info!(
                        grant_id = %report.grant_id,
                        outcome = ?report.outcome,
                        recovered = report.recovered,
                        pages = report.pages,
                        written = report.written,
                        swept = report.swept,
                        "reconcile"
                    );
                    match report.outcome {
                        RunOutcome::Completed => completed += 1,
                        RunOutcome::Skipped | RunOutcome::GrantInvalid => skipped += 1,
                        RunOutcome::Checkpointed
                        | RunOutcome::RateLimited
                        | RunOutcome::Deferred => requeued += 1,
                    }
                    pages += report.pages;
                    written += report.written;
                    recovered += report.recovered.max(0) as u64;
                    if let Some(lag) = report.cursor_lag_s {
                        emf.sample(
                            metric::CURSOR_LAG,
                            crate::metrics::Unit::Seconds,
                            lag as f64,
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(grant_id = %job.grant_id, error = %e, "reconcile failed; the job will be retried");
                    failed += 1;
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = id;
                    response.batch_item_failures.push(f);
                }
            }
        }
        emf.count(metric::GRANTS_RECONCILED, completed)
            .count(metric::RUNS_SKIPPED, skipped)
            .count(metric::RUNS_FAILED, failed)
            .count(metric::RUNS_REQUEUED, requeued)
            .count(metric::PAGES, pages)
            .count(metric::OBJECTS_WRITTEN, written)
            .count(metric::OBJECTS_RECOVERED, recovered)
            .sample(
                metric::STORE_READ_UNITS,
                crate::metrics::Unit::Count,
                self.objects.reads.units() - reads_before,
            );
        for (key, n) in self.nylas.calls.snapshot() {
            let n = n.saturating_sub(calls_before.get(&key).copied().unwrap_or(0));
            if let (Some((endpoint, status)), true) = (key.split_once(' '), n > 0) {
                emf.count_with(
                    metric::NYLAS_CALLS,
                    &[("Endpoint", endpoint), ("Status", status)],
                    n,
                );
            }
        }
        emf.flush();
        response
    }

    /// Runs one job under the grant's lease.
    pub async fn run(
        &self,
        job: &ReconcileJob,
        deadline: Instant,
    ) -> Result<RunReport, ReconcileError> {
        self.counters.runs.fetch_add(1, Ordering::Relaxed);
        if job.kind == JobKind::Purge {
            return self.purge(job, deadline).await;
        }
        let owner = format!(
            "{}-{}",
            self.owner_prefix,
            self.run_seq.fetch_add(1, Ordering::Relaxed)
        );
        let now_ms = self.clock.now_ms();
        let mut report = RunReport {
            grant_id: job.grant_id.clone(),
            cursor_lag_s: None,
            outcome: RunOutcome::Skipped,
            recovered: 0,
            pages: 0,
            written: 0,
            swept: false,
            swept_recent: false,
        };
        if job.scheduled_at.is_some() {
            // One read, no lease taken and no Nylas call, for a duplicate the scheduler sent
            // while the queue was behind.
            let last_started = self
                .grants
                .get(&job.grant_id)
                .await?
                .and_then(|g| g.last_reconcile_at);
            if crate::jobs::superseded(job, last_started) {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(report);
            }
        }
        let Some(grant) = self
            .grants
            .acquire_lease(&job.grant_id, &owner, now_ms, self.settings.lease_ms)
            .await?
        else {
            let current = self.grants.get(&job.grant_id).await?;
            match when_lease_unavailable(job, current.as_ref(), now_ms) {
                LeaseMiss::Drop => {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                }
                LeaseMiss::Defer(delay) => {
                    // A continuation or a backfill carries work no scheduled run will redo:
                    // it waits for the lease instead of being dropped.
                    self.jobs
                        .send_delayed(job, self.clock.queue_delay_s(delay))
                        .await?;
                    report.outcome = RunOutcome::Deferred;
                }
            }
            return Ok(report);
        };
        // The poll start is taken before any listing: the cursor moves to it, never past what was listed.
        let poll_start = job.poll_start.unwrap_or(now_ms / 1000);
        report.cursor_lag_s = grant.messages_received_after.map(|c| poll_start - c);
        let mut run = Run {
            owner: owner.clone(),
            count_missed: job.kind == JobKind::Incremental
                && grant.messages_received_after.is_some(),
            sweep_credit: self
                .settings
                .cadence
                .sweep_credit(grant.last_reconcile_at.map(|last| poll_start - last)),
            ..Run::default()
        };
        let result = self.sync(&grant, job, poll_start, deadline, &mut run).await;
        report.recovered = run.recovered;
        report.pages = run.pages;
        report.written = run.written;
        report.swept = run.swept;
        report.swept_recent = run.swept_recent;
        self.counters
            .recovered
            .fetch_add(run.recovered.max(0) as u64, Ordering::Relaxed);
        // The next interval: back to the base after a signal of this grant's loss (a run sent
        // on a redelivery), shorter after a run that repaired something (a catch-up too),
        // longer after one that found nothing.
        let evidence = Evidence::of_run(job.after_loss, run.recovered);
        let next_interval = self
            .settings
            .cadence
            .next_interval(grant.reconcile_interval_s, evidence);
        let record = |outcome: &str, with_cursors: bool| RunRecord {
            started_at: poll_start,
            outcome: outcome.to_string(),
            recovered: run.recovered,
            swept: run.swept,
            swept_recent: run.swept || run.swept_recent,
            messages_cursor: if with_cursors {
                run.messages_cursor
            } else {
                None
            },
            events_cursors: if with_cursors {
                run.events_cursors.clone()
            } else {
                HashMap::new()
            },
            next_interval_s: with_cursors.then_some(next_interval),
            sweep_credit: run.sweep_credit,
        };
        match result {
            Ok(Progress::Done) => {
                if !self
                    .grants
                    .finish_run(&grant.grant_id, &owner, &record("ok", true))
                    .await?
                {
                    tracing::warn!(grant_id = %grant.grant_id, "lease lost before the end of the run: cursors not advanced");
                }
                report.outcome = RunOutcome::Completed;
            }
            // The lease is released before the continuation is sent: an instance that receives
            // it at once must be able to take the lease (and a continuation that still finds
            // it held waits for it, see `when_lease_unavailable`). If the send fails, the job
            // fails and SQS gives it back: its own position is still valid.
            Ok(Progress::Checkpoint(next)) => {
                self.grants
                    .finish_run(&grant.grant_id, &owner, &record("checkpointed", false))
                    .await?;
                self.jobs.send(&next).await?;
                report.outcome = RunOutcome::Checkpointed;
            }
            Ok(Progress::RateLimited(next, after)) => {
                self.grants
                    .finish_run(&grant.grant_id, &owner, &record("rate-limited", false))
                    .await?;
                self.jobs.send_delayed(&next, retry_delay(after)).await?;
                report.outcome = RunOutcome::RateLimited;
            }
            Err(ReconcileError::Nylas(NylasError::RateLimited(after))) => {
                self.grants
                    .finish_run(&grant.grant_id, &owner, &record("rate-limited", false))
                    .await?;
                self.jobs.send_delayed(job, retry_delay(after)).await?;
                report.outcome = RunOutcome::RateLimited;
            }
            // A grant Nylas no longer authorises would fail every run for ever (each tick's job
            // ending in the DLQ): switch it off until a re-authentication brings it back. A
            // refused API key is not the grant's fault: fail (and alarm), change nothing.
            Err(ReconcileError::Nylas(NylasError::Unauthorized(status)))
                if self.nylas.diagnose_unauthorized(&grant.grant_id).await
                    == Unauthorized::GrantRevoked =>
            {
                self.grants
                    .release_lease(
                        &grant.grant_id,
                        &owner,
                        &format!("grant invalid ({status})"),
                    )
                    .await?;
                // The catch-up after a re-authentication starts from this run.
                self.grants
                    .mark_invalid(&grant.grant_id, now_ms, poll_start)
                    .await?;
                tracing::warn!(grant_id = %grant.grant_id, status, "grant no longer valid at Nylas: marked invalid");
                report.outcome = RunOutcome::GrantInvalid;
            }
            Err(e) => {
                self.grants
                    .release_lease(&grant.grant_id, &owner, &format!("failed: {e}"))
                    .await?;
                return Err(e);
            }
        }
        Ok(report)
    }

    /// One purge job: deletes what is left of a deleted grant a page at a time (items first,
    /// then its payloads in the bucket), and continues in a new job near the deadline. Does
    /// nothing unless the grant is deleted (a stray job never purges a live grant); needs no
    /// lease (purging twice at once is harmless).
    async fn purge(
        &self,
        job: &ReconcileJob,
        deadline: Instant,
    ) -> Result<RunReport, ReconcileError> {
        let mut report = RunReport {
            grant_id: job.grant_id.clone(),
            cursor_lag_s: None,
            outcome: RunOutcome::Skipped,
            recovered: 0,
            pages: 0,
            written: 0,
            swept: false,
            swept_recent: false,
        };
        let deleted = self
            .grants
            .get(&job.grant_id)
            .await?
            .is_some_and(|g| g.status == GrantStatus::Deleted);
        if !deleted {
            return Ok(report);
        }
        loop {
            if deadline.saturating_duration_since(Instant::now()) < self.settings.safety_margin {
                self.jobs.send(job).await?;
                report.outcome = RunOutcome::Checkpointed;
                return Ok(report);
            }
            report.pages += 1;
            let items = self.objects.purge_page(&job.grant_id, PURGE_PAGE).await?;
            let payloads = if items == 0 {
                self.objects.purge_payloads(&job.grant_id).await?
            } else {
                0
            };
            report.written += items + payloads;
            if items == 0 && payloads == 0 {
                tracing::info!(grant_id = %job.grant_id, removed = report.written, "grant purged");
                report.outcome = RunOutcome::Completed;
                return Ok(report);
            }
        }
    }

    async fn sync(
        &self,
        grant: &Grant,
        job: &ReconcileJob,
        poll_start: i64,
        deadline: Instant,
        run: &mut Run,
    ) -> Result<Progress, ReconcileError> {
        let g = grant.grant_id.as_str();
        let default_since = poll_start - self.settings.backfill_days * 86_400;
        let since = match job.kind {
            JobKind::Incremental => grant
                .messages_received_after
                .or(job.since)
                .unwrap_or(default_since),
            JobKind::Backfill | JobKind::CatchUp | JobKind::Purge => {
                job.since.unwrap_or(default_since)
            }
        };

        // Messages: listed from the cursor, or, when the recent mail a plain run compares covers
        // everything since the cursor, only compared (what is missing is fetched one by one:
        // in steady state nothing, as webhooks brought it).
        // Evidence of loss: the grant was marked (a redelivery) or the job was sent on it.
        let on_evidence = grant.sweep_recent || job.after_loss;
        let recent_days = recent_sweep_days(
            job.kind,
            grant.messages_received_after.is_some(),
            on_evidence,
            &self.settings,
        );
        let compare_days = compare_window_days(job.kind, recent_days, &self.settings);
        if !on_evidence
            && compares_instead_of_listing(
                job,
                compare_days,
                since - self.settings.overlap_s,
                poll_start,
            )
        {
            // More missing than a few: the listing below brings them 200 a call.
            run.fetch_at_most = Some(COMPARE_FETCH_AT_MOST);
            for (from, to) in sweep::slices(poll_start, None, compare_days * 86_400, 0) {
                self.sweep_messages(g, from, to, run).await?;
            }
            run.compared_recent = true;
            run.compared_days = compare_days;
            run.fetch_at_most = None;
        }
        let received_after = (since - self.settings.overlap_s).to_string();
        let mut page_token = job.page_token.clone();
        while !run.compared_recent || run.left_unfetched {
            if deadline.saturating_duration_since(Instant::now()) < self.settings.safety_margin {
                let mut next = job.clone();
                next.page_token = page_token;
                next.poll_start = Some(poll_start);
                return Ok(Progress::Checkpoint(next));
            }
            let limit = self.settings.page_size.to_string();
            let mut query = vec![
                ("limit", limit.as_str()),
                ("received_after", received_after.as_str()),
            ];
            if let Some(t) = &page_token {
                query.push(("page_token", t.as_str()));
            }
            let read_began = self.clock.now_ms();
            let page = match self.nylas.list(g, "messages", &query).await {
                // A checkpoint's page token may have expired: list again from the cursor (the
                // pages already stored are skipped by content hash).
                Err(NylasError::Rejected(why)) if page_token.is_some() => {
                    tracing::warn!(grant_id = g, reason = %why, "page token refused: listing again from the cursor");
                    page_token = None;
                    continue;
                }
                // A 429 in the middle of a long listing (a backfill) continues from this page,
                // not from page 1.
                Err(NylasError::RateLimited(after)) => {
                    let mut next = job.clone();
                    next.page_token = page_token;
                    next.poll_start = Some(poll_start);
                    return Ok(Progress::RateLimited(next, after));
                }
                page => page?,
            };
            let items = page
                .data
                .into_iter()
                .filter_map(|m| {
                    Some((
                        ObjectRef::Message {
                            id: m.get("id")?.as_str()?.to_string(),
                        },
                        Some(m),
                    ))
                })
                .collect();
            self.upsert_listed(g, items, read_began, poll_start, run)
                .await?;
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(c) => page_token = Some(c),
                None => break,
            }
        }
        run.messages_cursor = Some(poll_start);

        // Calendars, then events per calendar.
        let sweep_due = job.force_sweep
            || job.kind == JobKind::CatchUp
            || grant.runs_since_sweep.saturating_add(run.sweep_credit)
                >= self.settings.sweep_every_runs;
        let mut calendar_ids = Vec::new();
        let calendars_listed =
            lists_calendars(job.kind, grant.messages_received_after.is_some(), sweep_due);
        if calendars_listed {
            let read_began = self.clock.now_ms();
            let calendars = self.list_all(g, "calendars", &[]).await?;
            let items = calendars
                .into_iter()
                .filter_map(|c| {
                    let id = c.get("id")?.as_str()?.to_string();
                    calendar_ids.push(id.clone());
                    Some((ObjectRef::Calendar { id }, Some(c)))
                })
                .collect();
            self.upsert_listed(g, items, read_began, poll_start, run)
                .await?;
        } else {
            for r in self.objects.live_refs(g, "calendar#").await? {
                calendar_ids.push(r.id().to_string());
            }
        }
        let spans = self.event_spans(grant, poll_start);
        // A run that sweeps lists every event of the window there: no listing by change here.
        let calendar_ids_by_change: &[String] = if sweep_due { &[] } else { &calendar_ids };
        'calendars: for cal in calendar_ids_by_change {
            let cal_since = match job.kind {
                JobKind::Incremental => grant
                    .events_updated_after
                    .get(cal)
                    .copied()
                    .or(job.since)
                    .unwrap_or(default_since),
                _ => job.since.unwrap_or(default_since),
            };
            let updated_after = (cal_since - self.settings.overlap_s).to_string();
            for (start, end) in &spans {
                let (start, end) = (start.to_string(), end.to_string());
                // A backfill, or a calendar never listed before, imports every master,
                // exception and single event of the window, whenever it last changed; later
                // runs list what changed since the cursor (cancelled ones included, recurring
                // series unexpanded).
                let first_time = !grant.events_updated_after.contains_key(cal);
                let read_began = self.clock.now_ms();
                let listed = if job.kind == JobKind::Backfill || first_time {
                    self.list_all(
                        g,
                        IMPORT,
                        &[("calendar_id", cal), ("start", &start), ("end", &end)],
                    )
                    .await
                } else {
                    self.list_all(
                        g,
                        "events",
                        &[
                            ("calendar_id", cal),
                            ("updated_after", &updated_after),
                            ("start", &start),
                            ("end", &end),
                            ("expand_recurring", "false"),
                            ("show_cancelled", "true"),
                        ],
                    )
                    .await
                };
                let events = match listed {
                    // A calendar the store holds that Nylas no longer knows (its
                    // calendar.deleted was lost or is still queued): once a GET confirms it,
                    // it goes with its events, as the sweep would do.
                    // Not counted as missed: when the calendar went is unknown, and its
                    // webhook may still be on the way.
                    Err(ReconcileError::Nylas(NylasError::NotFound)) if !calendars_listed => {
                        let id = cal.clone();
                        let counting = std::mem::replace(&mut run.count_missed, false);
                        let gone = self
                            .confirm_gone(g, ObjectRef::Calendar { id }, run)
                            .await?;
                        if gone {
                            self.tombstone_calendar_events(g, cal, versions::read(read_began), run)
                                .await?;
                        }
                        run.count_missed = counting;
                        if gone {
                            continue 'calendars;
                        }
                        return Err(NylasError::NotFound.into());
                    }
                    listed => listed?,
                };
                self.upsert_listed(
                    g,
                    events
                        .into_iter()
                        .filter_map(|e| event_item(cal, e))
                        .collect(),
                    read_began,
                    poll_start,
                    run,
                )
                .await?;
            }
            run.events_cursors.insert(cal.clone(), poll_start);
        }

        // A first sync takes the folders too (later, the sweep keeps them).
        if job.kind == JobKind::Backfill || grant.messages_received_after.is_none() {
            self.reconcile_folders(g, poll_start, run).await?;
        }

        // Drift sweep.
        let time_to_sweep =
            deadline.saturating_duration_since(Instant::now()) > self.settings.safety_margin * 2;
        if sweep_due && time_to_sweep {
            self.sweep(grant, &calendar_ids, poll_start, deadline, run)
                .await?;
            run.swept = true;
        } else if time_to_sweep {
            // Recent mail, where flags change and lost webhooks are likely; on evidence of loss
            // (a redelivered notification) the whole recent window and the folders, not the walk
            // through older mail (the periodic sweep keeps its own cycle). Events are listed by
            // change above.
            if recent_days > 0 && !run.compared_recent {
                for (from, to) in sweep::slices(poll_start, None, recent_days * 86_400, 0) {
                    self.sweep_messages(g, from, to, run).await?;
                }
            }
            if on_evidence && job.kind == JobKind::Incremental {
                self.reconcile_folders(g, poll_start, run).await?;
                run.swept_recent = true;
            }
        }
        Ok(Progress::Done)
    }

    /// The slices of the events window a run lists, as the grant's provider allows them.
    fn event_spans(&self, grant: &Grant, poll_start: i64) -> Vec<(i64, i64)> {
        let (start, end) = self.settings.events_window.bounds(poll_start);
        event_window::slices(
            start,
            end,
            event_window::max_span(grant.provider.as_deref()),
        )
    }

    /// Every page of a listing (calendars and events listings are short).
    async fn list_all(
        &self,
        grant: &str,
        resource: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, ReconcileError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let limit = self.settings.page_size.to_string();
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", limit.as_str()));
            if let Some(t) = &token {
                q.push(("page_token", t.as_str()));
            }
            let page = self.nylas.list(grant, resource, &q).await?;
            all.extend(page.data);
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(c) => token = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// Writes listed objects (`None` = tombstone) that differ from the store, counting those the
    /// webhook path missed.
    /// `read_began` (ms) is when the read that returned them began: their version.
    async fn upsert_listed(
        &self,
        grant: &str,
        items: Vec<(ObjectRef, Option<Value>)>,
        read_began: i64,
        poll_start: i64,
        run: &mut Run,
    ) -> Result<(), ReconcileError> {
        self.counters.pages.fetch_add(1, Ordering::Relaxed);
        run.pages += 1;
        let refs: Vec<ObjectRef> = items.iter().map(|(r, _)| r.clone()).collect();
        let stored = self.objects.summaries(grant, &refs).await?;
        let version = versions::read(read_began);
        for (object_ref, object) in items {
            let existing = stored.get(&object_ref.sort_key());
            if existing.is_some_and(|s| s.content_hash == content_hash(object.as_ref())) {
                self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if existing.is_none() && object.is_none() {
                continue; // a cancelled event the store never had: nothing to hide
            }
            let missed = self.was_missed(existing, object.as_ref(), poll_start);
            // The change time where the object tells it: events their update, new messages their arrival.
            let time_of = |k: &str| {
                object
                    .as_ref()
                    .and_then(|o| o.get(k))
                    .and_then(Value::as_i64)
            };
            let changed_at = time_of("updated_at").or(if existing.is_none() {
                time_of("date")
            } else {
                None
            });
            self.write(grant, object_ref, object, version, missed, changed_at, run)
                .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        grant: &str,
        object_ref: ObjectRef,
        object: Option<Value>,
        version: i64,
        missed: bool,
        changed_at: Option<i64>,
        run: &mut Run,
    ) -> Result<bool, ReconcileError> {
        let state = ObjectState {
            grant_id: grant.to_string(),
            object_ref,
            version,
            object,
            source: Source::Reconcile,
            changed_at,
        };
        let written = matches!(
            self.objects.put_if_newer(&state, version).await?,
            PutOutcome::Written
        );
        if written {
            self.counters.written.fetch_add(1, Ordering::Relaxed);
            run.written += 1;
            if missed && run.count_missed {
                run.recovered += 1;
            }
        }
        Ok(written)
    }

    /// Whether a difference reconciliation found is one the webhooks should have delivered by now.
    fn was_missed(
        &self,
        existing: Option<&Summary>,
        object: Option<&Value>,
        poll_start: i64,
    ) -> bool {
        let settled = poll_start - self.settings.grace_s;
        // The object's own time of change where Nylas gives one (events), of receipt for messages.
        let changed_at = object
            .and_then(|o| o.get("updated_at").or_else(|| o.get("date")))
            .and_then(Value::as_i64);
        match (existing, changed_at) {
            (_, Some(t)) if object.and_then(|o| o.get("updated_at")).is_some() => t < settled,
            (None, Some(t)) => t < settled,
            (None, None) => true,
            // A message changed since the store last heard of it: missed if the store has been quiet for the grace period.
            (Some(s), _) => s.written_at / 1000 < settled,
        }
    }

    async fn sweep(
        &self,
        grant_record: &Grant,
        calendar_ids: &[String],
        poll_start: i64,
        deadline: Instant,
        run: &mut Run,
    ) -> Result<(), ReconcileError> {
        let grant = grant_record.grant_id.as_str();
        let window = self.settings.sweep_window_days.max(1) * 86_400;
        let plan = sweep::slices(
            poll_start,
            grant_record.sweep_cursor,
            window,
            self.settings.sweep_older_slices,
        );
        for (i, (from, to)) in plan.into_iter().enumerate() {
            let older = i > 0;
            if !older && run.compared_recent && run.compared_days * 86_400 >= window {
                continue; // compared at the start of this run
            }
            // Each finished slice is kept (its cursor stored): a sweep that meets its deadline
            // stops between slices and the next one goes on from there.
            if older
                && deadline.saturating_duration_since(Instant::now())
                    < self.settings.safety_margin * 2
            {
                break;
            }
            let empty = self.sweep_messages(grant, from, to, run).await?;
            if older {
                // The walk ends past the oldest mail on both sides: Nylas's (one call) and the
                // store's (which may still hold what Nylas deleted).
                let older_exists = if empty {
                    let before = from.to_string();
                    let page = self
                        .nylas
                        .list(
                            grant,
                            "messages",
                            &[
                                ("limit", "1"),
                                ("received_before", &before),
                                ("select", "id"),
                            ],
                        )
                        .await?;
                    Some(
                        !page.data.is_empty()
                            || self.objects.has_message_before(grant, from).await?,
                    )
                } else {
                    None
                };
                let next = sweep::next_cursor(from, empty, older_exists);
                self.grants
                    .set_sweep_cursor(grant, &run.owner, next)
                    .await?;
                if next.is_none() {
                    break; // the walk reached the oldest mail: the next sweep starts again
                }
            }
        }

        self.reconcile_folders(grant, poll_start, run).await?;

        // Calendars that vanished from Nylas, and with them their events.
        let stored_calendars = self.objects.list_prefix(grant, "calendar#", false).await?;
        for c in stored_calendars {
            let id = c.sort_key.trim_start_matches("calendar#").to_string();
            if calendar_ids.contains(&id) {
                continue;
            }
            let read_began = self.clock.now_ms();
            let gone = c.deleted
                || self
                    .confirm_gone(grant, ObjectRef::Calendar { id: id.clone() }, run)
                    .await?;
            if gone {
                self.tombstone_calendar_events(grant, &id, versions::read(read_began), run)
                    .await?;
            }
        }
        // Events: every master, exception and single event of the window, compared with the
        // store's; an event the store holds in the window that Nylas no longer lists is
        // tombstoned once a GET confirms it (gone, or cancelled).
        let spans = self.event_spans(grant_record, poll_start);
        let (window_from, window_to) = self.settings.events_window.bounds(poll_start);
        for cal in calendar_ids {
            let mut listed: HashMap<String, Value> = HashMap::new();
            let read_began = self.clock.now_ms();
            for (start, end) in &spans {
                let (start, end) = (start.to_string(), end.to_string());
                let page = self
                    .list_all(
                        grant,
                        IMPORT,
                        &[("calendar_id", cal), ("start", &start), ("end", &end)],
                    )
                    .await?;
                // A recurring event may come back on several pages or slices: keep one.
                listed.extend(
                    page.into_iter()
                        .filter_map(|e| Some((e.get("id")?.as_str()?.to_string(), e))),
                );
            }
            let items: Vec<(ObjectRef, Option<Value>)> = listed
                .values()
                .cloned()
                .filter_map(|e| event_item(cal, e))
                .collect();
            self.upsert_listed(grant, items, read_began, poll_start, run)
                .await?;
            // The whole window listed: what changed since the cursor is in it.
            run.events_cursors.insert(cal.clone(), poll_start);
            let prefix = format!("event#{cal}#");
            for s in self
                .objects
                .list_prefix(grant, &prefix, false)
                .await?
                .into_iter()
                .filter(|s| !s.deleted)
            {
                let id = s.sort_key.trim_start_matches(&prefix).to_string();
                let in_window = s
                    .object
                    .as_ref()
                    .is_none_or(|o| event_window::overlaps(o, window_from, window_to));
                if !listed.contains_key(&id) && in_window {
                    self.confirm_gone(
                        grant,
                        ObjectRef::Event {
                            calendar_id: cal.clone(),
                            id,
                        },
                        run,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Folders: webhooks keep them current; a first sync and every sweep list them (one short
    /// call), write what differs and tombstone, after a GET 404, what Nylas deleted.
    async fn reconcile_folders(
        &self,
        grant: &str,
        poll_start: i64,
        run: &mut Run,
    ) -> Result<(), ReconcileError> {
        let read_began = self.clock.now_ms();
        let folders = self.list_all(grant, "folders", &[]).await?;
        let listed_folders: std::collections::HashSet<String> = folders
            .iter()
            .filter_map(|f| Some(f.get("id")?.as_str()?.to_string()))
            .collect();
        let items = folders
            .into_iter()
            .filter_map(|f| {
                let id = f.get("id")?.as_str()?.to_string();
                Some((ObjectRef::Folder { id }, Some(f)))
            })
            .collect();
        self.upsert_listed(grant, items, read_began, poll_start, run)
            .await?;
        for f in self.objects.list_prefix(grant, "folder#", false).await? {
            let id = f.sort_key.trim_start_matches("folder#").to_string();
            if !f.deleted && !listed_folders.contains(&id) {
                self.confirm_gone(grant, ObjectRef::Folder { id }, run)
                    .await?;
            }
        }

        Ok(())
    }

    /// Compares one slice of received dates `[from, to)`: Nylas's listing (ids and the fields
    /// that change) with the store's date index, and repairs what differs (see
    /// [`sweep::compare`]). Answers whether the slice was empty on both sides.
    async fn sweep_messages(
        &self,
        grant: &str,
        from: i64,
        to: i64,
        run: &mut Run,
    ) -> Result<bool, ReconcileError> {
        let read_began = self.clock.now_ms();
        let after = (from - 1).to_string();
        let before = to.to_string();
        let mut query = vec![
            ("received_after", after.as_str()),
            ("select", "id,folders,unread,starred"),
        ];
        if to != i64::MAX {
            query.push(("received_before", before.as_str()));
        }
        let listed: HashMap<String, Flags> = self
            .list_all(grant, "messages", &query)
            .await?
            .into_iter()
            .filter_map(|m| Some((m.get("id")?.as_str()?.to_string(), Flags::of(&m))))
            .collect();
        let stored = self
            .objects
            .messages_received_between(grant, from, to)
            .await?;
        let empty = listed.is_empty() && stored.is_empty();
        let diff = sweep::compare(&listed, &stored);
        let version = versions::read(read_began);
        for (id, flags) in diff.patch {
            // Patch the changing fields into the stored object (resolved from S3 if kept there).
            let object_ref = ObjectRef::Message { id };
            let Some(mut patched) = self
                .objects
                .get(grant, &object_ref)
                .await?
                .and_then(|o| o.object)
            else {
                continue;
            };
            if let Some(map) = patched.as_object_mut() {
                for (k, v) in [
                    ("folders", flags.folders),
                    ("unread", flags.unread),
                    ("starred", flags.starred),
                ] {
                    if let Some(v) = v {
                        map.insert(k.to_string(), v);
                    }
                }
            }
            self.write(grant, object_ref, Some(patched), version, true, None, run)
                .await?;
        }
        for id in diff.gone {
            self.confirm_gone(grant, ObjectRef::Message { id }, run)
                .await?;
        }
        // Listed messages the store never had (older than the cursor's overlap), or holds as
        // deleted while Nylas still lists them (a delete applied by mistake, mail restored): the
        // current object, versioned by its read, replaces the tombstone.
        if run
            .fetch_at_most
            .is_some_and(|most| diff.fetch.len() > most)
        {
            run.left_unfetched = true;
            return Ok(empty);
        }
        for id in diff.fetch {
            let object_ref = ObjectRef::Message { id: id.clone() };
            let stored = self.objects.get(grant, &object_ref).await?;
            if stored.is_some_and(|s| !s.deleted) {
                continue; // held live, just not indexed under this date
            }
            let read_began = self.clock.now_ms();
            match self.nylas.get_message(grant, &id).await {
                Ok(m) => {
                    let date = m.get("date").and_then(Value::as_i64);
                    // Mail that arrived within the grace period may have its webhook in flight.
                    let settled = read_began / 1000 - self.settings.grace_s;
                    self.write(
                        grant,
                        object_ref,
                        Some(m),
                        versions::read(read_began),
                        date.is_none_or(|d| d < settled),
                        date,
                        run,
                    )
                    .await?;
                }
                Err(NylasError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(empty)
    }

    /// Tombstones the live events the store holds under a deleted calendar (Nylas sends no
    /// `event.deleted` for them).
    async fn tombstone_calendar_events(
        &self,
        grant: &str,
        calendar_id: &str,
        version: i64,
        run: &mut Run,
    ) -> Result<(), ReconcileError> {
        let prefix = format!("event#{calendar_id}#");
        for object_ref in self.objects.live_refs(grant, &prefix).await? {
            self.write(grant, object_ref, None, version, true, None, run)
                .await?;
        }
        Ok(())
    }

    /// Tombstones an object the listing no longer returns, once a GET confirms it is gone
    /// (answers whether it is).
    async fn confirm_gone(
        &self,
        grant: &str,
        object_ref: ObjectRef,
        run: &mut Run,
    ) -> Result<bool, ReconcileError> {
        let read_began = self.clock.now_ms();
        let fetched = match &object_ref {
            ObjectRef::Message { id } => self.nylas.get_message(grant, id).await,
            ObjectRef::Event { calendar_id, id } => {
                self.nylas.get_event(grant, calendar_id, id).await
            }
            ObjectRef::Calendar { id } => self.nylas.get_calendar(grant, id).await,
            ObjectRef::Folder { id } => self.nylas.get_folder(grant, id).await,
        };
        match fetched {
            Err(NylasError::NotFound) => {
                let version = versions::read(read_began);
                self.write(grant, object_ref, None, version, true, None, run)
                    .await?;
                Ok(true)
            }
            // Still there (a listing hiccup): store it if it differs, like any listed object.
            Ok(object) => {
                let cancelled = object.get("status").and_then(Value::as_str) == Some("cancelled");
                let object = if cancelled && matches!(object_ref, ObjectRef::Event { .. }) {
                    None
                } else {
                    Some(object)
                };
                let poll_start = self.clock.now_ms() / 1000;
                let gone = object.is_none();
                let item = vec![(object_ref, object)];
                self.upsert_listed(grant, item, read_began, poll_start, run)
                    .await?;
                Ok(gone)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A plain run that compares recent mail instead of listing it fetches at most this many missing
/// messages one by one; more, and it lists from its cursor (200 a call).
const COMPARE_FETCH_AT_MOST: usize = 5;

/// Items a purge deletes per step (one Query page, four BatchWriteItem calls).
const PURGE_PAGE: i32 = 100;

/// `GET /v3/grants/{id}/events/import`: masters, exceptions and single events of a time frame,
/// unexpanded, whenever they changed. Its page size is `limit` too (at most 500).
const IMPORT: &str = "events/import";

/// A listed event as a store item: cancelled events are tombstones.
fn event_item(calendar_id: &str, event: Value) -> Option<(ObjectRef, Option<Value>)> {
    let id = event.get("id")?.as_str()?.to_string();
    let cancelled = event.get("status").and_then(Value::as_str) == Some("cancelled");
    Some((
        ObjectRef::Event {
            calendar_id: calendar_id.to_string(),
            id,
        },
        if cancelled { None } else { Some(event) },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_run_compares_recent_mail_and_evidence_widens_it() {
        let settings = ReconcileSettings::default();
        let days = |kind, synced, evidence| recent_sweep_days(kind, synced, evidence, &settings);
        assert_eq!(days(JobKind::Incremental, true, false), 2);
        assert_eq!(days(JobKind::Incremental, true, true), 7);
        assert_eq!(days(JobKind::Incremental, false, true), 7);
        assert_eq!(
            days(JobKind::Incremental, false, false),
            0,
            "a first sync lists everything"
        );
        assert_eq!(days(JobKind::Backfill, true, true), 0);
        let off = ReconcileSettings {
            recent_sweep_days: 0,
            ..ReconcileSettings::default()
        };
        assert_eq!(
            recent_sweep_days(JobKind::Incremental, true, false, &off),
            0
        );
    }

    #[test]
    fn a_plain_run_compares_instead_of_listing_when_its_recent_window_covers_the_cursor() {
        let now = 10_000_000;
        let plain = ReconcileJob::new("g", JobKind::Incremental, None);
        assert!(compares_instead_of_listing(&plain, 2, now - 4 * 3600, now));
        assert!(compares_instead_of_listing(
            &plain,
            2,
            now - 2 * 86_400,
            now
        ));
        assert!(
            !compares_instead_of_listing(&plain, 2, now - 2 * 86_400 - 1, now),
            "a cursor older than the window: list from it"
        );
        assert!(
            !compares_instead_of_listing(&plain, 0, now - 60, now),
            "comparing is off"
        );
        let mut continuation = plain.clone();
        continuation.page_token = Some("p2".into());
        assert!(!compares_instead_of_listing(
            &continuation,
            2,
            now - 60,
            now
        ));
        continuation.page_token = None;
        continuation.poll_start = Some(now - 60);
        assert!(!compares_instead_of_listing(
            &continuation,
            2,
            now - 60,
            now
        ));
        let backfill = ReconcileJob::new("g", JobKind::Backfill, Some(now - 60));
        assert!(!compares_instead_of_listing(&backfill, 2, now - 60, now));
        // A catch-up compares the sweep's recent window when that reaches back past its start.
        let catch_up = ReconcileJob::new("g", JobKind::CatchUp, Some(now - 3 * 86_400));
        let s = ReconcileSettings::default();
        let days = compare_window_days(JobKind::CatchUp, 2, &s);
        assert_eq!(days, s.sweep_window_days);
        assert!(compares_instead_of_listing(
            &catch_up,
            days,
            now - 3 * 86_400,
            now
        ));
        assert!(!compares_instead_of_listing(
            &catch_up,
            days,
            now - (days + 1) * 86_400,
            now
        ));
        assert_eq!(compare_window_days(JobKind::Incremental, 2, &s), 2);
        assert_eq!(compare_window_days(JobKind::Backfill, 2, &s), 0);
    }

    #[test]
    fn only_a_plain_incremental_run_of_a_synced_grant_takes_the_stored_calendars() {
        assert!(!lists_calendars(JobKind::Incremental, true, false));
        assert!(lists_calendars(JobKind::Incremental, true, true), "a sweep");
        assert!(
            lists_calendars(JobKind::Incremental, false, false),
            "a first sync"
        );
        for kind in [JobKind::Backfill, JobKind::CatchUp] {
            assert!(lists_calendars(kind, true, false), "{kind:?}");
        }
    }

    fn grant(status: GrantStatus, lease_until: Option<i64>) -> Grant {
        Grant {
            grant_id: "g".into(),
            status,
            status_version: 1,
            provider: None,
            expired_at: None,
            messages_received_after: Some(1),
            events_updated_after: HashMap::new(),
            last_reconcile_at: None,
            sweep_recent: false,
            reconcile_interval_s: None,
            next_reconcile_at: None,
            last_reconcile_outcome: None,
            recovered_total: 0,
            last_recovered: 0,
            runs_since_sweep: 0,
            sweep_cursor: None,
            lease_owner: lease_until.map(|_| "other".into()),
            lease_until,
        }
    }

    #[test]
    fn a_continuation_that_finds_the_lease_held_waits_for_it() {
        let mut job = ReconcileJob::new("g", JobKind::Incremental, None);
        job.page_token = Some("t".into());
        job.poll_start = Some(100);
        let held = grant(GrantStatus::Active, Some(60_000));
        assert_eq!(
            when_lease_unavailable(&job, Some(&held), 10_000),
            LeaseMiss::Defer(51)
        );
        // Never shorter than a few seconds, never past SQS's limit.
        assert_eq!(
            when_lease_unavailable(&job, Some(&held), 60_000),
            LeaseMiss::Defer(5)
        );
        let long = grant(GrantStatus::Active, Some(10_000_000));
        assert_eq!(
            when_lease_unavailable(&job, Some(&long), 0),
            LeaseMiss::Defer(MAX_DELAY_SECONDS)
        );
    }

    #[test]
    fn backfills_and_catch_ups_wait_too_but_a_plain_scheduled_run_is_dropped() {
        let held = grant(GrantStatus::Active, Some(60_000));
        for kind in [JobKind::Backfill, JobKind::CatchUp] {
            let job = ReconcileJob::new("g", kind, Some(5));
            assert!(matches!(
                when_lease_unavailable(&job, Some(&held), 0),
                LeaseMiss::Defer(_)
            ));
        }
        let scheduled = ReconcileJob::new("g", JobKind::Incremental, None);
        assert_eq!(
            when_lease_unavailable(&scheduled, Some(&held), 0),
            LeaseMiss::Drop
        );
    }

    #[test]
    fn a_run_sent_on_evidence_of_loss_tries_again_soon_for_a_held_lease() {
        // The run holding the lease began before the loss: it may not cover it, and it usually
        // ends in seconds, long before its lease would expire.
        let mut job = ReconcileJob::new("g", JobKind::Incremental, None);
        job.after_loss = true;
        let held = grant(GrantStatus::Active, Some(900_000));
        assert_eq!(
            when_lease_unavailable(&job, Some(&held), 0),
            LeaseMiss::Defer(AFTER_LOSS_RETRY_S as i32)
        );
        let ending = grant(GrantStatus::Active, Some(2_500));
        assert_eq!(
            when_lease_unavailable(&job, Some(&ending), 0),
            LeaseMiss::Defer(3)
        );
        assert_eq!(
            when_lease_unavailable(&job, Some(&grant(GrantStatus::Deleted, Some(60_000))), 0),
            LeaseMiss::Drop
        );
    }

    #[test]
    fn nothing_waits_for_a_grant_that_is_not_active() {
        let mut job = ReconcileJob::new("g", JobKind::Backfill, Some(5));
        job.page_token = Some("t".into());
        for status in [
            GrantStatus::Expired,
            GrantStatus::Deleted,
            GrantStatus::Invalid,
        ] {
            assert_eq!(
                when_lease_unavailable(&job, Some(&grant(status, Some(60_000))), 0),
                LeaseMiss::Drop
            );
        }
        assert_eq!(when_lease_unavailable(&job, None, 0), LeaseMiss::Drop);
    }

    #[test]
    fn a_rate_limited_job_waits_for_retry_after_within_sqs_limits() {
        assert_eq!(retry_delay(Duration::from_secs(3)), 3);
        assert_eq!(retry_delay(Duration::from_secs(7200)), MAX_DELAY_SECONDS);
    }
}
