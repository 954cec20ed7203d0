//! The scheduler's watch of the webhook destination, against the emulator: a destination Nylas
//! marked `failed` gets nothing, for good, until someone reactivates it; the watch does, and
//! catches every grant up from when the loss began, so the store ends equal to Nylas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nylas_emulator::{EmulatorConfig, MessageChange, MessageSpec};
use nylas_sync::config::ApiKey;
use nylas_sync::destination::{Action, DestinationWatch};
use nylas_sync::jobs::{JobKind, ReconcileJob};
use nylas_sync::nylas::{ClientSettings, NylasClient};
use nylas_sync::scheduler::{Scheduler, SchedulerSettings};
use support::*;

const SETTLE: Duration = Duration::from_secs(30);

/// The scheduler as deployed: its ticks' jobs are spread over up to 15 minutes, which a
/// catch-up must not wait for (found by the day scenario: a failed destination's losses waited
/// for a random delay after the watch had reactivated it).
fn scheduler(p: &Pipeline) -> Scheduler {
    Scheduler {
        grants: p.reconciler.grants.clone(),
        jobs: p.reconciler.jobs.clone(),
        settings: SchedulerSettings::default(),
        clock: Arc::new(EmulatorClock(p.emulator.clone())),
    }
}

fn watch(p: &Pipeline) -> DestinationWatch {
    DestinationWatch {
        nylas: NylasClient::new(
            &p.emulator.base_url(),
            ApiKey::new(p.emulator.api_key()),
            ClientSettings::default(),
        )
        .expect("client"),
        webhook_id: p.destination_id.clone(),
        grants: p.reconciler.grants.clone(),
        clock: Arc::new(EmulatorClock(p.emulator.clone())),
    }
}

/// Runs every job on the reconcile queue, and what those jobs enqueue, until it is empty.
async fn run_reconcile_queue(p: &Pipeline) -> Vec<ReconcileJob> {
    let mut ran = Vec::new();
    loop {
        let messages = p.aws.drain(&p.reconcile_queue).await;
        if messages.is_empty() {
            return ran;
        }
        for m in messages {
            let job: ReconcileJob = serde_json::from_str(m.body().unwrap()).unwrap();
            p.reconciler
                .run(&job, Instant::now() + Duration::from_secs(600))
                .await
                .expect("reconcile");
            ran.push(job);
        }
    }
}

async fn synced_pipeline(grants: usize) -> Pipeline {
    let p = Pipeline::start(PipelineOptions {
        emulator: EmulatorConfig {
            grants,
            time_scale: 60.0,
            ..PipelineOptions::default().emulator
        },
        ..PipelineOptions::default()
    })
    .await;
    p.register_grants().await;
    for g in p.emulator.grant_ids() {
        p.reconcile(&g, JobKind::Incremental).await;
    }
    p.settle(SETTLE).await;
    p
}

#[tokio::test]
async fn a_failed_destination_is_reactivated_and_every_grant_caught_up_from_when_it_failed() {
    let p = synced_pipeline(2).await;
    let grants = p.emulator.grant_ids();
    assert_eq!(
        watch(&p).check(&scheduler(&p)).await.unwrap().action,
        Action::Nothing
    );

    // Nylas gave up on the destination: nothing is sent any more.
    assert!(p.emulator.fail_destination(&p.destination_id));
    let mut changed = Vec::new();
    for g in &grants {
        let m = p.emulator.create_message(g, MessageSpec::default());
        changed.push((g.clone(), id_of(&m)));
    }
    let id = changed[0].1.clone();
    p.emulator.update_message(
        &grants[0],
        &id,
        MessageChange {
            starred: Some(true),
            ..Default::default()
        },
    );
    p.settle(SETTLE).await;
    assert!(
        !p.diff_against_truth(false).await.is_empty(),
        "the changes were lost"
    );

    // The next tick's watch reads `failed`, reactivates it and catches every grant up.
    let check = watch(&p).check(&scheduler(&p)).await.unwrap();
    assert!(
        matches!(check.action, Action::Reactivate { .. }),
        "{check:?}"
    );
    assert_eq!(check.catch_up_jobs, 2);
    assert_eq!(p.emulator.destination_status(&p.destination_id), "active");
    let ran = run_reconcile_queue(&p).await;
    assert!(ran.iter().all(|j| j.kind == JobKind::CatchUp));
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());

    // The incident is closed: the tick after does nothing more.
    let again = watch(&p).check(&scheduler(&p)).await.unwrap();
    assert_eq!((again.action, again.catch_up_jobs), (Action::Nothing, 0));
    let incident = p
        .reconciler
        .grants
        .destination_incident()
        .await
        .unwrap()
        .expect("recorded");
    assert!(incident.reactivated && !incident.is_open(), "{incident:?}");

    // And webhooks flow again.
    let m = p
        .emulator
        .create_message(&grants[1], MessageSpec::default());
    p.settle(SETTLE).await;
    assert!(p
        .stored(
            &grants[1],
            &nylas_sync::store::ObjectRef::Message { id: id_of(&m) }
        )
        .await
        .is_some());
}

