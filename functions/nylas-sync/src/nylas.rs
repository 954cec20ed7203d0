//! The Nylas v3 REST client: bearer auth, timeouts, retries with jitter for 5xx and timeouts, and
//! 429 surfaced (with `Retry-After`) to the caller rather than slept on inside a Lambda. Every
//! call is counted by endpoint and status.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::ApiKey;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum NylasError {
    /// 404: the object is gone.
    #[error("not found")]
    NotFound,
    /// 429: come back after the given delay (Retry-After, or a default).
    #[error("rate limited, retry after {0:?}")]
    RateLimited(Duration),
    /// 401/403: the grant (or the key) is no longer authorised.
    #[error("unauthorised ({0})")]
    Unauthorized(u16),
    /// 5xx, timeouts and connection errors that persisted through the retries.
    #[error("Nylas unavailable: {0}")]
    Unavailable(String),
    /// Any other 4xx, or an answer that is not the documented shape.
    #[error("Nylas refused the request: {0}")]
    Rejected(String),
}

impl NylasError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited(_) | Self::Unavailable(_))
    }
}

/// Retry and timeout settings.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts for 5xx and timeouts, the first included.
    pub attempts: u32,
    /// Base of the exponential backoff between attempts; each wait is jittered in [base/2, base].
    pub backoff: Duration,
    /// Delay used for a 429 without `Retry-After`.
    pub default_retry_after: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            attempts: 3,
            backoff: Duration::from_millis(200),
            default_retry_after: Duration::from_secs(30),
        }
    }
}

/// Counts of calls by `endpoint status`, e.g. `messages.get 200`.
#[derive(Debug, Default)]
pub struct CallCounter(Mutex<BTreeMap<String, u64>>);

impl CallCounter {
    fn record(&self, endpoint: &str, status: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(format!("{endpoint} {status}")).or_default() += 1;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
    /// Every call made, retries included.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// A Nylas list page.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub data: Vec<Value>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct One {
    data: Value,
}

pub struct NylasClient {
    http: reqwest::Client,
    base: reqwest::Url,
    api_key: ApiKey,
    settings: ClientSettings,
    pub calls: CallCounter,
}

impl NylasClient {
    /// The client every function builds: `NYLAS_API_URI` (default Nylas's US endpoint) and
    /// the API key from the loaded secrets (or `NYLAS_API_KEY` locally).
    pub fn from_config(
        env: &impl crate::config::Env,
        secrets: &crate::config::Secrets,
    ) -> Result<Self, crate::config::ConfigError> {
        let api_uri = env
            .optional("NYLAS_API_URI")
            .unwrap_or_else(|| crate::config::DEFAULT_NYLAS_API_URI.into());
        Self::new(
            &api_uri,
            secrets.require_api_key(env)?,
            ClientSettings::default(),
        )
        .map_err(|e| crate::config::ConfigError::Invalid {
            name: "NYLAS_API_URI",
            reason: e.to_string(),
        })
    }

