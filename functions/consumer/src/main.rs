//! The consumer Lambda: an SQS batch of notifications in (`ReportBatchItemFailures`), store
//! writes out. All logic lives in `nylas_sync::consumer`; this reads the configuration once per
//! cold start and hands the handler to the runtime.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use nylas_sync::config::ProcessEnv;
use nylas_sync::consumer::Consumer;

fn main() -> Result<(), Error> {
    nylas_sync::tls::run_function(run)
}

async fn run() -> Result<(), Error> {
    nylas_sync::telemetry::init();
    let consumer = match Consumer::from_env(&ProcessEnv).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let consumer = Arc::clone(&consumer);
        let deadline = nylas_sync::clock::instant_at_unix_ms(event.context.deadline);
        async move {
            Ok::<SqsBatchResponse, Error>(consumer.handle_until(event.payload, deadline).await)
        }
    }))
    .await
}
