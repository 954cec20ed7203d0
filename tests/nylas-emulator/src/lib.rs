//! # nylas-emulator
//!
//! A contract-faithful emulator of the parts of the Nylas API v3 that nylas-sync uses, for the
//! integration tests, the local stack and the benchmarks: the REST listings (grants, messages,
//! calendars, events) with Nylas's pagination, errors and rate limits; webhook destinations with
//! the challenge, signed CloudEvents deliveries, truncation, gzip and retries; a seeded model of
//! mailbox and calendar activity on an emulated (scalable) clock; fault injection; and a ground
//! truth to compare a store against.
//!
//! It must never be mistaken for Nylas: it binds loopback by default, keeps everything in
//! memory, and its secrets are deterministic per seed. Where it knowingly differs from Nylas,
//! `README.md` says so.

mod activity;
mod api;
mod calendar;
mod clock;
mod control;
mod delivery;
mod faults;
mod folders;
mod mix;
mod model;
mod recurrence;
mod rng;
mod stats;
mod tracking;
mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use calendar::EventSpec;
pub use delivery::sign;
pub use faults::{FaultWindow, Faults, SlowWindow};
pub use folders::Folder;
pub use mix::ActivityMix;
pub use model::{
    Attachment, Calendar, DeletedEvent, Event, EventChange, EventParticipant, GrantTruth, Message,
    MessageChange, MessageSpec, Participant, Truth, When, DEFAULT_TRUNCATION_THRESHOLD_BYTES,
};
pub use recurrence::occurrence_id;
pub use stats::{
    ApiRequestCount, ApiStats, DeliveryCounts, Loss, LossReason, ObjectChange, Stats, WebhookStats,
};

use clock::Clock;
use delivery::{Outgoing, PendingGuard};
use model::{Model, ModelSettings, Notification};
use rng::Rng;
use stats::StatsRecorder;
use webhooks::Destination;

/// How the emulator behaves. `EmulatorConfig::default()` is one idle grant on a healthy Nylas.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The API key every `/v3` request must carry as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Seeds grant ids, object content and the activity sequence.
    pub seed: u64,
    /// Grants present at start.
    pub grants: usize,
    /// Changes per emulated minute per grant (new mail, flags, folders, deletes, events); 0 = idle.
    pub events_per_minute: f64,
    /// Emulated seconds per real second.
    pub time_scale: f64,
    /// Messages, calendars and events endpoints: requests per second per grant (Nylas: 200).
    pub rate_limit_per_grant: u32,
    /// Grants and webhooks endpoints: requests per second per application (Nylas: 50).
    pub rate_limit_per_application: u32,
    pub faults: Faults,
    /// `data.application_id` of every notification.
    pub application_id: String,
    /// Where to listen; `None` binds `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Emulated Unix time at start; `None` starts at the real current time.
    pub start_time: Option<i64>,
    /// Grant lifecycle changes (created, expired, re-authenticated, deleted) per emulated hour,
    /// across the application; 0 = none.
    pub grant_changes_per_hour: f64,
    /// Real-time timeout of one delivery attempt and of the challenge (Nylas: 10 s).
    pub delivery_timeout: Duration,
    /// Attempts in flight per destination. 1 keeps first attempts in notification order.
    pub delivery_concurrency: usize,
    /// `message.*` notifications whose object serializes above this many bytes are sent as
    /// `*.truncated`, without `body`.
    pub truncation_threshold_bytes: usize,
    pub initial_messages_per_grant: usize,
    /// Single events per grant at start, spread from ~13 months ago to ~20 months ahead.
    pub initial_events_per_grant: usize,
    /// Weekly recurring series per grant at start (52 weeks, half of them past), each with one
    /// moved occurrence (3 weeks ago) and one cancelled occurrence (in 2 weeks).
    pub recurring_series_per_grant: usize,
    /// `grant.expired` is sent after a delay drawn (from the seed) in `[0, max]` emulated time
    /// after the grant broke, as Nylas's health checks lag by up to 10 minutes (default 600 s).
    /// The grant's data endpoints answer 401 from the moment it broke. Zero sends it at once.
    pub grant_expired_lag_max: Duration,
    /// Share of the activity's changes (`events_per_minute`) that are folder changes: a user
    /// label created, renamed or deleted, drawn from a generator of their own so the other
    /// changes keep their seeded sequence. In `[0, 1]`; 0 = none (default 0.01).
    pub folder_changes: f64,
    /// What the activity changes, in which shares (`ActivityMix::typical_day()` for a day of
    /// a typical mailbox); `None`: the default mix. Folder changes (`folder_changes`) come on top.
    pub activity_mix: Option<ActivityMix>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            api_key: "test-api-key".into(),
            seed: 1,
            grants: 1,
            events_per_minute: 0.0,
            time_scale: 1.0,
            rate_limit_per_grant: 200,
            rate_limit_per_application: 50,
            faults: Faults::default(),
            application_id: "emulated-application".into(),
            listen: None,
            start_time: None,
            grant_changes_per_hour: 0.0,
            delivery_timeout: Duration::from_secs(10),
            delivery_concurrency: 1,
            truncation_threshold_bytes: DEFAULT_TRUNCATION_THRESHOLD_BYTES,
            initial_messages_per_grant: 5,
            initial_events_per_grant: 3,
            recurring_series_per_grant: 1,
            grant_expired_lag_max: Duration::from_secs(600),
            folder_changes: 0.01,
            activity_mix: None,
        }
    }
}

