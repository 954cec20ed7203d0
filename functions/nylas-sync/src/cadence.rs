//! How often a grant is reconciled. The scheduled poll exists for what webhooks lose; a grant
//! whose runs keep finding nothing to repair is polled less and less often (the interval doubles
//! after each such run, up to `RECONCILE_MAX_INTERVAL_SECONDS`). Evidence of loss shortens it:
//! - a **signal** that this grant's webhooks were lost (a notification Nylas had to deliver more
//!   than once, so others may have failed for good) brings `RECONCILE_INTERVAL_SECONDS` back at
//!   once. A destination incident is the application's, not the grant's: its catch-up sweeps
//!   every grant, and the destination watch (every few minutes) sees the next one; the catch-up's
//!   own findings set the grant's interval, like any run's;
//! - a run that had to **repair** something halves it: a lone lost notification in hours is a
//!   leak, not an outage, so the interval settles where about every other run finds something,
//!   and a silent loss lasts at most the interval.
//!
//! The drift sweep keeps its cycle in time, whatever the interval: a run counts for the base
//! intervals it covered.

use crate::config::{ConfigError, Env};

/// The base interval when `RECONCILE_INTERVAL_SECONDS` is unset (the template's default).
pub const DEFAULT_INTERVAL_S: i64 = 1800;
/// The longest interval when `RECONCILE_MAX_INTERVAL_SECONDS` is unset: four hours.
pub const DEFAULT_MAX_INTERVAL_S: i64 = 4 * 3600;

/// What a run found about lost webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Nothing to repair.
    None,
    /// It had to create or repair objects the webhooks should have brought.
    Repairs,
    /// It was sent on a signal that this grant's webhooks were lost (a redelivery).
    Signal,
}

impl Evidence {
    pub fn of_run(after_loss: bool, recovered: i64) -> Self {
        match (after_loss, recovered > 0) {
            (true, _) => Self::Signal,
            (false, true) => Self::Repairs,
            (false, false) => Self::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// The scheduler's interval: where every grant starts and comes back to.
    pub base_s: i64,
    /// The longest a grant without evidence of loss waits between runs (at least `base_s`).
    pub max_s: i64,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            base_s: DEFAULT_INTERVAL_S,
            max_s: DEFAULT_MAX_INTERVAL_S,
        }
    }
}

impl Cadence {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let base_s = env
            .number_or("RECONCILE_INTERVAL_SECONDS", DEFAULT_INTERVAL_S as u64)?
            .max(1) as i64;
        let max_s = env
            .number_or(
                "RECONCILE_MAX_INTERVAL_SECONDS",
                DEFAULT_MAX_INTERVAL_S.max(base_s) as u64,
            )?
            .max(base_s as u64) as i64;
        Ok(Self { base_s, max_s })
    }

    /// The interval until a grant's next scheduled run, after a run whose own interval was
    /// `previous` (`None`: never set, or reset by a signal) and which found `evidence`.
    pub fn next_interval(&self, previous: Option<i64>, evidence: Evidence) -> i64 {
        match (previous, evidence) {
            (None, _) | (_, Evidence::Signal) => self.base_s,
            (Some(p), Evidence::Repairs) => (p / 2).clamp(self.base_s, self.max_s),
            (Some(p), Evidence::None) => p.max(self.base_s).saturating_mul(2).min(self.max_s),
        }
    }

    /// How many base intervals a run that started `elapsed_s` after the grant's last one stands
    /// for, toward the drift sweep's count of runs (so the sweep stays about daily while the
    /// poll backs off). At least one.
    pub fn sweep_credit(&self, elapsed_s: Option<i64>) -> i64 {
        elapsed_s.map_or(1, |e| (e / self.base_s).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: Cadence = Cadence {
        base_s: 1800,
        max_s: 14_400,
    };

    #[test]
    fn quiet_runs_double_the_interval_up_to_the_max() {
        let mut interval = None;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let next = C.next_interval(interval, Evidence::None);
            seen.push(next);
            interval = Some(next);
        }
        assert_eq!(seen, [1800, 3600, 7200, 14_400, 14_400, 14_400]);
    }

    #[test]
    fn a_signal_brings_the_base_interval_back_and_a_repair_halves_it() {
        assert_eq!(C.next_interval(Some(14_400), Evidence::Signal), 1800);
        assert_eq!(C.next_interval(None, Evidence::Repairs), 1800);
        assert_eq!(C.next_interval(Some(14_400), Evidence::Repairs), 7200);
        assert_eq!(C.next_interval(Some(3600), Evidence::Repairs), 1800);
        assert_eq!(C.next_interval(Some(1800), Evidence::Repairs), 1800);
    }

    #[test]
    fn a_run_sent_on_a_redelivery_is_a_signal_and_a_run_that_recovered_objects_a_repair() {
        assert_eq!(Evidence::of_run(true, 0), Evidence::Signal);
        assert_eq!(Evidence::of_run(false, 3), Evidence::Repairs);
        assert_eq!(Evidence::of_run(false, 0), Evidence::None);
    }

    #[test]
    fn the_sweep_count_follows_time_not_runs() {
        assert_eq!(C.sweep_credit(None), 1);
        assert_eq!(C.sweep_credit(Some(1800)), 1);
        assert_eq!(C.sweep_credit(Some(14_400)), 8);
        assert_eq!(
            C.sweep_credit(Some(100)),
            1,
            "back-to-back runs count one each"
        );
        assert_eq!(C.sweep_credit(Some(-5)), 1);
    }

    proptest! {
        #[test]
        fn the_interval_stays_between_base_and_max(
            base in 1i64..100_000,
            extra in 0i64..1_000_000,
            previous in proptest::option::of(any::<i64>()),
            evidence in prop_oneof![
                Just(Evidence::None), Just(Evidence::Repairs), Just(Evidence::Signal)
            ],
        ) {
            let c = Cadence { base_s: base, max_s: base + extra };
            let next = c.next_interval(previous, evidence);
            prop_assert!(next >= c.base_s && next <= c.max_s);
            if evidence == Evidence::Signal {
                prop_assert_eq!(next, c.base_s);
            }
            if let (Some(p), Evidence::Repairs) = (previous, evidence) {
                prop_assert!(next <= p.max(c.base_s), "a repair never lengthens it");
            }
        }
    }
}
