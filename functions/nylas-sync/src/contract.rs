//! The configuration contract, function by function: every environment variable each Lambda
//! reads, and whether it must be set. The SAM template is tested against these lists, so a
//! variable added to a function and forgotten in the template (or the reverse) fails the tests.

/// One environment variable a function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// The function refuses to start without it (in AWS, where `SECRETS_ARN` is set).
    pub required: bool,
}

const fn req(name: &'static str) -> Var {
    Var {
        name,
        required: true,
    }
}

const fn opt(name: &'static str) -> Var {
    Var {
        name,
        required: false,
    }
}

/// Read by every function.
pub const COMMON: &[Var] = &[
    opt("SECRETS_ARN"),
    opt("NYLAS_API_KEY"),
    opt("NYLAS_WEBHOOK_SECRETS"),
    opt("AWS_ENDPOINT_URL"),
    opt("METRICS_NAMESPACE"),
];

pub const INGEST: &[Var] = &[
    req("NOTIFICATIONS_QUEUE_URL"),
    req("PAYLOAD_BUCKET"),
    opt("MAX_BODY_BYTES"),
    opt("MAX_DECOMPRESSED_BYTES"),
    opt("SQS_MAX_MESSAGE_BYTES"),
    opt("ENQUEUE_TIMEOUT_MS"),
    opt("SECRETS_REFRESH_SECONDS"),
];

pub const CONSUMER: &[Var] = &[
    req("OBJECTS_TABLE"),
    req("GRANTS_TABLE"),
    req("PAYLOAD_BUCKET"),
    req("RECONCILE_QUEUE_URL"),
    opt("NYLAS_API_URI"),
    opt("FETCH_POLICY"),
    opt("CONSUMER_CONCURRENCY"),
    opt("PURGE_ON_GRANT_DELETE"),
    opt("RECONCILE_ON_REDELIVERY"),
    opt("BACKFILL_DAYS"),
    opt("SDK_ATTEMPT_TIMEOUT_MS"),
    opt("SDK_OPERATION_TIMEOUT_MS"),
];

pub const SCHEDULER: &[Var] = &[
    req("GRANTS_TABLE"),
    req("RECONCILE_QUEUE_URL"),
    opt("NYLAS_API_URI"),
    opt("NYLAS_WEBHOOK_ID"),
    opt("RECONCILE_INTERVAL_SECONDS"),
    opt("RECONCILE_SPREAD_SECONDS"),
    opt("SCAN_SEGMENTS"),
    opt("SDK_ATTEMPT_TIMEOUT_MS"),
    opt("SDK_OPERATION_TIMEOUT_MS"),
];

pub const RECONCILER: &[Var] = &[
    req("OBJECTS_TABLE"),
    req("GRANTS_TABLE"),
    req("PAYLOAD_BUCKET"),
    req("RECONCILE_QUEUE_URL"),
    opt("NYLAS_API_URI"),
    opt("RECONCILE_OVERLAP_SECONDS"),
    opt("DRIFT_SWEEP_EVERY_RUNS"),
    opt("DRIFT_WINDOW_DAYS"),
    opt("DRIFT_OLDER_SLICES"),
    opt("LEASE_SECONDS"),
    opt("MISSED_GRACE_SECONDS"),
    opt("BACKFILL_DAYS"),
    opt("EVENTS_PAST_DAYS"),
    opt("EVENTS_FUTURE_DAYS"),
    opt("RECONCILE_INTERVAL_SECONDS"),
    opt("RECONCILE_MAX_INTERVAL_SECONDS"),
    opt("RECENT_SWEEP_DAYS"),
    opt("SDK_ATTEMPT_TIMEOUT_MS"),
    opt("SDK_OPERATION_TIMEOUT_MS"),
];

/// The variables of a function by its binary name.
pub fn for_function(name: &str) -> Option<&'static [Var]> {
    Some(match name {
        "ingest" => INGEST,
        "consumer" => CONSUMER,
        "scheduler" => SCHEDULER,
        "reconciler" => RECONCILER,
        _ => return None,
    })
}
