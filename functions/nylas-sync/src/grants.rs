//! The grants table: one item per grant with its status, cursors, lease and counters. Status
//! changes are monotonic in the notification time (`status_version`), so a replayed or late
//! `grant.expired` cannot undo a later re-authentication.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::store::{StoreError, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    Expired,
    Deleted,
    Invalid,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "expired" => Self::Expired,
            "deleted" => Self::Deleted,
            "invalid" => Self::Invalid,
            _ => return None,
        })
    }
}

/// The grants table's item that holds the webhook destination's last incident. It has no
/// `status`, so no scan for active grants ever returns it.
pub const DESTINATION_ITEM: &str = "#destination";

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub status: GrantStatus,
    pub status_version: Version,
    pub provider: Option<String>,
    /// Unix seconds of the last `grant.expired`.
    pub expired_at: Option<i64>,
    /// Reconcile cursor for messages (Unix s); `None` until the first backfill ran.
    pub messages_received_after: Option<i64>,
    /// Reconcile cursors for events, per calendar (Unix s).
    pub events_updated_after: HashMap<String, i64>,
    /// Unix s when the last reconcile started.
    pub last_reconcile_at: Option<i64>,
    /// The interval the last completed run set (see [`crate::cadence`]); `None`: the base.
    pub reconcile_interval_s: Option<i64>,
    /// Unix s from when the scheduler sends the next scheduled run (0: at the next tick).
    pub next_reconcile_at: Option<i64>,
    /// Evidence of loss asks the next run to sweep the recent window.
    pub sweep_recent: bool,
    pub last_reconcile_outcome: Option<String>,
    /// Objects reconciliation had to repair, in total and in the last run.
    pub recovered_total: i64,
    pub last_recovered: i64,
    /// Reconcile runs since the last drift sweep.
    pub runs_since_sweep: i64,
    /// Where the drift sweep's walk through older mail stands: messages received before this
    /// (Unix s) are swept next; `None` until the first sweep.
    pub sweep_cursor: Option<i64>,
    pub lease_owner: Option<String>,
    /// Unix ms until which the lease is held.
    pub lease_until: Option<i64>,
}

/// From when a re-authentication (`grant.updated` 25027 of version `version`) must be caught up,
/// if at all: from the expiry, when the change brought the grant back from expired or invalid;
/// and, when the change is refused as stale because this very notification was already applied
/// (its retry after the catch-up job failed to send), from the expiry the grant still records.
/// A duplicate delivery may thus send a second catch-up: harmless, and cheaper than losing one.
pub fn catch_up_after_reauth(
    change: &StatusChange,
    current: Option<&Grant>,
    version: Version,
) -> Option<i64> {
    match change {
        StatusChange::Applied { previous } => previous
            .as_deref()
            .filter(|p| matches!(p.status, GrantStatus::Expired | GrantStatus::Invalid))
            .map(|p| p.expired_at.unwrap_or(p.status_version / 1000)),
        StatusChange::Stale => current
            .filter(|g| g.status == GrantStatus::Active && g.status_version == version)
            .and_then(|g| g.expired_at),
    }
}

/// What a grant notification tells about the grant besides its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantFacts<'a> {
    pub provider: Option<&'a str>,
    /// Unix seconds the grant expired (where a catch-up after its re-authentication starts).
    pub expired_at: Option<i64>,
}

impl GrantFacts<'_> {
    fn attributes(&self) -> Vec<(&'static str, AttributeValue)> {
        let mut out = Vec::new();
        if let Some(p) = self.provider {
            out.push(("provider", AttributeValue::S(p.into())));
        }
        if let Some(t) = self.expired_at {
            out.push(("expired_at", AttributeValue::N(t.to_string())));
        }
        out
    }
}

/// What a status change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Applied; the grant's previous state (None if it was unknown).
    Applied { previous: Option<Box<Grant>> },
    /// A newer status is already stored.
    Stale,
}

#[derive(Clone)]
pub struct GrantStore {
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
}

