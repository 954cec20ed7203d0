//! AWS SDK configuration shared by every function: one `SdkConfig` per cold start, timeouts that
//! keep each call inside the function's budget, `AWS_ENDPOINT_URL` honoured by every client
//! (the SDK reads it; S3 then needs path-style addressing, as local emulators have no DNS per
//! bucket), and one HTTP client for all of them: the process's reqwest client ([`crate::tls`]),
//! instead of the SDK's own hyper client, which built a TLS configuration and parsed the system's
//! roots once per SDK client, at construction.

use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
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

use crate::config::{ConfigError, Env};

/// Per-call time limits for AWS requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// These limits with `SDK_ATTEMPT_TIMEOUT_MS` and `SDK_OPERATION_TIMEOUT_MS` applied where
    /// set, for endpoints slower than AWS (an emulator walking a large table in Python takes
    /// seconds per call): each 1 to 900,000 ms, the attempt no longer than the operation (an
    /// operation left unset grows to a longer attempt).
    pub fn from_env(self, env: &impl Env) -> Result<Self, ConfigError> {
        const MAX_MS: u64 = 900_000;
        let ms = |name: &'static str, default: Duration| {
            let v = env.number_or(name, default.as_millis() as u64)?;
            if !(1..=MAX_MS).contains(&v) {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("expected 1 to {MAX_MS} (milliseconds)"),
                });
            }
            Ok(Duration::from_millis(v))
        };
        let attempt = ms("SDK_ATTEMPT_TIMEOUT_MS", self.attempt)?;
        let operation = ms("SDK_OPERATION_TIMEOUT_MS", self.operation.max(attempt))?;
        if attempt > operation {
            return Err(ConfigError::Invalid {
                name: "SDK_ATTEMPT_TIMEOUT_MS",
                reason: "longer than SDK_OPERATION_TIMEOUT_MS".into(),
            });
        }
        Ok(Self {
            attempt,
            operation,
            ..self
        })
    }
}

/// Loads region, credentials and endpoint once: from the environment alone when it holds
/// everything the standard chain would take from it ([`env_settings`], always the case in
/// Lambda), else through the standard chain (profiles, SSO, container and instance credentials).
///
/// Stalled-stream protection is off: it fails a transfer that moves no bytes for its 5 s grace
/// period, and every call here already has an attempt timeout and an operation timeout that end
/// a stalled transfer (the attempt's 2 s or 5 s by default, sooner than the grace period; an
/// operator who raises `SDK_ATTEMPT_TIMEOUT_MS` chose to wait longer). What it costs is a
/// throughput-tracking wrapper with a timer around every request and response body.
pub async fn sdk_config(timeouts: AwsTimeouts) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build();
    match env_settings(std::env::vars_os()) {
        Some(settings) => settings_config(settings, timeouts),
        None => {
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(sdk_http_client())
                .timeout_config(timeouts)
                .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
                .load()
                .await
        }
    }
}

/// What a process's environment decides of its AWS configuration, when it decides all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSettings {
    pub region: String,
    pub endpoint_url: Option<String>,
}

/// The variables whose meaning [`settings_config`] gives exactly as the standard chain does, and
/// those Lambda sets that no AWS SDK setting reads.
const UNDERSTOOD: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_EXECUTION_ENV",
    // Only switches off the instance metadata service, which this configuration never asks.
    "AWS_EC2_METADATA_DISABLED",
];
const UNDERSTOOD_PREFIXES: &[&str] = &["AWS_LAMBDA_", "AWS_XRAY_"];