/// A fresh `request_id` for an answer; unique within the process.
pub(crate) fn request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed) + 1;
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Locks a mutex, ignoring poisoning: a panicked test helper must not wedge the emulator.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) clock: Clock,
    pub(crate) addr: SocketAddr,
    pub(crate) model: Mutex<Model>,
    faults: RwLock<Faults>,
    outage: AtomicBool,
    pub(crate) paused: AtomicBool,
    silent: AtomicBool,
    pub(crate) destinations: Mutex<BTreeMap<String, Destination>>,
    pub(crate) stats: Mutex<StatsRecorder>,
    pub(crate) rate_windows: Mutex<HashMap<String, (Instant, u32)>>,
    notify_tx: mpsc::UnboundedSender<Outgoing>,
    /// `grant.expired` notifications waiting for their health-check lag: (due, notification, guard).
    lagged_tx: mpsc::UnboundedSender<(f64, Notification, PendingGuard)>,
    lag_rng: Mutex<Rng>,
    pub(crate) pending: Arc<AtomicUsize>,
    pub(crate) fault_rng: Mutex<Rng>,
    pub(crate) secret_rng: Mutex<Rng>,
    pub(crate) http: reqwest::Client,
    shutdown: watch::Sender<bool>,
    /// When the next grant lifecycle change of the activity model is due (emulated time).
    pub(crate) next_grant_change_at: Mutex<f64>,
}

