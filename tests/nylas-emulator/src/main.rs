//! `nylas-emulator`: runs the Nylas v3 emulator as a process for the local stack and benchmarks.
//! Prints one JSON line to stdout when ready (base URL, grant ids, destinations and their
//! secrets), then serves until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use nylas_emulator::{Emulator, EmulatorConfig, FaultWindow, Faults, SlowWindow};

/// A contract-faithful emulator of the Nylas API v3 (REST + webhooks) with fault injection.
/// Durations marked "emulated" scale with --time-scale; windows are offsets from start.
#[derive(Parser, Debug)]
#[command(name = "nylas-emulator", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// API key every /v3 request must present as `Authorization: Bearer <key>`.
    #[arg(long, default_value = "test-api-key")]
    api_key: String,
    /// Grants present at start.
    #[arg(long, default_value_t = 1)]
    grants: usize,
    /// Seed of grant ids, object content and the activity sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Changes per emulated minute per grant; 0 = idle.
    #[arg(long, default_value_t = 0.0)]
    events_per_minute: f64,
    /// Emulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Emulated Unix time at start (default: now).
    #[arg(long)]
    start_time: Option<i64>,
    /// Grant lifecycle changes (created/expired/re-authenticated/deleted) per emulated hour.
    #[arg(long, default_value_t = 0.0)]
    grant_changes_per_hour: f64,
    /// Requests/s per grant on messages, calendars and events endpoints.
    #[arg(long, default_value_t = 200)]
    rate_limit_per_grant: u32,
    /// Requests/s per application on grants and webhooks endpoints.
    #[arg(long, default_value_t = 50)]
    rate_limit_per_application: u32,
    /// `data.application_id` of notifications.
    #[arg(long, default_value = "emulated-application")]
    application_id: String,
    /// Real-time timeout of each delivery attempt and of the challenge, in seconds.
    #[arg(long, default_value_t = 10.0)]
    delivery_timeout_secs: f64,
    /// Delivery attempts in flight per destination (1 keeps notifications in order).
    #[arg(long, default_value_t = 1)]
    delivery_concurrency: usize,
    /// Register a destination for every trigger at start, skipping the challenge (repeatable).
    #[arg(long = "webhook-url")]
    webhook_urls: Vec<String>,
    /// Destinations registered with --webhook-url get gzip-compressed deliveries.
    #[arg(long)]
    compressed_delivery: bool,

    /// Probability that a notification is never delivered.
    #[arg(long, default_value_t = 0.0)]
    drop_probability: f64,
    /// Probability that a notification is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_probability: f64,
    /// Hold each delivery back by a random delay up to this many emulated seconds (reorders).
    #[arg(long, default_value_t = 0.0)]
    max_delay_secs: f64,
    /// Endpoint outage START:DURATION (emulated seconds after start); repeatable.
    #[arg(long = "outage", value_parser = parse_window)]
    outages: Vec<(i64, i64)>,
    /// Probability that a REST request gets 429.
    #[arg(long, default_value_t = 0.0)]
    api_429_probability: f64,
    /// 429 storm START:DURATION (emulated seconds after start); repeatable.
    #[arg(long = "api-429-window", value_parser = parse_window)]
    api_429_windows: Vec<(i64, i64)>,
    /// Probability that a REST request gets a 5xx.
    #[arg(long, default_value_t = 0.0)]
    api_5xx_probability: f64,
    /// 5xx window START:DURATION (emulated seconds after start); repeatable.
    #[arg(long = "api-5xx-window", value_parser = parse_window)]
    api_5xx_windows: Vec<(i64, i64)>,
    /// Send `Retry-After: SECS` with every 429.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Hold every REST response back this many real milliseconds (at or above the request
    /// timeout: answered 504 `provider_error` at the timeout).
    #[arg(long)]
    slow_response_ms: Option<u64>,
    /// Slow window START:DURATION:MS: REST answers to requests arriving in it (emulated seconds
    /// after start) are held back MS real milliseconds after they were computed; repeatable.
    #[arg(long = "slow-window", value_parser = parse_slow_window)]
    slow_windows: Vec<(i64, i64, u64)>,
    /// A REST request taking this long (real milliseconds) is answered 504 (Nylas: 90 s).
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Probability that an `event.*` notification comes without `grant_id` in `data.object`.
    #[arg(long, default_value_t = 0.0)]
    event_missing_grant_id_probability: f64,
    /// Probability that an `event.deleted` notification carries `calendar_id: null`.
    #[arg(long, default_value_t = 0.0)]
    event_deleted_null_calendar_probability: f64,
    /// Page tokens older than this many emulated seconds answer 400.
    #[arg(long)]
    page_token_max_age_secs: Option<u64>,
    /// Probability that a request with a `page_token` answers 400 as if the token had expired.
    #[arg(long, default_value_t = 0.0)]
    page_token_expiry_probability: f64,
    /// `grant.expired` lags the expiry by up to this many emulated seconds (drawn from the seed).
    #[arg(long, default_value_t = 600.0)]
    grant_expired_lag_max_secs: f64,
    /// Share of activity changes that create, rename or delete a user label (0 to 1).
    #[arg(long, default_value_t = 0.01)]
    folder_changes: f64,
}

