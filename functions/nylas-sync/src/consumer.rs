//! The consumer: turns a batch of queued notifications into store writes.
//!
//! Each record is parsed on its own and a bad record never fails the others. Notifications about
//! the same object in one batch are grouped: the newest wins and at most one fetch is made.
//! Full objects are written **without calling Nylas**; truncated, metadata-only or otherwise
//! incomplete ones are fetched; deletes and fetches that answer 404 write tombstones.
//!
//! Versions (milliseconds): a webhook state is versioned by its notification `time` (events by
//! `updated_at` when present), a tombstone by the end of its notification's second (deletes are
//! final), a fetched state by the time of the fetch. Notification times have one-second
//! resolution, so two different states in the same second cannot be ordered from the
//! notifications: when a write loses to a different state of the same second, the consumer
//! fetches the current object instead, which is always right.
//!
//! The queue's side of the protocol is not here: reading a record (a claim check's S3 payload
//! included) and retrying a rate-limited one (deferred with a delay, or hidden) go through the
//! [`NotificationSource`] port, whose rules are pure functions in [`crate::queue`]. A record
//! whose claim-checked payload is gone is recovered from Nylas by the ids its attributes carry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::aws;
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Env};
use crate::grants::{catch_up_after_reauth, GrantFacts, GrantStatus, GrantStore, StatusChange};
use crate::intent::{decide, place_event, Action, Decision, Intent};
use crate::jobs::{JobKind, JobQueue, ReconcileJob};
use crate::nylas::{NylasClient, NylasError, Unauthorized};
use crate::queue::{stand_in_notification, NotificationSource, Payload, ReadError, Settled};
use crate::sqs_queue::SqsNotificationSource;
use crate::store::{ObjectRef, ObjectState, ObjectStore, PutOutcome, Source, StoreError, Version};
use crate::versions;

pub use crate::intent::FetchPolicy;

/// What a batch keeps after its last fetch for the writes and the answer: a fetch still in
/// flight this long before the invocation's deadline is cut off and its record retried.
pub const WRITE_MARGIN: Duration = Duration::from_secs(5);

/// The time a batch has when the caller gives no deadline: the template's 60 s timeout.
pub const DEFAULT_BATCH_TIME: Duration = Duration::from_secs(60);

/// How long a fetch started at `now` may take: until [`WRITE_MARGIN`] before `deadline`, or
/// `None` if that moment has passed (the record is retried instead of fetched).
pub fn fetch_time_left(now: Instant, deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(now + WRITE_MARGIN)
        .filter(|left| !left.is_zero())
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub fetch_policy: FetchPolicy,
    /// Object groups processed at once within a batch.
    pub concurrency: usize,
    /// Delete a grant's objects on `grant.deleted`.
    pub purge_on_grant_delete: bool,
    /// How far back the initial backfill of a new grant reaches, in days.
    pub backfill_days: i64,
    /// A redelivered notification (evidence that webhooks were lost) sends its grant's run at
    /// once (`RECONCILE_ON_REDELIVERY`, default true). Off, the grant waits for its interval.
    pub reconcile_on_redelivery: bool,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            fetch_policy: FetchPolicy::WhenNeeded,
            concurrency: 8,
            purge_on_grant_delete: true,
            backfill_days: 30,
            reconcile_on_redelivery: true,
        }
    }
}

impl ConsumerSettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let fetch_policy = match env.optional("FETCH_POLICY").as_deref().map(str::trim) {
            None | Some("when-needed") | Some("when_needed") => FetchPolicy::WhenNeeded,
            Some("always") => FetchPolicy::Always,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "FETCH_POLICY",
                    reason: "expected when-needed or always".into(),
                })
            }
        };
        let purge = flag(env, "PURGE_ON_GRANT_DELETE", d.purge_on_grant_delete)?;
        let reconcile_on_redelivery =
            flag(env, "RECONCILE_ON_REDELIVERY", d.reconcile_on_redelivery)?;
        Ok(Self {
            fetch_policy,
            concurrency: env
                .number_or("CONSUMER_CONCURRENCY", d.concurrency as u64)?
                .clamp(1, 64) as usize,
            purge_on_grant_delete: purge,
            backfill_days: env.number_or("BACKFILL_DAYS", d.backfill_days as u64)? as i64,
            reconcile_on_redelivery,
        })
    }
}

