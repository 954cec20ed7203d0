//! The configuration contract (see the README's table): environment variables read once per
//! cold start, and the secrets, from Secrets Manager (`SECRETS_ARN`) or, locally, from
//! `NYLAS_API_KEY` / `NYLAS_WEBHOOK_SECRETS`. A missing variable fails the start, naming it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Default Nylas API host.
pub const DEFAULT_NYLAS_API_URI: &str = "https://api.us.nylas.com";

/// Why configuration could not be loaded. Messages name the variable, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("could not read the secret named by SECRETS_ARN: {0}")]
    SecretUnavailable(String),
    #[error("the secret named by SECRETS_ARN is not the expected JSON ({{\"nylas_api_key\": \"...\", \"webhook_secrets\": [\"...\"]}}): {0}")]
    SecretMalformed(String),
}

/// A source of environment variables; the process environment in Lambda, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// The variable if set and non-empty.
    fn optional(&self, name: &str) -> Option<String> {
        self.var(name).filter(|v| !v.trim().is_empty())
    }

    /// The variable, or [`ConfigError::Missing`] naming it.
    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// A number, or `default` when unset.
    fn number_or(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: "expected a non-negative integer".into(),
            }),
        }
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<&str, &str, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

/// A webhook secret. `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The Nylas API key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What the secret holds: `{"nylas_api_key": "...", "webhook_secrets": ["current", "previous?"]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Secrets {
    #[serde(default)]
    pub nylas_api_key: Option<ApiKey>,
    /// Current first. An empty list is allowed: the ingest then answers challenges (so the
    /// destination can be registered, which is what returns the first secret) and rejects
    /// every notification with 401.
    #[serde(default)]
    pub webhook_secrets: Vec<WebhookSecret>,
    /// The destination `nylas-sync register-webhook` created (the scheduler watches its health).
    #[serde(default)]
    pub webhook_id: Option<String>,
}

impl Secrets {
    /// Parses the Secrets Manager JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text)
            .map_err(|e| ConfigError::SecretMalformed(crate::json_error_summary(&e)))
    }

    /// The local form: `NYLAS_WEBHOOK_SECRETS` (comma-separated, current first) and
    /// `NYLAS_API_KEY`. Functions that need one of them require it with [`Self::require_api_key`]
    /// or [`Self::require_webhook_secrets`].
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            nylas_api_key: env.optional("NYLAS_API_KEY").map(ApiKey::new),
            webhook_secrets: env
                .var("NYLAS_WEBHOOK_SECRETS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(WebhookSecret::new)
                .collect(),
            webhook_id: env.optional("NYLAS_WEBHOOK_ID"),
        })
    }

    /// The ingest's check: without `SECRETS_ARN`, `NYLAS_WEBHOOK_SECRETS` must be set (it may be
    /// empty, `NYLAS_WEBHOOK_SECRETS=`, before the first registration).
    pub fn require_webhook_secrets(env: &impl Env) -> Result<(), ConfigError> {
        if env.optional("SECRETS_ARN").is_none() && env.var("NYLAS_WEBHOOK_SECRETS").is_none() {
            return Err(ConfigError::Missing("NYLAS_WEBHOOK_SECRETS"));
        }
        Ok(())
    }

    /// Loads the secrets: from Secrets Manager when `SECRETS_ARN` is set, else from the environment.
    pub async fn load(env: &impl Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        match env.optional("SECRETS_ARN") {
            Some(arn) => {
                let client = aws_sdk_secretsmanager::Client::new(sdk);
                let out = client
                    .get_secret_value()
                    .secret_id(arn)
                    .send()
                    .await
                    .map_err(|e| {
                        ConfigError::SecretUnavailable(
                            aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                        )
                    })?;
                let text = out.secret_string().ok_or_else(|| {
                    ConfigError::SecretMalformed("the secret has no SecretString".into())
                })?;
                Self::from_json(text)
            }
            None => Self::from_env(env),
        }
    }

    /// The API key, or an error naming where it should have come from.
    pub fn require_api_key(&self, env: &impl Env) -> Result<ApiKey, ConfigError> {
        self.nylas_api_key
            .clone()
            .ok_or(if env.optional("SECRETS_ARN").is_some() {
                ConfigError::SecretMalformed("nylas_api_key is missing".into())
            } else {
                ConfigError::Missing("NYLAS_API_KEY")
            })
    }
}

/// Limits the ingest enforces. All have defaults; the README documents each variable.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest request body accepted, compressed or not (`MAX_BODY_BYTES`, default 4 MiB:
    /// Nylas sends full messages up to 1 MB, which JSON escaping can grow).
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression (`MAX_DECOMPRESSED_BYTES`, default 4 MiB).
    pub max_decompressed_bytes: usize,
    /// Largest SQS message sent inline, body plus attributes (`SQS_MAX_MESSAGE_BYTES`, default
    /// 262,144, the limit every SQS endpoint and emulator accepts); larger goes to S3.
    pub sqs_max_message_bytes: usize,
    /// Time allowed for SQS (and S3) to accept a notification before answering 503
    /// (`ENQUEUE_TIMEOUT_MS`, default 6,000: well inside Nylas's 10-second limit).
    pub enqueue_timeout: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_decompressed_bytes: 4 << 20,
            sqs_max_message_bytes: 262_144,
            enqueue_timeout: Duration::from_millis(6_000),
        }
    }
}