fn parse_window(s: &str) -> Result<(i64, i64), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("expected START:DURATION in seconds, got '{s}'"))?;
    let start = a.trim().parse::<i64>().map_err(|e| format!("START: {e}"))?;
    let len = b
        .trim()
        .parse::<i64>()
        .map_err(|e| format!("DURATION: {e}"))?;
    if len < 0 {
        return Err("DURATION must not be negative".into());
    }
    Ok((start, len))
}

fn parse_slow_window(s: &str) -> Result<(i64, i64, u64), String> {
    let (window, ms) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected START:DURATION:MS, got '{s}'"))?;
    let (start, len) = parse_window(window)?;
    let ms = ms.trim().parse::<u64>().map_err(|e| format!("MS: {e}"))?;
    Ok((start, len, ms))
}

fn windows(start: i64, spans: &[(i64, i64)]) -> Vec<FaultWindow> {
    spans
        .iter()
        .map(|(s, l)| FaultWindow {
            from: start + s,
            until: start + s + l,
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let start = cli.start_time.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    let faults = Faults {
        drop_probability: cli.drop_probability,
        duplicate_probability: cli.duplicate_probability,
        max_delay: Duration::try_from_secs_f64(cli.max_delay_secs)?,
        outages: windows(start, &cli.outages),
        api_429_probability: cli.api_429_probability,
        api_429_windows: windows(start, &cli.api_429_windows),
        api_5xx_probability: cli.api_5xx_probability,
        api_5xx_windows: windows(start, &cli.api_5xx_windows),
        retry_after_secs: cli.retry_after,
        slow_response: cli.slow_response_ms.map(Duration::from_millis),
        slow_windows: cli
            .slow_windows
            .iter()
            .map(|(s, l, ms)| SlowWindow {
                from: start + s,
                until: start + s + l,
                delay: Duration::from_millis(*ms),
            })
            .collect(),
        request_timeout: cli.request_timeout_ms.map(Duration::from_millis),
        event_missing_grant_id_probability: cli.event_missing_grant_id_probability,
        event_deleted_null_calendar_probability: cli.event_deleted_null_calendar_probability,
        page_token_max_age_secs: cli.page_token_max_age_secs,
        page_token_expiry_probability: cli.page_token_expiry_probability,
    };
    let config = EmulatorConfig {
        api_key: cli.api_key,
        seed: cli.seed,
        grants: cli.grants,
        events_per_minute: cli.events_per_minute,
        time_scale: cli.time_scale,
        rate_limit_per_grant: cli.rate_limit_per_grant,
        rate_limit_per_application: cli.rate_limit_per_application,
        faults,
        application_id: cli.application_id,
        listen: Some(cli.listen),
        start_time: Some(start),
        grant_changes_per_hour: cli.grant_changes_per_hour,
        delivery_timeout: Duration::try_from_secs_f64(cli.delivery_timeout_secs)?,
        delivery_concurrency: cli.delivery_concurrency,
        grant_expired_lag_max: Duration::try_from_secs_f64(cli.grant_expired_lag_max_secs)?,
        folder_changes: cli.folder_changes,
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config).await?;
    let destinations: Vec<serde_json::Value> = cli
        .webhook_urls
        .iter()
        .map(|url| {
            let (id, secret) = emulator.register_destination_direct(url, cli.compressed_delivery);
            serde_json::json!({"id": id, "webhook_url": url, "webhook_secret": secret})
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "base_url": emulator.base_url(),
            "grant_ids": emulator.grant_ids(),
            "destinations": destinations,
            "now": emulator.now(),
        })
    );
    tracing::info!(base_url = %emulator.base_url(), "nylas-emulator ready");
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}
