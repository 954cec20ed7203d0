//! Calendars against the corrected emulator (Nylas's one-month default window, recurring series,
//! events/import, calendar deletes): a grant's events from a year back to two years ahead are
//! backfilled, reconciled and swept to exactly Nylas's state; event webhooks lost in an outage
//! are recovered whatever the event's date; tracking notifications are answered 200 and
//! acknowledged; notifications with a null calendar_id or no grant_id are resolved or parked.

use std::time::{Duration, Instant};

use nylas_emulator::{occurrence_id, EmulatorConfig, EventChange, EventSpec, Faults};
use nylas_sync::jobs::{JobKind, ReconcileJob};
use nylas_sync::reconcile::{RunOutcome, RunReport};
use nylas_sync::store::ObjectRef;
use support::*;

const DAY: i64 = 86_400;
const SETTLE: Duration = Duration::from_secs(60);

fn options(time_scale: f64) -> PipelineOptions {
    PipelineOptions {
        emulator: EmulatorConfig {
            time_scale,
            initial_messages_per_grant: 0,
            initial_events_per_grant: 0,
            recurring_series_per_grant: 0,
            ..EmulatorConfig::default()
        },
        // Sweeps only when a test asks for one.
        reconciler: vec![("DRIFT_SWEEP_EVERY_RUNS", "1000000".into())],
        ..PipelineOptions::default()
    }
}

/// Creates an event (an hour long) and answers its id.
fn event(p: &Pipeline, grant: &str, cal: &str, title: &str, start: i64) -> String {
    created(p, grant, cal, title, start, 3600, None)
}

/// Creates a weekly series of half-hour meetings from `first` and answers its master's id.
fn weekly(p: &Pipeline, grant: &str, cal: &str, title: &str, first: i64) -> String {
    let rule = vec!["RRULE:FREQ=WEEKLY".to_string()];
    created(p, grant, cal, title, first, 1800, Some(rule))
}

fn created(
    p: &Pipeline,
    grant: &str,
    cal: &str,
    title: &str,
    start: i64,
    len: i64,
    recurrence: Option<Vec<String>>,
) -> String {
    let e = p.emulator.create_event_spec(
        grant,
        cal,
        EventSpec {
            title: Some(title.into()),
            start_time: start,
            end_time: start + len,
            recurrence,
        },
    );
    assert!(!e.is_null(), "event {title} not created");
    id_of(&e)
}

async fn run(p: &Pipeline, grant: &str, kind: JobKind, sweep: bool) -> RunReport {
    let mut job = ReconcileJob::new(grant, kind, None);
    job.force_sweep = sweep;
    let deadline = Instant::now() + Duration::from_secs(600);
    let report = p.reconciler.run(&job, deadline).await.expect("reconcile");
    assert_eq!(report.outcome, RunOutcome::Completed);
    report
}

