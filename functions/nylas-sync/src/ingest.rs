//! The ingest handler behind API Gateway: answers Nylas's challenge, verifies
//! `x-nylas-signature` over the raw bytes, checks the routing fields, and answers 200 only after
//! the notification is durable in SQS (or S3 + SQS). Anything else gets a short JSON error and
//! changes nothing.

use std::io::Read;

use lambda_http::http::{header, HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::aws::{self, AwsTimeouts};
use crate::config::{ConfigError, Env, IngestLimits, Secrets};
use crate::metrics::{names, Emf};
use crate::notification::{parse_routing, Routing};
use crate::queue::{Destination, NotificationSink, Placement, SqsNotificationSink};
use crate::secrets::{self, SecretsManagerSource, Verdict, WebhookSecrets};
use crate::signature::SignatureError;

/// Longest challenge echoed back, in bytes.
pub const MAX_CHALLENGE_BYTES: usize = 1024;

pub const SIGNATURE_HEADER: &str = "x-nylas-signature";

/// Everything the handler needs, built once per cold start.
pub struct Ingest<S> {
    /// Fixed (`vec![...].into()`), or re-read from Secrets Manager as a rotation requires.
    pub secrets: WebhookSecrets,
    pub limits: IngestLimits,
    pub sink: S,
}

impl Ingest<SqsNotificationSink> {
    /// Reads the configuration contract and builds the clients. Fails naming the first missing
    /// variable, before any network call.
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let queue_url = env.required("NOTIFICATIONS_QUEUE_URL")?;
        let bucket = env.required("PAYLOAD_BUCKET")?;
        let limits = IngestLimits::from_env(env)?;
        Secrets::require_webhook_secrets(env)?;
        let refresh_interval = secrets::refresh_interval(env)?;
        let sdk = aws::sdk_config(AwsTimeouts::INTERACTIVE).await;
        let secrets = match env.optional("SECRETS_ARN") {
            Some(arn) => {
                let source = SecretsManagerSource {
                    client: aws_sdk_secretsmanager::Client::new(&sdk),
                    secret_id: arn,
                };
                let initial = secrets::SecretSource::load(&source).await?;
                WebhookSecrets::refreshing(initial, Box::new(source), refresh_interval)
            }
            None => Secrets::from_env(env)?.webhook_secrets.into(),
        };
        if secrets.snapshot().webhook_secrets.is_empty() {
            tracing::warn!("no webhook secret configured: challenges are answered, every notification is rejected until one is stored");
        }
        Ok(Self {
            secrets,
            sink: SqsNotificationSink {
                sqs: aws::sqs_client(&sdk),
                s3: aws::s3_client(&sdk),
                destination: Destination {
                    queue_url,
                    bucket,
                    max_message_bytes: limits.sqs_max_message_bytes,
                },
            },
            limits,
        })
    }
}

/// The outcome of one request: what is answered and what is logged.
#[derive(Debug)]
enum Outcome {
    Challenge(String),
    Queued {
        placement: Placement,
    },
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl Outcome {
    fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            status,
            code,
            message: message.into(),
        }
    }
}

