//! The scheduler Lambda: on each reconcile tick, enqueues one reconcile job per due grant, then
//! reads the webhook destination; on the destination's own schedule, only reads it.
//! All logic lives in `nylas_sync::scheduler`.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use nylas_sync::config::ProcessEnv;
use nylas_sync::destination::DestinationWatch;
use nylas_sync::scheduler::{Scheduler, Tick};
use serde_json::{json, Value};

fn main() -> Result<(), Error> {
    nylas_sync::tls::run_function(run)
}

async fn run() -> Result<(), Error> {
    nylas_sync::telemetry::init();
    let built = async {
        let timeouts = nylas_sync::aws::AwsTimeouts::BACKGROUND.from_env(&ProcessEnv)?;
        let sdk = nylas_sync::aws::sdk_config(timeouts).await;
        let scheduler = Scheduler::from_env_with(&ProcessEnv, &sdk)?;
        let watch = DestinationWatch::from_env(&ProcessEnv, &sdk, scheduler.grants.clone()).await?;
        Ok::<_, nylas_sync::config::ConfigError>((scheduler, watch))
    };
    let (scheduler, watch) = match built.await {
        Ok((s, w)) => (Arc::new(s), w.map(Arc::new)),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return Err(e.into());
        }
    };
    if watch.is_none() {
        tracing::warn!("no webhook_id in the secret (run nylas-sync register-webhook): the destination's health is not watched");
    }
    // The reconcile tick's event carries nothing the fan-out needs; the destination's own
    // schedule says `watch_only`.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let scheduler = Arc::clone(&scheduler);
        let watch = watch.clone();
        async move {
            let tick = Tick::of(&event.payload);
            let fan_out = match tick {
                Tick::FanOutAndWatch => {
                    let out = scheduler.fan_out().await?;
                    tracing::info!(grants = out.grants, batch_calls = out.batch_calls, seconds = out.seconds, "fan-out");
                    json!({"grants": out.grants, "batch_calls": out.batch_calls, "seconds": out.seconds})
                }
                Tick::WatchOnly => json!({}),
            };
            // The watch's failure does not undo the fan-out: logged, tried again next tick.
            let destination = match &watch {
                Some(w) => match w.check(&scheduler).await {
                    Ok(c) => json!({"status": c.status, "catch_up_jobs": c.catch_up_jobs}),
                    Err(e) => {
                        tracing::warn!(error = %e, "destination check failed; next tick tries again");
                        Value::Null
                    }
                },
                None => Value::Null,
            };
            let mut answer = fan_out;
            answer["destination"] = destination;
            Ok::<Value, Error>(answer)
        }
    }))
    .await
}
