//! The ingest handler behind API Gateway: answers Nylas's challenge, verifies
//! `x-nylas-signature` over the raw bytes, checks the routing fields, and answers 200 only after
//! the notification is durable in SQS (or S3 + SQS). Anything else gets a short JSON error and
//! changes nothing.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine as _;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::aws::{self, AwsTimeouts};
use crate::config::{ConfigError, Env, IngestLimits, Secrets};
use crate::enqueue_request::Destination;
use crate::metrics::{names, Emf};
use crate::notification::{parse_routing, Routing};
use crate::proxy_event::{ProxyEvent, ProxyResponse};
use crate::queue::{NotificationSink, Placement};
use crate::secrets::{self, SecretsManagerSource, Verdict, WebhookSecrets};
use crate::signature::SignatureError;
use crate::sqs_queue::SqsNotificationSink;

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
                s3: aws::LazyS3::new(&sdk),
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

/// One request as the ingest sees it, whichever way it arrived: the API Gateway event read by
/// [`crate::proxy_event`] (the Lambda binary) or a `lambda_http::Request` (the local stack).
#[derive(Debug)]
struct IngestRequest<'a> {
    /// As sent; only `GET` and `POST` are served.
    pub method: &'a str,
    /// The first `challenge` query parameter, decoded.
    pub challenge: Option<Cow<'a, str>>,
    /// The first `x-nylas-signature` value.
    pub signature: Option<&'a [u8]>,
    /// Every `Content-Encoding` value.
    pub content_encoding: Vec<&'a [u8]>,
    pub body: RequestBody,
}

/// A request body as delivered; base64 is decoded only for a `POST`.
#[derive(Debug)]
enum RequestBody {
    Text(String),
    Bytes(Vec<u8>),
    /// API Gateway's base64 encoding of the bytes the client sent.
    Base64(Vec<u8>),
}

impl RequestBody {
    /// The bytes as held (still encoded for `Base64`).
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Bytes(bytes) | Self::Base64(bytes) => bytes,
        }
    }
}

