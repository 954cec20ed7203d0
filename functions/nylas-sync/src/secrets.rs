//! Webhook secrets that follow a rotation without a cold start, and without rejecting a
//! notification while the secret changes.
//!
//! The ingest keeps the secrets it loaded at its cold start and re-reads them (Secrets Manager,
//! when `SECRETS_ARN` is set) only when that can change the answer:
//! - a signature matches none of them (Nylas may already sign with a new secret), or
//! - it matches the *previous* secret (the operator may have dropped it since);
//!
//! and then at most once per `SECRETS_REFRESH_SECONDS` (default 30), so a flood of forged
//! requests costs at most one Secrets Manager call per interval per instance.
//!
//! A rotation has a window this cannot close by itself: Nylas signs with the new secret from the
//! moment it returns it, before the operator's tool has stored it. The tool therefore marks the
//! secret document first (`"rotating_until": <Unix s>`) and waits one refresh interval before
//! asking Nylas; while an instance knows of that mark, a signature that matches nothing is
//! answered 503 (Nylas retries it) instead of 401, and the secrets are re-read at most once a
//! second. The mark is honoured for at most [`MAX_ROTATION_WINDOW_SECONDS`] so that a forgotten
//! one cannot turn 401s into 503s for good.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, Env, Secrets, WebhookSecret};
use crate::signature::{verify_signature_index, SignatureError};

/// Default of `SECRETS_REFRESH_SECONDS`.
pub const DEFAULT_REFRESH_SECONDS: u64 = 30;
/// Re-read interval while a rotation is announced.
pub const ROTATION_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// A `rotating_until` further ahead than this is ignored.
pub const MAX_ROTATION_WINDOW_SECONDS: i64 = 900;
/// A re-read that takes longer is abandoned (the request still has to be answered within Nylas's 10 s).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Field names of the secret document besides `nylas_api_key` and `webhook_secrets`.
pub mod field {
    /// Unix seconds until which a rotation is in progress (written by `nylas-sync rotate-secret`).
    pub const ROTATING_UNTIL: &str = "rotating_until";
    /// The Nylas webhook destination the secrets belong to (written by `nylas-sync register-webhook`).
    pub const WEBHOOK_ID: &str = "webhook_id";
}

/// What the ingest needs from the secret document.
#[derive(Debug, Clone, Default)]
pub struct LoadedSecrets {
    /// Current first.
    pub webhook_secrets: Vec<WebhookSecret>,
    pub rotating_until: Option<i64>,
}

#[derive(Deserialize)]
struct RotationFields {
    #[serde(default)]
    rotating_until: Option<i64>,
}

impl LoadedSecrets {
    /// Parses the Secrets Manager JSON document (unknown fields are ignored).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let secrets = Secrets::from_json(text)?;
        let fields: RotationFields = serde_json::from_str(text)
            .map_err(|e| ConfigError::SecretMalformed(crate::json_error_summary(&e)))?;
        Ok(Self {
            webhook_secrets: secrets.webhook_secrets,
            rotating_until: fields.rotating_until,
        })
    }

    /// Whether a rotation is announced at `now` (Unix seconds).
    pub fn rotating(&self, now: i64) -> bool {
        self.rotating_until
            .is_some_and(|until| until > now && until <= now + MAX_ROTATION_WINDOW_SECONDS)
    }
}

/// Where the secrets are re-read from.
pub trait SecretSource: Send + Sync {
    fn load(&self)
        -> Pin<Box<dyn Future<Output = Result<LoadedSecrets, ConfigError>> + Send + '_>>;
}

/// The secret named by `SECRETS_ARN`.
pub struct SecretsManagerSource {
    pub client: aws_sdk_secretsmanager::Client,
    pub secret_id: String,
}

impl SecretSource for SecretsManagerSource {
    fn load(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<LoadedSecrets, ConfigError>> + Send + '_>> {
        Box::pin(async move {
            let out = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
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
            LoadedSecrets::from_json(text)
        })
    }
}