fn dynamo_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError {
    StoreError::Dynamo(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

/// A conditional update's answer: `Some` when it was applied, `None` when its condition refused
/// it, an error otherwise.
fn unless_refused<R: std::fmt::Debug>(
    result: Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            R,
        >,
    >,
) -> Result<Option<aws_sdk_dynamodb::operation::update_item::UpdateItemOutput>, StoreError> {
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(dynamo_err(e)),
    }
}

fn num(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub fn grant_of(item: &HashMap<String, AttributeValue>) -> Option<Grant> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(Grant {
        grant_id: text("grant_id")?,
        status: GrantStatus::parse(&text("status")?)?,
        status_version: num(item, "status_version").unwrap_or(0),
        provider: text("provider"),
        expired_at: num(item, "expired_at"),
        messages_received_after: num(item, "messages_received_after"),
        events_updated_after: match item.get("events_updated_after") {
            Some(AttributeValue::M(m)) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                .collect(),
            _ => HashMap::new(),
        },
        last_reconcile_at: num(item, "last_reconcile_at"),
        reconcile_interval_s: num(item, "reconcile_interval_s"),
        next_reconcile_at: num(item, "next_reconcile_at"),
        sweep_recent: item
            .get("sweep_recent")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        last_reconcile_outcome: text("last_reconcile_outcome"),
        recovered_total: num(item, "recovered_total").unwrap_or(0),
        last_recovered: num(item, "last_recovered").unwrap_or(0),
        runs_since_sweep: num(item, "runs_since_sweep").unwrap_or(0),
        sweep_cursor: num(item, "sweep_cursor"),
        lease_owner: text("lease_owner"),
        lease_until: num(item, "lease_until"),
    })
}

impl GrantStore {
    pub async fn get(&self, grant_id: &str) -> Result<Option<Grant>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(out.item.as_ref().and_then(grant_of))
    }

    /// Evidence that webhooks for this grant were lost (a notification of `time` `loss_at`, Unix
    /// s, that Nylas had to deliver more than once): its next run is due now, at the base
    /// interval, and sweeps the recent window. Only an active grant is touched, and only if no
    /// run began after `loss_at` (that run listed what was lost) and none is already due for
    /// it. Answers whether it was changed: then the caller sends the run.
    pub async fn mark_due_after_loss(
        &self,
        grant_id: &str,
        loss_at: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .update_expression(
                "SET next_reconcile_at = :zero, sweep_recent = :yes REMOVE reconcile_interval_s",
            )
            .condition_expression(
                "#status = :active AND (attribute_not_exists(next_reconcile_at) OR next_reconcile_at > :zero) \
                 AND (attribute_not_exists(last_reconcile_at) OR last_reconcile_at < :loss)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":active",
                AttributeValue::S(GrantStatus::Active.as_str().into()),
            )
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":loss", AttributeValue::N(loss_at.to_string()))
            .send()
            .await;
        Ok(unless_refused(result)?.is_some())
    }

    /// The webhook destination's last incident, as [`crate::destination::DestinationWatch`]
    /// recorded it.
    pub async fn destination_incident(
        &self,
    ) -> Result<Option<crate::destination::Incident>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(DESTINATION_ITEM.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| i.get("incident"))
            .and_then(|v| v.as_s().ok())
            .and_then(|text| serde_json::from_str(text).ok()))
    }

    /// Records the webhook destination's incident (replacing the last one).
    pub async fn put_destination_incident(
        &self,
        incident: &crate::destination::Incident,
    ) -> Result<(), StoreError> {
        let text =
            serde_json::to_string(incident).map_err(|e| StoreError::Encoding(e.to_string()))?;
        // An update, not a put: the watch's claim on the same item stays.
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(DESTINATION_ITEM.into()))
            .update_expression("SET incident = :text")
            .expression_attribute_values(":text", AttributeValue::S(text))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }

    /// Claims the destination's incident handling for `owner` until `now_ms + for_ms`, unless
    /// another watch holds an unexpired claim (the reconcile tick's watch and the destination's
    /// own schedule can fire at the same minute). Answers whether it is `owner`'s.
    pub async fn claim_destination_watch(
        &self,
        owner: &str,
        now_ms: i64,
        for_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(DESTINATION_ITEM.into()))
            .update_expression("SET watch_owner = :owner, watch_until = :until")
            .condition_expression("attribute_not_exists(watch_until) OR watch_until < :now")
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .expression_attribute_values(
                ":until",
                AttributeValue::N(now_ms.saturating_add(for_ms).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .send()
            .await;
        Ok(unless_refused(result)?.is_some())
    }

    /// Gives the claim up, if it is still `owner`'s.
    pub async fn release_destination_watch(&self, owner: &str) -> Result<(), StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(DESTINATION_ITEM.into()))
            .update_expression("REMOVE watch_owner, watch_until")
            .condition_expression("watch_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .send()
            .await;
        unless_refused(result)?;
        Ok(())
    }

    /// Marks a grant Nylas no longer authorises as invalid, recording `since_s` as its expiry
    /// (where a catch-up after its re-authentication starts).
    pub async fn mark_invalid(
        &self,
        grant_id: &str,
        version: Version,
        since_s: i64,
    ) -> Result<StatusChange, StoreError> {
        let expired_at = [("expired_at", AttributeValue::N(since_s.to_string()))];
        self.set_status(grant_id, GrantStatus::Invalid, version, &expired_at)
            .await
    }

    /// [`GrantStore::set_status`] with what a notification tells about the grant.
    pub async fn set_status_with(
        &self,
        grant_id: &str,
        status: GrantStatus,
        version: Version,
        facts: &GrantFacts<'_>,
    ) -> Result<StatusChange, StoreError> {
        self.set_status(grant_id, status, version, &facts.attributes())
            .await
    }

    /// Sets the status if `version` is newer than the stored status, with the extra attributes
    /// given (`provider`, `expired_at`, ...). Returns the previous state.
    pub async fn set_status(
        &self,
        grant_id: &str,
        status: GrantStatus,
        version: Version,
        extra: &[(&str, AttributeValue)],
    ) -> Result<StatusChange, StoreError> {
        let mut update =
            String::from("SET #status = :status, status_version = :v, status_changed_at = :now");
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .condition_expression("attribute_not_exists(status_version) OR status_version < :v")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().into()))
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .expression_attribute_values(
                ":now",
                AttributeValue::N(crate::clock::now_ms().to_string()),
            )
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None);
        for (i, (name, value)) in extra.iter().enumerate() {
            update.push_str(&format!(", #x{i} = :x{i}"));
            req = req
                .expression_attribute_names(format!("#x{i}"), *name)
                .expression_attribute_values(format!(":x{i}"), value.clone());
        }
        match unless_refused(req.update_expression(update).send().await)? {
            Some(out) => Ok(StatusChange::Applied {
                previous: out.attributes.as_ref().and_then(grant_of).map(Box::new),
            }),
            None => Ok(StatusChange::Stale),
        }
    }
}

