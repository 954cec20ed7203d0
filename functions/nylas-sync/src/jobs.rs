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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileJob {
    pub grant_id: String,
    pub kind: JobKind,
    /// Unix seconds to list from, for backfill and catch-up; the cursor otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
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

impl JobQueue {
    pub async fn send(&self, job: &ReconcileJob) -> Result<(), JobQueueError> {
        let body = serde_json::to_string(job).map_err(|e| JobQueueError(e.to_string()))?;
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| JobQueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}
