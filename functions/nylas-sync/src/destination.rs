//! The webhook destination's health, watched on every scheduler tick: the one loss that is
//! otherwise silent. Nylas marks a destination `failing` after 95% non-200 answers over 15
//! minutes (it keeps sending, and notifications that fail three attempts are gone), then
//! `failed` after 72 hours of that, and from then on sends nothing, for good.
//!
//! [`assess`] decides, from what `GET /v3/webhooks/{id}` says and the incident the watch
//! recorded last (the grants table's item [`crate::grants::DESTINATION_ITEM`]):
//! - `failing`: raise the alarm (metric `DestinationUnhealthy`), remember from when
//!   notifications may have been lost;
//! - `failed`: reactivate it (`PUT status=active`) and catch every grant up from then;
//! - `active` again after an incident the watch saw: catch every grant up from then (what failed
//!   three times while it was failing is gone);
//! - `pause`: left alone, reported: a pause is the operator's (`PUT status=pause`).
//!
//! The catch-up is a [`crate::jobs::JobKind::CatchUp`] job per active grant (its listing from
//! that time, and a drift sweep), sent with the scheduler's fan-out.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Env, Secrets};
use crate::grants::GrantStore;
use crate::nylas::{NylasClient, NylasError};
use crate::scheduler::{ScheduleError, Scheduler};
use crate::store::StoreError;

/// How long Nylas keeps a destination `failing` before it marks it `failed`.
pub const FAILING_BEFORE_FAILED_S: i64 = 72 * 3600;
/// The window over which Nylas measures failures before it marks a destination `failing`.
pub const FAILING_WINDOW_S: i64 = 15 * 60;

/// What the watch remembers of the destination's last incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The status that opened it, or the worst seen since (`failing`, then `failed`).
    pub status: String,
    /// From when notifications may have been lost (Unix s): the earliest evidence.
    pub lost_from: i64,
    /// When the watch first saw it.
    pub seen_at: i64,
    /// When every grant's catch-up was sent (the incident is closed), if it was.
    #[serde(default)]
    pub repaired_at: Option<i64>,
    /// Whether the watch reactivated the destination.
    #[serde(default)]
    pub reactivated: bool,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.repaired_at.is_none()
    }
}

/// What the watch does about what it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Healthy, nothing open.
    Nothing,
    /// `failing`: the alarm, and the incident kept open.
    Alarm,
    /// `failed`: `PUT status=active`, then a catch-up of every grant from `from`.
    Reactivate { from: i64 },
    /// Active again after an incident: a catch-up of every grant from `from`.
    CatchUp { from: i64 },
    /// `pause`: the operator's; reported, left alone.
    Paused,
    /// A status this code does not know: reported, left alone.
    Unknown,
}

/// Decides what to do about a destination whose `status` changed at `status_updated_at`, given
/// the incident recorded last, at `now` (Unix s). Returns the action and the incident to record
/// (`None`: leave the record as it is).
pub fn assess(
    status: &str,
    status_updated_at: Option<i64>,
    last: Option<&Incident>,
    now: i64,
) -> (Action, Option<Incident>) {
    let open = last.filter(|i| i.is_open());
    let changed = status_updated_at.unwrap_or(now).min(now);
    let opened = |status: &str, lost_from: i64| {
        let mut incident = open.cloned().unwrap_or(Incident {
            status: status.to_string(),
            lost_from,
            seen_at: now,
            repaired_at: None,
            reactivated: false,
        });
        incident.status = status.to_string();
        incident.lost_from = incident.lost_from.min(lost_from);
        incident
    };
    match status {
        "active" => match open {
            Some(i) => (Action::CatchUp { from: i.lost_from }, None),
            None => (Action::Nothing, None),
        },
        // Failing began when the failures that tipped it began, up to 15 minutes before.
        "failing" => (
            Action::Alarm,
            Some(opened("failing", changed - FAILING_WINDOW_S)),
        ),
        // Failed 72 hours after it began failing: unless the watch saw that, the loss began then.
        "failed" => {
            let incident = opened(
                "failed",
                changed - FAILING_BEFORE_FAILED_S - FAILING_WINDOW_S,
            );
            let from = incident.lost_from;
            (Action::Reactivate { from }, Some(incident))
        }
        "pause" => (Action::Paused, None),
        _ => (Action::Unknown, None),
    }
}