impl Shared {
    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_faults(&self, f: Faults) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = f;
    }

    pub(crate) fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    pub(crate) fn in_outage(&self) -> bool {
        self.outage.load(Ordering::SeqCst) || self.faults().in_outage(self.clock.now())
    }

    pub(crate) fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    pub(crate) fn request_id(&self) -> String {
        request_id()
    }

    /// Spawns a task that ends with the emulator.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut rx = self.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = rx.wait_for(|down| *down) => {}
            }
        });
    }

    pub(crate) async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }

    /// Runs a model mutation at the current emulated time and sends what it produced, in order,
    /// while still holding the model lock (so notifications leave in the order changes happened).
    pub(crate) fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Model, i64, &mut Vec<Notification>) -> R,
    ) -> R {
        let now = self.clock.now();
        let mut model = lock(&self.model);
        let mut out = Vec::new();
        let r = f(&mut model, now, &mut out);
        self.route(&mut model, out);
        r
    }

    pub(crate) fn route(&self, model: &mut Model, notifications: Vec<Notification>) {
        if notifications.is_empty() {
            return;
        }
        let silent = self.silent.load(Ordering::SeqCst);
        let mut stats = lock(&self.stats);
        for n in notifications {
            if silent {
                stats.webhooks.suppressed_silent += 1;
                continue;
            }
            if !n.kind.starts_with("grant.") {
                if let Some(g) = model.grants.get_mut(&n.grant_id) {
                    if g.status == model::GrantStatus::Expired {
                        stats.webhooks.held_for_expired_grant += 1;
                        g.held.push(n);
                        continue;
                    }
                }
            }
            let mut n = n;
            if n.kind == "grant.expired" {
                let max = self.config.grant_expired_lag_max.as_secs_f64();
                let lag = lock(&self.lag_rng).f64() * max;
                if lag > 0.0 {
                    let due = self.clock.now_f64() + lag;
                    let guard = PendingGuard::new(&self.pending);
                    let _ = self.lagged_tx.send((due, n, guard));
                    continue;
                }
            }
            self.apply_notification_faults(&mut n);
            stats.webhooks.notifications += 1;
            let out = Outgoing {
                notification: Arc::new(n),
                guard: PendingGuard::new(&self.pending),
            };
            // The dispatcher only stops at shutdown; then nothing needs delivering.
            let _ = self.notify_tx.send(out);
        }
    }

    /// The shape faults: `event.*` without `grant_id`, `event.deleted` with a null `calendar_id`.
    fn apply_notification_faults(&self, n: &mut Notification) {
        if !n.kind.starts_with("event.") {
            return;
        }
        let f = self.faults();
        let (drop_grant, null_calendar) = {
            let mut rng = lock(&self.fault_rng);
            (
                rng.chance(f.event_missing_grant_id_probability),
                n.kind == "event.deleted" && rng.chance(f.event_deleted_null_calendar_probability),
            )
        };
        if let Value::Object(o) = &mut n.object {
            if drop_grant {
                o.remove("grant_id");
            }
            if null_calendar {
                o.insert("calendar_id".into(), Value::Null);
            }
        }
    }

    /// Sends a lagged `grant.expired` when its time comes, unless the grant re-authenticated or
    /// was deleted meanwhile (then the health check never saw it expired). `time` is when the
    /// health check noticed, not when the grant broke.
    async fn run_lagged(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<(f64, Notification, PendingGuard)>,
    ) {
        while let Some((due, mut n, guard)) = rx.recv().await {
            let s = self.clone();
            self.spawn(async move {
                s.clock.sleep_until(due).await;
                let still_expired = lock(&s.model)
                    .grants
                    .get(&n.grant_id)
                    .is_some_and(|g| g.status == model::GrantStatus::Expired);
                let mut stats = lock(&s.stats);
                if !still_expired || s.silent.load(Ordering::SeqCst) {
                    stats.webhooks.grant_expired_not_sent += 1;
                    return;
                }
                n.time = s.clock.now();
                stats.webhooks.notifications += 1;
                let out = Outgoing {
                    notification: Arc::new(n),
                    guard: PendingGuard::new(&s.pending),
                };
                let _ = s.notify_tx.send(out);
                drop(guard);
            });
        }
    }

    pub(crate) fn emit_notification(&self, kind: &str, grant: &str, object: Value) -> String {
        let source = if kind.starts_with("event.") || kind.starts_with("calendar.") {
            "/google/calendar/realtime"
        } else if kind.starts_with("grant.") {
            "/nylas/system"
        } else {
            "/google/emails/realtime"
        };
        self.mutate(|m, now, out| {
            let n = m.notification(kind, source, now, grant, object);
            let id = n.id.clone();
            out.push(n);
            id
        })
    }

    pub(crate) fn emit_tracking(&self, kind: &str, grant: &str, message_id: &str) -> String {
        let app_id = self.config.application_id.clone();
        self.mutate(|m, now, out| {
            let object = tracking::object(kind, &app_id, grant, message_id, now);
            let mut n = m.notification(kind, tracking::source(kind), now, grant, object);
            n.grant_in_data = tracking::grant_in_data(kind);
            let id = n.id.clone();
            out.push(n);
            id
        })
    }

    pub(crate) fn record_reauth(&self, r: model::Reauth) {
        let mut stats = lock(&self.stats);
        stats.webhooks.replayed_after_reauth += r.replayed;
        stats.webhooks.discarded_for_expired_grant += r.discarded;
    }

    pub(crate) fn stats(&self) -> Stats {
        let pending = self.pending.load(Ordering::SeqCst) as u64;
        lock(&self.stats).snapshot(self.clock.now(), pending)
    }

    pub(crate) fn truth(&self) -> Truth {
        let now = self.clock.now();
        lock(&self.model).truth(now)
    }

    pub(crate) async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Once this returns, no activity change lands: the flag is set under the model lock, and
    /// the activity loop checks it under the same lock before every change.
    pub(crate) fn pause(&self) {
        let _model = lock(&self.model);
        self.paused.store(true, Ordering::SeqCst);
    }

    pub(crate) fn resume(&self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            activity::reschedule_from_now(self);
        }
    }
}