/// A `true`/`false` setting, `default` when unset.
fn flag(env: &impl Env, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env.optional(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ConfigError::Invalid {
            name,
            reason: "expected true or false".into(),
        }),
    }
}

/// Counters since the cold start (reported per batch in the log, exported as metrics).
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    pub records: AtomicU64,
    pub written: AtomicU64,
    pub stale: AtomicU64,
    pub tombstoned: AtomicU64,
    pub fetched: AtomicU64,
    pub fetches_avoided: AtomicU64,
    pub unknown: AtomicU64,
    /// Object notifications that could not be tied to a grant or calendar (parked).
    pub unresolved: AtomicU64,
    pub grant_changes: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    /// Rate-limited records re-sent with a delay (acknowledged, not failed).
    pub deferred: AtomicU64,
    /// Claim-checked records whose S3 payload was gone, recovered from Nylas by their attributes.
    pub claim_checks_expired: AtomicU64,
    /// Grants made due at the next tick because a notification of theirs was redelivered.
    pub grants_marked_due: AtomicU64,
}

impl ConsumerCounters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The consumer over a notification source `S` (the queue's side of the protocol: reading
/// records, claim checks included, and retrying rate-limited ones; SQS + S3 in production).
pub struct Consumer<S = SqsNotificationSource> {
    pub objects: ObjectStore,
    pub grants: GrantStore,
    pub jobs: JobQueue,
    pub nylas: NylasClient,
    pub source: S,
    pub settings: ConsumerSettings,
    pub clock: Arc<dyn Clock>,
    pub counters: ConsumerCounters,
    unknown_seen: Mutex<HashSet<String>>,
    /// Change-to-store lag of the writes since the last batch's metrics (seconds).
    lag_samples: Mutex<Vec<f64>>,
}

/// Why a record is reported as failed.
#[derive(Debug)]
enum Failure {
    /// Try again after the queue's visibility timeout, or after `Some(delay)`.
    Retry(Option<Duration>, String),
    /// Will never succeed; reported failed so that it reaches the DLQ after maxReceiveCount.
    Permanent(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Retry(None, e.to_string())
    }
}

impl Consumer<SqsNotificationSource> {
    /// Reads the configuration contract and builds the clients once per cold start.
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let settings = ConsumerSettings::from_env(env)?;
        let policy = crate::queue::RedeliveryPolicy::from_env(env)?;
        let b = crate::backend::SyncBackend::from_env(env).await?;
        let source =
            SqsNotificationSource::new(aws::sqs_client(&b.sdk), b.objects.s3.clone(), policy);
        Ok(Self::new(
            b.objects,
            b.grants,
            b.jobs,
            b.nylas,
            source,
            settings,
            Arc::new(SystemClock),
        ))
    }
}