/// The answer to a `GET`: the challenge echoed back.
fn challenge(challenge: Option<&str>) -> Outcome {
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

impl<S: NotificationSink> Ingest<S> {
    /// Handles one invocation of the ingest Lambda: the API Gateway event (HTTP API v2 or REST
    /// API v1) as [`ProxyEvent`] read it from the Runtime API, answered with the proxy response.
    /// Never fails: anything malformed gets a 4xx JSON answer.
    pub async fn handle_event(&self, mut event: ProxyEvent) -> ProxyResponse {
        if !event.is_object {
            let outcome = Outcome::refused(
                StatusCode::BAD_REQUEST,
                "invalid_event",
                "not an API Gateway proxy event",
            );
            log("", &outcome, None);
            return proxy_response(outcome);
        }
        // The body moves out of the event; everything else is borrowed from it.
        let body = match event.body.take() {
            None => RequestBody::Bytes(Vec::new()),
            Some(encoded) if event.is_base64_encoded => RequestBody::Base64(encoded),
            Some(bytes) => RequestBody::Bytes(bytes),
        };
        let req = IngestRequest {
            method: event.method().unwrap_or(""),
            challenge: event.challenge(),
            signature: event.signature().map(str::as_bytes),
            content_encoding: event
                .content_encoding()
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
            body,
        };
        proxy_response(self.answer(req).await)
    }

    /// Handles one request already converted by `lambda_http` (the local stack serves the ingest
    /// over real HTTP this way; `lambda_http` has undone API Gateway's base64 encoding, so the
    /// body is the bytes Nylas signed).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, Body::Empty);
        let challenge = head
            .query_string_parameters_ref()
            .and_then(|q| q.first("challenge"))
            .map(Cow::Borrowed);
        let headers = head.headers();
        let req = IngestRequest {
            method: head.method().as_str(),
            challenge,
            signature: headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()),
            content_encoding: headers
                .get_all(header::CONTENT_ENCODING)
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
            body: match body {
                Body::Text(text) => RequestBody::Text(text),
                Body::Binary(bytes) => RequestBody::Bytes(bytes),
                _ => RequestBody::Bytes(Vec::new()),
            },
        };
        respond(self.answer(req).await)
    }

    /// The one decision both entry points share: answers, logs and counts one request.
    async fn answer(&self, req: IngestRequest<'_>) -> Outcome {
        let mut routing_log: Option<Routing<'static>> = None;
        let mut secrets_refreshed = false;
        let outcome = match req.method {
            "GET" => challenge(req.challenge.as_deref()),
            "POST" => {
                self.notification(
                    req.signature,
                    &req.content_encoding,
                    req.body,
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
        log(req.method, &outcome, routing_log.as_ref());
        if req.method == "POST" {
            emit_metrics(&outcome, secrets_refreshed);
        }
        outcome
    }

    async fn notification(
        &self,
        signature: Option<&[u8]>,
        content_encodings: &[&[u8]],
        body: RequestBody,
        routing_log: &mut Option<Routing<'static>>,
        secrets_refreshed: &mut bool,
    ) -> Outcome {
        let too_large = || {
            Outcome::refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body larger than {} bytes", self.limits.max_body_bytes),
            )
        };
        // The bytes the client sent: text as is, base64 decoded (refused unread when even its
        // shortest decoding would be over the limit).
        let body = match body {
            RequestBody::Base64(encoded) => {
                if (encoded.len() / 4).saturating_mul(3).saturating_sub(2)
                    > self.limits.max_body_bytes
                {
                    return too_large();
                }
                match base64::engine::general_purpose::STANDARD.decode(&encoded) {
                    Ok(bytes) => RequestBody::Bytes(bytes),
                    Err(_) => {
                        return Outcome::refused(
                            StatusCode::BAD_REQUEST,
                            "invalid_base64",
                            "isBase64Encoded is set but the body is not base64",
                        )
                    }
                }
            }
            body => body,
        };
        let raw = body.as_bytes();
        if raw.len() > self.limits.max_body_bytes {
            return too_large();
        }
        let gzip = match content_encoding(content_encodings) {
            Ok(gzip) => gzip,
            Err(()) => {
                return Outcome::refused(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_content_encoding",
                    "Content-Encoding must be gzip or absent",
                )
            }
        };
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
            (true, body) => {
                match gunzip_bounded(body.as_bytes(), self.limits.max_decompressed_bytes) {
                    Ok(bytes) => text_of(bytes),
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
                }
            }
            (false, RequestBody::Text(text)) => text,
            (false, RequestBody::Bytes(bytes) | RequestBody::Base64(bytes)) => text_of(bytes),
        };
        // Signed is never refused for its content (a refusal is retried by Nylas, then dropped
        // for good): a body without readable routing is queued under a digest of its bytes and
        // parked by the consumer, where it is visible.
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

/// The bytes as text: as they are when they are UTF-8 (checked with SIMD: up to 1 MB per
/// notification), else with each invalid sequence replaced by U+FFFD.
fn text_of(bytes: Vec<u8>) -> String {
    if simdutf8::basic::from_utf8(&bytes).is_ok() {
        // SAFETY: simdutf8 has just checked that the bytes are UTF-8.
        unsafe { String::from_utf8_unchecked(bytes) }
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `Ok(true)` for gzip, `Ok(false)` for none or identity, `Err` for anything else.
fn content_encoding(values: &[&[u8]]) -> Result<bool, ()> {
    let mut gzip = false;
    for value in values {
        let v = header_text(value).ok_or(())?.trim();
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

/// A header value as text, under the rule of `http::HeaderValue::to_str`: visible ASCII and tabs.
fn header_text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
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

fn log(method: &str, outcome: &Outcome, routing: Option<&Routing<'_>>) {
    // The method is the client's: logged only when it looks like one.
    let method = if !method.is_empty()
        && method.len() <= 16
        && method.bytes().all(|b| b.is_ascii_alphabetic())
    {
        method
    } else {
        "(invalid)"
    };
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

/// Status, headers and body of an answer, whichever way it is sent.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

fn answer(outcome: Outcome) -> Answer {
    let mut headers = vec![("x-content-type-options", "nosniff")];
    let (status, body) = match outcome {
        Outcome::Challenge(challenge) => {
            headers.push(("content-type", "text/plain; charset=utf-8"));
            (StatusCode::OK, challenge)
        }
        Outcome::Queued { .. } => {
            headers.push(("content-type", "application/json"));
            (StatusCode::OK, r#"{"status":"queued"}"#.to_string())
        }
        Outcome::Refused {
            status,
            code,
            message,
        } => {
            headers.push(("content-type", "application/json"));
            if status == StatusCode::METHOD_NOT_ALLOWED {
                headers.push(("allow", "GET, POST"));
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                headers.push(("retry-after", "5"));
            }
            let body = serde_json::json!({ "error": code, "message": message }).to_string();
            (status, body)
        }
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn respond(outcome: Outcome) -> Response<Body> {
    let Answer {
        status,
        headers,
        body,
    } = answer(outcome);
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    // Every header above is a static, valid value, so building cannot fail.
    builder
        .body(Body::Text(body))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

fn proxy_response(outcome: Outcome) -> ProxyResponse {
    let Answer {
        status,
        headers,
        body,
    } = answer(outcome);
    ProxyResponse {
        status_code: status.as_u16(),
        headers: headers.into_iter().collect(),
        body,
        is_base64_encoded: false,
    }
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
        assert_eq!(content_encoding(&[]), Ok(false));
        assert_eq!(content_encoding(&[b"GZip"]), Ok(true));
        assert_eq!(content_encoding(&[b" identity "]), Ok(false));
        assert_eq!(content_encoding(&[b"br"]), Err(()));
        assert_eq!(content_encoding(&[b"gzip", b"gzip"]), Err(()));
        assert_eq!(content_encoding(&[b"gzip,gzip"]), Err(()));
        // Not text under HeaderValue::to_str's rule: refused as before.
        assert_eq!(content_encoding(&["gzip\u{e9}".as_bytes()]), Err(()));
        assert_eq!(content_encoding(&[b"gzip\n"]), Err(()));
    }
}
