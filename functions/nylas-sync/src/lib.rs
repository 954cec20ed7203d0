//! nylas-sync: keeps an application's copy of Nylas v3 mailboxes and calendars in sync, on AWS
//! Lambda, with webhooks for freshness and a reconciliation poll for what webhooks miss.
//!
//! This crate holds the domain and the adapters every Lambda shares; each function binary is a
//! thin `main` over it, so tests and the local host run the very same handlers.
//!
//! It must never acknowledge a notification before it is durable, never let an unsigned byte
//! reach a queue, bucket or table, and never log a secret, signature or message body.

pub mod apigw;
pub mod aws;
pub mod backend;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod contract;
pub mod enqueue_request;
pub mod event_window;
pub mod grants;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod notification;
pub mod nylas;
pub mod proxy_event;
pub mod queue;
pub mod reconcile;
pub mod scheduler;
pub mod secrets;
pub mod signature;
pub mod sqs_queue;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod versions;

/// What went wrong in a JSON document and where, without echoing any of its values
/// (serde_json's own messages quote the offending string, which may be a secret or a body).
pub(crate) fn json_error_summary(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "malformed JSON",
        Category::Data => "unexpected shape",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}