/// How a reconcile run ended, recorded on the grant when the lease is released.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub started_at: i64,
    pub outcome: String,
    pub recovered: i64,
    pub swept: bool,
    /// New message cursor (only moves forward), if the run covered the messages.
    pub messages_cursor: Option<i64>,
    /// New event cursors per calendar, if the run covered them.
    pub events_cursors: HashMap<String, i64>,
    /// A completed run's next interval: the next scheduled run is due `started_at` + this.
    pub next_interval_s: Option<i64>,
    /// What the run adds to `runs_since_sweep` (base intervals it stood for).
    pub sweep_credit: i64,
    /// The recent window was swept (a full sweep includes it): the evidence's request is met.
    pub swept_recent: bool,
}

impl GrantStore {
    /// Takes the grant's lease if nobody holds it (`lease_until < now`) and the grant is
    /// active. Returns the grant, or `None` when the lease is held or the grant is not active.
    pub async fn acquire_lease(
        &self,
        grant_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Grant>, StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .update_expression("SET lease_owner = :owner, lease_until = :until")
            .condition_expression(
                "#status = :active AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .expression_attribute_values(
                ":until",
                AttributeValue::N((now_ms + lease_ms).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(
                ":active",
                AttributeValue::S(GrantStatus::Active.as_str().into()),
            )
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        Ok(unless_refused(result)?.and_then(|out| out.attributes.as_ref().and_then(grant_of)))
    }

    /// Moves the sweep's walk through older mail to `cursor`, while `owner` holds the lease (a
    /// sweep killed at its deadline keeps every slice it finished).
    /// `None` ends the walk: the next sweep starts again from the recent window.
    pub async fn set_sweep_cursor(
        &self,
        grant_id: &str,
        owner: &str,
        cursor: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()));
        req = match cursor {
            Some(c) => req
                .update_expression("SET sweep_cursor = :c")
                .expression_attribute_values(":c", AttributeValue::N(c.to_string())),
            None => req.update_expression("REMOVE sweep_cursor"),
        };
        let result = req.send().await;
        Ok(unless_refused(result)?.is_some())
    }

