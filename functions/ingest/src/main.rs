//! The ingest Lambda: API Gateway → verify → SQS. All logic lives in `nylas_sync::ingest`; this
//! binary reads the configuration once per cold start and hands the handler to the runtime.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use nylas_sync::config::ProcessEnv;
use nylas_sync::ingest::Ingest;

fn main() -> Result<(), Error> {
    nylas_sync::tls::run_function(run)
}

async fn run() -> Result<(), Error> {
    nylas_sync::telemetry::init();
    let ingest = match Ingest::from_env(&ProcessEnv).await {
        Ok(ingest) => Arc::new(ingest),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return Err(e.into());
        }
    };
    lambda_http::run(service_fn(move |req: Request| {
        let ingest = Arc::clone(&ingest);
        async move { Ok::<_, Error>(ingest.handle(req).await) }
    }))
    .await
}
