//! AWS SDK configuration shared by every function: one `SdkConfig` per cold start, timeouts that
//! keep each call inside the function's budget, and `AWS_ENDPOINT_URL` honoured by every client
//! (the SDK reads it; S3 then needs path-style addressing, as local emulators have no DNS per bucket).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Per-call time limits for AWS requests.
#[derive(Debug, Clone, Copy)]
pub struct AwsTimeouts {
    pub connect: Duration,
    /// One HTTP attempt.
    pub attempt: Duration,
    /// The whole operation, retries included.
    pub operation: Duration,
}

impl AwsTimeouts {
    /// For request paths that must answer a caller quickly (the ingest answers Nylas within 10 s).
    pub const INTERACTIVE: Self = Self {
        connect: Duration::from_millis(1_000),
        attempt: Duration::from_millis(2_000),
        operation: Duration::from_millis(5_000),
    };
    /// For queue-driven work, where a slow call costs only time.
    pub const BACKGROUND: Self = Self {
        connect: Duration::from_millis(2_000),
        attempt: Duration::from_millis(5_000),
        operation: Duration::from_millis(15_000),
    };
}

/// Loads region, credentials and endpoint from the standard sources once.
pub async fn sdk_config(timeouts: AwsTimeouts) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.operation)
                .build(),
        )
        .load()
        .await
}

pub fn sqs_client(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