/// `SECRETS_REFRESH_SECONDS`: the least time between two re-reads (0 to 3600, default 30).
pub fn refresh_interval(env: &impl Env) -> Result<Duration, ConfigError> {
    let seconds = env.number_or("SECRETS_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS)?;
    if seconds > 3600 {
        return Err(ConfigError::Invalid {
            name: "SECRETS_REFRESH_SECONDS",
            reason: "must be at most 3600".into(),
        });
    }
    Ok(Duration::from_secs(seconds))
}

/// The verdict on one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid(SignatureError),
    /// No secret matched while a rotation is announced: the sender should retry.
    RotationPending,
}

/// A verdict, and whether reaching it re-read the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub verdict: Verdict,
    pub refreshed: bool,
}

struct Refresh {
    source: Box<dyn SecretSource>,
    min_interval: Duration,
    /// When the secrets were last read; held while a re-read runs, so there is one at a time.
    last: tokio::sync::Mutex<tokio::time::Instant>,
}

/// The webhook secrets the ingest verifies with: fixed (local configuration, tests), or
/// re-read from a [`SecretSource`] as described in the module documentation.
pub struct WebhookSecrets {
    current: RwLock<Arc<LoadedSecrets>>,
    refresh: Option<Refresh>,
}

impl From<Vec<WebhookSecret>> for WebhookSecrets {
    /// Secrets that never change (the local `NYLAS_WEBHOOK_SECRETS`, tests).
    fn from(webhook_secrets: Vec<WebhookSecret>) -> Self {
        Self {
            current: RwLock::new(Arc::new(LoadedSecrets {
                webhook_secrets,
                rotating_until: None,
            })),
            refresh: None,
        }
    }
}

impl WebhookSecrets {
    /// Secrets loaded just now from `source`, re-read from it when needed but at most once per
    /// `min_interval`.
    pub fn refreshing(
        initial: LoadedSecrets,
        source: Box<dyn SecretSource>,
        min_interval: Duration,
    ) -> Self {
        Self {
            current: RwLock::new(Arc::new(initial)),
            refresh: Some(Refresh {
                source,
                min_interval,
                last: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            }),
        }
    }

    /// The secrets in use now.
    pub fn snapshot(&self) -> Arc<LoadedSecrets> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, next: Arc<LoadedSecrets>) {
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// Verifies `body` against the header, re-reading the secrets when a failure (or the use of
    /// the previous secret) might be explained by a change the instance has not seen yet.
    pub async fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Verification {
        let seen = self.snapshot();
        match verify_signature_index(&seen.webhook_secrets, header, body) {
            Ok(0) => Verification {
                verdict: Verdict::Valid,
                refreshed: false,
            },
            // The previous secret: still valid unless the operator dropped it.
            Ok(_) => {
                let (now, refreshed) = self.refresh_if_due(&seen).await;
                let verdict = if Arc::ptr_eq(&now, &seen) {
                    Verdict::Valid
                } else {
                    match verify_signature_index(&now.webhook_secrets, header, body) {
                        Ok(_) => Verdict::Valid,
                        Err(e) => Verdict::Invalid(e),
                    }
                };
                Verification { verdict, refreshed }
            }
            // No secret can make a missing or malformed header valid.
            Err(e @ (SignatureError::Missing | SignatureError::Malformed)) => Verification {
                verdict: Verdict::Invalid(e),
                refreshed: false,
            },
            Err(SignatureError::Mismatch) => {
                let (now, refreshed) = self.refresh_if_due(&seen).await;
                let retried = if Arc::ptr_eq(&now, &seen) {
                    Err(SignatureError::Mismatch)
                } else {
                    verify_signature_index(&now.webhook_secrets, header, body)
                };
                let verdict = match retried {
                    Ok(_) => Verdict::Valid,
                    Err(_) if now.rotating(unix_now()) => Verdict::RotationPending,
                    Err(e) => Verdict::Invalid(e),
                };
                Verification { verdict, refreshed }
            }
        }
    }

    /// Re-reads the secrets if `seen` is still current and the interval has passed. Returns the
    /// secrets to verify with now and whether this call read them.
    async fn refresh_if_due(&self, seen: &Arc<LoadedSecrets>) -> (Arc<LoadedSecrets>, bool) {
        let Some(refresh) = &self.refresh else {
            return (Arc::clone(seen), false);
        };
        let mut last = refresh.last.lock().await;
        let current = self.snapshot();
        if !Arc::ptr_eq(&current, seen) {
            // Another request re-read them while this one waited.
            return (current, false);
        }
        let interval = if current.rotating(unix_now()) {
            refresh.min_interval.min(ROTATION_REFRESH_INTERVAL)
        } else {
            refresh.min_interval
        };
        if last.elapsed() < interval {
            return (current, false);
        }
        *last = tokio::time::Instant::now();
        match tokio::time::timeout(REFRESH_TIMEOUT, refresh.source.load()).await {
            Ok(Ok(loaded)) => {
                let next = Arc::new(loaded);
                self.replace(Arc::clone(&next));
                if next.webhook_secrets.len() != current.webhook_secrets.len()
                    || next.webhook_secrets.first() != current.webhook_secrets.first()
                {
                    tracing::info!(
                        secrets = next.webhook_secrets.len(),
                        "webhook secrets changed"
                    );
                }
                (next, true)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not re-read the webhook secrets; keeping the ones loaded");
                (current, false)
            }
            Err(_) => {
                tracing::warn!("re-reading the webhook secrets timed out; keeping the ones loaded");
                (current, false)
            }
        }
    }
}

