//! The ingest Lambda: API Gateway → verify → SQS. All logic lives in `nylas_sync::ingest`; this
//! binary reads the configuration once per cold start and hands the handler to the runtime.
//!
//! The event is read by `nylas_sync::proxy_event` (HTTP API 2.0 or REST API 1.0), not converted
//! by `lambda_http`: that conversion copies the body, tries each event shape in turn and panics
//! on a raw `"` or space in the query string; this reader never fails on a JSON document.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use nylas_sync::config::ProcessEnv;
use nylas_sync::ingest::Ingest;
use nylas_sync::proxy_event::{ProxyEvent, ProxyResponse};

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
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ProxyEvent>| {
        let ingest = Arc::clone(&ingest);
        async move { Ok::<ProxyResponse, Error>(ingest.handle_event(event.payload).await) }
    }))
    .await
}
