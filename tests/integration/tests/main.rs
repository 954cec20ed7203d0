//! The integration tests, one module per subject, in one binary (see Cargo.toml).

mod calendar;
mod consumer;
mod destination;
mod ingest;
mod ingest_properties;
mod metrics;
mod reconcile;
mod sample_events;
mod scenarios;
mod secret_rotation;
mod template;
mod writes;
