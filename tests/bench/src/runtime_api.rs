//! A local stand-in of the Lambda Runtime API (the HTTP interface a function's runtime polls):
//! `GET /2018-06-01/runtime/invocation/next` hands out queued invocations, and the function's
//! answers (`.../response`, `.../error`, `/runtime/init/error`) are reported with the instant
//! they arrived. Point a function binary at it with `AWS_LAMBDA_RUNTIME_API=<addr>`.
//!
//! One stand-in serves one function process: a request for work held open by a process that
//! was killed would otherwise swallow the next invocation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, Mutex};

/// One invocation handed to the function.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Vec<u8>,
}

/// What the function asked or answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallKind {
    /// A request for work (the first one ends the cold start).
    Next,
    Response {
        request_id: String,
        body: Vec<u8>,
    },
    Error {
        request_id: String,
        body: Vec<u8>,
    },
    InitError {
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub kind: CallKind,
}

struct Shared {
    pending: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    calls: mpsc::UnboundedSender<Call>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    calls: mpsc::UnboundedReceiver<Call>,
    server: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const PREFIX: &str = "/2018-06-01";

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (invocations, pending) = mpsc::unbounded_channel();
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(pending),
            calls: calls_tx,
        });
        let app = axum::Router::new()
            .route(&format!("{PREFIX}/runtime/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/runtime/invocation/{{id}}/response"),
                post(response),
            )
            .route(
                &format!("{PREFIX}/runtime/invocation/{{id}}/error"),
                post(error),
            )
            .route(&format!("{PREFIX}/runtime/init/error"), post(init_error))
            .with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            invocations,
            calls,
            server,
            next_id: 0,
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API`'s value.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an invocation; returns its request id.
    pub fn invoke(&mut self, payload: Vec<u8>) -> String {
        self.next_id += 1;
        let request_id = format!("bench-{:08}", self.next_id);
        let _ = self.invocations.send(Invocation {
            request_id: request_id.clone(),
            payload,
        });
        request_id
    }

    /// The next call the function made, or `None` after `timeout`.
    pub async fn next_call(&mut self, timeout: Duration) -> Option<Call> {
        tokio::time::timeout(timeout, self.calls.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let _ = shared.calls.send(Call {
        at: Instant::now(),
        kind: CallKind::Next,
    });
    let invocation = shared.pending.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 + 900_000)
        .unwrap_or(0);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", invocation.request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let _ = shared.calls.send(Call {
        at: Instant::now(),
        kind: CallKind::Response {
            request_id,
            body: body.to_vec(),
        },
    });
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let _ = shared.calls.send(Call {
        at: Instant::now(),
        kind: CallKind::Error {
            request_id,
            body: body.to_vec(),
        },
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared.calls.send(Call {
        at: Instant::now(),
        kind: CallKind::InitError {
            body: body.to_vec(),
        },
    });
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client speaking the Runtime API the way `lambda_runtime` does: ask for work, answer it.
    #[tokio::test]
    async fn an_invocation_is_handed_out_and_its_answer_reported() {
        let mut api = RuntimeApi::start().await.unwrap();
        let id = api.invoke(br#"{"x":1}"#.to_vec());
        let base = format!("http://{}{PREFIX}/runtime/invocation", api.endpoint());
        let http = reqwest::Client::new();
        let got = http.get(format!("{base}/next")).send().await.unwrap();
        assert_eq!(
            got.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap(),
            id
        );
        assert!(got.headers().contains_key("lambda-runtime-deadline-ms"));
        assert_eq!(got.text().await.unwrap(), r#"{"x":1}"#);
        let answered = http
            .post(format!("{base}/{id}/response"))
            .body("ok")
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 202);
        let first = api.next_call(Duration::from_secs(5)).await.unwrap();
        assert_eq!(first.kind, CallKind::Next);
        let second = api.next_call(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            second.kind,
            CallKind::Response {
                request_id: id,
                body: b"ok".to_vec()
            }
        );
    }
}
