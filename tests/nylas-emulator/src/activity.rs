//! The background activity: each grant is a Poisson process of changes at its own rate (per
//! emulated minute), plus an application-wide process of grant lifecycle changes. What changes is
//! drawn from seeded generators, so one seed always yields the same sequence of changes per grant.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{lock, Shared};

/// Upper bound on changes applied in one pass, so a huge rate cannot starve the server.
const MAX_CHANGES_PER_PASS: usize = 5_000;
/// The loop looks at the clock at least this often (real time), to pick up rate changes.
const MAX_IDLE_POLL: Duration = Duration::from_millis(50);

pub(crate) async fn run(shared: std::sync::Arc<Shared>) {
    loop {
        if shared.paused.load(Ordering::SeqCst) {
            tokio::time::sleep(MAX_IDLE_POLL).await;
            continue;
        }
        let next_due = apply_due(&shared);
        let wait = shared.clock.real(next_due - shared.clock.now_f64());
        tokio::time::sleep(wait.clamp(Duration::from_millis(1), MAX_IDLE_POLL)).await;
    }
}

/// Applies every change due by now, in emulated-time order. Returns when the next one is due.
fn apply_due(shared: &Shared) -> f64 {
    let now_f = shared.clock.now_f64();
    for _ in 0..MAX_CHANGES_PER_PASS {
        if shared.paused.load(Ordering::SeqCst) {
            break;
        }
        let grant_due = {
            let model = lock(&shared.model);
            model
                .grants
                .values()
                .filter(|g| g.next_activity_at <= now_f)
                .min_by(|a, b| a.next_activity_at.total_cmp(&b.next_activity_at))
                .map(|g| (g.id.clone(), g.next_activity_at))
        };
        let lifecycle_due = {
            let t = *lock(&shared.next_grant_change_at);
            (t <= now_f).then_some(t)
        };
        match (grant_due, lifecycle_due) {
            (None, None) => break,
            (Some((_, tg)), Some(tl)) if tl < tg => lifecycle_change(shared, tl),
            (None, Some(tl)) => lifecycle_change(shared, tl),
            (Some((id, tg)), _) => {
                shared.mutate(|model, now, out| {
                    if shared.paused.load(Ordering::SeqCst) {
                        return;
                    }
                    model.random_change(&id, now, out);
                    if let Some(g) = model.grants.get_mut(&id) {
                        g.next_activity_at = next_after(tg, g.events_per_minute / 60.0, &mut g.rng);
                    }
                });
            }
        }
    }
    let model = lock(&shared.model);
    let next_grant = model
        .grants
        .values()
        .map(|g| g.next_activity_at)
        .fold(f64::INFINITY, f64::min);
    next_grant.min(*lock(&shared.next_grant_change_at))
}

fn lifecycle_change(shared: &Shared, due: f64) {
    let reauth = shared.mutate(|model, now, out| {
        if shared.paused.load(Ordering::SeqCst) {
            return Default::default();
        }
        model.random_grant_change(now, out)
    });
    shared.record_reauth(reauth);
    let rate = shared.config.grant_changes_per_hour / 3600.0;
    let mut rng = lock(&shared.fault_rng);
    *lock(&shared.next_grant_change_at) = next_after(due, rate, &mut rng);
}

/// The next arrival of a Poisson process with `rate` per emulated second.
fn next_after(t: f64, rate: f64, rng: &mut crate::rng::Rng) -> f64 {
    if rate > 0.0 && rate.is_finite() {
        t + rng.exp(1.0 / rate)
    } else {
        f64::INFINITY
    }
}

pub(crate) fn schedule_grant_changes(shared: &Shared) {
    let now = shared.clock.now_f64();
    let rate = shared.config.grant_changes_per_hour / 3600.0;
    let mut rng = lock(&shared.fault_rng);
    *lock(&shared.next_grant_change_at) = next_after(now, rate, &mut rng);
}

/// After a pause, start every process afresh from now instead of catching up on the backlog.
pub(crate) fn reschedule_from_now(shared: &Shared) {
    let now = shared.clock.now_f64();
    {
        let mut model = lock(&shared.model);
        for g in model.grants.values_mut() {
            g.next_activity_at = next_after(now, g.events_per_minute / 60.0, &mut g.rng);
        }
    }
    schedule_grant_changes(shared);
}

pub(crate) fn set_rate(shared: &Shared, grant: &str, per_minute: f64) {
    let now = shared.clock.now_f64();
    let per_minute = if per_minute.is_finite() {
        per_minute.max(0.0)
    } else {
        0.0
    };
    let mut model = lock(&shared.model);
    if let Some(g) = model.grants.get_mut(grant) {
        g.events_per_minute = per_minute;
        g.next_activity_at = next_after(now, per_minute / 60.0, &mut g.rng);
    }
}