    pub fn new(
        base_uri: &str,
        api_key: ApiKey,
        settings: ClientSettings,
    ) -> Result<Self, NylasError> {
        let base = reqwest::Url::parse(base_uri)
            .map_err(|e| NylasError::Rejected(format!("NYLAS_API_URI is not a URL: {e}")))?;
        // The process's TLS configuration and root store (crate::tls), with this client's timeouts.
        let http = crate::tls::http_builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| NylasError::Rejected(e.to_string()))?;
        Ok(Self {
            http,
            base,
            api_key,
            settings,
            calls: CallCounter::default(),
        })
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<reqwest::Url, NylasError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| NylasError::Rejected("NYLAS_API_URI cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// GET with retries for 5xx and timeouts; 429, 401/403 and 404 are returned at once.
    async fn get(&self, endpoint: &str, url: reqwest::Url) -> Result<bytes::Bytes, NylasError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .http
                .get(url.clone())
                .bearer_auth(self.api_key.expose())
                .send()
                .await;
            let retryable = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    self.calls.record(endpoint, &status.to_string());
                    match status {
                        200..=299 => {
                            return resp
                                .bytes()
                                .await
                                .map_err(|e| NylasError::Unavailable(e.to_string()))
                        }
                        404 => return Err(NylasError::NotFound),
                        401 | 403 => return Err(NylasError::Unauthorized(status)),
                        429 => {
                            let after = resp
                                .headers()
                                .get(reqwest::header::RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map(Duration::from_secs)
                                .unwrap_or(self.settings.default_retry_after);
                            return Err(NylasError::RateLimited(after));
                        }
                        500..=599 => format!("HTTP {status}"),
                        _ => return Err(NylasError::Rejected(format!("HTTP {status}"))),
                    }
                }
                Err(e) => {
                    self.calls
                        .record(endpoint, if e.is_timeout() { "timeout" } else { "error" });
                    if e.is_builder() {
                        return Err(NylasError::Rejected(e.to_string()));
                    }
                    e.to_string()
                }
            };
            if attempt >= self.settings.attempts {
                return Err(NylasError::Unavailable(retryable));
            }
            tokio::time::sleep(jittered(self.settings.backoff * 2u32.pow(attempt - 1))).await;
        }
    }

    async fn get_one(&self, endpoint: &str, url: reqwest::Url) -> Result<Value, NylasError> {
        let body = self.get(endpoint, url).await?;
        serde_json::from_slice::<One>(&body)
            .map(|o| o.data)
            .map_err(|e| {
                NylasError::Rejected(format!(
                    "unexpected answer: {}",
                    crate::json_error_summary(&e)
                ))
            })
    }

    pub async fn get_message(&self, grant: &str, id: &str) -> Result<Value, NylasError> {
        let url = self.url(&["v3", "grants", grant, "messages", id], &[])?;
        self.get_one("messages.get", url).await
    }

    pub async fn get_event(
        &self,
        grant: &str,
        calendar_id: &str,
        id: &str,
    ) -> Result<Value, NylasError> {
        let url = self.url(
            &["v3", "grants", grant, "events", id],
            &[("calendar_id", calendar_id)],
        )?;
        self.get_one("events.get", url).await
    }

    pub async fn get_folder(&self, grant: &str, id: &str) -> Result<Value, NylasError> {
        let url = self.url(&["v3", "grants", grant, "folders", id], &[])?;
        self.get_one("folders.get", url).await
    }

    pub async fn get_calendar(&self, grant: &str, id: &str) -> Result<Value, NylasError> {
        let url = self.url(&["v3", "grants", grant, "calendars", id], &[])?;
        self.get_one("calendars.get", url).await
    }

    /// One grant (`GET /v3/grants/{id}`, an application-level call).
    pub async fn get_grant(&self, grant: &str) -> Result<Value, NylasError> {
        let url = self.url(&["v3", "grants", grant], &[])?;
        self.get_one("grants.get", url).await
    }

    /// Why a grant's data call answered 401/403: asks Nylas about the grant with the
    /// application's key (one call), and reads the answer with [`why_unauthorized`].
    pub async fn diagnose_unauthorized(&self, grant: &str) -> Unauthorized {
        why_unauthorized(&self.get_grant(grant).await)
    }

    /// One webhook destination (`GET /v3/webhooks/{id}`, an application-level call): its
    /// `status` (`active`, `pause`, `failing`, `failed`) and `status_updated_at`.
    pub async fn get_webhook(&self, id: &str) -> Result<Value, NylasError> {
        let url = self.url(&["v3", "webhooks", id], &[])?;
        self.get_one("webhooks.get", url).await
    }

    /// Sets a destination's `status` (`PUT /v3/webhooks/{id}`; `active` reactivates a `failed`
    /// one). One attempt: the next scheduler tick is the retry.
    pub async fn set_webhook_status(&self, id: &str, status: &str) -> Result<(), NylasError> {
        const ENDPOINT: &str = "webhooks.update";
        let url = self.url(&["v3", "webhooks", id], &[])?;
        let resp = self
            .http
            .put(url)
            .bearer_auth(self.api_key.expose())
            .json(&serde_json::json!({ "status": status }))
            .send()
            .await
            .map_err(|e| {
                self.calls
                    .record(ENDPOINT, if e.is_timeout() { "timeout" } else { "error" });
                NylasError::Unavailable(e.to_string())
            })?;
        let code = resp.status().as_u16();
        self.calls.record(ENDPOINT, &code.to_string());
        match code {
            200..=299 => Ok(()),
            404 => Err(NylasError::NotFound),
            401 | 403 => Err(NylasError::Unauthorized(code)),
            429 => Err(NylasError::RateLimited(self.settings.default_retry_after)),
            500..=599 => Err(NylasError::Unavailable(format!("HTTP {code}"))),
            _ => Err(NylasError::Rejected(format!("HTTP {code}"))),
        }
    }

    /// Every grant of the application (`GET /v3/grants`, offset pagination).
    pub async fn list_grants(&self) -> Result<Vec<Value>, NylasError> {
        #[derive(Deserialize)]
        struct Grants {
            #[serde(default)]
            data: Vec<Value>,
        }
        let (mut all, limit) = (Vec::new(), 200usize);
        loop {
            let (l, o) = (limit.to_string(), all.len().to_string());
            let url = self.url(
                &["v3", "grants"],
                &[("limit", l.as_str()), ("offset", o.as_str())],
            )?;
            let body = self.get("grants.list", url).await?;
            let page: Grants = serde_json::from_slice(&body).map_err(|e| {
                NylasError::Rejected(format!(
                    "unexpected answer: {}",
                    crate::json_error_summary(&e)
                ))
            })?;
            let n = page.data.len();
            all.extend(page.data);
            if n < limit {
                return Ok(all);
            }
        }
    }

    /// One page of a listing (`resource` = `messages`, `events`, `events/import` or `calendars`).
    pub async fn list(
        &self,
        grant: &str,
        resource: &str,
        query: &[(&str, &str)],
    ) -> Result<Page, NylasError> {
        let mut segments = vec!["v3", "grants", grant];
        segments.extend(resource.split('/'));
        let url = self.url(&segments, query)?;
        let endpoint = match resource {
            "events/import" => "events.import".to_string(),
            r => format!("{r}.list"),
        };
        let body = self.get(&endpoint, url).await?;
        serde_json::from_slice(&body).map_err(|e| {
            NylasError::Rejected(format!(
                "unexpected answer: {}",
                crate::json_error_summary(&e)
            ))
        })
    }
}