/// A running emulator. Cheap to clone; every clone drives the same instance.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Emulator {
    /// Binds the listener (`config.listen`, or `127.0.0.1:0`) and spawns the HTTP server, the
    /// activity model and the delivery tasks.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let invalid =
            |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(invalid("time_scale must be a positive number"));
        }
        if !(config.events_per_minute.is_finite() && config.events_per_minute >= 0.0) {
            return Err(invalid("events_per_minute must be zero or positive"));
        }
        if !(config.grant_changes_per_hour.is_finite() && config.grant_changes_per_hour >= 0.0) {
            return Err(invalid("grant_changes_per_hour must be zero or positive"));
        }
        if !(config.folder_changes.is_finite() && (0.0..=1.0).contains(&config.folder_changes)) {
            return Err(invalid("folder_changes must be between 0 and 1"));
        }
        let listen = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        // Webhook deliveries: no `Accept-Encoding` of reqwest's own (the workspace enables its
        // gzip feature for the product's client).
        let http = reqwest::Client::builder()
            .no_proxy()
            .no_gzip()
            .user_agent("nylas-emulator")
            .build()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let clock = Clock::new(config.start_time, config.time_scale);
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        let (lagged_tx, lagged_rx) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let model = Model::new(ModelSettings {
            seed: config.seed,
            truncation_threshold_bytes: config.truncation_threshold_bytes,
            events_per_minute: config.events_per_minute,
            initial_messages: config.initial_messages_per_grant,
            initial_events: config.initial_events_per_grant,
            recurring_series: config.recurring_series_per_grant,
            folder_changes: config.folder_changes,
            mix: config.activity_mix.clone(),
        });
        let shared = Arc::new(Shared {
            clock,
            addr,
            model: Mutex::new(model),
            faults: RwLock::new(config.faults.clone()),
            outage: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            destinations: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(StatsRecorder::default()),
            rate_windows: Mutex::new(HashMap::new()),
            notify_tx,
            lagged_tx,
            lag_rng: Mutex::new(Rng::derive(config.seed, 0x1A66)),
            pending: Arc::new(AtomicUsize::new(0)),
            fault_rng: Mutex::new(Rng::derive(config.seed, 0xFA17)),
            secret_rng: Mutex::new(Rng::derive(config.seed, 0x5EC2)),
            http,
            shutdown,
            next_grant_change_at: Mutex::new(f64::INFINITY),
            config,
        });
        {
            // The initial grants exist before anyone can subscribe: their creation is not notified.
            let now = shared.clock.now();
            let mut model = lock(&shared.model);
            let mut ignored = Vec::new();
            for _ in 0..shared.config.grants {
                model.add_grant(now, &mut ignored);
            }
        }
        activity::schedule_grant_changes(&shared);

        let mut tasks = Vec::new();
        let router = api::router(shared.clone());
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                s.wait_shutdown().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator HTTP server stopped");
            }
        }));
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = delivery::run_dispatcher(s.clone(), notify_rx) => {}
                _ = s.wait_shutdown() => {}
            }
        }));
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = activity::run(s.clone()) => {}
                _ = s.wait_shutdown() => {}
            }
        }));
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = s.clone().run_lagged(lagged_rx) => {}
                _ = s.wait_shutdown() => {}
            }
        }));
        Ok(Emulator {
            shared,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// `http://127.0.0.1:PORT`: the value for `NYLAS_API_URI`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    pub fn application_id(&self) -> &str {
        &self.shared.config.application_id
    }

    /// Ids of the grants that exist (valid or expired), oldest first.
    pub fn grant_ids(&self) -> Vec<String> {
        lock(&self.shared.model).grant_ids()
    }

    /// Emulated Unix seconds.
    pub fn now(&self) -> i64 {
        self.shared.clock.now()
    }

    /// How long `emulated` lasts in real time at this emulator's time scale.
    pub fn real_duration(&self, emulated: Duration) -> Duration {
        self.shared.clock.real(emulated.as_secs_f64())
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Endpoint outage on or off: while on, every delivery attempt fails as if the endpoint were down.
    pub fn set_outage(&self, down: bool) {
        self.shared.set_outage(down);
    }

    pub fn pause_activity(&self) {
        self.shared.pause();
    }

    pub fn resume_activity(&self) {
        self.shared.resume();
    }

    /// Sets one grant's activity rate (changes per emulated minute; 0 = idle).
    pub fn set_events_per_minute(&self, grant: &str, rate: f64) {
        activity::set_rate(&self.shared, grant, rate);
    }

    /// While silent, mutations (API calls and activity alike) change the model but send no
    /// notification: a deterministic way to model missed webhooks.
    pub fn set_silent(&self, silent: bool) {
        self.shared.set_silent(silent);
    }

    /// Adds a grant (primary calendar, a few messages and events) and notifies `grant.created`.
    pub fn add_grant(&self) -> String {
        self.shared.mutate(|m, now, out| m.add_grant(now, out))
    }

    /// Adds a grant of `provider` (`google` or `icloud`; iCloud grants refuse event listings
    /// over one year and ignore `show_cancelled`) and notifies `grant.created`.
    pub fn add_grant_with(&self, provider: &str) -> String {
        self.shared
            .mutate(|m, now, out| m.add_grant_with(provider, now, out))
    }

    /// Creates a message and notifies `message.created` (or `.truncated`). Returns the stored
    /// object, or `Value::Null` when the grant does not exist.
    pub fn create_message(&self, grant: &str, spec: MessageSpec) -> Value {
        self.shared
            .mutate(|m, now, out| m.create_message(grant, spec, now, out))
            .unwrap_or(Value::Null)
    }

    /// Changes flags or folders and notifies `message.updated`. `Value::Null` when unknown.
    pub fn update_message(&self, grant: &str, id: &str, change: MessageChange) -> Value {
        self.shared
            .mutate(|m, now, out| m.update_message(grant, id, change, now, out))
            .unwrap_or(Value::Null)
    }

    /// Deletes a message and notifies `message.deleted`; returns false when it did not exist.
    pub fn delete_message(&self, grant: &str, id: &str) -> bool {
        self.shared
            .mutate(|m, now, out| m.delete_message(grant, id, now, out))
    }

    /// Adds a secondary calendar and notifies `calendar.created`. `Value::Null` when unknown.
    pub fn create_calendar(&self, grant: &str, name: &str) -> Value {
        self.shared
            .mutate(|m, now, out| m.create_calendar(grant, name, now, out))
            .unwrap_or(Value::Null)
    }

    /// The grant's primary calendar id.
    pub fn primary_calendar_id(&self, grant: &str) -> Option<String> {
        lock(&self.shared.model)
            .grants
            .get(grant)
            .and_then(|g| g.primary_calendar_id())
    }

    /// Creates an event and notifies `event.created`. `Value::Null` when grant or calendar is unknown.
    pub fn create_event(&self, grant: &str, calendar_id: &str) -> Value {
        self.shared
            .mutate(|m, now, out| m.create_event(grant, calendar_id, now, out))
            .unwrap_or(Value::Null)
    }

    /// Creates exactly the event of `spec` (a recurring master when `spec.recurrence` is set)
    /// and notifies `event.created`. `Value::Null` when the grant or calendar is unknown, the
    /// times are reversed, or the recurrence is not supported (see `README.md`).
    pub fn create_event_spec(&self, grant: &str, calendar_id: &str, spec: EventSpec) -> Value {
        self.shared
            .mutate(|m, now, out| m.create_event_spec(grant, calendar_id, spec, now, out))
            .unwrap_or(Value::Null)
    }

    /// Moves the occurrence of `master_id` originally starting at `original_start` to
    /// `new_start`..`new_end`: it becomes an exception (id `occurrence_id(master_id,
    /// original_start)`, `master_event_id`, `original_start_time`), notified as `event.updated`.
    /// Returns the exception, or `Value::Null` when there is no such occurrence.
    pub fn move_occurrence(
        &self,
        grant: &str,
        master_id: &str,
        original_start: i64,
        new_start: i64,
        new_end: i64,
    ) -> Value {
        self.shared
            .mutate(|m, now, out| {
                m.move_occurrence(
                    grant,
                    master_id,
                    original_start,
                    new_start,
                    new_end,
                    now,
                    out,
                )
            })
            .unwrap_or(Value::Null)
    }

    /// Cancels one occurrence of a series: it stays as a cancelled exception and the master's
    /// `event.updated` carries `cancelled_occurrences`. False when there is no such occurrence.
    pub fn cancel_occurrence(&self, grant: &str, master_id: &str, original_start: i64) -> bool {
        self.shared
            .mutate(|m, now, out| m.cancel_occurrence(grant, master_id, original_start, now, out))
    }

    /// Renames a calendar and notifies `calendar.updated`. `Value::Null` when unknown.
    pub fn update_calendar(&self, grant: &str, calendar_id: &str, name: &str) -> Value {
        self.shared
            .mutate(|m, now, out| m.update_calendar(grant, calendar_id, name, now, out))
            .unwrap_or(Value::Null)
    }

    /// Deletes a secondary calendar with its events and notifies `calendar.deleted` (no
    /// `event.deleted` for the events). False when unknown or primary.
    pub fn delete_calendar(&self, grant: &str, calendar_id: &str) -> bool {
        self.shared
            .mutate(|m, now, out| m.delete_calendar(grant, calendar_id, now, out))
    }

    /// Creates a user label (`Label_<n>`) and notifies `folder.created`. `Value::Null` when the
    /// grant is unknown or the name is empty, over 1024 characters or already used.
    pub fn create_folder(&self, grant: &str, name: &str) -> Value {
        self.shared
            .mutate(|m, now, out| m.create_folder(grant, name, now, out))
            .unwrap_or(Value::Null)
    }

    /// Renames a user label and notifies `folder.updated`. `Value::Null` when unknown, a system
    /// folder, or the name is empty, over 1024 characters or used by another folder.
    pub fn update_folder(&self, grant: &str, folder_id: &str, name: &str) -> Value {
        self.shared
            .mutate(|m, now, out| m.update_folder(grant, folder_id, name, now, out))
            .unwrap_or(Value::Null)
    }

    /// Deletes a user label and notifies `folder.deleted` (ids only); the messages that had it
    /// lose it, each notified first as `message.updated`. False when unknown or a system folder.
    pub fn delete_folder(&self, grant: &str, folder_id: &str) -> bool {
        self.shared
            .mutate(|m, now, out| m.delete_folder(grant, folder_id, now, out))
    }

    /// Changes an event (moves `updated_at`) and notifies `event.updated`. `Value::Null` when unknown.
    pub fn update_event(&self, grant: &str, event_id: &str, change: EventChange) -> Value {
        self.shared
            .mutate(|m, now, out| m.update_event(grant, event_id, change, now, out))
            .unwrap_or(Value::Null)
    }

    /// Sets `status: "cancelled"` and notifies `event.updated`; the event keeps existing.
    pub fn cancel_event(&self, grant: &str, event_id: &str) -> Value {
        let change = EventChange {
            status: Some("cancelled".into()),
            ..EventChange::default()
        };
        self.update_event(grant, event_id, change)
    }

    /// Deletes an event and notifies `event.deleted`; returns false when it did not exist.
    pub fn delete_event(&self, grant: &str, event_id: &str) -> bool {
        self.shared
            .mutate(|m, now, out| m.delete_event(grant, event_id, now, out))
    }

    /// Breaks the grant: from now its API calls answer 401 and its notifications are held back
    /// until re-authentication. `grant.expired` follows after a lag drawn in
    /// `[0, grant_expired_lag_max]` (emulated), unless the grant re-authenticates first.
    pub fn expire_grant(&self, grant: &str) {
        self.shared
            .mutate(|m, now, out| m.expire_grant(grant, now, out));
    }

    /// Notifies `grant.updated` (code 25027, `reauthentication_flag: true`); within 72 emulated
    /// hours of expiry, the held notifications follow.
    pub fn reauthenticate_grant(&self, grant: &str) {
        let r = self
            .shared
            .mutate(|m, now, out| m.reauthenticate_grant(grant, now, out));
        self.shared.record_reauth(r);
    }

    /// An ordinary grant update (not a re-authentication): notifies `grant.updated` with code
    /// 25014 and `reauthentication_flag: false`; the grant's status is unchanged (an expired grant
    /// stays expired). False when the grant does not exist.
    pub fn update_grant(&self, grant: &str) -> bool {
        self.shared
            .mutate(|m, now, out| m.update_grant(grant, now, out))
    }

    /// Notifies `grant.deleted` and removes the grant and all its objects.
    pub fn delete_grant(&self, grant: &str) {
        let discarded = self
            .shared
            .mutate(|m, now, out| m.delete_grant(grant, now, out));
        self.shared.record_reauth(model::Reauth {
            replayed: 0,
            discarded,
        });
    }

    /// Waits until every notification produced so far has been delivered, dropped or given up
    /// (retries included). False if `timeout` (real time) passed first.
    pub async fn wait_for_deliveries_idle(&self, timeout: Duration) -> bool {
        self.shared.wait_idle(timeout).await
    }

    pub fn truth(&self) -> Truth {
        self.shared.truth()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Every notification a destination never received (dropped, retries exhausted, destination
    /// `failed` or paused), in the order they were given up.
    pub fn losses(&self) -> Vec<Loss> {
        lock(&self.shared.stats).losses.clone()
    }

    /// Every notification the model produced so far, as a state of its object (whether or not
    /// any destination received it), in the order they were produced.
    pub fn changes(&self) -> Vec<ObjectChange> {
        lock(&self.shared.stats).changes.clone()
    }

    /// Sends a notification of any type (e.g. `message.created.cleaned`, `booking.created`) with
    /// `object` as `data.object`, to every destination subscribed to it, through the same path
    /// as the model's own (silent mode, expired grants, faults, retries). Returns its id.
    pub fn emit_notification(&self, kind: &str, grant: &str, object: Value) -> String {
        self.shared.emit_notification(kind, grant, object)
    }

    /// Sends a tracking or deliverability notification (`message.opened`, `message.link_clicked`,
    /// their `.legacy` forms, `thread.replied`, `message.bounce_detected`; any other kind gets
    /// the same treatment) about `message_id`: `data.object` carries `message_id` and no `id`;
    /// the grant is in `data.object.grant_id`, except for `message.bounce_detected`, which
    /// carries it at `data.grant_id`. Only destinations subscribed to exactly `kind` (or `*`)
    /// get it. Returns the notification id.
    pub fn emit_tracking(&self, kind: &str, grant: &str, message_id: &str) -> String {
        self.shared.emit_tracking(kind, grant, message_id)
    }

    /// A destination's status: `active`, `failing`, `failed` or `pause`; empty when unknown.
    pub fn destination_status(&self, destination_id: &str) -> String {
        webhooks::info(&self.shared, destination_id)
            .map(|i| i.status)
            .unwrap_or_default()
    }

    /// Sets a destination's status (`active`, `pause`, `failing` or `failed`), as
    /// `PUT /v3/webhooks/{id}` does for the first two. `active` judges its health afresh. False
    /// when the destination or the status is unknown.
    pub fn set_destination_status(&self, destination_id: &str, status: &str) -> bool {
        webhooks::set_status(&self.shared, destination_id, status)
    }

    /// Makes a destination `failed` at once (as if it had been failing for 72 emulated hours):
    /// it gets nothing until set `active` again.
    pub fn fail_destination(&self, destination_id: &str) -> bool {
        self.set_destination_status(destination_id, "failed")
    }

    /// Registers a destination subscribed to every notification (trigger `*`), without the challenge.
    /// `GET /v3/webhooks` lists it with the real trigger names the emulator sends, not `*`.
    /// Returns `(id, webhook_secret)`.
    pub fn register_destination_direct(&self, url: &str, compressed: bool) -> (String, String) {
        webhooks::register(
            &self.shared,
            url,
            vec!["*".to_string()],
            compressed,
            None,
            vec![],
        )
    }

    /// Replaces a destination's secret, as `POST /v3/webhooks/rotate-secret/{id}` does.
    pub fn rotate_secret(&self, destination_id: &str) -> Option<String> {
        webhooks::rotate(&self.shared, destination_id)
    }

    /// Stops the server, the activity and every delivery, and waits for the server to close.
    pub async fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = lock(&self.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
