//! Logging: one JSON object per line (CloudWatch Logs Insights reads the fields), carrying the
//! Lambda request id from the runtime's span. Callers log ids and outcomes, never secrets,
//! signatures or bodies.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The JSON subscriber every function uses, writing to `writer` (stdout in Lambda; a buffer in
/// the tests that check what is logged).
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
}

/// Installs the JSON subscriber. Level from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `info`.
/// `LOG_FORMAT=text` gives human-readable lines for a terminal.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| l.to_ascii_lowercase())
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text")) {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_target(false)
            .try_init()
            .map_err(|e| e.to_string())
    } else {
        tracing::subscriber::set_global_default(json_subscriber(filter, std::io::stdout))
            .map_err(|e| e.to_string())
    };
    // A subscriber already installed (tests, the local host) is fine.
    drop(result);
}
