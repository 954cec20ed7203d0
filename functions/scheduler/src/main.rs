//! The scheduler Lambda: on each EventBridge tick, enqueues one reconcile job per due grant.
//! All logic lives in `nylas_sync::scheduler`.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use nylas_sync::config::ProcessEnv;
use nylas_sync::scheduler::Scheduler;
use serde_json::{json, Value};

fn main() -> Result<(), Error> {
    nylas_sync::tls::run_function(run)
}

async fn run() -> Result<(), Error> {
    nylas_sync::telemetry::init();
    let scheduler = match Scheduler::from_env(&ProcessEnv).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return Err(e.into());
        }
    };
    // The EventBridge event carries nothing the fan-out needs.
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let scheduler = Arc::clone(&scheduler);
        async move {
            let out = scheduler.fan_out().await?;
            tracing::info!(grants = out.grants, batch_calls = out.batch_calls, seconds = out.seconds, "fan-out");
            Ok::<Value, Error>(json!({"grants": out.grants, "batch_calls": out.batch_calls, "seconds": out.seconds}))
        }
    }))
    .await
}