/// Whether the environment alone settles the SDK configuration, and how: credentials in
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (the standard chain's first source, so it would
/// stop there), a region in `AWS_REGION` (else `AWS_DEFAULT_REGION`), and no other `AWS_`
/// variable that could change a setting (a profile, a role to assume, container credentials,
/// FIPS, per-service endpoints, retry modes, ...): those go through the standard chain, as does
/// anything not valid Unicode. Lambda's environment passes; the chain's other sources (files in
/// the home directory, the instance metadata service) are not consulted, as they would not be
/// once environment credentials are found, except for settings Lambda never has.
pub fn env_settings<I, K, V>(vars: I) -> Option<EnvSettings>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut region = None;
    let mut default_region = None;
    let mut endpoint_url = None;
    let (mut key, mut secret) = (false, false);
    for (name, value) in vars {
        let name = name.as_ref().to_str()?;
        if !name.starts_with("AWS_") {
            continue;
        }
        let understood =
            UNDERSTOOD.contains(&name) || UNDERSTOOD_PREFIXES.iter().any(|p| name.starts_with(p));
        if !understood {
            return None;
        }
        let value = value.as_ref().to_str()?.to_string();
        match name {
            "AWS_REGION" => region = Some(value),
            "AWS_DEFAULT_REGION" => default_region = Some(value),
            "AWS_ENDPOINT_URL" => endpoint_url = Some(value),
            "AWS_ACCESS_KEY_ID" => key = !value.is_empty(),
            "AWS_SECRET_ACCESS_KEY" => secret = !value.is_empty(),
            _ => {}
        }
    }
    let region = region
        .filter(|r| !r.is_empty())
        .or(default_region.filter(|r| !r.is_empty()))?;
    (key && secret).then(|| EnvSettings {
        region,
        endpoint_url: endpoint_url.filter(|u| !u.is_empty()),
    })
}

/// The configuration the standard chain gives for `settings`, built without walking it:
/// credentials read from the environment by the chain's own first provider, behind the same
/// lazy identity cache; the standard retry mode, no stalled-stream protection (see
/// [`sdk_config`]) and the SDK's defaults for the rest.
pub fn settings_config(settings: EnvSettings, timeouts: TimeoutConfig) -> SdkConfig {
    let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.region))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .retry_config(aws_config::retry::RetryConfig::standard())
        .timeout_config(timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .http_client(sdk_http_client());
    if let Some(url) = settings.endpoint_url {
        config = config.endpoint_url(url);
    }
    config.build()
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

/// The S3 client of a function, built ([`s3_client`]) at its first use rather than at start.
///
/// The functions reach S3 only for what is too large for SQS or DynamoDB (claim checks, large
/// objects), and building the client is a large part of a cold start (its runtime plugins, its
/// endpoint resolver with the partition table parsed and its regexes compiled): a process that
/// only ever sees small payloads never builds it. Clones share the one client. It dereferences
/// to [`aws_sdk_s3::Client`].
#[derive(Clone, Debug)]
pub struct LazyS3(std::sync::Arc<LazyS3Inner>);

#[derive(Debug)]
struct LazyS3Inner {
    /// What the client is built from (not read when it was given built).
    sdk: SdkConfig,
    client: std::sync::OnceLock<aws_sdk_s3::Client>,
}

impl LazyS3 {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self(std::sync::Arc::new(LazyS3Inner {
            sdk: sdk.clone(),
            client: std::sync::OnceLock::new(),
        }))
    }

    /// Whether the client has been built (by a first use, or given built).
    pub fn is_built(&self) -> bool {
        self.0.client.get().is_some()
    }
}

impl From<aws_sdk_s3::Client> for LazyS3 {
    /// A client already built (the tests share theirs).
    fn from(client: aws_sdk_s3::Client) -> Self {
        Self(std::sync::Arc::new(LazyS3Inner {
            sdk: SdkConfig::builder().build(),
            client: std::sync::OnceLock::from(client),
        }))
    }
}

impl std::ops::Deref for LazyS3 {
    type Target = aws_sdk_s3::Client;

