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
