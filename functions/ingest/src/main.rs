//! The ingest Lambda: API Gateway → verify → SQS. All logic lives in `nylas_sync::ingest`; this
//! binary reads the configuration once per cold start and hands the handler to the runtime.
//!
//! The event is read by `nylas_sync::proxy_event` from the bytes the Runtime API sent
//! (`nylas_sync::raw_event` takes them before `lambda_runtime` would deserialise them), not
//! converted by `lambda_http`: that conversion copies the body, tries each event shape in turn
//! and panics on a raw `"` or space in the query string. The reader decodes the body in one pass
//! and never fails: bytes that are not an API Gateway event are answered 400.

use std::sync::Arc;

use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};
use nylas_sync::config::ProcessEnv;
use nylas_sync::ingest::Ingest;
use nylas_sync::proxy_event::{ProxyEvent, ProxyResponse};
use nylas_sync::raw_event::{self, RawEventLayer};
use serde::de::IgnoredAny;

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
    let handler = service_fn(move |_: LambdaEvent<IgnoredAny>| {
        // Taken now, as the runtime calls the closure (see nylas_sync::raw_event).
        let event = raw_event::take();
        let ingest = Arc::clone(&ingest);
        async move {
            let event = ProxyEvent::read(&event);
            Ok::<ProxyResponse, Error>(ingest.handle_event(event).await)
        }
    });
    Runtime::new(handler)
        .layer(RawEventLayer)
        .layer(TracingLayer::new())
        .run()
        .await
}
