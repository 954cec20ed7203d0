//! The local pipeline and its scenarios: one emulated Nylas, and four sync strategies side by
//! side on the same simulated traffic, each with its own queues, tables and functions (the real
//! handlers), so the report compares them on equal terms:
//!
//! - **webhooks only**: ingest → consumer, never a poll;
//! - **polling only**: the reconciler every 5 emulated minutes (`received_after`, as the cookbook
//!   polls), no webhooks;
//! - **seed hybrid**: the cookbook's hybrid, fetching every notified object (`FETCH_POLICY=always`)
//!   plus a `received_after` poll every 30 emulated minutes;
//! - **nylas-sync hybrid**: full objects from webhooks, fetch only when needed, the scheduled
//!   reconcile with cursors and overlap, and a drift sweep.
//!
//! Every strategy starts from the same synced state (one reconcile before traffic). When traffic
//! stops, every strategy gets its final poll (the nylas-sync hybrid's with its drift sweep), and
//! each store is compared with the emulator's truth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use nylas_emulator::{
    ActivityMix, Emulator, EmulatorConfig, FaultWindow, Faults, MessageSpec, SlowWindow, Stats,
};
use nylas_sync::aws::{self, AwsTimeouts};
use nylas_sync::clock::Clock;
use nylas_sync::config::ApiKey;
use nylas_sync::consumer::Consumer;
use nylas_sync::destination::DestinationWatch;
use nylas_sync::grants::GrantStatus;
use nylas_sync::ingest::Ingest;
use nylas_sync::jobs::{JobKind, ReconcileJob};
use nylas_sync::nylas::{ClientSettings, NylasClient};
use nylas_sync::reconcile::Reconciler;
use nylas_sync::scheduler::{Scheduler, SchedulerSettings};
use nylas_sync::store::WriteEvent;

use crate::compare::{compare, Completeness};
use crate::day::{repairs, Bill, Usage};
use crate::report::{FaultsReport, LossRepair, Report, StrategyReport};
use crate::SqsPoller;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// Light traffic, no faults.
    Smoke,
    /// Traffic with a 20-minute (emulated) endpoint outage in the middle.
    Outage,
    /// Drops, duplicates, reordering, a 429 storm, 5xx and consumer crashes mid-batch.
    Chaos,
    /// A big mailbox, slow REST answers during changes, a grant deleted while a reconcile of it
    /// runs, a grant whose credentials expire and come back, and bursts of 429s.
    Faults,
    /// A day of a typical mailbox (per grant 200 new messages, 400 flag or folder changes, 20
    /// deletes, 10 event changes), 0.5% of notifications silently dropped, a one-hour outage of
    /// the endpoint, every destination `failed` late in the day; then a quiet tail as long as the
    /// longest back-off, so every loss has had its chance to be repaired.
    Day,
}

/// The day scenario runs a day in four minutes.
const DAY_TIME_SCALE: f64 = 360.0;
/// The day's faults, as fractions of the traffic time: the outage starts at `DAY_OUTAGE_AT`,
/// every destination is made `failed` at `DAY_FAIL_AT`.
const DAY_OUTAGE_AT: f64 = 0.30;
const DAY_OUTAGE: Duration = Duration::from_secs(3600);
const DAY_FAIL_AT: f64 = 0.75;
const DAY_DROP_PROBABILITY: f64 = 0.005;
/// How often the nylas-sync hybrid reads its destination (the template's DestinationWatchMinutes).
const WATCH_EVERY_S: f64 = 300.0;
/// The longest a grant waits between runs (RECONCILE_MAX_INTERVAL_SECONDS's default): the day's
/// quiet tail.
const MAX_INTERVAL_S: f64 = 14_400.0;

#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub scenario: ScenarioName,
    pub grants: usize,
    /// Emulated seconds per real second.
    pub time_scale: f64,
    /// Real seconds of traffic.
    pub traffic_seconds: u64,
    /// Changes per emulated minute per grant.
    pub events_per_minute: f64,
    pub seed: u64,
    /// Print a progress line while running.
    pub progress: bool,
    /// Messages the first grant starts with on top of the usual few, dated back over
    /// `big_mailbox_years` (the faults scenario's big mailbox; 0 = none).
    pub big_mailbox: usize,
    pub big_mailbox_years: i64,
}

impl ScenarioConfig {
    pub fn new(scenario: ScenarioName) -> Self {
        Self {
            scenario,
            grants: if scenario == ScenarioName::Day { 2 } else { 5 },
            time_scale: if scenario == ScenarioName::Day {
                DAY_TIME_SCALE
            } else {
                60.0
            },
            traffic_seconds: match scenario {
                ScenarioName::Smoke => 40,
                ScenarioName::Faults => 60,
                ScenarioName::Day => (86_400.0 / DAY_TIME_SCALE) as u64,
                _ => 90,
            },
            events_per_minute: if scenario == ScenarioName::Day {
                f64::from(ActivityMix::typical_day().per_day()) / 1440.0
            } else {
                0.6
            },
            seed: 42,
            progress: false,
            big_mailbox: if scenario == ScenarioName::Faults {
                2000
            } else {
                0
            },
            big_mailbox_years: 3,
        }
    }
}

/// The emulator's clock, for functions running against it.
struct EmulatorClock(Emulator);

impl Clock for EmulatorClock {
    fn now_ms(&self) -> i64 {
        self.0.now() * 1000
    }

    /// SQS delays count real seconds: an emulated delay is scaled down, to a whole second at
    /// least (a job waiting for a lease does not spin).
    fn queue_delay_s(&self, seconds: i32) -> i32 {
        if seconds <= 0 {
            return 0;
        }
        let real = self.0.real_duration(Duration::from_secs(seconds as u64));
        real.as_secs_f64().ceil().max(1.0) as i32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WebhooksOnly,
    PollingOnly,
    SeedHybrid,
    Hybrid,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::WebhooksOnly => "webhooks only",
            Kind::PollingOnly => "polling only (5 min)",
            Kind::SeedHybrid => "seed hybrid (fetch + poll)",
            Kind::Hybrid => "nylas-sync hybrid",
        }
    }
    fn webhooks(self) -> bool {
        self != Kind::PollingOnly
    }
    /// Emulated seconds between scheduled reconciles, if any.
    fn poll_interval(self) -> Option<i64> {
        match self {
            Kind::WebhooksOnly => None,
            Kind::PollingOnly => Some(300),
            Kind::SeedHybrid | Kind::Hybrid => Some(1800),
        }
    }
}

