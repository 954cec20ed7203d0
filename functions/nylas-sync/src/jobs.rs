//! Reconcile jobs: one message per grant on the reconcile queue, sent by the scheduler (every
//! interval), by the consumer (backfill after `grant.created`, catch-up after a re-authentication)
//! and by the operator CLI.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// The scheduled incremental run from the stored cursors.
    Incremental,
    /// First sync of a new grant, from `since`.
    Backfill,
    /// After a re-authentication: everything since the grant expired (Nylas replays nothing
    /// after 72 hours).
    CatchUp,
    /// Removes what is left of a deleted grant (items, tombstones, bodies and objects in the
    /// bucket), a page at a time, continued by a new job near the deadline. Sent when the grant
    /// is deleted and again once every write that was in flight then has landed.
    Purge,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileJob {
    pub grant_id: String,
    pub kind: JobKind,
    /// Unix seconds to list from, for backfill and catch-up; the cursor otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// A run that ran out of time continues the message listing from here...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    /// ...and, once it is done, advances the cursor to this first run's start (Unix s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_start: Option<i64>,
    /// Run the drift sweep whatever the run count (operator request, end of a test scenario).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_sweep: bool,
    /// Unix seconds when the scheduler sent it (scheduled runs only): see [`superseded`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<i64>,
    /// Sent on evidence of loss (a redelivered notification): the run sweeps the recent window,
    /// and waits for a lease held by a run that began before the loss instead of being dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_loss: bool,
}

/// Whether a run that began after `job` was scheduled (`last_run_started`, Unix s) already did
/// its work. When the reconcile queue falls behind, the scheduler's next tick sends another job
/// for every grant not yet reconciled: without this, each duplicate would list the grant again,
/// doubling the calls to Nylas just when the system is behind. Only a plain scheduled run is
/// ever superseded: continuations, backfills, catch-ups, purges and forced sweeps carry work no
/// other run redoes. Dropping one wrongly costs only a delay, never a change: runs list from
/// the stored cursor.
pub fn superseded(job: &ReconcileJob, last_run_started: Option<i64>) -> bool {
    job.kind == JobKind::Incremental
        && job.page_token.is_none()
        && !job.force_sweep
        && matches!((job.scheduled_at, last_run_started), (Some(at), Some(started)) if started > at)
}

impl ReconcileJob {
    pub fn new(grant_id: impl Into<String>, kind: JobKind, since: Option<i64>) -> Self {
        Self {
            grant_id: grant_id.into(),
            kind,
            since,
            page_token: None,
            poll_start: None,
            force_sweep: false,
            scheduled_at: None,
            after_loss: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("SQS did not accept the reconcile job: {0}")]
pub struct JobQueueError(pub String);

/// The reconcile queue.
#[derive(Clone)]
pub struct JobQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

/// SQS's largest `DelaySeconds`.
pub const MAX_DELAY_SECONDS: i32 = 900;

impl JobQueue {
    pub async fn send(&self, job: &ReconcileJob) -> Result<(), JobQueueError> {
        self.send_delayed(job, 0).await
    }

    /// Sends a job that becomes visible after `delay_seconds` (capped at 900).
    pub async fn send_delayed(
        &self,
        job: &ReconcileJob,
        delay_seconds: i32,
    ) -> Result<(), JobQueueError> {
        let body = serde_json::to_string(job).map_err(|e| JobQueueError(e.to_string()))?;
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds.clamp(0, MAX_DELAY_SECONDS))
            .send()
            .await
            .map_err(|e| JobQueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    /// Sends up to 10 jobs in one `SendMessageBatch`, each with its own delay. Entries SQS
    /// refuses are retried once; any still refused make the call fail.
    pub async fn send_batch(&self, jobs: &[(ReconcileJob, i32)]) -> Result<(), JobQueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let mut entries = Vec::with_capacity(jobs.len());
        for (i, (job, delay)) in jobs.iter().enumerate() {
            let body = serde_json::to_string(job).map_err(|e| JobQueueError(e.to_string()))?;
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .delay_seconds((*delay).clamp(0, MAX_DELAY_SECONDS))
                .build()
                .map_err(|e| JobQueueError(e.to_string()))?;
            entries.push(entry);
        }
        for attempt in 0..2 {
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| {
                    JobQueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?;
            let failed: std::collections::HashSet<String> =
                out.failed.iter().map(|f| f.id.clone()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            entries.retain(|e| failed.contains(&e.id));
            if attempt == 1 {
                return Err(JobQueueError(format!(
                    "{} jobs refused by SQS",
                    failed.len()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled(at: i64) -> ReconcileJob {
        ReconcileJob {
            scheduled_at: Some(at),
            ..ReconcileJob::new("g", JobKind::Incremental, None)
        }
    }

    #[test]
    fn a_scheduled_run_is_superseded_only_by_a_run_that_began_after_it_was_sent() {
        assert!(superseded(&scheduled(100), Some(101)));
        assert!(!superseded(&scheduled(100), Some(100)));
        assert!(!superseded(&scheduled(100), Some(99)));
        assert!(!superseded(&scheduled(100), None));
        let unscheduled = ReconcileJob::new("g", JobKind::Incremental, None);
        assert!(!superseded(&unscheduled, Some(1_000)));
    }

    #[test]
    fn work_no_other_run_redoes_is_never_superseded() {
        for kind in [JobKind::Backfill, JobKind::CatchUp, JobKind::Purge] {
            let job = ReconcileJob {
                kind,
                ..scheduled(100)
            };
            assert!(!superseded(&job, Some(200)), "{kind:?}");
        }
        let continuation = ReconcileJob {
            page_token: Some("t".into()),
            ..scheduled(100)
        };
        assert!(!superseded(&continuation, Some(200)));
        let sweep = ReconcileJob {
            force_sweep: true,
            ..scheduled(100)
        };
        assert!(!superseded(&sweep, Some(200)));
    }
}