    /// Records a run and releases the lease, conditional on still holding it. Cursors only move
    /// forward. Returns false if the lease had been lost (nothing is written then).
    pub async fn finish_run(
        &self,
        grant_id: &str,
        owner: &str,
        run: &RunRecord,
    ) -> Result<bool, StoreError> {
        let mut update = vec![
            "lease_until = :zero".to_string(),
            "last_reconcile_at = :started".into(),
            "last_reconcile_outcome = :outcome".into(),
            "last_recovered = :recovered".into(),
            "recovered_total = if_not_exists(recovered_total, :zero) + :recovered".into(),
        ];
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            // A grant deleted during the run records nothing (its purge removes what it wrote).
            .condition_expression("lease_owner = :owner AND #status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":active",
                AttributeValue::S(GrantStatus::Active.as_str().into()),
            )
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":started", AttributeValue::N(run.started_at.to_string()))
            .expression_attribute_values(":outcome", AttributeValue::S(run.outcome.clone()))
            .expression_attribute_values(
                ":recovered",
                AttributeValue::N(run.recovered.to_string()),
            );
        if run.swept {
            update.push("runs_since_sweep = :zero".into());
        } else {
            update
                .push("runs_since_sweep = if_not_exists(runs_since_sweep, :zero) + :credit".into());
            req = req.expression_attribute_values(
                ":credit",
                AttributeValue::N(run.sweep_credit.max(1).to_string()),
            );
        }
        if let Some(interval) = run.next_interval_s {
            update.push("reconcile_interval_s = :interval".into());
            update.push("next_reconcile_at = :next".into());
            req = req
                .expression_attribute_values(":interval", AttributeValue::N(interval.to_string()))
                .expression_attribute_values(
                    ":next",
                    AttributeValue::N(run.started_at.saturating_add(interval).to_string()),
                );
        }
        let current = self.get(grant_id).await?;
        if let Some(cursor) = run.messages_cursor {
            let old = current
                .as_ref()
                .and_then(|g| g.messages_received_after)
                .unwrap_or(i64::MIN);
            if cursor > old {
                update.push("messages_received_after = :mcursor".into());
                req = req
                    .expression_attribute_values(":mcursor", AttributeValue::N(cursor.to_string()));
            }
        }
        if !run.events_cursors.is_empty() {
            // We hold the lease: nobody else writes the cursors, so the whole map can be replaced.
            let mut map = current.map(|g| g.events_updated_after).unwrap_or_default();
            for (cal, c) in &run.events_cursors {
                let entry = map.entry(cal.clone()).or_insert(*c);
                *entry = (*entry).max(*c);
            }
            update.push("events_updated_after = :ecursors".into());
            req = req.expression_attribute_values(
                ":ecursors",
                AttributeValue::M(
                    map.into_iter()
                        .map(|(k, v)| (k, AttributeValue::N(v.to_string())))
                        .collect(),
                ),
            );
        }
        let remove = if run.swept_recent {
            " REMOVE sweep_recent"
        } else {
            ""
        };
        let result = req
            .update_expression(format!("SET {}{remove}", update.join(", ")))
            .send()
            .await;
        Ok(unless_refused(result)?.is_some())
    }

    /// Releases the lease without recording a run (a failed run: cursors stay where they were).
    pub async fn release_lease(
        &self,
        grant_id: &str,
        owner: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .update_expression("SET lease_until = :zero, last_reconcile_outcome = :outcome")
            .condition_expression("lease_owner = :owner AND #status <> :deleted")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":deleted",
                AttributeValue::S(GrantStatus::Deleted.as_str().into()),
            )
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":outcome", AttributeValue::S(outcome.into()))
            .send()
            .await;
        // Refused: the lease was lost to another run, which records its own outcome, or the
        // grant was deleted meanwhile (its record is being purged: a run over it records nothing).
        unless_refused(result).map(|_| ())
    }

    /// One page of a scan segment for the active grants due a scheduled run: those whose
    /// next run is due by `due_next` (Unix s), and those that never recorded one and were last
    /// reconciled before `due_before` (or never).
    pub async fn scan_due(
        &self,
        segment: i32,
        total_segments: i32,
        due_before: i64,
        due_next: i64,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<String>, Option<HashMap<String, AttributeValue>>), StoreError> {
        let out = self
            .ddb
            .scan()
            .table_name(&self.table)
            .segment(segment)
            .total_segments(total_segments)
            .projection_expression("grant_id")
            .filter_expression(
                "#status = :active AND (next_reconcile_at <= :next \
                 OR (attribute_not_exists(next_reconcile_at) \
                     AND (attribute_not_exists(last_reconcile_at) OR last_reconcile_at < :due)))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":active",
                AttributeValue::S(GrantStatus::Active.as_str().into()),
            )
            .expression_attribute_values(":due", AttributeValue::N(due_before.to_string()))
            .expression_attribute_values(":next", AttributeValue::N(due_next.to_string()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(dynamo_err)?;
        let ids = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.get("grant_id").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        Ok((ids, out.last_evaluated_key.filter(|k| !k.is_empty())))
    }
}

#[cfg(test)]
mod catch_up_tests {
    use super::*;

    fn grant(status: GrantStatus, status_version: Version, expired_at: Option<i64>) -> Grant {
        Grant {
            grant_id: "g".into(),
            status,
            status_version,
            provider: None,
            expired_at,
            messages_received_after: None,
            events_updated_after: HashMap::new(),
            last_reconcile_at: None,
            sweep_recent: false,
            reconcile_interval_s: None,
            next_reconcile_at: None,
            last_reconcile_outcome: None,
            recovered_total: 0,
            last_recovered: 0,
            runs_since_sweep: 0,
            sweep_cursor: None,
            lease_owner: None,
            lease_until: None,
        }
    }

    #[test]
    fn a_reauthentication_after_an_expiry_catches_up_from_the_expiry() {
        let previous = grant(GrantStatus::Expired, 5_000, Some(5));
        let change = StatusChange::Applied {
            previous: Some(Box::new(previous)),
        };
        assert_eq!(catch_up_after_reauth(&change, None, 9_000), Some(5));
        let invalid_without_time = StatusChange::Applied {
            previous: Some(Box::new(grant(GrantStatus::Invalid, 7_000, None))),
        };
        assert_eq!(
            catch_up_after_reauth(&invalid_without_time, None, 9_000),
            Some(7)
        );
    }

    #[test]
    fn an_active_or_unknown_grant_needs_no_catch_up() {
        let active = StatusChange::Applied {
            previous: Some(Box::new(grant(GrantStatus::Active, 5_000, Some(1)))),
        };
        assert_eq!(catch_up_after_reauth(&active, None, 9_000), None);
        let unknown = StatusChange::Applied { previous: None };
        assert_eq!(catch_up_after_reauth(&unknown, None, 9_000), None);
    }

    #[test]
    fn the_retry_of_an_applied_reauthentication_still_sends_its_catch_up() {
        // The first attempt applied the change, then failed to send the job.
        let now = grant(GrantStatus::Active, 9_000, Some(5));
        assert_eq!(
            catch_up_after_reauth(&StatusChange::Stale, Some(&now), 9_000),
            Some(5)
        );
        // A newer change was applied since: not this notification's business.
        let newer = grant(GrantStatus::Active, 12_000, Some(5));
        assert_eq!(
            catch_up_after_reauth(&StatusChange::Stale, Some(&newer), 9_000),
            None
        );
        let expired_again = grant(GrantStatus::Expired, 9_000, Some(5));
        assert_eq!(
            catch_up_after_reauth(&StatusChange::Stale, Some(&expired_again), 9_000),
            None
        );
    }
}