#[tokio::test]
async fn past_far_future_and_recurring_events_are_backfilled_reconciled_and_swept_to_nylas_state() {
    let p = Pipeline::start(options(1.0)).await;
    p.register_grants().await;
    let g = p.grant();
    let primary = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    let now = p.emulator.now();
    // Everything below happens without webhooks: only reconciliation can find it.
    p.emulator.set_silent(true);
    let team = id_of(&p.emulator.create_calendar(&g, "Team"));
    let year_ago = event(&p, &g, &primary, "a year ago", now - 360 * DAY);
    let last_month = event(&p, &g, &primary, "last month", now - 30 * DAY);
    event(&p, &g, &primary, "in two hours", now + 2 * 3600);
    let in_45_days = event(&p, &g, &primary, "in 45 days", now + 45 * DAY);
    let year_ahead = event(&p, &g, &primary, "a year ahead", now + 360 * DAY);
    event(&p, &g, &primary, "in 700 days", now + 700 * DAY);
    let team_event = event(&p, &g, &team, "team offsite", now + 90 * DAY);
    // A weekly series that began two months ago, with a moved and a cancelled occurrence.
    let first = (now - 60 * DAY) / 3600 * 3600;
    let master = weekly(&p, &g, &primary, "weekly", first);
    let moved = p.emulator.move_occurrence(
        &g,
        &master,
        first + 10 * 7 * DAY,
        first + 10 * 7 * DAY + 7200,
        first + 10 * 7 * DAY + 9000,
    );
    assert!(!moved.is_null());
    assert!(p
        .emulator
        .cancel_occurrence(&g, &master, first + 11 * 7 * DAY));

    // The backfill imports the whole window: nothing outside the default month is lost.
    run(&p, &g, JobKind::Backfill, false).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    for id in [&year_ago, &year_ahead, &master] {
        let stored = p
            .stored(
                &g,
                &ObjectRef::Event {
                    calendar_id: primary.clone(),
                    id: id.clone(),
                },
            )
            .await;
        assert!(stored.is_some_and(|s| !s.deleted), "{id} stored");
    }
    let occurrence = occurrence_id(&master, first + 7 * DAY);
    assert!(
        p.stored(
            &g,
            &ObjectRef::Event {
                calendar_id: primary.clone(),
                id: occurrence
            }
        )
        .await
        .is_none(),
        "expanded occurrences are never stored"
    );

    // Changes in and outside the default month, still without webhooks.
    p.next_second().await;
    p.emulator.update_event(
        &g,
        &year_ago,
        EventChange {
            title: Some("a year ago (minutes added)".into()),
            ..EventChange::default()
        },
    );
    p.emulator.cancel_event(&g, &year_ahead);
    assert!(p.emulator.delete_event(&g, &in_45_days));
    assert!(p.emulator.delete_calendar(&g, &team));
    let moved_again = p.emulator.move_occurrence(
        &g,
        &master,
        first + 12 * 7 * DAY,
        first + 12 * 7 * DAY + 3600,
        first + 12 * 7 * DAY + 5400,
    );
    assert!(!moved_again.is_null());
    let new_past = event(&p, &g, &primary, "entered late", now - 200 * DAY);
    p.next_second().await;

    // An incremental run lists what changed (updates, cancellations, new events, exceptions)...
    let report = run(&p, &g, JobKind::Incremental, false).await;
    assert_eq!(
        report.recovered, 0,
        "nothing counted as missed: no webhooks were due"
    );
    let diffs = p.diff_against_truth(true).await;
    assert!(
        diffs
            .iter()
            .all(|d| d.contains(&in_45_days) || d.contains(&team_event)),
        "only hard deletes are left for the sweep: {diffs:#?}"
    );
    assert!(!diffs.is_empty(), "hard deletes cannot be listed");
    assert!(p
        .stored(
            &g,
            &ObjectRef::Event {
                calendar_id: primary.clone(),
                id: new_past
            }
        )
        .await
        .is_some());

    // ...and the sweep finds the deleted event and the deleted calendar's events.
    run(&p, &g, JobKind::Incremental, true).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    let stored_calendar = p
        .stored(&g, &ObjectRef::Calendar { id: team.clone() })
        .await
        .expect("calendar kept as a tombstone");
    assert!(stored_calendar.deleted);
    // Nylas's calls for one sweep of a quiet grant: bounded by calendars, not by events.
    let _ = last_month;
}

#[tokio::test]
async fn event_webhooks_lost_in_an_outage_are_recovered_whatever_the_event_date() {
    // 120x: Nylas's 10-20 minute retry window passes in seconds.
    let p = Pipeline::start(options(120.0)).await;
    p.register_grants().await;
    let g = p.grant();
    let primary = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    run(&p, &g, JobKind::Backfill, false).await;
    // Seen by webhook, then changed during the outage.
    let now = p.emulator.now();
    let far = event(&p, &g, &primary, "far ahead", now + 400 * DAY);
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());

    p.emulator.set_outage(true);
    let now = p.emulator.now();
    let past = event(
        &p,
        &g,
        &primary,
        "entered during the outage",
        now - 300 * DAY,
    );
    let ahead = event(
        &p,
        &g,
        &primary,
        "booked during the outage",
        now + 600 * DAY,
    );
    p.emulator.update_event(
        &g,
        &far,
        EventChange {
            title: Some("far ahead, moved".into()),
            start_time: Some(now + 401 * DAY),
            end_time: Some(now + 401 * DAY + 3600),
            ..EventChange::default()
        },
    );
    assert!(
        p.emulator.wait_for_deliveries_idle(SETTLE).await,
        "retries never ended"
    );
    p.emulator.set_outage(false);
    assert_eq!(
        p.emulator.stats().webhooks.deliveries.dropped_after_retries,
        3
    );
    p.settle(SETTLE).await;
    assert_eq!(
        p.diff_against_truth(true).await.len(),
        3,
        "the store misses the outage"
    );

    // The events are far outside Nylas's default month: listed only through explicit windows.
    let report = run(&p, &g, JobKind::Incremental, false).await;
    assert_eq!(
        report.recovered, 3,
        "each loss is counted as a missed webhook"
    );
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    for id in [past, ahead] {
        assert!(p
            .stored(
                &g,
                &ObjectRef::Event {
                    calendar_id: primary.clone(),
                    id
                }
            )
            .await
            .is_some_and(|s| !s.deleted));
    }
}

