//! The reconciler Lambda: reconcile jobs from SQS (`ReportBatchItemFailures`), one grant each.
//! All logic lives in `nylas_sync::reconcile`; the run checkpoints before the invocation's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use nylas_sync::config::ProcessEnv;
use nylas_sync::reconcile::Reconciler;

fn main() -> Result<(), Error> {
    nylas_sync::tls::run_function(run)
}

async fn run() -> Result<(), Error> {
    nylas_sync::telemetry::init();
    let reconciler = match Reconciler::from_env(&ProcessEnv).await {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let reconciler = Arc::clone(&reconciler);
        async move {
            // The runtime gives the deadline as wall-clock milliseconds.
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let deadline = Instant::now() + left;
            Ok::<SqsBatchResponse, Error>(reconciler.handle(event.payload, deadline).await)
        }
    }))
    .await
}