struct Strategy {
    kind: Kind,
    consumer: Option<Arc<Consumer>>,
    reconciler: Arc<Reconciler>,
    scheduler: Option<Arc<Scheduler>>,
    notifications: Option<SqsPoller>,
    reconcile: SqsPoller,
    writes: Arc<Mutex<Vec<WriteEvent>>>,
    ingest_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The webhook destination at Nylas, if the strategy has one.
    destination: Option<String>,
    /// The destination's watch (the nylas-sync hybrid only).
    watch: Option<Arc<DestinationWatch>>,
    invocations: Arc<Invocations>,
}

/// Function invocations of a strategy and their time (real, on this machine), for the bill.
#[derive(Default)]
struct Invocations {
    consumer: AtomicU64,
    consumer_us: AtomicU64,
    reconciler: AtomicU64,
    reconciler_us: AtomicU64,
    scheduler: AtomicU64,
    /// Reconcile jobs: SendMessage, ReceiveMessage and DeleteMessage each.
    jobs: AtomicU64,
    /// Reconcile jobs received, by kind.
    jobs_by_kind: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Invocations {
    fn add(counter: &AtomicU64, micros: &AtomicU64, since: Instant) {
        counter.fetch_add(1, Ordering::Relaxed);
        micros.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

impl Strategy {
    /// What the strategy's stores metered so far, by all its functions.
    fn meters(&self) -> Meters {
        let stores = std::iter::once(&self.reconciler.objects)
            .chain(self.consumer.as_ref().map(|c| &c.objects));
        stores.fold(Meters::default(), |m, o| Meters {
            write_requests: m.write_requests + o.writes.requests(),
            write_units: m.write_units + o.writes.units(),
            one_item_units: m.one_item_units + o.writes.one_item_units(),
            read_units: m.read_units + o.reads.units(),
            payload_puts: m.payload_puts + o.writes.payload_puts(),
        })
    }
}

/// A strategy's store meters (objects table and bucket).
#[derive(Debug, Clone, Copy, Default)]
struct Meters {
    write_requests: u64,
    write_units: u64,
    /// Write units had each state been written whole in one item (the design before bodies
    /// were stored once).
    one_item_units: u64,
    read_units: f64,
    payload_puts: u64,
}

impl std::ops::Sub for Meters {
    type Output = Meters;
    fn sub(self, b: Meters) -> Meters {
        Meters {
            write_requests: self.write_requests.saturating_sub(b.write_requests),
            write_units: self.write_units.saturating_sub(b.write_units),
            one_item_units: self.one_item_units.saturating_sub(b.one_item_units),
            read_units: (self.read_units - b.read_units).max(0.0),
            payload_puts: self.payload_puts.saturating_sub(b.payload_puts),
        }
    }
}

/// Names the resources of one strategy (created in the AWS emulator).
struct Resources {
    notifications_queue: String,
    reconcile_queue: String,
    objects_table: String,
    grants_table: String,
    bucket: String,
}

/// The strategy's tables, queues and bucket: deployed from `infra/template.yaml` to moto's
/// CloudFormation (tests/local-stack/deploy-to-moto translates the SAM template, as AWS does), so
/// local resources are the production ones. Queue visibility timeouts are then scaled down to
/// 5 s: the template's suit real time, the scenarios run sped up. Without the deploy script or
/// Python's SAM translator, the same resources are created directly (and said so).
async fn create_resources(
    sdk: &aws_config::SdkConfig,
    prefix: &str,
) -> Result<Resources, Box<dyn std::error::Error>> {
    match deploy_template(prefix).await {
        Ok(r) => {
            let sqs = aws::sqs_client(sdk);
            for q in [&r.notifications_queue, &r.reconcile_queue] {
                sqs.set_queue_attributes()
                    .queue_url(q)
                    .attributes(QueueAttributeName::VisibilityTimeout, "5")
                    .send()
                    .await?;
            }
            Ok(r)
        }
        Err(e) => {
            eprintln!("deploying infra/template.yaml to moto failed ({e}); creating the resources directly");
            create_resources_directly(sdk, prefix).await
        }
    }
}

async fn deploy_template(prefix: &str) -> Result<Resources, Box<dyn std::error::Error>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy-to-moto");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--stack-name", prefix])
        .output()
        .await?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string().into());
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let env = |k: &str| -> Result<String, Box<dyn std::error::Error>> {
        Ok(doc["env"][k]
            .as_str()
            .ok_or(format!("deploy-to-moto gave no {k}"))?
            .to_string())
    };
    Ok(Resources {
        notifications_queue: env("NOTIFICATIONS_QUEUE_URL")?,
        reconcile_queue: env("RECONCILE_QUEUE_URL")?,
        objects_table: env("OBJECTS_TABLE")?,
        grants_table: env("GRANTS_TABLE")?,
        bucket: env("PAYLOAD_BUCKET")?,
    })
}

async fn create_resources_directly(
    sdk: &aws_config::SdkConfig,
    prefix: &str,
) -> Result<Resources, Box<dyn std::error::Error>> {
    let sqs = aws::sqs_client(sdk);
    let s3 = aws::s3_client(sdk);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let mut queues = Vec::new();
    for name in ["notifications", "reconcile"] {
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{prefix}-{name}-dlq"))
            .send()
            .await?
            .queue_url
            .unwrap_or_default();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        let url = sqs
            .create_queue()
            .queue_name(format!("{prefix}-{name}"))
            .attributes(QueueAttributeName::VisibilityTimeout, "5")
            .attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": 10}).to_string(),
            )
            .send()
            .await?
            .queue_url
            .unwrap_or_default();
        queues.push(url);
    }
    let mut tables = Vec::new();
    for (name, sorted) in [("objects", true), ("grants", false)] {
        let table = format!("{prefix}-{name}");
        let mut req = ddb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("grant_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("grant_id")
                    .key_type(KeyType::Hash)
                    .build()?,
            );
        if sorted {
            req = req
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("sk")
                        .attribute_type(ScalarAttributeType::S)
                        .build()?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("sk")
                        .key_type(KeyType::Range)
                        .build()?,
                );
            req = crate::with_by_date_index(req)?;
        }
        req.send().await?;
        tables.push(table);
    }
    let bucket = format!("{prefix}-payloads");
    s3.create_bucket().bucket(&bucket).send().await?;
    Ok(Resources {
        notifications_queue: queues[0].clone(),
        reconcile_queue: queues[1].clone(),
        objects_table: tables[0].clone(),
        grants_table: tables[1].clone(),
        bucket,
    })
}