#[tokio::test]
async fn tracking_notifications_are_answered_200_and_acknowledged() {
    let p = Pipeline::start(options(1.0)).await;
    p.register_grants().await;
    let g = p.grant();
    for kind in [
        "message.opened",
        "message.link_clicked",
        "message.opened.legacy",
        "message.bounce_detected",
        "thread.replied",
    ] {
        p.emulator.emit_tracking(kind, &g, "msg-tracked");
    }
    p.settle(SETTLE).await;
    let d = p.emulator.stats().webhooks.deliveries;
    assert_eq!(d.delivered, 5, "{d:?}");
    assert_eq!(d.non_200_answers, 0, "{d:?}");
    assert!(p.aws.drain(&p.notifications_dlq).await.is_empty());
    assert!(p
        .stored(
            &g,
            &ObjectRef::Message {
                id: "msg-tracked".into()
            }
        )
        .await
        .is_none());
}

#[tokio::test]
async fn an_event_deleted_with_a_null_calendar_id_is_resolved_from_the_store() {
    let p = Pipeline::start(options(1.0)).await;
    p.register_grants().await;
    let g = p.grant();
    let primary = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    let now = p.emulator.now();
    let id = event(&p, &g, &primary, "soon", now + 3 * DAY);
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    p.next_second().await;
    p.emulator.set_faults(Faults {
        event_deleted_null_calendar_probability: 1.0,
        ..Faults::default()
    });
    assert!(p.emulator.delete_event(&g, &id));
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    let stored = p
        .stored(
            &g,
            &ObjectRef::Event {
                calendar_id: primary,
                id,
            },
        )
        .await
        .expect("tombstone");
    assert!(stored.deleted);
    assert!(p.aws.drain(&p.notifications_dlq).await.is_empty());
}

