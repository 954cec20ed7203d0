//! Benchmarks of nylas-sync and the tools they need: notification bodies of an exact size, a
//! sink that builds the ingest's AWS requests without sending them, a local stand-in of the
//! Lambda Runtime API (to time a real function binary from exec to its first request for work,
//! and to hand it batches), per-process CPU and peak-memory readings, generated hostile API Gateway events, the loopback socket floor
//! of the 900 KB paths, and the figures file that `make bench` renders into BENCHMARKS.md.
//!
//! Benchmarks measure; they never run as timed tests, and nothing here talks to real AWS.

pub mod build_only;
pub mod figures;
pub mod fixtures;
pub mod hostile;
pub mod procfs;
pub mod runtime_api;
pub mod socket_floor;
