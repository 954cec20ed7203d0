//! AWS SDK configuration shared by every function: one `SdkConfig` per cold start, timeouts that
//! keep each call inside the function's budget, `AWS_ENDPOINT_URL` honoured by every client
//! (the SDK reads it; S3 then needs path-style addressing, as local emulators have no DNS per
//! bucket), and one HTTP client for all of them: the process's reqwest client ([`crate::tls`]),
//! instead of the SDK's own hyper client, which built a TLS configuration and parsed the system's
//! roots once per SDK client, at construction.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_runtime::auth::PayloadSigningOverride;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

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
        .http_client(sdk_http_client())
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

/// The AWS SDK's HTTP client: every request goes through the process's reqwest client. The
/// SDK's connect and read timeout settings are not applied per connection; the operation and
/// attempt timeouts of [`AwsTimeouts`] (enforced by the SDK around each call) bound them.
pub fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(SdkHttp {
        connector: SharedHttpConnector::new(ReqwestConnector),
    })
}

#[derive(Debug)]
struct SdkHttp {
    connector: SharedHttpConnector,
}

impl HttpClient for SdkHttp {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

#[derive(Debug)]
struct ReqwestConnector;

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = crate::tls::http();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            // The body moves as it is (an in-memory body is a `Bytes`, not copied).
            let request = request.map(reqwest::Body::wrap);
            let request =
                reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))?;
            let response = http.execute(request).await.map_err(connector_error)?;
            let response: lambda_http::http::Response<reqwest::Body> = response.into();
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Timeouts and I/O failures are retried by the SDK; anything else is not.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

/// Whether a request to `uri` may leave its payload out of the SigV4 signature
/// (`UNSIGNED-PAYLOAD`, which S3 accepts): over TLS, which authenticates every byte in transit,
/// and to a loopback emulator. Over plain HTTP to anything else the signature is the only
/// protection of the body, so it stays signed.
pub fn unsigned_payload_is_safe(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// S3 uploads without SigV4's hash of the body where that is safe ([`unsigned_payload_is_safe`]):
/// the hash is a full SHA-256 pass over up to 1 MiB, as much as the ingest's own verification.
/// The body stays checked end to end by the CRC32 checksum the SDK computes (a header, signed
/// with the others), which S3 verifies before storing.
#[derive(Debug)]
struct UnsignedPayloadWhereSafe;

impl aws_sdk_s3::config::Intercept for UnsignedPayloadWhereSafe {
    fn name(&self) -> &'static str {
        "UnsignedPayloadWhereSafe"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        let in_memory = request.body().bytes().is_some_and(|b| !b.is_empty());
        if in_memory
            && cfg.load::<PayloadSigningOverride>().is_none()
            && unsigned_payload_is_safe(request.uri())
        {
            cfg.interceptor_state()
                .store_put(PayloadSigningOverride::unsigned_payload());
        }
        Ok(())
    }
}

pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .interceptor(UnsignedPayloadWhereSafe)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[cfg(test)]
mod tests {
    use super::unsigned_payload_is_safe;

    #[test]
    fn a_payload_goes_unsigned_only_over_tls_or_to_loopback() {
        for safe in [
            "https://s3.us-east-1.amazonaws.com/bucket/key",
            "HTTPS://minio.internal:9000/b/k",
            "http://127.0.0.1:5000/bucket/key",
            "http://127.8.0.1/b",
            "http://localhost:4566/",
            "http://[::1]:5000/b/k",
        ] {
            assert!(unsigned_payload_is_safe(safe), "{safe}");
        }
        for signed in [
            "http://s3.us-east-1.amazonaws.com/bucket/key",
            "http://10.0.0.5:9000/b/k",
            "http://localhost.evil.example/b",
            "http://127.0.0.1.evil.example/",
            "http://127.0.0.1@example.com/",
            "ftp://127.0.0.1/",
        ] {
            assert!(!unsigned_payload_is_safe(signed), "{signed}");
        }
    }
}
