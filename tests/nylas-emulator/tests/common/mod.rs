//! Test support: a webhook receiver that records every request as it arrived, and polling helpers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use nylas_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

/// Generous: CI machines are small and busy.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn is_gzip(&self) -> bool {
        self.header("content-encoding").as_deref() == Some("gzip")
    }

    /// The JSON payload, decompressed when it came gzipped.
    pub fn json(&self) -> Value {
        let raw = if self.is_gzip() {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
            out
        } else {
            self.body.to_vec()
        };
        serde_json::from_slice(&raw).expect("JSON body")
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }

    pub fn signature_verifies_with(&self, secret: &str) -> bool {
        self.header("x-nylas-signature").as_deref()
            == Some(&nylas_emulator::sign(secret, &self.body))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ChallengeMode {
    Echo,
    WrongValue,
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    challenges: Mutex<Vec<String>>,
    /// Statuses to answer in turn; 200 once empty.
    script: Mutex<VecDeque<u16>>,
    always: Mutex<Option<u16>>,
    wrong_challenge: Mutex<bool>,
    /// Hold the answers to the next N POSTs back this long.
    delay: Mutex<(usize, Duration)>,
}

/// An HTTP endpoint standing in for the project's ingest function.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/webhook", get(challenge).post(notification))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/webhook"),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().expect("lock").len()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }

    pub fn challenges(&self) -> Vec<String> {
        self.state.challenges.lock().expect("lock").clone()
    }

    /// Answer these statuses to the next POSTs, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().expect("lock").extend(statuses);
    }

    pub fn always_answer(&self, status: Option<u16>) {
        *self.state.always.lock().expect("lock") = status;
    }

    pub fn set_challenge_mode(&self, mode: ChallengeMode) {
        *self.state.wrong_challenge.lock().expect("lock") = mode == ChallengeMode::WrongValue;
    }

    /// Hold the answers to the next `count` POSTs back by `d` (to make attempts time out).
    pub fn delay_next(&self, count: usize, d: Duration) {
        *self.state.delay.lock().expect("lock") = (count, d);
    }
}

async fn challenge(
    State(s): State<Arc<ReceiverState>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, String) {
    let value = q.get("challenge").cloned().unwrap_or_default();
    s.challenges.lock().expect("lock").push(value.clone());
    if *s.wrong_challenge.lock().expect("lock") {
        (StatusCode::OK, format!("{value}-not-it"))
    } else {
        (StatusCode::OK, value)
    }
}

async fn notification(
    State(s): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    s.received.lock().expect("lock").push(Received {
        headers,
        body,
        at: Instant::now(),
    });
    let delay = {
        let mut d = s.delay.lock().expect("lock");
        if d.0 > 0 {
            d.0 -= 1;
            Some(d.1)
        } else {
            None
        }
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let scripted = s.script.lock().expect("lock").pop_front();
    let always = *s.always.lock().expect("lock");
    let status = scripted.or(always).unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

pub async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

/// A client that sends exactly what a test asks: no proxy, and no `Accept-Encoding: gzip` or
/// decompression of its own (the workspace's reqwest has the `gzip` feature for the product's
/// client), so the tests see the emulator's answers as sent.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .expect("client")
}

/// GET a `/v3` path with the emulator's key; returns (status, JSON body).
pub async fn get_json(emu: &Emulator, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{}{}", emu.base_url(), path))
        .bearer_auth(emu.api_key())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub fn ids(data: &Value) -> Vec<String> {
    data["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