    fn deref(&self) -> &aws_sdk_s3::Client {
        self.0.client.get_or_init(|| s3_client(&self.0.sdk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sdk_timeouts_are_the_defaults_unless_set_and_refused_when_unusable() {
        let d = AwsTimeouts::BACKGROUND;
        let env = |pairs: &[(&'static str, &'static str)]| -> HashMap<&'static str, &'static str> {
            pairs.iter().copied().collect()
        };
        assert_eq!(d.from_env(&env(&[])).unwrap(), d);
        let slow = d
            .from_env(&env(&[
                ("SDK_ATTEMPT_TIMEOUT_MS", "60000"),
                ("SDK_OPERATION_TIMEOUT_MS", "120000"),
            ]))
            .unwrap();
        assert_eq!(
            (slow.attempt, slow.operation),
            (Duration::from_secs(60), Duration::from_secs(120))
        );
        assert_eq!(slow.connect, d.connect);
        // An attempt longer than the default operation takes the operation with it.
        let attempt = d
            .from_env(&env(&[("SDK_ATTEMPT_TIMEOUT_MS", "60000")]))
            .unwrap();
        assert_eq!(attempt.operation, Duration::from_secs(60));
        for bad in [
            [("SDK_ATTEMPT_TIMEOUT_MS", "0")],
            [("SDK_ATTEMPT_TIMEOUT_MS", "900001")],
            [("SDK_OPERATION_TIMEOUT_MS", "soon")],
            [("SDK_OPERATION_TIMEOUT_MS", "1000")],
        ] {
            assert!(
                matches!(d.from_env(&env(&bad)), Err(ConfigError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    fn lambda_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_LAMBDA_FUNCTION_NAME", "ingest"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_rust"),
            ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000"),
            ("_X_AMZN_TRACE_ID", "Root=1-abc"),
            ("HOME", "/root"),
            ("NOTIFICATIONS_QUEUE_URL", "https://sqs/q"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    }

    #[test]
    fn lambdas_environment_settles_the_configuration() {
        assert_eq!(
            env_settings(lambda_env(&[])),
            Some(EnvSettings {
                region: "eu-west-1".into(),
                endpoint_url: None
            })
        );
        assert_eq!(
            env_settings(lambda_env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")])),
            Some(EnvSettings {
                region: "eu-west-1".into(),
                endpoint_url: Some("http://127.0.0.1:5000".into())
            })
        );
        // AWS_DEFAULT_REGION alone, as the chain reads it.
        let only_default: Vec<_> = lambda_env(&[])
            .into_iter()
            .filter(|(k, _)| k != "AWS_REGION")
            .collect();
        assert_eq!(env_settings(only_default).unwrap().region, "eu-west-1");
    }

    #[test]
    fn anything_else_goes_through_the_standard_chain() {
        for extra in [
            "AWS_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_USE_FIPS_ENDPOINT",
            "AWS_USE_DUALSTACK_ENDPOINT",
            "AWS_ENDPOINT_URL_SQS",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
            "AWS_MAX_ATTEMPTS",
            "AWS_RETRY_MODE",
            "AWS_REQUEST_CHECKSUM_CALCULATION",
        ] {
            assert_eq!(env_settings(lambda_env(&[(extra, "x")])), None, "{extra}");
        }
        for missing in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let vars: Vec<_> = lambda_env(&[])
                .into_iter()
                .filter(|(k, _)| k != missing)
                .collect();
            assert_eq!(env_settings(vars), None, "{missing}");
        }
        let no_region: Vec<_> = lambda_env(&[])
            .into_iter()
            .filter(|(k, _)| !k.ends_with("REGION"))
            .collect();
        assert_eq!(env_settings(no_region), None);
        assert_eq!(
            env_settings(lambda_env(&[("AWS_REGION", "")]))
                .unwrap()
                .region,
            "eu-west-1"
        );
    }

    #[test]
    fn the_settled_configuration_is_the_chains() {
        let config = settings_config(
            EnvSettings {
                region: "eu-west-1".into(),
                endpoint_url: Some("http://127.0.0.1:5000".into()),
            },
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .build(),
        );
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!(
            config.retry_config(),
            Some(&aws_config::retry::RetryConfig::standard())
        );
        assert_eq!(
            config.timeout_config().and_then(|t| t.operation_timeout()),
            Some(Duration::from_secs(5))
        );
        assert!(config.credentials_provider().is_some());
        assert!(config.identity_cache().is_some());
        assert!(config.sleep_impl().is_some());
        assert!(config.http_client().is_some());
        assert_eq!(config.behavior_version(), Some(BehaviorVersion::latest()));
        assert_eq!(
            config.stalled_stream_protection().map(|s| s.is_enabled()),
            Some(false)
        );
    }

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

    #[test]
    fn the_s3_client_is_built_at_first_use_and_shared_by_clones() {
        let sdk = settings_config(
            EnvSettings {
                region: "eu-west-1".into(),
                endpoint_url: Some("http://127.0.0.1:9".into()),
            },
            TimeoutConfig::builder().build(),
        );
        let s3 = LazyS3::new(&sdk);
        let clone = s3.clone();
        assert!(!s3.is_built(), "built before any use");
        // A first use (building a request sends nothing) builds it, with the configuration given.
        assert_eq!(s3.config().region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(s3.is_built());
        assert!(clone.is_built(), "clones share the one client");
        let given = LazyS3::from(s3_client(&sdk));
        assert!(given.is_built());
    }
}