impl IngestLimits {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let size = |name, default: usize| -> Result<usize, ConfigError> {
            let v = env.number_or(name, default as u64)?;
            usize::try_from(v).map_err(|_| ConfigError::Invalid {
                name,
                reason: "too large".into(),
            })
        };
        let enqueue_timeout =
            env.number_or("ENQUEUE_TIMEOUT_MS", d.enqueue_timeout.as_millis() as u64)?;
        if !(100..=8_000).contains(&enqueue_timeout) {
            return Err(ConfigError::Invalid {
                name: "ENQUEUE_TIMEOUT_MS",
                reason: "must be between 100 and 8000 so the answer beats Nylas's 10 s timeout"
                    .into(),
            });
        }
        Ok(Self {
            max_body_bytes: size("MAX_BODY_BYTES", d.max_body_bytes)?,
            max_decompressed_bytes: size("MAX_DECOMPRESSED_BYTES", d.max_decompressed_bytes)?,
            sqs_max_message_bytes: size("SQS_MAX_MESSAGE_BYTES", d.sqs_max_message_bytes)?,
            enqueue_timeout: Duration::from_millis(enqueue_timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn secrets_json_reads_the_api_key_and_the_secret_list_in_order() {
        let s =
            Secrets::from_json(r#"{"nylas_api_key":"k","webhook_secrets":["new","old"]}"#).unwrap();
        assert_eq!(s.nylas_api_key.unwrap().expose(), "k");
        let list: Vec<_> = s.webhook_secrets.iter().map(|s| s.expose()).collect();
        assert_eq!(list, ["new", "old"]);
    }

    #[test]
    fn malformed_secret_json_is_an_error_that_does_not_echo_the_value() {
        let err = Secrets::from_json(r#"{"webhook_secrets":"hunter2-not-a-list"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SECRETS_ARN"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn local_secrets_are_comma_separated_and_trimmed() {
        let env = HashMap::from([
            ("NYLAS_WEBHOOK_SECRETS", " a , b,,"),
            ("NYLAS_API_KEY", "key"),
        ]);
        let s = Secrets::from_env(&env).unwrap();
        let list: Vec<_> = s.webhook_secrets.iter().map(|s| s.expose()).collect();
        assert_eq!(list, ["a", "b"]);
        assert_eq!(s.require_api_key(&env).unwrap().expose(), "key");
    }

    #[test]
    fn an_empty_local_secret_list_is_allowed_before_registration() {
        let env = HashMap::from([("NYLAS_WEBHOOK_SECRETS", "")]);
        assert!(Secrets::from_env(&env).unwrap().webhook_secrets.is_empty());
    }

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let env: HashMap<&str, &str> = HashMap::new();
        let err = Secrets::require_webhook_secrets(&env).unwrap_err();
        assert!(err.to_string().contains("NYLAS_WEBHOOK_SECRETS"), "{err}");
        let err = Secrets::from_env(&HashMap::from([("NYLAS_WEBHOOK_SECRETS", "x")]))
            .unwrap()
            .require_api_key(&env)
            .unwrap_err();
        assert!(err.to_string().contains("NYLAS_API_KEY"), "{err}");
        assert!(env
            .required("NOTIFICATIONS_QUEUE_URL")
            .unwrap_err()
            .to_string()
            .contains("NOTIFICATIONS_QUEUE_URL"));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let s = Secrets::from_json(r#"{"nylas_api_key":"key-123","webhook_secrets":["sec-456"]}"#)
            .unwrap();
        let text = format!("{s:?}");
        assert!(
            !text.contains("key-123") && !text.contains("sec-456"),
            "{text}"
        );
    }

    #[test]
    fn limits_have_defaults_and_reject_nonsense() {
        let empty: HashMap<&str, &str> = HashMap::new();
        let d = IngestLimits::from_env(&empty).unwrap();
        assert_eq!(d.sqs_max_message_bytes, 262_144);
        let bad = HashMap::from([("MAX_BODY_BYTES", "lots")]);
        assert!(IngestLimits::from_env(&bad)
            .unwrap_err()
            .to_string()
            .contains("MAX_BODY_BYTES"));
        let slow = HashMap::from([("ENQUEUE_TIMEOUT_MS", "12000")]);
        assert!(IngestLimits::from_env(&slow)
            .unwrap_err()
            .to_string()
            .contains("ENQUEUE_TIMEOUT_MS"));
    }
}