/// The destination's state after one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub status: String,
    pub action: Action,
    /// Catch-up jobs sent (one per active grant).
    pub catch_up_jobs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("Nylas: {0}")]
    Nylas(#[from] NylasError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("fan-out: {0}")]
    Schedule(#[from] ScheduleError),
}

/// Metric names the watch emits (the scheduler's function).
pub mod metric {
    /// 1 when the destination is not `active` (`failing`, `failed`, `pause`), else 0.
    pub const DESTINATION_UNHEALTHY: &str = "DestinationUnhealthy";
    /// Times the watch reactivated a `failed` destination.
    pub const DESTINATION_REACTIVATED: &str = "DestinationReactivated";
    /// Catch-up jobs sent after an incident (one per active grant).
    pub const CATCH_UP_JOBS_SENT: &str = "CatchUpJobsSent";
    pub const ALL: &[&str] = &[
        DESTINATION_UNHEALTHY,
        DESTINATION_REACTIVATED,
        CATCH_UP_JOBS_SENT,
    ];
}

/// How long a watch's claim on the incident lasts if it never gives it up (a crashed tick):
/// the next tick after it finishes the work.
pub const WATCH_CLAIM_MS: i64 = 600_000;

/// Reads the destination and acts on it (see the module's documentation).
pub struct DestinationWatch {
    pub nylas: NylasClient,
    pub webhook_id: String,
    pub grants: GrantStore,
    pub clock: Arc<dyn Clock>,
}

impl DestinationWatch {
    /// The watch, if a destination is known: `webhook_id` in the secret (written by
    /// `nylas-sync register-webhook`) or `NYLAS_WEBHOOK_ID`; the API key as the other functions
    /// read it. `None` without a destination id: nothing to watch.
    pub async fn from_env(
        env: &impl Env,
        sdk: &aws_config::SdkConfig,
        grants: GrantStore,
    ) -> Result<Option<Self>, ConfigError> {
        let secrets = Secrets::load(env, sdk).await?;
        let Some(webhook_id) = secrets.webhook_id.clone().filter(|w| !w.is_empty()) else {
            return Ok(None);
        };
        let nylas = NylasClient::from_config(env, &secrets)?;
        Ok(Some(Self {
            nylas,
            webhook_id,
            grants,
            clock: Arc::new(SystemClock),
        }))
    }

    /// One check: read the destination, decide, act, record; prints its metrics.
    pub async fn check(&self, scheduler: &Scheduler) -> Result<Check, WatchError> {
        let result = self.check_quietly(scheduler).await;
        let mut emf = crate::metrics::Emf::new("scheduler");
        if let Ok(c) = &result {
            emf.count(
                metric::DESTINATION_UNHEALTHY,
                u64::from(c.status != "active"),
            )
            .count(
                metric::DESTINATION_REACTIVATED,
                u64::from(matches!(c.action, Action::Reactivate { .. })),
            )
            .count(metric::CATCH_UP_JOBS_SENT, c.catch_up_jobs);
        }
        emf.flush();
        result
    }

    async fn check_quietly(&self, scheduler: &Scheduler) -> Result<Check, WatchError> {
        let (status, changed) = self.status().await?;
        let last = self.grants.destination_incident().await?;
        let (action, _) = assess(&status, changed, last.as_ref(), self.clock.now_ms() / 1000);
        if !matches!(action, Action::Reactivate { .. } | Action::CatchUp { .. }) {
            return self.act(scheduler, status, changed, last).await;
        }
        // Acting: one watch at a time (two schedules can fire together), and on what is true
        // once the claim is held: another watch may just have reactivated and caught up.
        let owner = format!("watch-{}", crate::clock::now_ms());
        let now_ms = self.clock.now_ms();
        if !self
            .grants
            .claim_destination_watch(&owner, now_ms, WATCH_CLAIM_MS)
            .await?
        {
            tracing::info!(webhook_id = %self.webhook_id, "another watch is handling the destination");
            return Ok(Check {
                status,
                action: Action::Nothing,
                catch_up_jobs: 0,
            });
        }
        let result = async {
            let (status, changed) = self.status().await?;
            let last = self.grants.destination_incident().await?;
            self.act(scheduler, status, changed, last).await
        }
        .await;
        self.grants.release_destination_watch(&owner).await?;
        result
    }

    /// The destination's status at Nylas and when it last changed.
    async fn status(&self) -> Result<(String, Option<i64>), WatchError> {
        let webhook = self.nylas.get_webhook(&self.webhook_id).await?;
        let status = webhook
            .get("status")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let changed = webhook.get("status_updated_at").and_then(|v| v.as_i64());
        Ok((status, changed))
    }

    /// Assesses and does what the destination's state asks.
    async fn act(
        &self,
        scheduler: &Scheduler,
        status: String,
        changed: Option<i64>,
        last: Option<Incident>,
    ) -> Result<Check, WatchError> {
        let now = self.clock.now_ms() / 1000;
        let (action, record) = assess(&status, changed, last.as_ref(), now);
        if let Some(incident) = &record {
            // Recorded before acting: a catch-up that fails half-way is sent again next tick.
            self.grants.put_destination_incident(incident).await?;
        }
        let mut check = Check {
            status: status.clone(),
            action: action.clone(),
            catch_up_jobs: 0,
        };
        let from = match action {
            Action::Reactivate { from } => {
                self.nylas
                    .set_webhook_status(&self.webhook_id, "active")
                    .await?;
                tracing::warn!(webhook_id = %self.webhook_id, lost_from = from, "destination was failed: reactivated; catching every grant up");
                check.status = "active".into();
                from
            }
            Action::CatchUp { from } => {
                tracing::warn!(webhook_id = %self.webhook_id, lost_from = from, "destination active again after an incident: catching every grant up");
                from
            }
            Action::Alarm => {
                tracing::error!(webhook_id = %self.webhook_id, "destination is failing at Nylas: notifications are being lost");
                return Ok(check);
            }
            Action::Paused | Action::Unknown => {
                tracing::warn!(webhook_id = %self.webhook_id, status = %status, "destination is not active; left as it is");
                return Ok(check);
            }
            Action::Nothing => return Ok(check),
        };
        check.catch_up_jobs = scheduler.catch_up_all(from).await?.grants;
        let mut closed = record.or(last).unwrap_or(Incident {
            status: status.clone(),
            lost_from: from,
            seen_at: now,
            repaired_at: None,
            reactivated: false,
        });
        closed.repaired_at = Some(now);
        closed.reactivated |= matches!(action, Action::Reactivate { .. });
        self.grants.put_destination_incident(&closed).await?;
        Ok(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    fn open(status: &str, lost_from: i64) -> Incident {
        Incident {
            status: status.into(),
            lost_from,
            seen_at: lost_from,
            repaired_at: None,
            reactivated: false,
        }
    }

    #[test]
    fn an_active_destination_with_nothing_open_needs_nothing() {
        assert_eq!(
            assess("active", Some(NOW - 10), None, NOW),
            (Action::Nothing, None)
        );
        let closed = Incident {
            repaired_at: Some(NOW - 5),
            ..open("failed", NOW - 100)
        };
        assert_eq!(
            assess("active", Some(NOW - 10), Some(&closed), NOW),
            (Action::Nothing, None)
        );
    }

    #[test]
    fn failing_raises_the_alarm_and_dates_the_loss_from_the_failures_that_tipped_it() {
        let (action, record) = assess("failing", Some(NOW - 60), None, NOW);
        assert_eq!(action, Action::Alarm);
        let record = record.expect("an incident");
        assert_eq!(record.lost_from, NOW - 60 - FAILING_WINDOW_S);
        assert!(record.is_open());
        // Seen again later: the incident keeps its start.
        let (_, again) = assess("failing", Some(NOW - 60), Some(&record), NOW + 1800);
        assert_eq!(again.expect("kept").lost_from, record.lost_from);
    }

    #[test]
    fn failed_is_reactivated_and_caught_up_from_when_it_began_failing() {
        // Unseen before: 72 hours and the failing window before it was marked failed.
        let (action, record) = assess("failed", Some(NOW - 600), None, NOW);
        let from = NOW - 600 - FAILING_BEFORE_FAILED_S - FAILING_WINDOW_S;
        assert_eq!(action, Action::Reactivate { from });
        assert_eq!(record.expect("recorded").lost_from, from);
        // Seen failing earlier than that: from then.
        let seen = open("failing", from - 3600);
        let (action, _) = assess("failed", Some(NOW - 600), Some(&seen), NOW);
        assert_eq!(action, Action::Reactivate { from: from - 3600 });
    }

    #[test]
    fn active_again_after_an_open_incident_catches_up_from_its_start() {
        let seen = open("failing", NOW - 7200);
        assert_eq!(
            assess("active", Some(NOW - 60), Some(&seen), NOW),
            (Action::CatchUp { from: NOW - 7200 }, None)
        );
    }

    #[test]
    fn a_pause_and_unknown_statuses_are_left_alone() {
        assert_eq!(
            assess("pause", Some(NOW), None, NOW),
            (Action::Paused, None)
        );
        assert_eq!(assess("paused?", None, None, NOW), (Action::Unknown, None));
    }

    proptest! {
        /// A catch-up never starts after the loss could have begun, and never in the future.
        #[test]
        fn catch_ups_start_no_later_than_the_status_change(
            status in prop::sample::select(vec!["active", "failing", "failed", "pause", "x"]),
            changed in proptest::option::of(NOW - 1_000_000..NOW + 1_000),
            last_from in proptest::option::of(NOW - 2_000_000..NOW),
        ) {
            let last = last_from.map(|f| open("failing", f));
            let (action, _) = assess(status, changed, last.as_ref(), NOW);
            match action {
                Action::Reactivate { from } => {
                    prop_assert!(from <= changed.unwrap_or(NOW).min(NOW));
                    if let Some(f) = last_from {
                        prop_assert!(from <= f);
                    }
                }
                Action::CatchUp { from } => prop_assert_eq!(Some(from), last_from),
                _ => {}
            }
        }
    }
}
