//! The local stack's scenarios, short: after an endpoint outage, after chaos (drops,
//! duplicates, reordering, a 429 storm, 5xx and consumer crashes mid-batch), and after the
//! faults scenario (a big mailbox, slow answers during changes, a grant deleted while a reconcile
//! of it runs, expired credentials, bursts of 429), the nylas-sync hybrid's store equals the
//! emulator's truth once traffic stops and its final reconcile ran; after a quarter of the day
//! (drops, an outage, a failed destination) it equals the truth with no final run at all.

use local_stack::report::{Report, StrategyReport};
use local_stack::scenario::{run, ScenarioConfig, ScenarioName};

/// The nylas-sync hybrid's row, once its store is shown equal to the truth.
fn converged(report: &Report) -> &StrategyReport {
    let hybrid = report.hybrid().expect("hybrid row");
    assert!(
        report.converged(),
        "{}\n{:?}",
        report.table(),
        hybrid.differences
    );
    hybrid
}

async fn short(scenario: ScenarioName) -> local_stack::report::Report {
    support::endpoint();
    let mut config = ScenarioConfig::new(scenario);
    config.grants = 3;
    config.traffic_seconds = 25;
    config.events_per_minute = 1.0;
    run(config).await.expect("scenario runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_an_outage_the_hybrid_converges_and_webhooks_alone_do_not() {
    let report = short(ScenarioName::Outage).await;
    let hybrid = converged(&report);
    assert!(
        report.webhooks_dropped > 0,
        "the outage dropped notifications:\n{}",
        report.table()
    );
    let webhooks_only = &report.strategies[0];
    assert!(
        webhooks_only.missing + webhooks_only.stale + webhooks_only.resurrected > 0,
        "webhooks alone cannot recover what was dropped:\n{}",
        report.table()
    );
    assert!(hybrid.recovered_by_reconcile > 0, "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_chaos_the_hybrid_converges() {
    let report = short(ScenarioName::Chaos).await;
    converged(&report);
    assert!(report.consumer_crashes > 0, "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_slow_answers_a_big_mailbox_a_deleted_grant_expired_credentials_and_429s_the_hybrid_converges(
) {
    support::endpoint();
    let mut config = ScenarioConfig::new(ScenarioName::Faults);
    config.grants = 4;
    config.traffic_seconds = 30;
    config.events_per_minute = 1.0;
    config.big_mailbox = 600;
    let report = run(config).await.expect("scenario runs");
    converged(&report);
    // The faults happened.
    let faults = report
        .faults
        .as_ref()
        .expect("the faults scenario reports its faults");
    assert!(faults.big_mailbox >= 600, "{}", report.table());
    assert!(faults.answers_held_back > 0, "{}", report.table());
    assert!(faults.answers_429 > 0, "{}", report.table());
    assert!(
        faults.deleted_grant_objects_before > 0,
        "the deleted grant had data in the store before:\n{}",
        report.table()
    );
    assert!(faults.expired_grant_401s > 0, "{}", report.table());
    assert!(faults.changes_while_expired > 0, "{}", report.table());
}

#[tokio::test]
async fn the_real_account_mode_syncs_every_grant_of_an_application_by_reconciliation() {
    support::endpoint();
    // The emulator stands in for api.us.nylas.com: the runner only sees its URL and key.
    let emulator = nylas_emulator::Emulator::start(nylas_emulator::EmulatorConfig {
        grants: 2,
        ..Default::default()
    })
    .await
    .expect("emulator");
    let store = local_stack::scenario::run_real(
        &emulator.base_url(),
        emulator.api_key(),
        30,
        std::time::Duration::from_millis(10),
        Some(1),
    )
    .await
    .expect("real mode runs");
    let result = local_stack::compare::compare(&store, &emulator.truth(), true)
        .await
        .expect("compare");
    assert!(result.is_exact(), "{:?}", result.lines());
    assert_eq!(emulator.truth().grants.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_a_day_with_drops_an_outage_and_a_failed_destination_the_hybrid_repairs_every_loss_itself(
) {
    // A quarter of the day at its speed (a minute of traffic, 6 emulated hours: the outage and
    // the failed destination included), then the quiet tail; no final run. Faster, the
    // endpoint's answers under a loaded test machine outlast Nylas's retries.
    support::endpoint();
    let mut config = ScenarioConfig::new(ScenarioName::Day);
    config.traffic_seconds = 60;
    let report = run(config).await.expect("scenario runs");
    let hybrid = converged(&report);
    // Its destination went `failed` and the watch brought it back; nobody did for the others.
    assert_eq!(
        hybrid.destination_status.as_deref(),
        Some("active"),
        "{}",
        report.table()
    );
    let webhooks_only = &report.strategies[0];
    assert_eq!(webhooks_only.destination_status.as_deref(), Some("failed"));
    assert!(
        webhooks_only.missing + webhooks_only.stale + webhooks_only.resurrected > 0,
        "{}",
        report.table()
    );
    // Losses happened, and each was repaired by a write of the hybrid's own functions.
    assert!(hybrid.losses.signal > 0, "{}", report.table());
    assert_eq!(
        hybrid.losses.open,
        0,
        "{}\nslowest and open losses:\n{}",
        report.table(),
        hybrid.losses.slowest.join("\n")
    );
    assert!(hybrid.watch_calls > 0, "{}", report.table());
    // Bodies are written once: far fewer write units than whole items would cost.
    assert!(
        hybrid.write_units_per_grant_day < 0.5 * hybrid.one_item_write_units_per_grant_day,
        "{}",
        report.table()
    );
    assert!(hybrid.usd_per_grant_month.total() > 0.0);
}