/// Why Nylas refused a grant's data call with 401/403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// The grant is invalid (expired, revoked) or gone: stop syncing it until it is
    /// re-authenticated (`grant.updated` 25027 brings it back with a catch-up).
    GrantRevoked,
    /// The application's API key itself is refused (rotated, revoked): nothing is wrong with the
    /// grant; every call fails until the key is fixed. Keep the work and alarm.
    KeyRejected,
    /// Neither is clear (the grant looks valid, or Nylas did not answer): try again later.
    Unknown,
}

/// Reads the answer of `GET /v3/grants/{id}` (made with the application's key) after a grant's
/// data call answered 401/403.
pub fn why_unauthorized(grant_lookup: &Result<Value, NylasError>) -> Unauthorized {
    match grant_lookup {
        Ok(grant) => match grant.get("grant_status").and_then(Value::as_str) {
            Some("valid") => Unauthorized::Unknown,
            Some(_) => Unauthorized::GrantRevoked,
            None => Unauthorized::Unknown,
        },
        Err(NylasError::NotFound) => Unauthorized::GrantRevoked,
        Err(NylasError::Unauthorized(_)) => Unauthorized::KeyRejected,
        Err(_) => Unauthorized::Unknown,
    }
}

/// A delay in [d/2, d], so many retrying clients do not synchronise.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(fraction)
}

#[cfg(test)]
mod unauthorized_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_401_is_the_grant_only_when_nylas_says_the_grant_is_invalid_or_gone() {
        let invalid = Ok(json!({"id": "g", "grant_status": "invalid"}));
        assert_eq!(why_unauthorized(&invalid), Unauthorized::GrantRevoked);
        assert_eq!(
            why_unauthorized(&Err(NylasError::NotFound)),
            Unauthorized::GrantRevoked
        );
    }

    #[test]
    fn a_key_that_is_refused_for_the_grant_lookup_too_is_the_key() {
        assert_eq!(
            why_unauthorized(&Err(NylasError::Unauthorized(401))),
            Unauthorized::KeyRejected
        );
    }

    #[test]
    fn anything_else_is_unknown_and_retried() {
        for lookup in [
            Ok(json!({"id": "g", "grant_status": "valid"})),
            Ok(json!({"id": "g"})),
            Err(NylasError::Unavailable("503".into())),
            Err(NylasError::RateLimited(Duration::from_secs(1))),
        ] {
            assert_eq!(why_unauthorized(&lookup), Unauthorized::Unknown);
        }
    }
}