impl<S: NotificationSink> Ingest<S> {
    /// Handles one API Gateway request (HTTP API v2 or REST API v1; `lambda_http` has already
    /// undone API Gateway's base64 encoding, so the body is the bytes Nylas signed).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let method = req.method().clone();
        let mut routing_log: Option<Routing<'static>> = None;
        let mut secrets_refreshed = false;
        let outcome = match method {
            Method::GET => self.challenge(&req),
            Method::POST => {
                let (parts, body) = req.into_parts();
                self.notification(
                    &parts.headers,
                    body,
                    &mut routing_log,
                    &mut secrets_refreshed,
                )
                .await
            }
            _ => Outcome::refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET for the challenge or POST for notifications",
            ),
        };
        log(&method, &outcome, routing_log.as_ref());
        if method == Method::POST {
            emit_metrics(&outcome, secrets_refreshed);
        }
        respond(outcome)
    }

    fn challenge(&self, req: &Request) -> Outcome {
        let challenge = req
            .query_string_parameters_ref()
            .and_then(|q| q.first("challenge"));
        match challenge {
            None | Some("") => Outcome::refused(
                StatusCode::BAD_REQUEST,
                "missing_challenge",
                "GET must carry ?challenge=",
            ),
            Some(c) if c.len() > MAX_CHALLENGE_BYTES => Outcome::refused(
                StatusCode::BAD_REQUEST,
                "challenge_too_long",
                format!("challenge longer than {MAX_CHALLENGE_BYTES} bytes"),
            ),
            Some(c) => Outcome::Challenge(c.to_string()),
        }
    }

    async fn notification(
        &self,
        headers: &HeaderMap,
        body: Body,
        routing_log: &mut Option<Routing<'static>>,
        secrets_refreshed: &mut bool,
    ) -> Outcome {
        let raw: &[u8] = body.as_ref();
        if raw.len() > self.limits.max_body_bytes {
            return Outcome::refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body larger than {} bytes", self.limits.max_body_bytes),
            );
        }
        let gzip = match content_encoding(headers) {
            Ok(gzip) => gzip,
            Err(()) => {
                return Outcome::refused(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_content_encoding",
                    "Content-Encoding must be gzip or absent",
                )
            }
        };
        let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
        let verification = self.secrets.verify(signature, raw).await;
        *secrets_refreshed = verification.refreshed;
        match verification.verdict {
            Verdict::Valid => {}
            Verdict::Invalid(e) => {
                let message = match e {
                    SignatureError::Missing => "missing x-nylas-signature",
                    SignatureError::Malformed | SignatureError::Mismatch => {
                        "invalid x-nylas-signature"
                    }
                };
                return Outcome::refused(StatusCode::UNAUTHORIZED, "invalid_signature", message);
            }
            // Possibly signed with a secret this instance will know in a moment: Nylas retries a 503.
            Verdict::RotationPending => {
                return Outcome::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "secret_rotation",
                    "signature not verified while the webhook secret is being rotated; retry",
                )
            }
        }
        // Verified: the bytes are Nylas's. Decompress (bounded) and take ownership as text.
        let text = match (gzip, body) {
            (true, body) => match gunzip_bounded(body.as_ref(), self.limits.max_decompressed_bytes)
            {
                Ok(bytes) => String::from_utf8(bytes),
                Err(GunzipError::TooLarge) => {
                    return Outcome::refused(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!(
                            "decompressed body larger than {} bytes",
                            self.limits.max_decompressed_bytes
                        ),
                    )
                }
                Err(GunzipError::Broken) => {
                    return Outcome::refused(
                        StatusCode::BAD_REQUEST,
                        "invalid_gzip",
                        "body is not valid gzip",
                    )
                }
            },
            (false, Body::Text(text)) => Ok(text),
            (false, Body::Binary(bytes)) => String::from_utf8(bytes),
            (false, Body::Empty) => Ok(String::new()),
            (false, _) => Ok(String::new()),
        };
        // Signed is never refused for its content (a refusal is retried by Nylas, then dropped
        // for good): a body without readable routing is queued under a digest of its bytes and
        // parked by the consumer, where it is visible.
        let text = text.unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let routing = match parse_routing(text.as_bytes()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                tracing::warn!(reason = %e, "signed notification without routing fields: queued for the consumer to park");
                Routing::opaque(text.as_bytes())
            }
        };
        let enqueued = tokio::time::timeout(
            self.limits.enqueue_timeout,
            self.sink.enqueue(&routing, text),
        )
        .await;
        *routing_log = Some(routing);
        match enqueued {
            Ok(Ok(placement)) => Outcome::Queued { placement },
            Ok(Err(e)) => {
                tracing::error!(error = %e, "enqueue failed");
                Outcome::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "enqueue_failed",
                    "notification not stored; retry",
                )
            }
            Err(_) => Outcome::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "enqueue_timeout",
                "notification not stored; retry",
            ),
        }
    }
}

/// `Ok(true)` for gzip, `Ok(false)` for none or identity, `Err` for anything else.
fn content_encoding(headers: &HeaderMap) -> Result<bool, ()> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let v = value.to_str().map_err(|_| ())?.trim();
        if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
            if gzip {
                return Err(()); // gzip twice is not something Nylas sends
            }
            gzip = true;
        } else if !(v.is_empty() || v.eq_ignore_ascii_case("identity")) {
            return Err(());
        }
    }
    Ok(gzip)
}

#[derive(Debug, PartialEq, Eq)]
pub enum GunzipError {
    TooLarge,
    Broken,
}

