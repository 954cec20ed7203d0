//! The emulator's tests over HTTP, one module per subject, in one binary (see Cargo.toml).

mod common;

mod calendar;
mod cli;
mod destination_health;
mod faults_and_time;
mod folders;
mod rest_api;
mod shapes_and_errors;
mod webhooks;