/// Runs a scenario to the end and reports. Needs `AWS_ENDPOINT_URL` pointing at moto.
pub async fn run(config: ScenarioConfig) -> Result<Report, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let sdk = aws::sdk_config(AwsTimeouts::BACKGROUND).await;
    let scale = config.time_scale;
    let emulator = Emulator::start(EmulatorConfig {
        seed: config.seed,
        grants: config.grants,
        events_per_minute: 0.0,
        time_scale: scale,
        initial_messages_per_grant: 8,
        initial_events_per_grant: 3,
        activity_mix: (config.scenario == ScenarioName::Day).then(ActivityMix::typical_day),
        folder_changes: if config.scenario == ScenarioName::Day {
            0.0
        } else {
            EmulatorConfig::default().folder_changes
        },
        ..EmulatorConfig::default()
    })
    .await?;
    let big_mailbox = seed_big_mailbox(&emulator, &config);
    // Unique per run, so runs can share one moto (the tests run two at once).
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run_id = format!(
        "ns{}-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed),
        emulator.now() % 100_000
    );
    let sqs = aws::sqs_client(&sdk);
    let http = reqwest::Client::new();

    // Four strategies, each with its own resources and functions.
    let mut strategies = Vec::new();
    for kind in [
        Kind::WebhooksOnly,
        Kind::PollingOnly,
        Kind::SeedHybrid,
        Kind::Hybrid,
    ] {
        let prefix = format!("{run_id}-{}", strategies.len());
        let r = create_resources(&sdk, &prefix).await?;
        let mut env: HashMap<&str, String> = HashMap::from([
            ("OBJECTS_TABLE", r.objects_table.clone()),
            ("GRANTS_TABLE", r.grants_table.clone()),
            ("PAYLOAD_BUCKET", r.bucket.clone()),
            ("RECONCILE_QUEUE_URL", r.reconcile_queue.clone()),
            ("NYLAS_API_URI", emulator.base_url()),
            ("NYLAS_API_KEY", emulator.api_key().to_string()),
            ("MISSED_GRACE_SECONDS", "300".to_string()),
            // The cookbook's poll and the nylas-sync hybrid's scheduled runs: the sweep only
            // where this project adds it (its final run, below).
            ("DRIFT_SWEEP_EVERY_RUNS", "1000000".to_string()),
        ]);
        if kind == Kind::SeedHybrid {
            env.insert("FETCH_POLICY", "always".into());
        }
        if config.scenario == ScenarioName::Day {
            // A lease is emulated time: 15 minutes would be 2.5 real seconds at the day's
            // speed, less than a sweep takes on this machine. A minute of real time instead.
            let lease_s = (60.0 * scale).round() as u64;
            env.insert("LEASE_SECONDS", lease_s.to_string());
        }
        if kind != Kind::Hybrid {
            // Only nylas-sync takes a redelivered notification as evidence of loss.
            env.insert("RECONCILE_ON_REDELIVERY", "false".into());
        }
        if config.big_mailbox > 0 {
            // The whole mailbox is synced from the start, big one included.
            let days = config.big_mailbox_years * 366 + 30;
            env.insert("BACKFILL_DAYS", days.to_string());
        }
        if kind == Kind::PollingOnly || kind == Kind::SeedHybrid {
            // The cookbook polls received_after the last sync, with no overlap, every interval.
            env.insert("RECONCILE_OVERLAP_SECONDS", "0".into());
        }
        if let Some(interval) = kind.poll_interval() {
            env.insert("RECONCILE_INTERVAL_SECONDS", interval.to_string());
            if kind != Kind::Hybrid {
                // Only nylas-sync backs off a grant whose polls find nothing, and compares recent
                // mail on every run.
                env.insert("RECONCILE_MAX_INTERVAL_SECONDS", interval.to_string());
                env.insert("RECENT_SWEEP_DAYS", "0".into());
            }
        }
        let env_ref: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let writes: Arc<Mutex<Vec<WriteEvent>>> = Arc::default();
        let observer: nylas_sync::store::WriteObserver = {
            let writes = Arc::clone(&writes);
            Arc::new(move |w: &WriteEvent| {
                if let Ok(mut v) = writes.lock() {
                    v.push(w.clone());
                }
            })
        };
        let clock: Arc<dyn Clock> = Arc::new(EmulatorClock(emulator.clone()));
        let mut reconciler = Reconciler::from_env(&env_ref).await?;
        reconciler.clock = Arc::clone(&clock);
        reconciler.objects.observer = Some(Arc::clone(&observer));
        let consumer = if kind.webhooks() {
            let mut c = Consumer::from_env(&env_ref).await?;
            c.clock = Arc::clone(&clock);
            c.objects.observer = Some(Arc::clone(&observer));
            Some(Arc::new(c))
        } else {
            None
        };
        let scheduler = kind.poll_interval().map(|interval| {
            Arc::new(Scheduler {
                grants: reconciler.grants.clone(),
                jobs: reconciler.jobs.clone(),
                settings: SchedulerSettings {
                    interval_s: interval,
                    // DelaySeconds is real time: spread over a sixth of the interval, scaled.
                    spread_s: ((interval as f64 / 6.0) / scale).round() as i32,
                    ..SchedulerSettings::default()
                },
                clock: Arc::clone(&clock),
            })
        });
        let mut ingest_task = None;
        let mut destination = None;
        if kind.webhooks() {
            let (task, id) = register_webhook(&emulator, &http, &r, &prefix).await?;
            ingest_task = Some(task);
            destination = Some(id);
        }
        // The nylas-sync hybrid reads its destination on its own schedule.
        let watch = match (&destination, kind) {
            (Some(id), Kind::Hybrid) => Some(Arc::new(DestinationWatch {
                nylas: NylasClient::new(
                    &emulator.base_url(),
                    ApiKey::new(emulator.api_key()),
                    ClientSettings::default(),
                )?,
                webhook_id: id.clone(),
                grants: reconciler.grants.clone(),
                clock: Arc::clone(&clock),
            })),
            _ => None,
        };
        let notifications = if kind.webhooks() {
            Some(SqsPoller::new(sqs.clone(), &r.notifications_queue).await?)
        } else {
            None
        };
        let reconcile = SqsPoller::new(sqs.clone(), &r.reconcile_queue).await?;
        for g in emulator.grant_ids() {
            reconciler
                .grants
                .set_status(&g, GrantStatus::Active, 1, &[])
                .await?;
        }
        strategies.push(Strategy {
            kind,
            consumer,
            reconciler: Arc::new(reconciler),
            scheduler,
            notifications,
            reconcile,
            writes,
            ingest_task,
            destination,
            watch,
            invocations: Arc::default(),
        });
    }

    // The same starting point: one reconcile per grant, then forget those writes (the
    // strategies side by side, as they share nothing).
    let initial = strategies.iter().map(|s| {
        let grants = emulator.grant_ids();
        async move {
            for g in grants {
                s.reconciler
                    .run(&ReconcileJob::new(g, JobKind::Incremental, None), far())
                    .await?;
            }
            s.writes.lock().map(|mut w| w.clear()).ok();
            Ok::<(), nylas_sync::reconcile::ReconcileError>(())
        }
    });
    futures::future::try_join_all(initial).await?;
    let calls_before: Vec<u64> = strategies
        .iter()
        .map(|s| s.reconciler.nylas.calls.total())
        .collect();
    let meters_before: Vec<Meters> = strategies.iter().map(Strategy::meters).collect();
    let calls_before_by_endpoint: Vec<_> = strategies
        .iter()
        .map(|s| s.reconciler.nylas.calls.snapshot())
        .collect();

    // Traffic, with the scenario's faults.
    let stop = Arc::new(AtomicBool::new(false));
    let crashes = Arc::new(AtomicU64::new(0));
    let crash_every = if config.scenario == ScenarioName::Chaos {
        7
    } else {
        0
    };
    let mut workers = Vec::new();
    let mut timers = Vec::new();
    for s in &strategies {
        if let (Some(poller), Some(consumer)) = (s.notifications.clone(), s.consumer.clone()) {
            let stop = Arc::clone(&stop);
            let crashes = Arc::clone(&crashes);
            let invocations = Arc::clone(&s.invocations);
            workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let consumer = Arc::clone(&consumer);
                    let crash = crash_every > 0 && n % crash_every == 0;
                    let crashes = Arc::clone(&crashes);
                    let inv = Arc::clone(&invocations);
                    let _ = poller
                        .poll_once(1, |event| async move {
                            let t = Instant::now();
                            let response = consumer.handle(event).await;
                            Invocations::add(&inv.consumer, &inv.consumer_us, t);
                            if crash {
                                // The function died after its writes, before answering: the
                                // whole batch comes back after the visibility timeout.
                                crashes.fetch_add(1, Ordering::Relaxed);
                                return crash_response(response);
                            }
                            response
                        })
                        .await;
                }
            }));
        }
        // Lambda runs each reconcile job in an invocation of its own: the day, whose incidents
        // send a job per grant at once, runs up to three at a time per strategy.
        let reconcile_workers = if config.scenario == ScenarioName::Day {
            3
        } else {
            1
        };
        for _ in 0..reconcile_workers {
            let poller = s.reconcile.clone();
            let reconciler = Arc::clone(&s.reconciler);
            let stop = Arc::clone(&stop);
            let inv = Arc::clone(&s.invocations);
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let reconciler = Arc::clone(&reconciler);
                    let inv = Arc::clone(&inv);
                    let _ = poller
                        .poll_once(1, |event| async move {
                            let t = Instant::now();
                            inv.jobs
                                .fetch_add(event.records.len() as u64, Ordering::Relaxed);
                            if let Ok(mut by) = inv.jobs_by_kind.lock() {
                                for r in &event.records {
                                    let job = r
                                        .body
                                        .as_deref()
                                        .and_then(|b| serde_json::from_str::<ReconcileJob>(b).ok());
                                    let kind = job.map_or("unreadable".into(), |j| {
                                        format!("{:?}", j.kind).to_lowercase()
                                    });
                                    *by.entry(kind).or_default() += 1;
                                }
                            }
                            let response = reconciler.handle(event, far()).await;
                            Invocations::add(&inv.reconciler, &inv.reconciler_us, t);
                            response
                        })
                        .await;
                }
            }));
        }
        if let Some(scheduler) = s.scheduler.clone() {
            let stop = Arc::clone(&stop);
            let interval =
                Duration::from_secs_f64(s.kind.poll_interval().unwrap_or(1800) as f64 / scale);
            let inv = Arc::clone(&s.invocations);
            let watch = s.watch.clone();
            timers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.tick().await; // the first tick is now: the initial reconcile just ran
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    inv.scheduler.fetch_add(1, Ordering::Relaxed);
                    let _ = scheduler.fan_out().await;
                    if let Some(w) = &watch {
                        let _ = w.check(&scheduler).await;
                    }
                }
            }));
        }
        // The destination's own schedule (the template's second schedule, `watch_only`).
        if let (Some(watch), Some(scheduler)) = (s.watch.clone(), s.scheduler.clone()) {
            let stop = Arc::clone(&stop);
            let inv = Arc::clone(&s.invocations);
            let every = Duration::from_secs_f64(WATCH_EVERY_S / scale);
            timers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    inv.scheduler.fetch_add(1, Ordering::Relaxed);
                    let _ = watch.check(&scheduler).await;
                }
            }));
        }
    }

    let t0 = emulator.now();
    let mut faults = Faults::default();
    match config.scenario {
        ScenarioName::Smoke => {}
        ScenarioName::Outage => {
            let length = Duration::from_secs(1200);
            let from = t0 + (config.traffic_seconds as f64 * scale * 0.3) as i64;
            faults.outages.push(FaultWindow::starting_at(from, length));
        }
        ScenarioName::Chaos => {
            faults.drop_probability = 0.05;
            faults.duplicate_probability = 0.05;
            faults.max_delay = Duration::from_secs(120);
            faults.api_5xx_probability = 0.02;
            let from = t0 + (config.traffic_seconds as f64 * scale * 0.5) as i64;
            faults
                .api_429_windows
                .push(FaultWindow::starting_at(from, Duration::from_secs(300)));
            faults.retry_after_secs = Some(2);
            faults.outages.push(FaultWindow::starting_at(
                t0 + (config.traffic_seconds as f64 * scale * 0.2) as i64,
                Duration::from_secs(900),
            ));
        }
        ScenarioName::Faults => {
            let at = |f: f64| t0 + (config.traffic_seconds as f64 * scale * f) as i64;
            let span =
                |f: f64| Duration::from_secs((config.traffic_seconds as f64 * scale * f) as u64);
            faults.slow_windows.push(SlowWindow::starting_at(
                at(SLOW_FROM),
                span(SLOW_UNTIL - SLOW_FROM),
                SLOW_DELAY,
            ));
            for f in BURSTS_AT {
                faults
                    .api_429_windows
                    .push(FaultWindow::starting_at(at(f), BURST_LENGTH));
            }
            faults.retry_after_secs = Some(2);
        }
        ScenarioName::Day => {
            faults.drop_probability = DAY_DROP_PROBABILITY;
            let from = t0 + (config.traffic_seconds as f64 * scale * DAY_OUTAGE_AT) as i64;
            faults
                .outages
                .push(FaultWindow::starting_at(from, DAY_OUTAGE));
        }
    }
    let outages: Vec<crate::day::Window> =
        faults.outages.iter().map(|w| (w.from, w.until)).collect();
    let mut fail_at = (config.scenario == ScenarioName::Day)
        .then(|| traffic_fraction(config.traffic_seconds, DAY_FAIL_AT));
    let plan = FaultPlan::new(&config, &emulator, &faults, big_mailbox);
    emulator.set_faults(faults);
    for g in emulator.grant_ids() {
        emulator.set_events_per_minute(&g, config.events_per_minute);
    }
    emulator.resume_activity();
    let traffic_start = Instant::now();
    let traffic_end = traffic_start + Duration::from_secs(config.traffic_seconds);
    let mut steps = plan
        .as_ref()
        .map(|p| p.steps(config.traffic_seconds))
        .unwrap_or_default();
    let mut observed = FaultsObserved::default();
    while Instant::now() < traffic_end {
        if config.progress {
            progress(&emulator, &strategies, "traffic", started, &crashes, t0);
        }
        while steps
            .first()
            .is_some_and(|(at, _)| traffic_start + *at <= Instant::now())
        {
            let (_, step) = steps.remove(0);
            step.run(&emulator, &strategies, &mut observed).await?;
        }
        if fail_at.is_some_and(|at| traffic_start + at <= Instant::now()) {
            fail_at = None;
            fail_every_destination(&emulator, &strategies);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Steps not yet run (a very short run) run now, in order: every fault happens.
    for (_, step) in steps {
        step.run(&emulator, &strategies, &mut observed).await?;
    }
    if fail_at.is_some() {
        fail_every_destination(&emulator, &strategies);
    }
    emulator.pause_activity();
    emulator.set_faults(Faults::default());
    if config.scenario == ScenarioName::Day {
        // The quiet tail: no more changes, every schedule still running, as long as the longest
        // back-off, so each loss has had the time its policy promises.
        let tail_end = Instant::now() + Duration::from_secs_f64(MAX_INTERVAL_S / scale);
        while Instant::now() < tail_end {
            if config.progress {
                progress(&emulator, &strategies, "quiet tail", started, &crashes, t0);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Let deliveries (retries included) finish and the queues drain.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    while !emulator
        .wait_for_deliveries_idle(Duration::from_millis(500))
        .await
        && Instant::now() < drain_deadline
    {
        if config.progress {
            progress(
                &emulator,
                &strategies,
                "webhook retries",
                started,
                &crashes,
                t0,
            );
        }
    }
    loop {
        let mut busy = false;
        for s in &strategies {
            if let Some(p) = &s.notifications {
                busy |= depth(&sqs, &p.queue_url).await > 0;
            }
        }
        if !busy || Instant::now() > drain_deadline {
            break;
        }
        if config.progress {
            progress(&emulator, &strategies, "draining", started, &crashes, t0);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    // A scheduler waits for its next tick (up to its interval): stopped at once, as it only
    // sends jobs and the final polls below follow. The pollers finish the batch in hand.
    for t in timers {
        t.abort();
    }
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }

    // The final poll of every strategy that polls; the nylas-sync hybrid's sweeps. Not after
    // the day: its strategies are judged as their own schedules left them.
    for s in &strategies {
        if s.kind.poll_interval().is_none() || config.scenario == ScenarioName::Day {
            continue;
        }
        for g in emulator.grant_ids() {
            let mut job = ReconcileJob::new(g, JobKind::Incremental, None);
            job.force_sweep = s.kind == Kind::Hybrid;
            s.reconciler.run(&job, far()).await?;
        }
    }
    if config.progress {
        eprintln!();
    }

    // Measure.
    let truth = emulator.truth();
    let losses = emulator.losses();
    let changes = emulator.changes();
    let stats = emulator.stats();
    let emulated_days = ((emulator.now() - t0).max(1) as f64) / 86_400.0;
    let mut report = Report {
        scenario: format!("{:?}", config.scenario).to_lowercase(),
        grants: config.grants,
        time_scale: scale,
        emulated_minutes: (emulator.now() - t0) as f64 / 60.0,
        real_seconds: started.elapsed().as_secs_f64(),
        notifications: emulator.stats().webhooks.notifications,
        webhooks_dropped: emulator.stats().webhooks.deliveries.dropped_after_retries,
        consumer_crashes: crashes.load(Ordering::Relaxed),
        faults: plan.map(|p| p.report(&emulator.stats(), observed)),
        strategies: Vec::new(),
    };
    for (i, s) in strategies.iter().enumerate() {
        let completeness: Completeness = compare(&s.reconciler.objects, &truth, true).await?;
        let writes = s.writes.lock().map(|w| w.clone()).unwrap_or_default();
        let mut lags: Vec<f64> = writes
            .iter()
            .filter_map(|w| {
                w.changed_at
                    .map(|c| (w.written_at as f64 / 1000.0 - c as f64).max(0.0))
            })
            .collect();
        lags.sort_by(f64::total_cmp);
        let consumer_calls = s.consumer.as_ref().map_or(0, |c| c.nylas.calls.total());
        let calls = consumer_calls + s.reconciler.nylas.calls.total() - calls_before[i];
        let meters = s.meters() - meters_before[i];
        let (requests, units) = (meters.write_requests, meters.write_units);
        let per_grant_day = |v: f64| v / config.grants as f64 / emulated_days;
        let own_losses: Vec<&nylas_emulator::Loss> = losses
            .iter()
            .filter(|l| Some(&l.destination) == s.destination.as_ref())
            .collect();
        let r = repairs(&own_losses, &changes, &writes, &outages);
        let usage = usage(s, &meters, &stats);
        report.strategies.push(StrategyReport {
            losses: LossRepair {
                signal: r.signal_s.len(),
                signal_p50_s: percentile(&r.signal_s, 0.50),
                signal_p99_s: percentile(&r.signal_s, 0.99),
                signal_max_s: r.signal_s.last().copied(),
                silent: r.silent_s.len(),
                silent_p50_s: percentile(&r.silent_s, 0.50),
                silent_p99_s: percentile(&r.silent_s, 0.99),
                silent_max_s: r.silent_s.last().copied(),
                open: r.open,
                slowest: r.slowest,
            },
            reconciler_invocations: s.invocations.reconciler.load(Ordering::Relaxed),
            reconciler_mean_ms: {
                let n = s.invocations.reconciler.load(Ordering::Relaxed).max(1);
                s.invocations.reconciler_us.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
            },
            jobs_by_kind: s
                .invocations
                .jobs_by_kind
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            calls_by_endpoint: {
                let mut by = s.reconciler.nylas.calls.snapshot();
                if let Some(c) = &s.consumer {
                    for (k, v) in c.nylas.calls.snapshot() {
                        *by.entry(k).or_default() += v;
                    }
                }
                for (k, v) in &calls_before_by_endpoint[i] {
                    if let Some(n) = by.get_mut(k) {
                        *n = n.saturating_sub(*v);
                    }
                }
                by.retain(|_, v| *v > 0);
                by
            },
            watch_calls: s.watch.as_ref().map_or(0, |w| w.nylas.calls.total()),
            destination_status: s
                .destination
                .as_ref()
                .map(|d| emulator.destination_status(d)),
            one_item_write_units_per_grant_day: per_grant_day(meters.one_item_units as f64),
            read_units_per_grant_day: per_grant_day(meters.read_units),
            payload_puts: meters.payload_puts,
            usd_per_grant_month: Bill::of(&usage)
                .per_grant_month(config.grants as f64 * emulated_days),
            strategy: s.kind.label().to_string(),
            lag_p50_s: percentile(&lags, 0.50),
            lag_p99_s: percentile(&lags, 0.99),
            lag_samples: lags.len(),
            nylas_calls: calls,
            calls_per_grant_day: calls as f64 / config.grants as f64 / emulated_days,
            dynamodb_writes: requests,
            write_units_per_grant_day: units as f64 / config.grants as f64 / emulated_days,
            recovered_by_reconcile: grants_recovered(&s.reconciler, &emulator).await,
            missing: completeness.missing.len(),
            stale: completeness.stale.len(),
            resurrected: completeness.resurrected.len(),
            differences: completeness.lines().into_iter().take(20).collect(),
        });
    }
    for s in &strategies {
        if let Some(t) = &s.ingest_task {
            t.abort();
        }
    }
    emulator.shutdown().await;
    Ok(report)
}

/// The crash of a consumer invocation: no answer, so the poller deletes nothing.
fn crash_response(
    response: aws_lambda_events::event::sqs::SqsBatchResponse,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    let mut r = response;
    r.batch_item_failures.clear();
    let mut f = aws_lambda_events::event::sqs::BatchItemFailure::default();
    f.item_identifier = crate::CRASHED.to_string();
    r.batch_item_failures.push(f);
    r
}

async fn grants_recovered(reconciler: &Reconciler, emulator: &Emulator) -> i64 {
    let mut total = 0;
    for g in emulator.grant_ids() {
        if let Ok(Some(grant)) = reconciler.grants.get(&g).await {
            total += grant.recovered_total;
        }
    }
    total
}

/// Starts the ingest for a strategy and registers it at Nylas through `POST /v3/webhooks`, which
/// runs the challenge against it. The secret only exists once registered, so the ingest that
/// answered the challenge is replaced by one holding it, as a deploy after registration would.
async fn register_webhook(
    emulator: &Emulator,
    http: &reqwest::Client,
    r: &Resources,
    prefix: &str,
) -> Result<(tokio::task::JoinHandle<std::io::Result<()>>, String), Box<dyn std::error::Error>> {
    let env = |secrets: &str| -> HashMap<&'static str, String> {
        HashMap::from([
            ("NOTIFICATIONS_QUEUE_URL", r.notifications_queue.clone()),
            ("PAYLOAD_BUCKET", r.bucket.clone()),
            ("NYLAS_WEBHOOK_SECRETS", secrets.to_string()),
        ])
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/webhooks/nylas");
    let first = env("");
    let first: HashMap<&str, &str> = first.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answering = tokio::spawn(crate::serve_ingest(
        Arc::new(Ingest::from_env(&first).await?),
        listener,
    ));
    let created: serde_json::Value = http
        .post(format!("{}/v3/webhooks", emulator.base_url()))
        .bearer_auth(emulator.api_key())
        .json(&serde_json::json!({
            "trigger_types": ["message.created", "message.updated", "message.deleted", "event.created",
                "event.updated", "event.deleted", "calendar.created", "calendar.updated", "calendar.deleted",
                "grant.created", "grant.updated", "grant.deleted", "grant.expired"],
            "webhook_url": url,
            "description": prefix,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let secret = created["data"]["webhook_secret"]
        .as_str()
        .ok_or("no webhook_secret in the answer")?
        .to_string();
    let id = created["data"]["id"]
        .as_str()
        .ok_or("no id in the answer")?
        .to_string();
    answering.abort();
    let _ = answering.await;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let second = env(&secret);
    let second: HashMap<&str, &str> = second.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let task = tokio::spawn(crate::serve_ingest(
        Arc::new(Ingest::from_env(&second).await?),
        listener,
    ));
    Ok((task, id))
}

/// What a strategy used, as AWS bills it: Lambda requests and GB-seconds (the consumer's and the
/// reconciler's time as measured here, against moto and the emulator; the ingest at 10 ms and a
/// scheduler tick at 100 ms, at the template's memory sizes), SQS requests (a notification's
/// send; a batch's receive and delete; a job's send, receive and delete), the objects table's
/// read and write units and the bucket's PUTs.
fn usage(s: &Strategy, meters: &Meters, stats: &Stats) -> Usage {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let inv = &s.invocations;
    let (ingest, enqueued) = s
        .destination
        .as_ref()
        .and_then(|d| stats.webhooks.by_destination.get(d))
        .map_or((0, 0), |d| (d.attempts - d.no_answers, d.delivered));
    let (consumer, reconciler, scheduler) = (
        load(&inv.consumer),
        load(&inv.reconciler),
        load(&inv.scheduler),
    );
    let seconds = |us: &AtomicU64| load(us) as f64 / 1e6;
    Usage {
        lambda_requests: ingest + consumer + reconciler + scheduler,
        lambda_gb_seconds: 0.5 * (seconds(&inv.consumer_us) + seconds(&inv.reconciler_us))
            + 0.25 * (ingest as f64 * 0.010 + scheduler as f64 * 0.100),
        sqs_requests: enqueued + 2 * consumer + 3 * load(&inv.jobs),
        dynamodb_write_units: meters.write_units as f64,
        dynamodb_read_units: meters.read_units,
        s3_puts: meters.payload_puts,
        s3_gets: 0,
    }
}

/// Every strategy's destination goes `failed` at once: Nylas sends them nothing from now on.
fn fail_every_destination(emulator: &Emulator, strategies: &[Strategy]) {
    for d in strategies.iter().filter_map(|s| s.destination.as_deref()) {
        emulator.fail_destination(d);
    }
}

/// `fraction` of the traffic time, from its start.
fn traffic_fraction(traffic_seconds: u64, fraction: f64) -> Duration {
    Duration::from_secs_f64(traffic_seconds as f64 * fraction)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let Ok(out) = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
    else {
        return 1;
    };
    out.attributes
        .unwrap_or_default()
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

fn progress(
    emulator: &Emulator,
    strategies: &[Strategy],
    phase: &str,
    started: Instant,
    crashes: &AtomicU64,
    t0: i64,
) {
    let stats = emulator.stats();
    let writes: Vec<String> = strategies
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                short(s.kind),
                s.writes.lock().map(|w| w.len()).unwrap_or(0)
            )
        })
        .collect();
    eprint!(
        "\r[{:>5.1}s] {phase:<16} emulated +{:>4} min  notifications {:>5}  delivered {:>5}  dropped {:>4}  crashes {:>3}  writes {}   ",
        started.elapsed().as_secs_f64(),
        (emulator.now() - t0) / 60,
        stats.webhooks.notifications,
        stats.webhooks.deliveries.delivered,
        stats.webhooks.deliveries.dropped_after_retries,
        crashes.load(Ordering::Relaxed),
        writes.join(" ")
    );
}

fn short(kind: Kind) -> &'static str {
    match kind {
        Kind::WebhooksOnly => "webhooks",
        Kind::PollingOnly => "polling",
        Kind::SeedHybrid => "seed",
        Kind::Hybrid => "hybrid",
    }
}

/// Syncs a real Nylas application by reconciliation (no webhooks: they need a public URL, see the
/// README): registers every grant, backfills `backfill_days`, then reconciles every `interval`
/// until interrupted, printing what each run did.
/// `rounds` limits the incremental reconciles (tests); `None` runs until Ctrl-C. Returns the
/// objects table's store, for a look.
pub async fn run_real(
    api_uri: &str,
    api_key: &str,
    backfill_days: u32,
    interval: Duration,
    rounds: Option<usize>,
) -> Result<nylas_sync::store::ObjectStore, Box<dyn std::error::Error>> {
    let sdk = aws::sdk_config(AwsTimeouts::BACKGROUND).await;
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "real{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let r = create_resources(&sdk, &prefix).await?;
    let env = HashMap::from([
        ("OBJECTS_TABLE", r.objects_table.as_str()),
        ("GRANTS_TABLE", r.grants_table.as_str()),
        ("PAYLOAD_BUCKET", r.bucket.as_str()),
        ("RECONCILE_QUEUE_URL", r.reconcile_queue.as_str()),
        ("NYLAS_API_URI", api_uri),
        ("NYLAS_API_KEY", api_key),
    ]);
    let reconciler = Reconciler::from_env(&env).await?;
    let grants = reconciler.nylas.list_grants().await?;
    let ids: Vec<String> = grants
        .iter()
        .filter_map(|g| g.get("id").and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    eprintln!("{} grants at {api_uri}; backfilling {backfill_days} days, then reconciling every {interval:?} (Ctrl-C to stop)", ids.len());
    let since = nylas_sync::clock::now_ms() / 1000 - i64::from(backfill_days) * 86_400;
    for g in &ids {
        reconciler
            .grants
            .set_status(g, GrantStatus::Active, 1, &[])
            .await?;
        let report = reconciler
            .run(
                &ReconcileJob::new(g.clone(), JobKind::Backfill, Some(since)),
                far(),
            )
            .await;
        print_run(g, report, &reconciler).await;
    }
    let mut round = 0;
    loop {
        if rounds.is_some_and(|n| round >= n) {
            return Ok(reconciler.objects.clone());
        }
        round += 1;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(reconciler.objects.clone()),
            _ = tokio::time::sleep(interval) => {}
        }
        for g in &ids {
            let report = reconciler
                .run(
                    &ReconcileJob::new(g.clone(), JobKind::Incremental, None),
                    far(),
                )
                .await;
            print_run(g, report, &reconciler).await;
        }
    }
}

async fn print_run(
    grant: &str,
    report: Result<nylas_sync::reconcile::RunReport, nylas_sync::reconcile::ReconcileError>,
    reconciler: &Reconciler,
) {
    let stored = reconciler
        .objects
        .list_grant(grant)
        .await
        .map(|o| o.iter().filter(|o| !o.deleted).count())
        .unwrap_or(0);
    match report {
        Ok(r) => println!(
            "{grant}: {:?}, {} pages, {} written, {} recovered; {stored} objects stored; {} Nylas calls so far",
            r.outcome, r.pages, r.written, r.recovered, reconciler.nylas.calls.total()
        ),
        Err(e) => println!("{grant}: failed: {e}"),
    }
}

// The faults scenario's plan, as fractions of the traffic time.
/// Every REST answer held back `SLOW_DELAY` (real time) from `SLOW_FROM` to `SLOW_UNTIL`.
const SLOW_FROM: f64 = 0.10;
const SLOW_UNTIL: f64 = 0.40;
const SLOW_DELAY: Duration = Duration::from_secs(2);
/// A reconcile of the doomed grant starts at `DELETE_TICK`; the grant is deleted at `DELETE_AT`,
/// with that run's answers still held back.
const DELETE_TICK: f64 = 0.22;
const DELETE_AT: f64 = 0.25;
/// Credentials expire at `EXPIRE_AT` (a reconcile tick follows at once and meets the 401) and
/// come back at `REAUTH_AT`; the grant's mailbox keeps changing meanwhile.
const EXPIRE_AT: f64 = 0.33;
const REAUTH_AT: f64 = 0.70;
/// Bursts of 429 (`Retry-After: 2`), each opened by a reconcile tick of every grant.
const BURSTS_AT: [f64; 3] = [0.45, 0.60, 0.80];
const BURST_LENGTH: Duration = Duration::from_secs(150);

/// Seeds the first grant's big mailbox (silently: it predates the webhooks), dates spread
/// evenly over `big_mailbox_years` back from an hour ago. Returns how many messages it has.
fn seed_big_mailbox(emulator: &Emulator, config: &ScenarioConfig) -> usize {
    let Some(grant) = emulator.grant_ids().into_iter().next() else {
        return 0;
    };
    if config.big_mailbox == 0 {
        return 0;
    }
    let now = emulator.now();
    let span = config.big_mailbox_years.max(1) * 365 * 86_400;
    let n = config.big_mailbox as i64;
    emulator.set_silent(true);
    for i in 0..n {
        let date = now - 3600 - span * i / n - (i * 7919) % 3600;
        emulator.create_message(
            &grant,
            MessageSpec {
                date: Some(date),
                unread: Some(i % 3 == 0),
                ..MessageSpec::default()
            },
        );
    }
    emulator.set_silent(false);
    emulator
        .truth()
        .grants
        .iter()
        .find(|g| g.grant_id == grant)
        .map_or(0, |g| g.messages.len())
}

/// Who the faults scenario picks: the first grant holds the big mailbox, the second is
/// deleted, the third expires and re-authenticates.
struct FaultPlan {
    big_grant: Option<String>,
    big_mailbox: usize,
    deleted: String,
    expired: String,
    description: String,
}

/// What the run saw happen, as it happened.
#[derive(Default)]
struct FaultsObserved {
    deleted_grant_objects_before: usize,
}

enum Step {
    /// What a scheduler tick sends: a reconcile of the grant (of every grant that exists, if
    /// none is named), for every strategy that polls.
    Tick(Option<String>),
    Delete(String),
    Expire(String),
    Reauthenticate(String),
}

impl Step {
    async fn run(
        &self,
        emulator: &Emulator,
        strategies: &[Strategy],
        observed: &mut FaultsObserved,
    ) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Step::Tick(grant) => {
                let grants = match grant {
                    Some(g) => vec![g.clone()],
                    None => emulator.grant_ids(),
                };
                for s in strategies
                    .iter()
                    .filter(|s| s.kind.poll_interval().is_some())
                {
                    for g in &grants {
                        s.reconciler
                            .jobs
                            .send(&ReconcileJob::new(g.clone(), JobKind::Incremental, None))
                            .await?;
                    }
                }
            }
            Step::Delete(g) => {
                if let Some(h) = strategies.iter().find(|s| s.kind == Kind::Hybrid) {
                    observed.deleted_grant_objects_before = h
                        .reconciler
                        .objects
                        .list_grant(g)
                        .await?
                        .iter()
                        .filter(|o| !o.deleted)
                        .count();
                }
                emulator.delete_grant(g);
            }
            Step::Expire(g) => emulator.expire_grant(g),
            Step::Reauthenticate(g) => emulator.reauthenticate_grant(g),
        }
        Ok(())
    }
}

impl FaultPlan {
    fn new(
        config: &ScenarioConfig,
        emulator: &Emulator,
        faults: &Faults,
        big_mailbox: usize,
    ) -> Option<FaultPlan> {
        if config.scenario != ScenarioName::Faults {
            return None;
        }
        let ids = emulator.grant_ids();
        let pick = |i: usize| ids.get(i.min(ids.len().saturating_sub(1))).cloned();
        let (deleted, expired) = (pick(1)?, pick(2)?);
        let minutes = |f: f64| config.traffic_seconds as f64 * config.time_scale * f / 60.0;
        let description = format!(
            "big mailbox ({big_mailbox} messages over {} years); every REST answer held back {} s from +{:.0} to +{:.0} min; \
             grant deleted at +{:.0} min during its reconcile; credentials expired +{:.0} to +{:.0} min; \
             {} bursts of 429 ({} s each, Retry-After {} s)",
            config.big_mailbox_years,
            SLOW_DELAY.as_secs(),
            minutes(SLOW_FROM),
            minutes(SLOW_UNTIL),
            minutes(DELETE_AT),
            minutes(EXPIRE_AT),
            minutes(REAUTH_AT),
            faults.api_429_windows.len(),
            BURST_LENGTH.as_secs(),
            faults.retry_after_secs.unwrap_or(0),
        );
        Some(FaultPlan {
            big_grant: (big_mailbox > 0).then(|| ids.first().cloned()).flatten(),
            big_mailbox,
            deleted,
            expired,
            description,
        })
    }

    /// The steps, at their real-time offsets from the start of traffic, in order.
    fn steps(&self, traffic_seconds: u64) -> Vec<(Duration, Step)> {
        let at = |f: f64| Duration::from_secs_f64(traffic_seconds as f64 * f);
        let mut steps = vec![
            // The first tick lists every grant (the big mailbox too) with answers held back.
            (at(SLOW_FROM + 0.01), Step::Tick(None)),
            (at(DELETE_TICK), Step::Tick(Some(self.deleted.clone()))),
            (at(DELETE_AT), Step::Delete(self.deleted.clone())),
            (at(EXPIRE_AT), Step::Expire(self.expired.clone())),
            (at(EXPIRE_AT), Step::Tick(Some(self.expired.clone()))),
            (at(REAUTH_AT), Step::Reauthenticate(self.expired.clone())),
        ];
        for f in BURSTS_AT {
            steps.push((at(f), Step::Tick(None)));
        }
        steps.sort_by_key(|(at, _)| *at);
        steps
    }

    fn report(&self, stats: &Stats, observed: FaultsObserved) -> FaultsReport {
        let answers = |grant: Option<&str>, status: u16| -> u64 {
            stats
                .api
                .requests
                .iter()
                .filter(|r| {
                    r.status == status && grant.is_none_or(|g| r.grant_id.as_deref() == Some(g))
                })
                .map(|r| r.count)
                .sum()
        };
        FaultsReport {
            description: self.description.clone(),
            big_grant: self.big_grant.clone(),
            big_mailbox: self.big_mailbox,
            answers_held_back: stats.api.held_back,
            answers_429: answers(None, 429),
            deleted_grant: self.deleted.clone(),
            deleted_grant_objects_before: observed.deleted_grant_objects_before,
            expired_grant: self.expired.clone(),
            expired_grant_401s: answers(Some(&self.expired), 401),
            changes_while_expired: stats.webhooks.held_for_expired_grant,
        }
    }
}