impl<S: NotificationSource> Consumer<S> {
    pub fn new(
        objects: ObjectStore,
        grants: GrantStore,
        jobs: JobQueue,
        nylas: NylasClient,
        source: S,
        settings: ConsumerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            objects,
            grants,
            jobs,
            nylas,
            source,
            settings,
            clock,
            counters: ConsumerCounters::default(),
            unknown_seen: Mutex::new(HashSet::new()),
            lag_samples: Mutex::new(Vec::new()),
        }
    }

    /// Processes one SQS batch with [`DEFAULT_BATCH_TIME`]; see [`Consumer::handle_until`].
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_until(event, Instant::now() + DEFAULT_BATCH_TIME)
            .await
    }

    /// Processes one SQS batch that must be answered by `deadline` (the invocation's); the
    /// response lists the records to retry. A fetch still in flight [`WRITE_MARGIN`] before the
    /// deadline is cut off and its record retried, so a slow Nylas never times the invocation
    /// out (which would return the whole batch, writes done or not). Prints the batch's metrics
    /// (EMF) when done.
    pub async fn handle_until(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let baseline = ConsumerBaseline::take(&self.counters, &self.nylas.calls);
        let response = self.handle_batch(event, deadline).await;
        let lags = self.lag_samples.lock().map(|mut l| std::mem::take(&mut *l));
        baseline.emit(&self.counters, &self.nylas.calls, lags.unwrap_or_default());
        response
    }

    async fn handle_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let records = event.records;
        ConsumerCounters::add(&self.counters.records, records.len() as u64);
        let mut failures: HashMap<String, Failure> = HashMap::new();

        // 1. Parse every record on its own (claim checks resolved from S3).
        let parsed: Vec<(SqsMessage, Result<Decision, Failure>)> = stream::iter(records)
            .map(|r| async move {
                let p = self.parse(&r).await;
                (r, p)
            })
            .buffered(self.settings.concurrency)
            .collect()
            .await;
        let mut intents = Vec::new();
        let mut grant_events = Vec::new();
        let mut by_id: HashMap<String, SqsMessage> = HashMap::new();
        for (record, p) in parsed {
            let id = record.message_id.clone().unwrap_or_default();
            match p {
                Ok(Decision::Object(i)) => intents.push(i),
                Ok(Decision::Grant {
                    trigger,
                    grant_id,
                    time,
                    object,
                }) => grant_events.push((id.clone(), trigger, grant_id, time, object)),
                Ok(_) => {}
                Err(f) => {
                    failures.insert(id.clone(), f);
                }
            }
            by_id.insert(id, record);
        }

        // Evidence of loss: a notification Nylas had to deliver again means the endpoint failed
        // at its time, and others may have failed all three attempts. Unless a run began after
        // it, the grant is reconciled now (the job sent here), at the base interval, with a
        // sweep of the recent window (`cadence`); if the job cannot be sent, the scheduler's
        // next tick finds the grant due. Best effort: the record itself does not depend on it.
        let mut redelivered: HashMap<&str, i64> = HashMap::new();
        let on_redelivery = self.settings.reconcile_on_redelivery;
        for i in intents.iter().filter(|i| on_redelivery && i.redelivered) {
            let t = redelivered.entry(i.grant_id.as_str()).or_insert(i.time);
            *t = (*t).max(i.time);
        }
        for (g, loss_at) in redelivered {
            match self.grants.mark_due_after_loss(g, loss_at).await {
                Ok(true) => {
                    ConsumerCounters::add(&self.counters.grants_marked_due, 1);
                    let mut job = ReconcileJob::new(g, JobKind::Incremental, None);
                    job.scheduled_at = Some(self.clock.now_ms() / 1000);
                    job.after_loss = true;
                    if let Err(e) = self.jobs.send(&job).await {
                        tracing::warn!(grant_id = g, error = %e, "could not send the run after a redelivery; the next tick sends it");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(grant_id = g, error = %e, "could not mark the grant due after a redelivery")
                }
            }
        }

        // 2. Grant lifecycle first, in notification order, so that object writes below see it.
        grant_events.sort_by_key(|g| g.3);
        for (message_id, trigger, grant_id, time, object) in grant_events {
            if let Err(f) = self
                .grant_lifecycle(&trigger, &grant_id, time, &object)
                .await
            {
                failures.insert(message_id, f);
            }
        }

        // 3. Objects of deleted grants are not written (a late notification must not refill a purged grant).
        let grant_ids: HashSet<String> = intents.iter().map(|i| i.grant_id.clone()).collect();
        let statuses: Vec<(String, Result<Option<GrantStatus>, StoreError>)> =
            stream::iter(grant_ids)
                .map(|g| async move {
                    let s = self.grants.get(&g).await.map(|o| o.map(|g| g.status));
                    (g, s)
                })
                .buffer_unordered(self.settings.concurrency)
                .collect()
                .await;
        let mut skip_grants = HashSet::new();
        let mut failed_grants = HashMap::new();
        for (g, s) in statuses {
            match s {
                Ok(Some(GrantStatus::Deleted)) => {
                    skip_grants.insert(g);
                }
                Ok(_) => {}
                Err(e) => {
                    failed_grants.insert(g, e.to_string());
                }
            }
        }

        // 4. Group by object; newest wins; groups run concurrently (bounded).
        let mut groups: HashMap<(String, ObjectRef), Vec<Intent>> = HashMap::new();
        for i in intents {
            if skip_grants.contains(&i.grant_id) {
                ConsumerCounters::add(&self.counters.skipped, 1);
                continue;
            }
            if let Some(e) = failed_grants.get(&i.grant_id) {
                failures.insert(i.message_id.clone(), Failure::Retry(None, e.clone()));
                continue;
            }
            groups
                .entry((i.grant_id.clone(), i.object_ref.clone()))
                .or_default()
                .push(i);
        }
        let results: Vec<(Vec<String>, Result<(), Failure>)> = stream::iter(groups.into_values())
            .map(|group| async move {
                let ids = group.iter().map(|i| i.message_id.clone()).collect();
                (ids, self.apply_group(group, deadline).await)
            })
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        for (ids, r) in results {
            if let Err(f) = r {
                for id in ids {
                    failures.insert(id, clone_failure(&f));
                }
            }
        }

        // 5. Report failures; rate-limited records go back to the queue's side, which defers
        //    them (acknowledged: a 429 burst costs no receive) or hides them.
        let mut response = SqsBatchResponse::default();
        for (id, f) in failures {
            match &f {
                Failure::Retry(Some(after), why) => {
                    let settled = match by_id.get(&id) {
                        Some(record) => self.source.retry_later(record, *after).await,
                        None => Settled::Failed,
                    };
                    tracing::warn!(message_id = %id, retry_after_s = after.as_secs(), outcome = ?settled, reason = %why, "rate-limited record");
                    if !settled.report_failed() {
                        ConsumerCounters::add(&self.counters.deferred, 1);
                        continue;
                    }
                }
                Failure::Retry(None, why) => {
                    tracing::warn!(message_id = %id, reason = %why, "record will be retried")
                }
                Failure::Permanent(why) => {
                    tracing::error!(message_id = %id, reason = %why, "record cannot be processed")
                }
            }
            ConsumerCounters::add(&self.counters.failed, 1);
            let mut item = BatchItemFailure::default();
            item.item_identifier = id;
            response.batch_item_failures.push(item);
        }
        response
    }

    /// Reads one record (through the queue's port) and decides what it asks for: the decision
    /// is [`crate::intent::decide`]'s, the only I/O the payload's read and, for an event whose
    /// calendar the notification does not name, the store's answer to where it is.
    async fn parse(&self, record: &SqsMessage) -> Result<Decision, Failure> {
        let message_id = record.message_id.clone().unwrap_or_default();
        let text = match self.source.read(record).await {
            Ok(Payload::Notification(text)) => text,
            Ok(Payload::Gone(check)) => {
                // The payload outlived its lifecycle (or was deleted): the attributes still name
                // the object, so it is fetched from Nylas like a truncated notification.
                ConsumerCounters::add(&self.counters.claim_checks_expired, 1);
                let stand_in = stand_in_notification(record, self.clock.now_ms() / 1000);
                tracing::warn!(
                    message_id = %message_id,
                    key = %check.key,
                    recoverable = stand_in.is_some(),
                    "claim-checked payload is gone: recovering the object from Nylas"
                );
                stand_in.ok_or_else(|| {
                    self.unresolved(
                        "claim-checked payload is gone and the message names no object to recover"
                            .into(),
                    )
                })?
            }
            Err(ReadError::Retry(why)) => return Err(Failure::Retry(None, why)),
            Err(ReadError::Permanent(why)) => return Err(Failure::Permanent(why)),
        };
        let decision = match decide(&text, &message_id, self.settings.fetch_policy) {
            Decision::NeedsCalendar { intent, deleted } => {
                // "May be null in rare edge cases": the store knows which calendar holds
                // the event, if it holds it.
                let calendars = self
                    .objects
                    .event_calendars(&intent.grant_id, intent.object_ref.id())
                    .await?;
                place_event(intent, deleted, &calendars)
            }
            other => other,
        };
        match decision {
            Decision::Ignore { trigger } => {
                self.note_unknown(&trigger);
                Ok(Decision::Ignore { trigger })
            }
            Decision::Unresolved(why) => Err(self.unresolved(why)),
            Decision::Invalid(why) => Err(Failure::Permanent(why)),
            other => Ok(other),
        }
    }

    /// A notification parked for want of a grant or calendar: counted, and failed for good.
    fn unresolved(&self, why: String) -> Failure {
        ConsumerCounters::add(&self.counters.unresolved, 1);
        Failure::Permanent(format!("{why}; left to reconciliation"))
    }

    fn note_unknown(&self, trigger: &str) {
        ConsumerCounters::add(&self.counters.unknown, 1);
        if let Ok(mut seen) = self.unknown_seen.lock() {
            if seen.insert(trigger.to_string()) {
                tracing::info!(trigger, "acknowledging notifications of a type this consumer does not sync (logged once)");
            }
        }
    }

    /// Applies the newest intent of one object's group.
    async fn apply_group(&self, mut group: Vec<Intent>, deadline: Instant) -> Result<(), Failure> {
        group.sort_by_key(|i| i.version);
        let Some(newest) = group.last().cloned() else {
            return Ok(());
        };
        let ties: HashSet<String> = group
            .iter()
            .filter(|i| i.version == newest.version)
            .map(Intent::hash)
            .collect();
        let action = if ties.len() > 1 {
            Action::Fetch
        } else {
            newest.action.clone()
        };
        let state = |object: Option<Value>, version, source| ObjectState {
            grant_id: newest.grant_id.clone(),
            object_ref: newest.object_ref.clone(),
            version,
            object,
            source,
            changed_at: Some(newest.time),
        };
        match action {
            Action::Fetch => self.fetch_and_write(&newest, deadline).await,
            Action::Tombstone => {
                self.write(&state(None, newest.version, Source::Webhook))
                    .await?;
                match &newest.object_ref {
                    // Nylas sends no event.deleted for the events of a deleted calendar...
                    ObjectRef::Calendar { id } => {
                        let prefix = format!("event#{id}#");
                        self.tombstone_prefix(&newest.grant_id, &prefix, newest.version)
                            .await?;
                    }
                    // ...nor for the exceptions of a deleted recurring series (`<master>_<start>`).
                    ObjectRef::Event { calendar_id, id } => {
                        let prefix = format!("event#{calendar_id}#{id}_");
                        self.tombstone_prefix(&newest.grant_id, &prefix, newest.version)
                            .await?;
                    }
                    _ => {}
                }
                Ok(())
            }
            Action::Write(object) => {
                ConsumerCounters::add(&self.counters.fetches_avoided, 1);
                let candidate = state(Some(object), newest.version, Source::Webhook);
                match self.write(&candidate).await? {
                    PutOutcome::Stale(existing)
                        if existing.version / 1000 == newest.version / 1000
                            && !existing.deleted
                            && existing.content_hash != candidate.content_hash() =>
                    {
                        // A different state of the same second is stored: only Nylas knows which is current.
                        self.fetch_and_write(&newest, deadline).await
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Tombstones every live event the store holds under the sort-key `prefix` (an `event#`
    /// prefix), at `version`.
    async fn tombstone_prefix(
        &self,
        grant_id: &str,
        prefix: &str,
        version: Version,
    ) -> Result<(), Failure> {
        for object_ref in self.objects.live_refs(grant_id, prefix).await? {
            let tombstone = ObjectState {
                grant_id: grant_id.to_string(),
                object_ref,
                version,
                object: None,
                source: Source::Webhook,
                changed_at: None,
            };
            self.write(&tombstone).await?;
        }
        Ok(())
    }

    async fn write(&self, state: &ObjectState) -> Result<PutOutcome, Failure> {
        let outcome = self
            .objects
            .put_if_newer(state, self.clock.now_ms())
            .await?;
        match (&outcome, state.is_tombstone()) {
            (PutOutcome::Written, true) => ConsumerCounters::add(&self.counters.tombstoned, 1),
            (PutOutcome::Written, false) => ConsumerCounters::add(&self.counters.written, 1),
            (PutOutcome::Stale(_), _) => ConsumerCounters::add(&self.counters.stale, 1),
        }
        if let (PutOutcome::Written, Some(changed)) = (&outcome, state.changed_at) {
            let lag = (self.clock.now_ms() - changed * 1000).max(0) as f64 / 1000.0;
            if let Ok(mut l) = self.lag_samples.lock() {
                l.push(lag);
            }
        }
        tracing::debug!(
            grant_id = %state.grant_id,
            sk = %state.object_ref.sort_key(),
            version = state.version,
            written = matches!(outcome, PutOutcome::Written),
            "object"
        );
        Ok(outcome)
    }

    async fn fetch_and_write(&self, intent: &Intent, deadline: Instant) -> Result<(), Failure> {
        let out_of_time = || {
            Failure::Retry(
                None,
                "the fetch would not answer before the invocation's deadline: record kept".into(),
            )
        };
        let Some(time_left) = fetch_time_left(Instant::now(), deadline) else {
            return Err(out_of_time());
        };
        ConsumerCounters::add(&self.counters.fetched, 1);
        let grant = &intent.grant_id;
        // What the GET returns is versioned by when it began: a change made while it was in
        // flight carries a later notification time and must win over it.
        let read_began = self.clock.now_ms();
        let get = async {
            match &intent.object_ref {
                ObjectRef::Message { id } => self.nylas.get_message(grant, id).await,
                ObjectRef::Event { calendar_id, id } => {
                    self.nylas.get_event(grant, calendar_id, id).await
                }
                ObjectRef::Calendar { id } => self.nylas.get_calendar(grant, id).await,
                ObjectRef::Folder { id } => self.nylas.get_folder(grant, id).await,
            }
        };
        let fetched = tokio::time::timeout(time_left, get)
            .await
            .map_err(|_| out_of_time())?;
        let second = versions::webhook(intent.time);
        let state = |object: Option<Value>, version| ObjectState {
            grant_id: grant.clone(),
            object_ref: intent.object_ref.clone(),
            version,
            object,
            source: Source::Fetch,
            changed_at: Some(intent.time),
        };
        match fetched {
            Ok(object) => {
                let cancelled = matches!(intent.object_ref, ObjectRef::Event { .. })
                    && object.get("status").and_then(Value::as_str) == Some("cancelled");
                let object = if cancelled { None } else { Some(object) };
                self.write(&state(object, versions::fetched(read_began, intent.time)))
                    .await?;
                Ok(())
            }
            Err(NylasError::NotFound) => {
                self.write(&state(
                    None,
                    versions::fetched_gone(read_began, intent.time),
                ))
                .await?;
                Ok(())
            }
            Err(NylasError::RateLimited(after)) => {
                Err(Failure::Retry(Some(after), "Nylas answered 429".into()))
            }
            // One 401/403 must not switch a grant off for good: an API-key rotation would
            // switch off every grant a warm consumer touches. Ask Nylas about the grant itself.
            Err(NylasError::Unauthorized(status)) => {
                let left = fetch_time_left(Instant::now(), deadline).ok_or_else(out_of_time)?;
                let diagnosis = tokio::time::timeout(left, self.nylas.diagnose_unauthorized(grant))
                    .await
                    .map_err(|_| out_of_time())?;
                match diagnosis {
                    Unauthorized::GrantRevoked => {
                        // The change is not lost: a re-authentication (25027) reactivates the
                        // grant with a catch-up from this notification's time.
                        tracing::warn!(grant_id = %grant, status, "grant no longer valid at Nylas: marked invalid");
                        self.grants.mark_invalid(grant, second, intent.time).await?;
                        Ok(())
                    }
                    Unauthorized::KeyRejected => Err(Failure::Retry(
                        None,
                        "Nylas refuses the API key (check SECRETS_ARN): record kept".into(),
                    )),
                    Unauthorized::Unknown => Err(Failure::Retry(
                        None,
                        format!("Nylas answered {status} for a valid grant: record kept"),
                    )),
                }
            }
            Err(e @ NylasError::Unavailable(_)) => Err(Failure::Retry(None, e.to_string())),
            Err(e @ NylasError::Rejected(_)) => Err(Failure::Permanent(e.to_string())),
        }
    }

    async fn grant_lifecycle(
        &self,
        trigger: &str,
        grant_id: &str,
        time: i64,
        object: &Value,
    ) -> Result<(), Failure> {
        ConsumerCounters::add(&self.counters.grant_changes, 1);
        let version = time.saturating_mul(1000);
        let mut facts = GrantFacts {
            provider: object.get("provider").and_then(Value::as_str),
            expired_at: None,
        };
        let job_error = |e: crate::jobs::JobQueueError| Failure::Retry(None, e.to_string());
        match trigger.split('.').nth(1).unwrap_or_default() {
            "created" => {
                if let StatusChange::Applied { .. } = self
                    .grants
                    .set_status_with(grant_id, GrantStatus::Active, version, &facts)
                    .await?
                {
                    let since = time - self.settings.backfill_days * 86_400;
                    let job = ReconcileJob::new(grant_id, JobKind::Backfill, Some(since));
                    self.jobs.send(&job).await.map_err(job_error)?;
                }
            }
            "expired" => {
                facts.expired_at = Some(time);
                self.grants
                    .set_status_with(grant_id, GrantStatus::Expired, version, &facts)
                    .await?;
            }
            // 25014 is an ordinary update (scopes, settings): the grant's state is unchanged.
            // Only a re-authentication (25027, `reauthentication_flag`) brings an expired
            // grant back.
            "updated" if !is_reauthentication(object) => {}
            "updated" => {
                let change = self
                    .grants
                    .set_status_with(grant_id, GrantStatus::Active, version, &facts)
                    .await?;
                // Re-authenticated after expiry: catch up from the expiry (Nylas replays
                // nothing after 72 hours). A retry of this record after the job failed to send
                // finds the change already applied, and sends it all the same.
                let current = match change {
                    StatusChange::Stale => self.grants.get(grant_id).await?,
                    StatusChange::Applied { .. } => None,
                };
                if let Some(since) = catch_up_after_reauth(&change, current.as_ref(), version) {
                    let job = ReconcileJob::new(grant_id, JobKind::CatchUp, Some(since));
                    self.jobs.send(&job).await.map_err(job_error)?;
                }
            }
            "deleted" => {
                let change = self
                    .grants
                    .set_status_with(grant_id, GrantStatus::Deleted, version, &facts)
                    .await?;
                // The purge runs as jobs (bounded, resumable): one now, and one once every
                // write that was in flight at the deletion (a consumer fetch, a reconcile
                // listing) has landed. A retry of this record sends them again: purging twice
                // is harmless, never purging is not.
                let deleted = match change {
                    StatusChange::Applied { .. } => true,
                    StatusChange::Stale => self
                        .grants
                        .get(grant_id)
                        .await?
                        .is_some_and(|g| g.status == GrantStatus::Deleted),
                };
                if self.settings.purge_on_grant_delete && deleted {
                    let job = ReconcileJob::new(grant_id, JobKind::Purge, None);
                    self.jobs.send(&job).await.map_err(job_error)?;
                    self.jobs
                        .send_delayed(&job, PURGE_SETTLE_SECONDS)
                        .await
                        .map_err(job_error)?;
                    tracing::info!(grant_id, "grant deleted: purge enqueued");
                }
            }
            _ => self.note_unknown(trigger),
        }
        Ok(())
    }
}

/// How long after a grant's deletion its second purge runs: longer than any write that was in
/// flight then can take (a consumer batch: 60 s; a reconcile run: its 300 s timeout), and
/// SQS's longest delay.
pub const PURGE_SETTLE_SECONDS: i32 = crate::jobs::MAX_DELAY_SECONDS;

/// Whether a `grant.updated` notification reports a re-authentication: code 25027 or
/// `reauthentication_flag: true` (an ordinary update is 25014).
fn is_reauthentication(object: &Value) -> bool {
    object.get("code").and_then(Value::as_i64) == Some(25027)
        || object.get("reauthentication_flag").and_then(Value::as_bool) == Some(true)
}

fn clone_failure(f: &Failure) -> Failure {
    match f {
        Failure::Retry(d, w) => Failure::Retry(*d, w.clone()),
        Failure::Permanent(w) => Failure::Permanent(w.clone()),
    }
}

/// The consumer's counters at the start of a batch, so that its metrics are the batch's own
/// (the counters run since the cold start; a Lambda instance handles one batch at a time).
pub(crate) struct ConsumerBaseline {
    counts: [u64; 11],
    calls: std::collections::BTreeMap<String, u64>,
}

impl ConsumerBaseline {
    fn counts(c: &ConsumerCounters) -> [u64; 11] {
        use ConsumerCounters as C;
        [
            C::get(&c.records),
            C::get(&c.written),
            C::get(&c.stale),
            C::get(&c.tombstoned),
            C::get(&c.fetches_avoided),
            C::get(&c.unknown),
            C::get(&c.failed),
            C::get(&c.unresolved),
            C::get(&c.deferred),
            C::get(&c.claim_checks_expired),
            C::get(&c.grants_marked_due),
        ]
    }

    pub(crate) fn take(c: &ConsumerCounters, calls: &crate::nylas::CallCounter) -> Self {
        Self {
            counts: Self::counts(c),
            calls: calls.snapshot(),
        }
    }

    /// Prints the batch's metrics: counter deltas, Nylas calls by endpoint and status, lag samples.
    pub(crate) fn emit(
        self,
        c: &ConsumerCounters,
        calls: &crate::nylas::CallCounter,
        lags: Vec<f64>,
    ) {
        let now = Self::counts(c);
        let delta = |i: usize| now[i].saturating_sub(self.counts[i]);
        let mut m = crate::metrics::Emf::new("consumer");
        m.count(crate::metrics::names::RECORDS_PROCESSED, delta(0))
            .count(crate::metrics::names::OBJECTS_WRITTEN, delta(1))
            .count(crate::metrics::names::OBJECTS_STALE, delta(2))
            .count(crate::metrics::names::OBJECTS_TOMBSTONED, delta(3))
            .count(crate::metrics::names::FETCHES_AVOIDED, delta(4))
            .count(crate::metrics::names::UNKNOWN_TYPES, delta(5))
            .count(crate::metrics::names::RECORD_FAILURES, delta(6))
            .count(crate::metrics::names::NOTIFICATIONS_UNRESOLVED, delta(7))
            .count(crate::metrics::names::RECORDS_DEFERRED, delta(8))
            .count(crate::metrics::names::CLAIM_CHECKS_EXPIRED, delta(9))
            .count(crate::metrics::names::GRANTS_MARKED_DUE, delta(10));
        for (key, n) in calls.snapshot() {
            let n = n.saturating_sub(self.calls.get(&key).copied().unwrap_or(0));
            if let (Some((endpoint, status)), true) = (key.split_once(' '), n > 0) {
                m.count_with(
                    crate::metrics::names::NYLAS_CALLS,
                    &[("Endpoint", endpoint), ("Status", status)],
                    n,
                );
            }
        }
        for lag in lags {
            m.sample(
                crate::metrics::names::CHANGE_TO_STORE_LAG,
                crate::metrics::Unit::Seconds,
                lag,
            );
        }
        m.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_runs_and_purges_are_on_unless_turned_off_and_anything_else_is_refused() {
        let empty: HashMap<&str, &str> = HashMap::new();
        let d = ConsumerSettings::from_env(&empty).expect("defaults");
        assert!(d.reconcile_on_redelivery && d.purge_on_grant_delete);
        let off = HashMap::from([
            ("RECONCILE_ON_REDELIVERY", "false"),
            ("PURGE_ON_GRANT_DELETE", " false "),
        ]);
        let s = ConsumerSettings::from_env(&off).expect("false is a setting");
        assert!(!s.reconcile_on_redelivery && !s.purge_on_grant_delete);
        let bad = HashMap::from([("RECONCILE_ON_REDELIVERY", "no")]);
        match ConsumerSettings::from_env(&bad) {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, "RECONCILE_ON_REDELIVERY"),
            other => panic!("expected a clear refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_fetch_may_run_until_the_write_margin_before_the_deadline() {
        let now = Instant::now();
        let deadline = now + WRITE_MARGIN + Duration::from_secs(3);
        assert_eq!(fetch_time_left(now, deadline), Some(Duration::from_secs(3)));
        assert_eq!(fetch_time_left(now, now + WRITE_MARGIN), None);
        assert_eq!(
            fetch_time_left(now + Duration::from_secs(9), deadline),
            None
        );
        assert_eq!(fetch_time_left(now, now), None);
    }
}