#[tokio::test]
async fn a_failing_destination_raises_the_alarm_and_is_caught_up_once_it_recovers() {
    let p = synced_pipeline(1).await;
    let g = p.grant();
    assert!(p
        .emulator
        .set_destination_status(&p.destination_id, "failing"));
    let (check, lines) =
        nylas_sync::metrics::capture(async { watch(&p).check(&scheduler(&p)).await }).await;
    let check = check.unwrap();
    assert_eq!((check.action, check.catch_up_jobs), (Action::Alarm, 0));
    let unhealthy: f64 = lines
        .iter()
        .flat_map(|l| support::emf::validate_line(l).expect("EMF"))
        .filter(|m| m.name == "DestinationUnhealthy")
        .flat_map(|m| m.values)
        .sum();
    assert_eq!(unhealthy, 1.0, "{lines:?}");

    // While it was failing, a notification failed three times and was dropped (the emulator's
    // deliveries to a failing destination: none here, so the change is made silently).
    p.emulator.set_silent(true);
    let lost = p.emulator.create_message(&g, MessageSpec::default());
    p.emulator.set_silent(false);
    assert!(p
        .emulator
        .set_destination_status(&p.destination_id, "active"));
    let check = watch(&p).check(&scheduler(&p)).await.unwrap();
    assert!(matches!(check.action, Action::CatchUp { .. }), "{check:?}");
    assert_eq!(check.catch_up_jobs, 1);
    run_reconcile_queue(&p).await;
    assert!(p
        .stored(
            &g,
            &nylas_sync::store::ObjectRef::Message { id: id_of(&lost) }
        )
        .await
        .is_some());
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_watch_that_finds_another_handling_the_incident_leaves_it_and_the_catch_up_is_sent_once()
{
    // Issue 15, found by the day scenario: the reconcile tick's watch and the destination's own
    // schedule fired together, both reactivated the destination and both caught every grant up.
    let p = synced_pipeline(2).await;
    assert!(p.emulator.fail_destination(&p.destination_id));
    let now_ms = p.emulator.now() * 1000;
    assert!(p
        .reconciler
        .grants
        .claim_destination_watch("the-other-watch", now_ms, 600_000)
        .await
        .unwrap());
    let check = watch(&p).check(&scheduler(&p)).await.unwrap();
    assert_eq!((check.action, check.catch_up_jobs), (Action::Nothing, 0));
    assert!(p.aws.drain(&p.reconcile_queue).await.is_empty());
    assert_eq!(p.emulator.destination_status(&p.destination_id), "failed");

    // The other watch is done (it did nothing here): the next one acts, once.
    p.reconciler
        .grants
        .release_destination_watch("the-other-watch")
        .await
        .unwrap();
    let first = watch(&p).check(&scheduler(&p)).await.unwrap();
    assert!(
        matches!(first.action, Action::Reactivate { .. }),
        "{first:?}"
    );
    assert_eq!(first.catch_up_jobs, 2);
    let second = watch(&p).check(&scheduler(&p)).await.unwrap();
    assert_eq!((second.action, second.catch_up_jobs), (Action::Nothing, 0));
    assert_eq!(p.aws.drain(&p.reconcile_queue).await.len(), 2);
    // Its claim was given up: a later incident is handled.
    assert!(p
        .reconciler
        .grants
        .claim_destination_watch("later", now_ms, 1)
        .await
        .unwrap());
}