fn unix_now() -> i64 {
    crate::clock::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::sign;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A source whose document the test changes, counting reads.
    #[derive(Clone, Default)]
    struct Doc(Arc<(Mutex<LoadedSecrets>, AtomicUsize)>);

    impl Doc {
        fn set(&self, secrets: &[&str], rotating_until: Option<i64>) {
            *self.0 .0.lock().unwrap() = LoadedSecrets {
                webhook_secrets: secrets.iter().map(|s| WebhookSecret::new(*s)).collect(),
                rotating_until,
            };
        }
        fn reads(&self) -> usize {
            self.0 .1.load(Ordering::SeqCst)
        }
    }

    impl SecretSource for Doc {
        fn load(
            &self,
        ) -> Pin<Box<dyn Future<Output = Result<LoadedSecrets, ConfigError>> + Send + '_>> {
            self.0 .1.fetch_add(1, Ordering::SeqCst);
            let doc = self.0 .0.lock().unwrap().clone();
            Box::pin(async move { Ok(doc) })
        }
    }

    const BODY: &[u8] = b"{\"id\":\"n1\"}";

    fn setup(initial: &[&str], interval: u64) -> (WebhookSecrets, Doc) {
        let doc = Doc::default();
        doc.set(initial, None);
        let first = doc.0 .0.lock().unwrap().clone();
        let secrets =
            WebhookSecrets::refreshing(first, Box::new(doc.clone()), Duration::from_secs(interval));
        (secrets, doc)
    }

    async fn verdict(s: &WebhookSecrets, secret: &str) -> Verdict {
        let sig = sign(secret, BODY);
        s.verify(Some(sig.as_bytes()), BODY).await.verdict
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_secret_is_picked_up_on_the_first_failure_after_the_interval() {
        let (s, doc) = setup(&["old"], 30);
        tokio::time::advance(Duration::from_secs(31)).await;
        doc.set(&["new", "old"], None);
        assert_eq!(verdict(&s, "new").await, Verdict::Valid);
        assert_eq!(doc.reads(), 1);
        assert_eq!(verdict(&s, "old").await, Verdict::Valid);
        assert_eq!(
            doc.reads(),
            1,
            "the previous secret within the interval needs no read"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn forged_requests_cause_at_most_one_read_per_interval() {
        let (s, doc) = setup(&["current"], 30);
        for _ in 0..100 {
            assert_eq!(
                verdict(&s, "forged").await,
                Verdict::Invalid(SignatureError::Mismatch)
            );
        }
        assert_eq!(
            doc.reads(),
            0,
            "the cold start's read counts for the first interval"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..100 {
            verdict(&s, "forged").await;
        }
        assert_eq!(doc.reads(), 1);
        // Missing and malformed signatures never cause a read.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            s.verify(None, BODY).await.verdict,
            Verdict::Invalid(SignatureError::Missing)
        );
        assert_eq!(
            s.verify(Some(b"zz"), BODY).await.verdict,
            Verdict::Invalid(SignatureError::Malformed)
        );
        assert_eq!(doc.reads(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_previous_secret_stops_verifying_once_it_is_used_again() {
        let (s, doc) = setup(&["new", "old"], 30);
        assert_eq!(verdict(&s, "old").await, Verdict::Valid);
        doc.set(&["new"], None);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            verdict(&s, "old").await,
            Verdict::Invalid(SignatureError::Mismatch)
        );
        assert_eq!(verdict(&s, "new").await, Verdict::Valid);
        assert_eq!(doc.reads(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn during_an_announced_rotation_unknown_signatures_are_deferred_not_rejected() {
        let (s, doc) = setup(&["old"], 30);
        let until = unix_now() + 120;
        doc.set(&["old"], Some(until));
        tokio::time::advance(Duration::from_secs(30)).await;
        // The instance learns of the rotation on its next failure...
        assert_eq!(verdict(&s, "new").await, Verdict::RotationPending);
        assert_eq!(doc.reads(), 1);
        // ...and then re-reads every second, not every 30.
        assert_eq!(verdict(&s, "new").await, Verdict::RotationPending);
        assert_eq!(doc.reads(), 1);
        doc.set(&["new", "old"], None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(verdict(&s, "new").await, Verdict::Valid);
        assert_eq!(doc.reads(), 2);
        assert_eq!(verdict(&s, "old").await, Verdict::Valid);
        assert_eq!(
            verdict(&s, "forged").await,
            Verdict::Invalid(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_rotation_mark_far_in_the_future_or_past_is_ignored() {
        let now = 1_767_225_600;
        let mark = |until| LoadedSecrets {
            webhook_secrets: vec![],
            rotating_until: Some(until),
        };
        assert!(mark(now + 60).rotating(now));
        assert!(!mark(now - 1).rotating(now));
        assert!(!mark(now + MAX_ROTATION_WINDOW_SECONDS + 1).rotating(now));
    }

    #[test]
    fn the_document_fields_are_read_and_unknown_ones_ignored() {
        let l = LoadedSecrets::from_json(
            r#"{"nylas_api_key":"k","webhook_secrets":["a","b"],"webhook_id":"w","rotating_until":5}"#,
        )
        .unwrap();
        assert_eq!(l.webhook_secrets.len(), 2);
        assert_eq!(l.rotating_until, Some(5));
    }

    #[tokio::test]
    async fn fixed_secrets_never_refresh() {
        let s = WebhookSecrets::from(vec![WebhookSecret::new("a")]);
        assert_eq!(verdict(&s, "a").await, Verdict::Valid);
        assert_eq!(
            verdict(&s, "b").await,
            Verdict::Invalid(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_refresh_interval_has_a_default_and_a_bound() {
        use std::collections::HashMap;
        let empty: HashMap<&str, &str> = HashMap::new();
        assert_eq!(refresh_interval(&empty).unwrap(), Duration::from_secs(30));
        let zero = HashMap::from([("SECRETS_REFRESH_SECONDS", "0")]);
        assert_eq!(refresh_interval(&zero).unwrap(), Duration::ZERO);
        let big = HashMap::from([("SECRETS_REFRESH_SECONDS", "99999")]);
        assert!(refresh_interval(&big)
            .unwrap_err()
            .to_string()
            .contains("SECRETS_REFRESH_SECONDS"));
    }
}
