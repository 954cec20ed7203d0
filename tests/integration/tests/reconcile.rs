//! Reconciliation against moto and the emulator: outages recovered and counted, drift repaired,
//! cursors that only move after their pages are stored, leases, idle cost, and the scheduler's
//! fan-out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use nylas_emulator::{EmulatorConfig, Faults, MessageChange, MessageSpec};
use nylas_sync::grants::GrantStatus;
use nylas_sync::jobs::{JobKind, ReconcileJob};
use nylas_sync::reconcile::RunOutcome;
use nylas_sync::scheduler::{Scheduler, SchedulerSettings};
use support::*;

const SETTLE: Duration = Duration::from_secs(60);

fn options(time_scale: f64, reconciler: Vec<(&'static str, String)>) -> PipelineOptions {
    PipelineOptions {
        emulator: EmulatorConfig {
            time_scale,
            initial_messages_per_grant: 3,
            initial_events_per_grant: 2,
            ..EmulatorConfig::default()
        },
        reconciler,
        ..PipelineOptions::default()
    }
}

fn no_sweep() -> Vec<(&'static str, String)> {
    vec![("DRIFT_SWEEP_EVERY_RUNS", "1000000".into())]
}

/// No sweep, and plain runs list messages from their cursor (the paging, checkpoints and 429s
/// of a long listing, as a backfill or a grant long unsynced meets them).
fn listing_by_cursor() -> Vec<(&'static str, String)> {
    let mut env = no_sweep();
    env.push(("RECENT_SWEEP_DAYS", "0".into()));
    env
}

/// A first reconcile brings in what predates the webhooks (the initial mailbox).
async fn started(p: &Pipeline) -> String {
    p.register_grants().await;
    let g = p.grant();
    let first = p.reconcile(&g, JobKind::Incremental).await;
    assert_eq!(first.outcome, RunOutcome::Completed);
    assert_eq!(
        first.recovered, 0,
        "a first sync finds what predates the webhooks: not missed"
    );
    assert_eq!(
        p.diff_against_truth(true).await,
        Vec::<String>::new(),
        "after the first reconcile"
    );
    g
}

#[tokio::test]
async fn a_webhook_outage_is_recovered_by_one_reconcile_and_the_recovered_count_equals_the_drops() {
    // 120x: Nylas's 10-20 minute retry window passes in seconds.
    let p = Pipeline::start(options(120.0, no_sweep())).await;
    let g = started(&p).await;

    p.emulator.set_outage(true);
    for i in 0..6 {
        p.emulator.create_message(
            &g,
            MessageSpec {
                subject: Some(format!("during outage {i}")),
                ..Default::default()
            },
        );
        p.next_second().await;
    }
    assert!(
        p.emulator.wait_for_deliveries_idle(SETTLE).await,
        "retries never ended"
    );
    p.emulator.set_outage(false);
    let dropped = p.emulator.stats().webhooks.deliveries.dropped_after_retries;
    assert_eq!(
        dropped, 6,
        "every notification of the outage was dropped after its retries"
    );
    p.settle(SETTLE).await;
    let diffs = p.diff_against_truth(true).await;
    assert_eq!(
        diffs.len(),
        6,
        "the store misses what was dropped: {diffs:#?}"
    );

    let report = p.reconcile(&g, JobKind::Incremental).await;
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(report.recovered as u64, dropped);
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    let grant = p.consumer.grants.get(&g).await.unwrap().unwrap();
    assert_eq!(grant.last_recovered as u64, dropped);
    assert_eq!(grant.recovered_total as u64, dropped);
}

#[tokio::test]
async fn a_dropped_message_updated_and_a_dropped_message_deleted_are_repaired_by_the_drift_sweep() {
    // A sweep every third run; a 30 s grace so the test need not wait five (emulated) minutes.
    let reconciler_env = vec![
        ("DRIFT_SWEEP_EVERY_RUNS", "3".to_string()),
        ("MISSED_GRACE_SECONDS", "30".to_string()),
        // The drift sweep alone (plain runs compare recent mail: see the test after this one).
        ("RECENT_SWEEP_DAYS", "0".to_string()),
    ];
    let p = Pipeline::start(options(60.0, reconciler_env)).await;
    let g = started(&p).await; // run 1
    let truth = p.emulator.truth();
    let messages = &truth.grants[0].messages;
    let (flagged, deleted) = (id_of(&messages[0]), id_of(&messages[1]));

    p.emulator.set_faults(Faults {
        drop_probability: 1.0,
        ..Faults::default()
    });
    p.emulator.update_message(
        &g,
        &flagged,
        MessageChange {
            starred: Some(true),
            unread: Some(false),
            folders: Some(vec!["Archive".into()]),
        },
    );
    p.emulator.delete_message(&g, &deleted);
    assert!(p.emulator.wait_for_deliveries_idle(SETTLE).await);
    p.emulator.set_faults(Faults::default());
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(false).await.len(), 2);

    // received_after cannot see either change: run 2, without a sweep, leaves them.
    let incremental = p.reconcile(&g, JobKind::Incremental).await;
    assert!(!incremental.swept);
    assert_eq!(p.diff_against_truth(false).await.len(), 2);

    // Past the grace period, run 3 sweeps and repairs both, and counts them as missed.
    let settled = p.emulator.now() + 31;
    while p.emulator.now() <= settled {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sweep = p.reconcile(&g, JobKind::Incremental).await;
    assert!(sweep.swept);
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    assert_eq!(sweep.recovered, 2);
    let calls = p.reconciler.nylas.calls.snapshot();
    assert_eq!(
        calls.get("messages.get 404"),
        Some(&1),
        "the delete was confirmed by a GET: {calls:?}"
    );
    assert_eq!(
        p.consumer
            .grants
            .get(&g)
            .await
            .unwrap()
            .unwrap()
            .runs_since_sweep,
        0
    );
}

#[tokio::test]
async fn a_plain_run_repairs_a_lost_flag_change_and_delete_on_recent_mail_and_older_mail_waits_for_the_sweep(
) {
    // Issue 15: a silent loss on recent mail lasts at most one interval, whatever the back-off.
    let env = vec![
        ("DRIFT_SWEEP_EVERY_RUNS", "1000000".to_string()),
        ("MISSED_GRACE_SECONDS", "30".to_string()),
        ("BACKFILL_DAYS", "30".to_string()),
    ];
    let p = Pipeline::start(options(60.0, env)).await;
    p.emulator.set_silent(true);
    let g = p.grant();
    let old = p.emulator.create_message(
        &g,
        MessageSpec {
            date: Some(p.emulator.now() - 5 * 86_400),
            ..Default::default()
        },
    );
    p.emulator.set_silent(false);
    let g = started(&p).await;
    let recent = p.emulator.truth().grants[0]
        .messages
        .iter()
        .filter(|m| m["id"] != old["id"])
        .map(id_of)
        .collect::<Vec<_>>();
    let (flagged, deleted) = (recent[0].clone(), recent[1].clone());

    p.emulator.set_faults(Faults {
        drop_probability: 1.0,
        ..Faults::default()
    });
    for id in [&flagged, &id_of(&old)] {
        p.emulator.update_message(
            &g,
            id,
            MessageChange {
                starred: Some(true),
                folders: Some(vec!["Archive".into()]),
                ..Default::default()
            },
        );
    }
    p.emulator.delete_message(&g, &deleted);
    assert!(p.emulator.wait_for_deliveries_idle(SETTLE).await);
    p.emulator.set_faults(Faults::default());
    assert_eq!(p.diff_against_truth(false).await.len(), 3);
    let settled = p.emulator.now() + 31;
    while p.emulator.now() <= settled {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let run = p.reconcile(&g, JobKind::Incremental).await;
    assert!(!run.swept, "no drift sweep");
    assert_eq!(run.recovered, 2, "the recent flag change and delete");
    let left = p.diff_against_truth(false).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains(&id_of(&old)), "five days old: {left:?}");
    // The interval halves after a run that repaired something (it was the base already).
    let grant = p.consumer.grants.get(&g).await.unwrap().unwrap();
    assert_eq!(grant.reconcile_interval_s, Some(1800));

    let mut sweep = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    sweep.force_sweep = true;
    p.reconciler
        .run(&sweep, Instant::now() + Duration::from_secs(600))
        .await
        .expect("sweep");
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_plain_run_fetches_a_few_lost_messages_one_by_one_and_lists_many() {
    // Issue 15: in steady state the comparison of recent mail replaces the listing by cursor.
    let env = vec![
        ("DRIFT_SWEEP_EVERY_RUNS", "1000000".to_string()),
        ("MISSED_GRACE_SECONDS", "30".to_string()),
    ];
    let p = Pipeline::start(options(60.0, env)).await;
    let g = started(&p).await;
    let lose = |n: usize| {
        p.emulator.set_silent(true);
        for _ in 0..n {
            p.emulator.create_message(&g, MessageSpec::default());
        }
        p.emulator.set_silent(false);
    };
    let past_grace = || async {
        let settled = p.emulator.now() + 31;
        while p.emulator.now() <= settled {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let calls = |name: &str| {
        p.reconciler
            .nylas
            .calls
            .snapshot()
            .get(name)
            .copied()
            .unwrap_or(0)
    };

    lose(2);
    past_grace().await;
    let (lists, gets) = (calls("messages.list 200"), calls("messages.get 200"));
    let run = p.reconcile(&g, JobKind::Incremental).await;
    assert_eq!(run.recovered, 2);
    assert_eq!(calls("messages.list 200") - lists, 1, "the comparison only");
    assert_eq!(
        calls("messages.get 200") - gets,
        2,
        "each lost message fetched"
    );
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());

    lose(12);
    past_grace().await;
    let (lists, gets) = (calls("messages.list 200"), calls("messages.get 200"));
    let run = p.reconcile(&g, JobKind::Incremental).await;
    assert_eq!(run.recovered, 12);
    assert_eq!(
        calls("messages.list 200") - lists,
        2,
        "the comparison, then the listing from the cursor"
    );
    assert_eq!(
        calls("messages.get 200") - gets,
        0,
        "none fetched one by one"
    );
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_sweep_runs_every_n_runs() {
    let p = Pipeline::start(options(60.0, vec![("DRIFT_SWEEP_EVERY_RUNS", "3".into())])).await;
    let g = started(&p).await; // run 1
    assert!(!p.reconcile(&g, JobKind::Incremental).await.swept); // run 2
    assert!(p.reconcile(&g, JobKind::Incremental).await.swept); // run 3
    assert!(!p.reconcile(&g, JobKind::Incremental).await.swept);
}

/// A proxy in front of the emulator that answers 503 to the third page of message listings
/// while `fail` is set: a real HTTP fault at an exact point of the run.
#[derive(Clone)]
struct PageFault {
    upstream: String,
    pages_seen: Arc<AtomicUsize>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    /// The answer to page 3: 503, or 429 (with `Retry-After: 1`).
    status: u16,
}

impl PageFault {
    /// Starts the proxy in front of `upstream`, failing page 3 with `status`: the fault, the
    /// proxy's URI and its task.
    async fn start(
        upstream: &str,
        status: u16,
    ) -> (Self, String, tokio::task::JoinHandle<std::io::Result<()>>) {
        let fault = PageFault {
            upstream: upstream.to_string(),
            pages_seen: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            status,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(fault.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        (fault, uri, server)
    }
}

async fn proxy(State(f): State<PageFault>, req: Request) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let is_page = req.uri().path().ends_with("/messages") && path_and_query.contains("page_token=");
    if is_page && f.fail.load(Ordering::SeqCst) {
        // Page 2 is the first with a page_token: page 3 is the second.
        if f.pages_seen.fetch_add(1, Ordering::SeqCst) >= 1 {
            f.pages_seen.fetch_sub(1, Ordering::SeqCst);
            let status = axum::http::StatusCode::from_u16(f.status).expect("status");
            return (status, [("retry-after", "1")], "{}").into_response();
        }
    }
    let auth = req.headers().get("authorization").cloned();
    let mut upstream = reqwest::Client::new().get(format!("{}{path_and_query}", f.upstream));
    if let Some(a) = auth {
        upstream = upstream.header("authorization", a.to_str().unwrap_or_default());
    }
    let resp = upstream.send().await.expect("upstream");
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
    (status, resp.text().await.unwrap_or_default()).into_response()
}

#[tokio::test]
async fn a_run_that_fails_on_page_3_of_5_leaves_the_cursor_unchanged_and_the_retry_completes() {
    let p = Pipeline::start(options(60.0, listing_by_cursor())).await;
    let g = started(&p).await;
    let cursor_before = p
        .consumer
        .grants
        .get(&g)
        .await
        .unwrap()
        .unwrap()
        .messages_received_after;
    assert!(cursor_before.is_some());

    p.emulator.set_silent(true);
    for _ in 0..10 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    let (fault, uri, server) = PageFault::start(&p.emulator.base_url(), 503).await;
    let mut reconciler = p.reconciler_via(&uri).await;
    reconciler.settings.page_size = 3; // 13 messages in the window: 5 pages

    let job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    let deadline = Instant::now() + Duration::from_secs(600);
    let err = reconciler
        .run(&job, deadline)
        .await
        .expect_err("page 3 fails");
    assert!(err.to_string().contains("unavailable"), "{err}");
    let grant = p.consumer.grants.get(&g).await.unwrap().unwrap();
    assert_eq!(
        grant.messages_received_after, cursor_before,
        "cursor unchanged"
    );
    assert_eq!(grant.lease_until, Some(0), "lease released");
    assert!(grant
        .last_reconcile_outcome
        .unwrap_or_default()
        .starts_with("failed"));
    let missing = p.diff_against_truth(false).await.len();
    assert!(
        missing > 0 && missing < 10,
        "pages 1-2 stored, the rest not: {missing} missing"
    );

    fault.fail.store(false, Ordering::SeqCst);
    let retry = reconciler
        .run(&job, deadline)
        .await
        .expect("the retry completes");
    assert_eq!(retry.outcome, RunOutcome::Completed);
    assert!(retry.pages >= 5);
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    let cursor_after = p
        .consumer
        .grants
        .get(&g)
        .await
        .unwrap()
        .unwrap()
        .messages_received_after;
    assert!(
        cursor_after > cursor_before,
        "{cursor_after:?} > {cursor_before:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_run_near_its_deadline_checkpoints_and_the_next_job_finishes_the_listing() {
    let p = Pipeline::start(options(60.0, listing_by_cursor())).await;
    let g = started(&p).await;
    let cursor_before = p
        .consumer
        .grants
        .get(&g)
        .await
        .unwrap()
        .unwrap()
        .messages_received_after;
    p.emulator.set_silent(true);
    for _ in 0..6 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    // No time left at all: checkpoint before the first page, cursor unchanged, job re-enqueued.
    let job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    let report = p.reconciler.run(&job, Instant::now()).await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Checkpointed);
    assert_eq!(
        p.consumer
            .grants
            .get(&g)
            .await
            .unwrap()
            .unwrap()
            .messages_received_after,
        cursor_before
    );
    let queued = p.aws.drain(&p.reconcile_queue).await;
    assert_eq!(queued.len(), 1);
    let next: ReconcileJob = serde_json::from_str(queued[0].body().unwrap()).unwrap();
    assert_eq!(next.grant_id, g);
    assert!(next.poll_start.is_some());
    let done = p
        .reconciler
        .run(&next, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed);
    assert_eq!(
        p.consumer
            .grants
            .get(&g)
            .await
            .unwrap()
            .unwrap()
            .messages_received_after,
        next.poll_start
    );
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn two_concurrent_jobs_for_one_grant_do_not_both_run_and_a_crashed_lease_expires() {
    let p = Pipeline::start(options(60.0, vec![("LEASE_SECONDS", "120".into())])).await;
    p.register_grants().await;
    let g = p.grant();
    // Nylas answers slowly, so the run that takes the lease holds it for at least one held-back
    // answer (0.5 s; the lease lasts 2 s): the other's one DynamoDB call finds it held. With prompt
    // answers a loaded machine could finish the first run before the second's call arrived,
    // and two runs one after the other both complete, rightly (seen once in CI).
    p.emulator.set_faults(Faults {
        slow_response: Some(Duration::from_millis(500)),
        ..Faults::default()
    });
    let (a, b) = tokio::join!(
        p.reconcile(&g, JobKind::Incremental),
        p.reconcile(&g, JobKind::Incremental)
    );
    p.emulator.set_faults(Faults::default());
    let mut outcomes = vec![a.outcome, b.outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, vec![RunOutcome::Completed, RunOutcome::Skipped]);

    // A run that crashed holding the lease: others skip until it expires (120 emulated s = 2 s here).
    let now = p.emulator.now() * 1000;
    assert!(p
        .consumer
        .grants
        .acquire_lease(&g, "crashed-run", now, 120_000)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        p.reconcile(&g, JobKind::Incremental).await.outcome,
        RunOutcome::Skipped
    );
    let expiry = p.emulator.now() + 121;
    while p.emulator.now() <= expiry {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        p.reconcile(&g, JobKind::Incremental).await.outcome,
        RunOutcome::Completed
    );
}

#[tokio::test]
async fn an_idle_grant_costs_one_list_call_for_messages_and_one_per_calendar() {
    // The recent mail's ids and flags (one page here), in place of the listing by cursor.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    let before = p.reconciler.nylas.calls.snapshot();
    let report = p.reconcile(&g, JobKind::Incremental).await;
    assert_eq!(
        (report.outcome, report.written, report.recovered),
        (RunOutcome::Completed, 0, 0)
    );
    let after = p.reconciler.nylas.calls.snapshot();
    let delta: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    assert_eq!(
        delta,
        vec![
            ("events.list 200".to_string(), 1),
            ("messages.list 200".to_string(), 1)
        ],
        "one calendar: messages and its events, one call each (the calendars are the store's)"
    );
}

#[tokio::test]
async fn a_rate_limited_run_re_enqueues_its_job_after_retry_after_and_leaves_the_cursor() {
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    let cursor_before = p
        .consumer
        .grants
        .get(&g)
        .await
        .unwrap()
        .unwrap()
        .messages_received_after;
    p.emulator.set_faults(Faults {
        api_429_probability: 1.0,
        retry_after_secs: Some(1),
        ..Faults::default()
    });
    let report = p.reconcile(&g, JobKind::Incremental).await;
    assert_eq!(report.outcome, RunOutcome::RateLimited);
    p.emulator.set_faults(Faults::default());
    assert_eq!(
        p.consumer
            .grants
            .get(&g)
            .await
            .unwrap()
            .unwrap()
            .messages_received_after,
        cursor_before
    );
    // The re-enqueued job shows up once its delay passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        if let Some(m) = p.aws.drain(&p.reconcile_queue).await.into_iter().next() {
            break serde_json::from_str::<ReconcileJob>(m.body().unwrap()).unwrap();
        }
        assert!(Instant::now() < deadline, "job not re-enqueued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job.grant_id, g);
}

#[tokio::test]
async fn the_scheduler_sends_ceil_n_over_10_batches_for_n_due_grants_and_skips_the_rest() {
    let aws = Aws::connect().await;
    let grants_table = aws.create_table("grants", false).await;
    let queue = aws.create_queue("reconcile").await;
    let grants = nylas_sync::grants::GrantStore {
        ddb: aws.ddb(),
        table: grants_table.clone(),
    };
    let mut due = HashSet::new();
    for i in 0..25 {
        let g = format!("due-{i}");
        grants
            .set_status(&g, GrantStatus::Active, 1, &[])
            .await
            .unwrap();
        due.insert(g);
    }
    for (i, status) in [
        GrantStatus::Expired,
        GrantStatus::Deleted,
        GrantStatus::Invalid,
    ]
    .iter()
    .enumerate()
    {
        grants
            .set_status(&format!("inactive-{i}"), *status, 1, &[])
            .await
            .unwrap();
    }
    // Reconciled a minute ago: not due.
    let now_s = nylas_sync::clock::now_ms() / 1000;
    grants
        .set_status(
            "recent",
            GrantStatus::Active,
            1,
            &[(
                "last_reconcile_at",
                aws_sdk_dynamodb::types::AttributeValue::N((now_s - 60).to_string()),
            )],
        )
        .await
        .unwrap();

    let scheduler = Scheduler {
        grants,
        jobs: nylas_sync::jobs::JobQueue {
            sqs: aws.sqs.clone(),
            queue_url: queue.clone(),
        },
        settings: SchedulerSettings {
            spread_s: 0,
            ..SchedulerSettings::default()
        },
        clock: Arc::new(nylas_sync::clock::SystemClock),
    };
    let out = scheduler.fan_out().await.unwrap();
    assert_eq!(out.grants, 25);
    assert_eq!(out.batch_calls, 3, "ceil(25/10)");
    let jobs: HashSet<String> = aws
        .drain(&queue)
        .await
        .iter()
        .map(|m| {
            serde_json::from_str::<ReconcileJob>(m.body().unwrap())
                .unwrap()
                .grant_id
        })
        .collect();
    assert_eq!(jobs, due);
}

#[tokio::test]
async fn the_reconciler_and_the_scheduler_print_valid_emf_with_their_documented_names() {
    use nylas_sync::metrics::capture;
    use support::emf::validate_line;
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    p.aws
        .sqs
        .send_message()
        .queue_url(&p.reconcile_queue)
        .message_body(
            serde_json::to_string(&ReconcileJob::new(g.clone(), JobKind::Incremental, None))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let poller = local_stack::SqsPoller::new(p.aws.sqs.clone(), &p.reconcile_queue)
        .await
        .unwrap();
    let reconciler = Arc::clone(&p.reconciler);
    let (_, lines) = capture(async {
        poller
            .poll_once(1, |event| async move {
                reconciler
                    .handle(event, Instant::now() + Duration::from_secs(600))
                    .await
            })
            .await
            .unwrap()
    })
    .await;
    let names: HashSet<String> = lines
        .iter()
        .flat_map(|l| validate_line(l).expect("valid EMF"))
        .map(|m| m.name)
        .collect();
    for name in nylas_sync::reconcile::metric::ALL {
        assert!(names.contains(*name), "{name} missing from {lines:?}");
    }

    let scheduler = Scheduler {
        grants: p.consumer.grants.clone(),
        jobs: p.reconciler.jobs.clone(),
        settings: SchedulerSettings {
            spread_s: 0,
            interval_s: 0,
            ..SchedulerSettings::default()
        },
        // Past the grant's next run (its interval after the run above).
        clock: Arc::new(At(p.emulator.now() + 7_200)),
    };
    let (out, lines) = capture(scheduler.fan_out()).await;
    assert_eq!(out.unwrap().grants, 1);
    let names: HashSet<String> = lines
        .iter()
        .flat_map(|l| validate_line(l).expect("valid EMF"))
        .map(|m| m.name)
        .collect();
    for name in nylas_sync::scheduler::metric::ALL {
        assert!(names.contains(*name), "{name} missing from {lines:?}");
    }
}

#[tokio::test]
async fn a_checkpoint_whose_page_token_expired_lists_again_from_the_cursor() {
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    p.emulator.set_silent(true);
    for _ in 0..6 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    // A real page token, as a checkpointed job carries it...
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v3/grants/{g}/messages?limit=2",
            p.emulator.base_url()
        ))
        .bearer_auth(p.emulator.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    // ...that has expired by the time the continuation runs.
    p.emulator.set_faults(Faults {
        page_token_max_age_secs: Some(1),
        ..Faults::default()
    });
    p.next_second().await;
    p.next_second().await;
    let mut job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    job.page_token = Some(token);
    job.poll_start = Some(p.emulator.now() - 5);
    let report = p
        .reconciler
        .run(&job, Instant::now() + Duration::from_secs(600))
        .await
        .expect("an expired token is not a failure");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_listed_state_does_not_overwrite_a_change_made_during_the_listing() {
    // Lossless issue, defect 1: listed states were versioned when written, after the listing.
    let p = Pipeline::start(options(20.0, no_sweep())).await;
    let g = started(&p).await;
    let m = p.emulator.create_message(
        &g,
        MessageSpec {
            starred: Some(false),
            ..Default::default()
        },
    );
    let id = id_of(&m);
    p.settle(SETTLE).await;

    // The reconciler's messages listing answers with the state when it began...
    let proxy = HoldingProxy::start(&p.emulator.base_url(), "/messages").await;
    let reconciler = p.reconciler_via(&proxy.uri).await;
    let job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    let run = tokio::spawn(async move {
        reconciler
            .run(&job, Instant::now() + Duration::from_secs(600))
            .await
    });
    proxy.reached.notified().await;
    // ...while the message is starred and its webhook stored.
    p.next_second().await;
    p.emulator.update_message(
        &g,
        &id,
        MessageChange {
            starred: Some(true),
            ..Default::default()
        },
    );
    p.settle(SETTLE).await;
    p.next_second().await;
    proxy.release.notify_one();
    let report = run.await.expect("run task").expect("reconcile");
    assert_eq!(report.outcome, RunOutcome::Completed);
    let stored = p
        .stored(
            &g,
            &nylas_sync::store::ObjectRef::Message { id: id.clone() },
        )
        .await
        .unwrap();
    assert_eq!(
        stored.object.unwrap()["starred"],
        true,
        "the listing reverted a newer state"
    );
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_429_in_the_middle_of_a_listing_continues_from_that_page_not_from_page_1() {
    let p = Pipeline::start(options(60.0, listing_by_cursor())).await;
    let g = started(&p).await;
    p.emulator.set_silent(true);
    for _ in 0..10 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    let (fault, uri, server) = PageFault::start(&p.emulator.base_url(), 429).await;
    let mut reconciler = p.reconciler_via(&uri).await;
    reconciler.settings.page_size = 3;
    let job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    let report = reconciler
        .run(&job, Instant::now() + Duration::from_secs(600))
        .await
        .expect("a 429 is not a failure");
    assert_eq!(report.outcome, RunOutcome::RateLimited);
    let queued = p
        .aws
        .drain_within(&p.reconcile_queue, Duration::from_secs(30))
        .await;
    assert_eq!(queued.len(), 1);
    let next: ReconcileJob = serde_json::from_str(queued[0].body().unwrap()).unwrap();
    assert!(
        next.page_token.is_some() && next.poll_start.is_some(),
        "the continuation keeps its place: {next:?}"
    );
    fault.fail.store(false, Ordering::SeqCst);
    let done = reconciler
        .run(&next, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed);
    assert!(
        done.pages <= 4,
        "pages 1-2 not listed again: {} pages",
        done.pages
    );
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    server.abort();
}

#[tokio::test]
async fn a_continuation_that_finds_the_lease_held_is_sent_again_not_dropped() {
    // Lossless issue, defect 9: the continuation was sent before the lease was released; an
    // instance that received it first could not take the lease, reported "skipped", and the job
    // was deleted: a backfill stopped part-way with no cursor.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    let now_ms = p.emulator.now() * 1000;
    assert!(p
        .consumer
        .grants
        .acquire_lease(&g, "the-run-that-checkpointed", now_ms, 3_000)
        .await
        .unwrap()
        .is_some());
    let mut next = ReconcileJob::new(g.clone(), JobKind::Backfill, Some(1));
    next.page_token = Some("a-listing-position".into());
    next.poll_start = Some(p.emulator.now());
    let report = p
        .reconciler
        .run(&next, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Deferred);
    let queued = p
        .aws
        .drain_within(&p.reconcile_queue, Duration::from_secs(30))
        .await;
    assert_eq!(queued.len(), 1, "the continuation waits for the lease");
    let again: ReconcileJob = serde_json::from_str(queued[0].body().unwrap()).unwrap();
    assert_eq!(again, next);
    // A plain scheduled run that finds the lease held is dropped: the running one covers it.
    assert!(p
        .consumer
        .grants
        .acquire_lease(&g, "a-running-run", p.emulator.now() * 1000, 600_000)
        .await
        .unwrap()
        .is_some());
    let scheduled = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    let report = p
        .reconciler
        .run(&scheduled, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Skipped);
    assert!(p.aws.drain(&p.reconcile_queue).await.is_empty());
}

#[tokio::test]
async fn a_grant_nylas_no_longer_authorises_is_switched_off_instead_of_failing_every_run() {
    // Lossless issue, defect 15: the reconciler failed on 401 with the grant still active, so
    // every tick's job failed and ended in the DLQ.
    let p = Pipeline::start(PipelineOptions {
        emulator: EmulatorConfig {
            grant_expired_lag_max: Duration::from_secs(3600),
            ..options(60.0, no_sweep()).emulator
        },
        ..options(60.0, no_sweep())
    })
    .await;
    let g = started(&p).await;
    p.emulator.expire_grant(&g); // grant.expired is still on its way
    let report = p
        .reconciler
        .run(
            &ReconcileJob::new(g.clone(), JobKind::Incremental, None),
            Instant::now() + Duration::from_secs(600),
        )
        .await
        .expect("not a failure to retry");
    assert_eq!(report.outcome, RunOutcome::GrantInvalid);
    let grant = p.consumer.grants.get(&g).await.unwrap().unwrap();
    assert_eq!(grant.status, GrantStatus::Invalid);
    assert_eq!(grant.lease_until, Some(0), "lease released");
    // The next tick does nothing; a re-authentication brings it back with a catch-up.
    assert_eq!(
        p.reconcile(&g, JobKind::Incremental).await.outcome,
        RunOutcome::Skipped
    );
    p.next_second().await;
    p.emulator.reauthenticate_grant(&g);
    p.settle(SETTLE).await;
    let grant = p.consumer.grants.get(&g).await.unwrap().unwrap();
    assert_eq!(grant.status, GrantStatus::Active);
    let jobs = p.aws.drain(&p.reconcile_queue).await;
    assert!(
        jobs.iter()
            .any(|j| j.body().unwrap_or_default().contains("catch_up")),
        "a catch-up was enqueued"
    );
}

#[tokio::test]
async fn the_sweep_undoes_a_delete_of_a_message_nylas_still_lists() {
    // Lossless issue, defect 11.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    // Received two days ago (mail restored from an archive, say): older than the cursor, so
    // only the sweep sees it again.
    let m = p.emulator.create_message(
        &g,
        MessageSpec {
            date: Some(p.emulator.now() - 2 * 86_400),
            ..Default::default()
        },
    );
    let id = id_of(&m);
    p.settle(SETTLE).await;
    // A delete the store applied although Nylas still has the message.
    p.enqueue_raw(&[notification(
        "message.deleted",
        p.emulator.now(),
        &serde_json::json!({"id": id, "grant_id": g, "object": "message"}),
    )])
    .await;
    p.settle(SETTLE).await;
    let ref_ = nylas_sync::store::ObjectRef::Message { id: id.clone() };
    assert!(p.stored(&g, &ref_).await.unwrap().deleted);
    p.next_second().await;
    p.next_second().await;
    p.next_second().await;
    let mut job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    job.force_sweep = true;
    let report = p
        .reconciler
        .run(&job, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert!(report.swept);
    assert!(
        !p.stored(&g, &ref_).await.unwrap().deleted,
        "the sweep restored it"
    );
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_reconcile_running_when_its_grant_is_deleted_records_nothing_and_its_writes_are_purged() {
    // Lossless issue, defect 5: a reconcile already listing wrote objects after the purge and
    // recorded "ok".
    let p = Pipeline::start(options(20.0, no_sweep())).await;
    let g = started(&p).await;
    let recorded_before = p.consumer.grants.get(&g).await.unwrap().unwrap();
    p.emulator.set_silent(true);
    for _ in 0..3 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    let proxy = HoldingProxy::start(&p.emulator.base_url(), "/messages").await;
    let reconciler = p.reconciler_via(&proxy.uri).await;
    let job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    let run = tokio::spawn(async move {
        reconciler
            .run(&job, Instant::now() + Duration::from_secs(600))
            .await
    });
    proxy.reached.notified().await;
    p.emulator.set_silent(false);
    p.next_second().await;
    p.emulator.delete_grant(&g);
    p.settle(SETTLE).await;
    p.reconcile(&g, JobKind::Purge).await;
    assert!(p.consumer.objects.list_grant(&g).await.unwrap().is_empty());
    proxy.release.notify_one();
    // The held page is written; the next call finds the grant gone at Nylas (404): the run ends
    // either way, and its retry is skipped (the grant is not active).
    let _ = run.await.expect("run task");
    let grant = p.consumer.grants.get(&g).await.unwrap().unwrap();
    assert_eq!(grant.status, GrantStatus::Deleted);
    assert_eq!(
        (grant.last_reconcile_at, grant.last_reconcile_outcome),
        (
            recorded_before.last_reconcile_at,
            recorded_before.last_reconcile_outcome
        ),
        "a run over a deleted grant records nothing"
    );
    // The delayed purge removes what the run wrote after the first one.
    p.reconcile(&g, JobKind::Purge).await;
    assert!(p.consumer.objects.list_grant(&g).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_purge_is_bounded_and_resumes_from_where_it_stopped() {
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    p.emulator.set_silent(true);
    for _ in 0..150 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    p.reconcile(&g, JobKind::Incremental).await;
    assert!(p.consumer.objects.list_grant(&g).await.unwrap().len() > 150);
    p.consumer
        .grants
        .set_status(&g, GrantStatus::Deleted, i64::MAX / 2, &[])
        .await
        .unwrap();
    // No time left: the job continues in a new one.
    let job = ReconcileJob::new(g.clone(), JobKind::Purge, None);
    let first = p.reconciler.run(&job, Instant::now()).await.unwrap();
    assert_eq!(first.outcome, RunOutcome::Checkpointed);
    let next = p.aws.drain(&p.reconcile_queue).await;
    assert_eq!(next.len(), 1);
    let next: ReconcileJob = serde_json::from_str(next[0].body().unwrap()).unwrap();
    let done = p
        .reconciler
        .run(&next, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed);
    assert!(done.pages >= 2, "a page at a time: {} pages", done.pages);
    assert!(p.consumer.objects.list_grant(&g).await.unwrap().is_empty());
    // A stray purge never touches a live grant.
    let other = p.emulator.add_grant();
    p.settle(SETTLE).await;
    p.reconcile(&other, JobKind::Backfill).await;
    let before = p.consumer.objects.list_grant(&other).await.unwrap().len();
    let stray = p.reconcile(&other, JobKind::Purge).await;
    assert_eq!(stray.outcome, RunOutcome::Skipped);
    assert_eq!(
        p.consumer.objects.list_grant(&other).await.unwrap().len(),
        before
    );
}

#[tokio::test]
async fn changes_to_mail_older_than_the_sweep_window_are_repaired_within_a_cycle() {
    // Lossless issue, defects 10 and 3: the sweep compared only the last DRIFT_WINDOW_DAYS (and
    // read the whole stored mailbox to do it); now it walks older mail in slices of the same
    // length, DRIFT_OLDER_SLICES per sweep, reading only each slice from the store's date index.
    let p = Pipeline::start(options(
        60.0,
        vec![
            ("DRIFT_SWEEP_EVERY_RUNS", "1000000".into()),
            ("DRIFT_OLDER_SLICES", "2".into()),
        ],
    ))
    .await;
    let g = started(&p).await;
    let now = p.emulator.now();
    let mut old = Vec::new();
    for days in [20, 45, 60] {
        let m = p.emulator.create_message(
            &g,
            MessageSpec {
                date: Some(now - days * 86_400),
                unread: Some(true),
                ..Default::default()
            },
        );
        old.push(id_of(&m));
    }
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
    // Lost webhooks: one old message read, one moved, one deleted.
    p.emulator.set_silent(true);
    p.emulator.update_message(
        &g,
        &old[0],
        MessageChange {
            unread: Some(false),
            ..Default::default()
        },
    );
    p.emulator.update_message(
        &g,
        &old[1],
        MessageChange {
            folders: Some(vec!["ARCHIVE".into()]),
            ..Default::default()
        },
    );
    assert!(p.emulator.delete_message(&g, &old[2]));
    p.next_second().await;
    p.next_second().await;
    p.next_second().await;
    // A sweep covers the recent week and two older weeks: 60 days back is 9 weeks away, so a
    // cycle of this grant is five sweeps; the store converges within it.
    let mut sweeps = 0;
    while !p.diff_against_truth(false).await.is_empty() {
        sweeps += 1;
        assert!(
            sweeps <= 5,
            "not repaired within a cycle: {:?}",
            p.diff_against_truth(false).await
        );
        let mut job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
        job.force_sweep = true;
        let report = p
            .reconciler
            .run(&job, Instant::now() + Duration::from_secs(600))
            .await
            .unwrap();
        assert!(report.swept);
    }
    assert!(
        sweeps >= 2,
        "the 60-day-old delete is beyond the first sweep's slices"
    );
}

#[tokio::test]
async fn missed_folder_webhooks_are_repaired_by_the_sweep() {
    // Lossless issue, defect 16: folders were never reconciled.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    let mut job = ReconcileJob::new(g.clone(), JobKind::Incremental, None);
    job.force_sweep = true;
    let first = p
        .reconciler
        .run(&job, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert!(first.swept);
    assert_eq!(p.diff_folders_against_truth().await, Vec::<String>::new());
    // Seen by webhook, then changed and deleted without one; one created without one.
    let kept = p.emulator.create_folder(&g, "Projects");
    let doomed = p.emulator.create_folder(&g, "Old stuff");
    p.settle(SETTLE).await;
    assert_eq!(p.diff_folders_against_truth().await, Vec::<String>::new());
    p.emulator.set_silent(true);
    p.emulator
        .update_folder(&g, kept["id"].as_str().unwrap(), "Projects 2026");
    assert!(p.emulator.delete_folder(&g, doomed["id"].as_str().unwrap()));
    p.emulator.create_folder(&g, "Receipts 2026");
    p.next_second().await;
    p.next_second().await;
    p.next_second().await;
    assert_eq!(p.diff_folders_against_truth().await.len(), 3);
    let again = p
        .reconciler
        .run(&job, Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert!(again.swept);
    assert_eq!(p.diff_folders_against_truth().await, Vec::<String>::new());
}

/// A clock stopped at one Unix second.
struct At(i64);

impl nylas_sync::clock::Clock for At {
    fn now_ms(&self) -> i64 {
        self.0 * 1000
    }
}

#[tokio::test]
async fn a_job_the_scheduler_sent_again_while_the_queue_was_behind_costs_no_nylas_call() {
    // Lossless issue, judgement: the scheduler enqueues every grant not reconciled recently,
    // whether or not a job for it is still queued; behind a backlog, each tick adds one more.
    let p = Pipeline::start(PipelineOptions::default()).await;
    p.register_grants().await;
    let g = p.grant();
    let now = p.emulator.now();
    let tick = |at: i64| Scheduler {
        grants: p.reconciler.grants.clone(),
        jobs: p.reconciler.jobs.clone(),
        settings: SchedulerSettings {
            interval_s: 60,
            spread_s: 0,
            ..SchedulerSettings::default()
        },
        clock: Arc::new(At(at)),
    };
    // Two ticks a minute apart, and no job ran in between: two jobs for the grant.
    assert_eq!(tick(now - 120).fan_out().await.unwrap().grants, 1);
    assert_eq!(tick(now - 60).fan_out().await.unwrap().grants, 1);
    let jobs: Vec<ReconcileJob> = p
        .aws
        .drain(&p.reconcile_queue)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.grant_id == g));

    let deadline = Instant::now() + Duration::from_secs(600);
    let first = p.reconciler.run(&jobs[0], deadline).await.unwrap();
    assert_eq!(first.outcome, RunOutcome::Completed);
    let calls = p.emulator.stats().api.total;
    assert!(calls > 0);
    // The first ran after the second was sent: it did the second's work.
    let second = p.reconciler.run(&jobs[1], deadline).await.unwrap();
    assert_eq!(second.outcome, RunOutcome::Skipped);
    assert_eq!(p.emulator.stats().api.total, calls, "no Nylas call");
}

#[tokio::test]
async fn a_grant_whose_polls_find_nothing_is_polled_less_often_until_a_redelivery_brings_it_back() {
    // Issue 15: the blind poll backs off; evidence of loss brings the base interval back.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    let tick = |at: i64| Scheduler {
        grants: p.reconciler.grants.clone(),
        jobs: p.reconciler.jobs.clone(),
        settings: SchedulerSettings {
            spread_s: 0,
            ..SchedulerSettings::default()
        },
        clock: Arc::new(At(at)),
    };
    let grant = || async { p.consumer.grants.get(&g).await.unwrap().unwrap() };
    // Each run that repairs nothing doubles the interval (1800 s, then 3600, 7200, 14400).
    let mut intervals = vec![grant().await.reconcile_interval_s];
    for _ in 0..4 {
        p.reconcile(&g, JobKind::Incremental).await;
        intervals.push(grant().await.reconcile_interval_s);
    }
    assert_eq!(
        intervals,
        [
            Some(1800),
            Some(3600),
            Some(7200),
            Some(14_400),
            Some(14_400)
        ]
    );
    let g_now = grant().await;
    let next = g_now.next_reconcile_at.expect("next run recorded");
    assert_eq!(next, g_now.last_reconcile_at.unwrap() + 14_400);
    // The scheduler sends nothing before the next run is due, and the job once it is.
    assert_eq!(tick(next - 60).fan_out().await.unwrap().grants, 0);
    assert_eq!(tick(next).fan_out().await.unwrap().grants, 1);
    p.aws.drain(&p.reconcile_queue).await;

    // A notification Nylas had to deliver twice: the grant is due at the next tick, and its
    // next run sweeps the recent window and returns to the base interval.
    let m = p.emulator.create_message(&g, MessageSpec::default());
    p.settle(SETTLE).await;
    let redelivered = redelivered_update(&p, &m);
    let (response, lines) =
        nylas_sync::metrics::capture(p.consumer.handle(batch_of(&redelivered))).await;
    assert!(response.batch_item_failures.is_empty());
    let marked: f64 = lines
        .iter()
        .flat_map(|l| support::emf::validate_line(l).expect("EMF"))
        .filter(|m| m.name == "GrantsMarkedDue")
        .flat_map(|m| m.values)
        .sum();
    assert_eq!(marked, 1.0);
    assert_eq!(grant().await.next_reconcile_at, Some(0));
    // The run is sent at once, not at the next tick (which would find the grant due too).
    let sent = p.aws.drain(&p.reconcile_queue).await;
    assert_eq!(sent.len(), 1, "one run sent by the consumer");
    let job: ReconcileJob = serde_json::from_str(sent[0].body().unwrap()).unwrap();
    assert_eq!(
        (job.grant_id.as_str(), job.kind),
        (g.as_str(), JobKind::Incremental)
    );
    let report = p.reconcile(&g, JobKind::Incremental).await;
    assert!(
        report.swept_recent && !report.swept,
        "evidence of loss brings a sweep of the recent window, not the walk through older mail"
    );
    assert!(!grant().await.sweep_recent, "the request is met");
    assert_eq!(grant().await.reconcile_interval_s, Some(1800));

    // The same notification redelivered once more (its third attempt): that run began after
    // it and listed what it could have lost, so nothing more is sent.
    p.consumer.handle(batch_of(&redelivered)).await;
    assert!(p.aws.drain(&p.reconcile_queue).await.is_empty());
    assert!(grant().await.next_reconcile_at.unwrap() > 0);
}

#[tokio::test]
async fn listings_travel_gzip_compressed() {
    // Issue 15: Nylas compresses its answers when asked; a page of 200 messages shrinks several
    // times over.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    p.emulator.set_silent(true);
    for _ in 0..20 {
        p.emulator.create_message(&g, MessageSpec::default());
    }
    let before = p.emulator.stats().api;
    p.reconcile(&g, JobKind::Incremental).await;
    let after = p.emulator.stats().api;
    assert!(after.gzipped > before.gzipped, "{after:?}");
    assert!(after.gzip_bytes_saved > before.gzip_bytes_saved);
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_redelivery_meeting_a_run_that_began_before_the_loss_waits_for_its_lease_and_repairs() {
    // Issue 15, found by the day scenario: the run the consumer sends on a redelivery met the
    // lease of a run that began before the loss and was dropped, so the loss waited for the
    // grant's interval (hours) instead of minutes.
    let p = Pipeline::start(options(60.0, no_sweep())).await;
    let g = started(&p).await;
    // A run is in flight: it took the lease before the loss.
    let now_ms = p.emulator.now() * 1000;
    p.reconciler
        .grants
        .acquire_lease(&g, "a-run-in-flight", now_ms, 900_000)
        .await
        .expect("lease")
        .expect("free");
    // A flag change whose notification Nylas gave up on, and one it delivered on a retry.
    let truth = p.emulator.truth();
    let m = truth
        .grants
        .iter()
        .find(|t| t.grant_id == g)
        .and_then(|t| t.messages.first())
        .cloned()
        .expect("a message");
    let id = m["id"].as_str().expect("id");
    let starred = m["starred"].as_bool().unwrap_or(false);
    p.emulator.set_silent(true);
    p.emulator.update_message(
        &g,
        id,
        MessageChange {
            starred: Some(!starred),
            ..Default::default()
        },
    );
    p.emulator.set_silent(false);
    let other = p.emulator.create_message(&g, MessageSpec::default());
    p.settle(SETTLE).await;
    let redelivered = redelivered_update(&p, &other);
    assert!(p
        .consumer
        .handle(batch_of(&redelivered))
        .await
        .batch_item_failures
        .is_empty());
    let sent = p.aws.drain(&p.reconcile_queue).await;
    assert_eq!(sent.len(), 1);
    let job: ReconcileJob = serde_json::from_str(sent[0].body().unwrap()).unwrap();
    assert!(job.after_loss, "{job:?}");
    // The lease is held: the job waits (sent again, delayed), it is not dropped.
    let deadline = Instant::now() + Duration::from_secs(600);
    let report = p.reconciler.run(&job, deadline).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Deferred);
    assert!(
        !p.diff_against_truth(false).await.is_empty(),
        "the lost change is not in the store yet"
    );
    // The run in flight ends; the waiting job runs and repairs the loss.
    p.reconciler
        .grants
        .release_lease(&g, "a-run-in-flight", "completed")
        .await
        .expect("release");
    let report = p.reconciler.run(&job, deadline).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert!(
        report.swept_recent,
        "a run sent on evidence sweeps the recent window"
    );
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
}

/// A `message.updated` of `message` as Nylas sends it on its second attempt (the first failed).
fn redelivered_update(p: &Pipeline, message: &serde_json::Value) -> serde_json::Value {
    let mut n: serde_json::Value =
        serde_json::from_str(&notification("message.updated", p.emulator.now(), message))
            .expect("a notification");
    n["webhook_delivery_attempt"] = 2.into();
    n
}

/// The consumer's SQS batch of one record holding `notification`.
fn batch_of(notification: &serde_json::Value) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some(unique("record"));
    record.body = Some(notification.to_string());
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![record];
    event
}