#[tokio::test]
async fn event_notifications_without_a_grant_id_are_parked_visibly_and_reconciliation_repairs_them()
{
    let p = Pipeline::start(PipelineOptions {
        max_receives: 1,
        ..options(1.0)
    })
    .await;
    p.register_grants().await;
    let g = p.grant();
    let primary = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    run(&p, &g, JobKind::Backfill, false).await;
    p.emulator.set_faults(Faults {
        event_missing_grant_id_probability: 1.0,
        ..Faults::default()
    });
    let now = p.emulator.now();
    event(&p, &g, &primary, "whose?", now + 5 * DAY);
    p.settle(SETTLE).await;
    let d = p.emulator.stats().webhooks.deliveries;
    assert_eq!(d.non_200_answers, 0, "accepted by the ingest: {d:?}");
    assert_eq!(
        p.aws.drain(&p.notifications_dlq).await.len(),
        1,
        "parked in the DLQ"
    );
    assert!(
        nylas_sync::consumer::ConsumerCounters::get(&p.consumer.counters.unresolved) >= 1,
        "counted as unresolved"
    );
    assert_eq!(p.diff_against_truth(true).await.len(), 1);
    run(&p, &g, JobKind::Incremental, false).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_icloud_grant_is_listed_in_one_year_slices() {
    // iCloud refuses an events listing over one year: a three-year window must be cut.
    let p = Pipeline::start(options(1.0)).await;
    let g = p.emulator.add_grant_with("icloud");
    p.settle(SETTLE).await;
    let registered = p
        .consumer
        .grants
        .get(&g)
        .await
        .unwrap()
        .expect("grant.created registered it");
    assert_eq!(registered.provider.as_deref(), Some("icloud"));
    let primary = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    let now = p.emulator.now();
    p.emulator.set_silent(true);
    let past = event(&p, &g, &primary, "last year", now - 300 * DAY);
    let ahead = event(&p, &g, &primary, "in 20 months", now + 600 * DAY);
    run(&p, &g, JobKind::Backfill, false).await;
    run(&p, &g, JobKind::Incremental, true).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    for id in [past, ahead] {
        assert!(p
            .stored(
                &g,
                &ObjectRef::Event {
                    calendar_id: primary.clone(),
                    id
                }
            )
            .await
            .is_some_and(|s| !s.deleted));
    }
}

#[tokio::test]
async fn a_backfill_imports_events_last_changed_before_its_window() {
    // Lossless issue, defect 8: the backfill listed events by updated_after only, so an event
    // last changed before the backfill's `since` (a meeting booked months ago) was never seen.
    let mut o = options(60.0);
    o.reconciler.push(("RECONCILE_OVERLAP_SECONDS", "0".into()));
    let p = Pipeline::start(o).await;
    p.register_grants().await;
    let g = p.grant();
    let primary = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    p.emulator.set_silent(true);
    let now = p.emulator.now();
    let booked_long_ago = event(&p, &g, &primary, "booked long ago", now + 20 * DAY);
    p.next_second().await;
    p.next_second().await;
    let since = p.emulator.now();
    let job = ReconcileJob::new(&g, JobKind::Backfill, Some(since));
    let report = p
        .reconciler
        .run(&job, Instant::now() + Duration::from_secs(600))
        .await
        .expect("backfill");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert!(p
        .stored(
            &g,
            &ObjectRef::Event {
                calendar_id: primary,
                id: booked_long_ago
            }
        )
        .await
        .is_some());
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_calendar_deleted_webhook_takes_the_calendars_events_with_it() {
    // Lossless issue, defect 7: Nylas sends no event.deleted for a deleted calendar's events.
    let p = Pipeline::start(options(1.0)).await;
    p.register_grants().await;
    let g = p.grant();
    let team = id_of(&p.emulator.create_calendar(&g, "Team"));
    let now = p.emulator.now();
    let a = event(&p, &g, &team, "standup", now + DAY);
    let b = event(&p, &g, &team, "retro", now - 40 * DAY);
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    p.next_second().await;
    assert!(p.emulator.delete_calendar(&g, &team));
    p.settle(SETTLE).await;
    for id in [a, b] {
        let stored = p
            .stored(
                &g,
                &ObjectRef::Event {
                    calendar_id: team.clone(),
                    id,
                },
            )
            .await
            .expect("held");
        assert!(stored.deleted, "tombstoned with its calendar");
    }
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_cancelled_series_takes_its_exceptions_with_it_by_webhook_and_by_reconciliation() {
    // Found by the quarter-day scenario: a master's cancellation is notified by the master's
    // event.updated alone; the store must drop the series' exceptions with it, whether that
    // webhook arrives or is lost and an incremental run lists the change.
    let p = Pipeline::start(options(1.0)).await;
    p.register_grants().await;
    let g = p.grant();
    let cal = p
        .emulator
        .primary_calendar_id(&g)
        .expect("primary calendar");
    let series = |title: &str, first: i64| {
        let master = weekly(&p, &g, &cal, title, first);
        let second = first + 7 * DAY;
        let moved = p
            .emulator
            .move_occurrence(&g, &master, second, second + 7200, second + 9000);
        assert!(!moved.is_null());
        (master, id_of(&moved))
    };
    let now = p.emulator.now() / 3600 * 3600;
    let heard = series("heard", now - 20 * DAY);
    let lost = series("lost", now + 20 * DAY);
    p.settle(SETTLE).await;
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
    // A first run: later ones list the calendar by change.
    run(&p, &g, JobKind::Incremental, false).await;
    let exception = |id: &str| ObjectRef::Event {
        calendar_id: cal.clone(),
        id: id.to_string(),
    };
    p.next_second().await;
    p.emulator.cancel_event(&g, &heard.0);
    p.settle(SETTLE).await;
    let stored = p.stored(&g, &exception(&heard.1)).await.expect("held");
    assert!(
        stored.deleted,
        "the webhook took the exception with its master"
    );
    p.emulator.set_silent(true);
    p.next_second().await;
    p.emulator.cancel_event(&g, &lost.0);
    p.next_second().await;
    run(&p, &g, JobKind::Incremental, false).await;
    let stored = p.stored(&g, &exception(&lost.1)).await.expect("held");
    assert!(
        stored.deleted,
        "the incremental run listed the cancelled exception"
    );
    assert_eq!(p.diff_against_truth(true).await, Vec::<String>::new());
}
