//! nylas-sync: keeps an application's copy of Nylas v3 mailboxes and calendars in sync, on AWS
//! Lambda, with webhooks for freshness and a reconciliation poll for what webhooks miss.
//!
//! This crate holds the domain and the adapters every Lambda shares; each function binary is a
//! thin `main` over it, so tests and the local host run the very same handlers.
//!
//! It must never acknowledge a notification before it is durable, never let an unsigned byte
//! reach a queue, bucket or table, and never log a secret, signature or message body.

//! # Layout
//!
//! **Handlers**, one per Lambda (each binary is a thin `main` over one of them):
//! [`ingest`] (API Gateway → verify → SQS, reading the event with [`proxy_event`]),
//! [`consumer`] (SQS batch → store), [`scheduler`] (tick → one job per due grant, and the
//! [`destination`]'s health),
//! [`reconciler`](reconcile) (one grant per job: listings, the drift sweep, purges).
//!
//! **Domain**, plain values and the rules over them (no I/O): [`notification`] (what a
//! webhook says), [`intent`] (what it asks the consumer to do), [`cadence`] (how often a grant
//! is polled), [`versions`] (which state wins), [`event_window`] (which events are mirrored), [`sweep`] (what a sweep slice compares
//! and changes), [`signature`], [`jobs`] (the reconcile queue's messages), [`contract`] (the
//! configuration each function reads).
//!
//! **Adapters**, one per outside system: [`store`] (objects table and bucket), [`grants`]
//! (grants table), [`queue`] (the notifications queue's protocol: attributes, claim checks, the
//! rules for a record that must wait), [`sqs_queue`] (its SQS and S3 side), [`enqueue_request`]
//! (the ingest's requests), [`nylas`] (the REST client), [`secrets`].
//!
//! **Plumbing**: [`config`], [`backend`] (what the consumer and the reconciler build from the
//! same configuration), [`aws`], [`tls`], [`clock`], [`metrics`] (EMF), [`telemetry`] (logs).

// Handlers.
pub mod consumer;
pub mod destination;
pub mod ingest;
pub mod proxy_event;
pub mod raw_event;
pub mod reconcile;
pub mod scheduler;

// Domain.
pub mod cadence;
pub mod contract;
pub mod event_window;
pub mod intent;
pub mod jobs;
pub mod json_scan;
pub mod notification;
pub mod signature;
pub mod sweep;
pub mod versions;

// Adapters.
pub mod enqueue_request;
pub mod grants;
pub mod nylas;
pub mod queue;
pub mod secrets;
pub mod sqs_queue;
pub mod store;

// Plumbing.
pub mod aws;
pub mod backend;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod telemetry;
pub mod tls;

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
