//! The reconciler Lambda: reconcile jobs from SQS (`ReportBatchItemFailures`), one grant each.
//! All logic lives in `nylas_sync::reconcile`; the run checkpoints before the invocation's deadline.

use std::sync::Arc;

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
        let deadline = nylas_sync::clock::instant_at_unix_ms(event.context.deadline);
        async move { Ok::<SqsBatchResponse, Error>(reconciler.handle(event.payload, deadline).await) }
    }))
    .await
}