/// Decompresses at most `limit` bytes; a gzip bomb stops at `limit + 1` bytes, never more memory.
pub fn gunzip_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    flate2::read::GzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| GunzipError::Broken)?;
    if out.len() > limit {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}

fn log(method: &Method, outcome: &Outcome, routing: Option<&Routing<'_>>) {
    let notification_id = routing.map(|r| r.id.as_ref());
    let trigger = routing.map(|r| r.trigger.as_ref());
    let grant_id = routing.and_then(|r| r.grant_id.as_deref());
    match outcome {
        Outcome::Challenge(_) => {
            tracing::info!(%method, status = 200, outcome = "challenge", "request")
        }
        Outcome::Queued { placement } => tracing::info!(
            %method,
            status = 200,
            outcome = "queued",
            via_s3 = matches!(placement, Placement::ClaimCheck(_)),
            notification_id,
            trigger,
            grant_id,
            "request"
        ),
        Outcome::Refused { status, code, .. } => tracing::warn!(
            %method,
            status = status.as_u16(),
            outcome = *code,
            notification_id,
            trigger,
            grant_id,
            "request"
        ),
    }
}

/// One EMF line per notification request (the ingest serves one request per invocation).
fn emit_metrics(outcome: &Outcome, secrets_refreshed: bool) {
    let mut m = Emf::new("ingest");
    let (enqueued, via_s3, rejected) = match outcome {
        Outcome::Queued { placement } => (
            1,
            u64::from(matches!(placement, Placement::ClaimCheck(_))),
            0,
        ),
        Outcome::Refused { code, .. } => {
            m.count_with(names::NOTIFICATIONS_REJECTED, &[("Reason", code)], 1);
            (0, 0, 1)
        }
        Outcome::Challenge(_) => (0, 0, 0),
    };
    m.count(names::NOTIFICATIONS_RECEIVED, 1)
        .count(names::NOTIFICATIONS_ENQUEUED, enqueued)
        .count(names::ENQUEUED_VIA_S3, via_s3)
        .count(names::NOTIFICATIONS_REJECTED, rejected);
    if secrets_refreshed {
        m.count(names::SECRETS_REFRESHED, 1);
    }
    m.flush();
}

fn respond(outcome: Outcome) -> Response<Body> {
    let builder = Response::builder().header("x-content-type-options", "nosniff");
    let response = match outcome {
        Outcome::Challenge(challenge) => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::Text(challenge)),
        Outcome::Queued { .. } => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::Text(r#"{"status":"queued"}"#.into())),
        Outcome::Refused {
            status,
            code,
            message,
        } => {
            let mut b = builder
                .status(status)
                .header(header::CONTENT_TYPE, "application/json");
            if status == StatusCode::METHOD_NOT_ALLOWED {
                b = b.header(header::ALLOW, "GET, POST");
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                b = b.header(header::RETRY_AFTER, "5");
            }
            let body = serde_json::json!({ "error": code, "message": message }).to_string();
            b.body(Body::Text(body))
        }
    };
    // Every header above is a static, valid value, so building cannot fail.
    response.unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_returns_the_original_bytes() {
        assert_eq!(gunzip_bounded(&gzip(b"hello"), 10).unwrap(), b"hello");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(
            bomb.len() < 100_000,
            "64 MiB of zeros compresses to {} bytes",
            bomb.len()
        );
        assert_eq!(gunzip_bounded(&bomb, 1 << 20), Err(GunzipError::TooLarge));
    }

    #[test]
    fn broken_gzip_is_an_error() {
        let mut z = gzip(b"hello world hello world");
        z.truncate(z.len() - 6);
        assert_eq!(gunzip_bounded(&z, 1000), Err(GunzipError::Broken));
        assert_eq!(
            gunzip_bounded(b"plain text", 1000),
            Err(GunzipError::Broken)
        );
    }

    #[test]
    fn content_encoding_accepts_gzip_and_identity_only() {
        let mut h = HeaderMap::new();
        assert_eq!(content_encoding(&h), Ok(false));
        h.insert(header::CONTENT_ENCODING, "GZip".parse().unwrap());
        assert_eq!(content_encoding(&h), Ok(true));
        h.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert_eq!(content_encoding(&h), Ok(false));
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert_eq!(content_encoding(&h), Err(()));
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        h.append(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(content_encoding(&h), Err(()));
    }
}
