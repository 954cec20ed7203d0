//! Hostile API Gateway events for the ingest binary, generated from a seed: both payload formats,
//! any method, raw query strings and paths holding any character (`"`, `<`, `>`, spaces, newlines,
//! broken percent escapes), header names in any casing, base64 flags that lie, bodies of random
//! bytes, forged, tampered and truncated signatures, gzip that is not gzip, fields of the wrong
//! type, and documents that are no event at all. A share of them is validly signed (some gzip),
//! so the run also checks that what is enqueued is exactly what was signed.
//!
//! Deterministic: the same seed gives the same events, so a failure can be replayed.

use std::collections::HashSet;
use std::io::Write as _;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::fixtures::message_created;
use nylas_sync::signature::sign;

/// splitmix64: small, fast, and good enough to pick shapes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Characters that break naive URI building or JSON handling, mixed with ordinary ones.
const NASTY: &[&str] = &[
    "\"",
    "<",
    ">",
    " ",
    "\n",
    "\r",
    "\t",
    "%",
    "%2",
    "%zz",
    "%00",
    "%22",
    "&",
    "=",
    "?",
    "#",
    "\\",
    "{",
    "}",
    "|",
    "^",
    "`",
    "\u{0}",
    "\u{7f}",
    "é",
    "\u{202e}",
    "\u{fffd}",
    "\u{ffff}",
    "𝄞",
    "+",
    "challenge",
    "challenge=",
    "/",
    "..",
    "a",
    "Z",
    "9",
];

fn nasty_text(rng: &mut Rng, max: usize) -> String {
    let n = rng.below(max + 1);
    (0..n).map(|_| *rng.pick(NASTY)).collect()
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "post", "Get", "", "CONNECT",
    "POST ", "\u{0}", "TRACE",
];

/// The secret the ingest under test is configured with.
pub const SECRET: &str = "bench-secret";

/// One generated event and what it must do.
pub struct HostileEvent {
    pub payload: Vec<u8>,
    /// The exact text the ingest may enqueue for it, when it carries a valid signature.
    pub signed_text: Option<String>,
}

/// Digests of the texts the ingest is allowed to enqueue.
#[derive(Default)]
pub struct Signed(HashSet<[u8; 32]>);

impl Signed {
    pub fn insert(&mut self, text: &str) {
        self.0.insert(Sha256::digest(text.as_bytes()).into());
    }
    pub fn contains(&self, bytes: &[u8]) -> bool {
        self.0.contains(&<[u8; 32]>::from(Sha256::digest(bytes)))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A header name in a random casing.
fn cased(rng: &mut Rng, name: &str) -> String {
    name.chars()
        .map(|c| {
            if rng.chance(50) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// Any JSON value, shallow.
fn any_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next_u64() as i64),
        3 => json!(-1.5e300),
        4 => Value::String(nasty_text(rng, 12)),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| any_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(nasty_text(rng, 6), any_json(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// The body and its signature header: what a client (or an attacker) sends.
struct Body {
    /// The `body` field, `isBase64Encoded`, the signature and content-encoding headers.
    field: Option<Value>,
    base64: Option<Value>,
    signature: Option<String>,
    encoding: Option<String>,
    signed_text: Option<String>,
}

fn body(rng: &mut Rng, i: usize) -> Body {
    let notification = |rng: &mut Rng| {
        let len = *rng.pick(&[700usize, 2048, 9000, 40_000]);
        message_created(&format!("h-{i}"), "g-hostile", &format!("m-{i}"), len)
    };
    let hex =
        |rng: &mut Rng| -> String { rng.bytes(32).iter().map(|b| format!("{b:02x}")).collect() };
    let plain = |field: Option<Value>, signature: Option<String>| Body {
        field,
        base64: None,
        signature,
        encoding: None,
        signed_text: None,
    };
    match rng.below(14) {
        // Validly signed, as Nylas sends it.
        0 | 1 => {
            let text = notification(rng);
            let signature = sign(SECRET, text.as_bytes());
            Body {
                field: Some(Value::String(text.clone())),
                base64: Some(json!(false)),
                signature: Some(signature),
                encoding: None,
                signed_text: Some(text),
            }
        }
        // Validly signed gzip, base64 as API Gateway delivers binary bodies.
        2 => {
            let text = notification(rng);
            let zipped = gzip(text.as_bytes());
            Body {
                field: Some(Value::String(b64(&zipped))),
                base64: Some(json!(true)),
                signature: Some(sign(SECRET, &zipped)),
                encoding: Some(cased(rng, "gzip")),
                signed_text: Some(text),
            }
        }
        // Validly signed bytes that are not a notification (never refused for content).
        3 => {
            let len = rng.below(300);
            let raw = rng.bytes(len);
            let text = String::from_utf8_lossy(&raw).into_owned();
            Body {
                field: Some(Value::String(b64(&raw))),
                base64: Some(json!(true)),
                signature: Some(sign(SECRET, &raw)),
                encoding: None,
                signed_text: Some(text),
            }
        }
        // Signed, then tampered with.
        4 => {
            let text = notification(rng);
            let signature = sign(SECRET, text.as_bytes());
            let mut bytes = text.into_bytes();
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 + rng.below(127) as u8;
            plain(
                Some(Value::String(String::from_utf8_lossy(&bytes).into_owned())),
                Some(signature),
            )
        }
        // Signed with another secret, or a forged, truncated or odd signature; or a valid one
        // with the `sha256=` prefix Nylas's SDKs send, which the ingest accepts.
        5 => {
            let text = notification(rng);
            let variant = rng.below(6);
            let signature = match variant {
                0 => sign("not-the-secret", text.as_bytes()),
                1 => hex(rng),
                2 => hex(rng)[..rng.below(64)].to_string(),
                3 => sign(SECRET, text.as_bytes()).to_ascii_uppercase() + "0",
                4 => nasty_text(rng, 20),
                _ => format!("sha256={}", sign(SECRET, text.as_bytes())),
            };
            let mut b = plain(Some(Value::String(text.clone())), Some(signature));
            if variant == 5 {
                b.signed_text = Some(text);
            }
            b
        }
        // Unsigned.
        6 => plain(Some(Value::String(notification(rng))), None),
        // Random text or bytes.
        7 => plain(Some(Value::String(nasty_text(rng, 200))), Some(hex(rng))),
        8 => {
            let len = rng.below(2000);
            let raw = rng.bytes(len);
            Body {
                field: Some(Value::String(b64(&raw))),
                base64: Some(json!(true)),
                signature: Some(hex(rng)),
                encoding: rng.chance(50).then(|| "gzip".to_string()),
                signed_text: None,
            }
        }
        // A base64 flag that lies.
        9 => Body {
            field: Some(Value::String(nasty_text(rng, 50))),
            base64: Some(json!(true)),
            signature: Some(hex(rng)),
            encoding: None,
            signed_text: None,
        },
        // Encodings nobody supports.
        10 => Body {
            field: Some(Value::String(notification(rng))),
            base64: Some(any_json(rng, 0)),
            signature: Some(hex(rng)),
            encoding: Some(nasty_text(rng, 8)),
            signed_text: None,
        },
        // Fields of the wrong type.
        11 => Body {
            field: Some(any_json(rng, 2)),
            base64: Some(any_json(rng, 1)),
            signature: None,
            encoding: None,
            signed_text: None,
        },
        12 => plain(None, Some(hex(rng))),
        _ => plain(Some(Value::Null), None),
    }
}

fn headers(rng: &mut Rng, b: &Body) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert(cased(rng, "content-type"), json!("application/json"));
    h.insert(
        cased(rng, "host"),
        json!("abc123.execute-api.us-east-1.amazonaws.com"),
    );
    if let Some(s) = &b.signature {
        h.insert(cased(rng, "x-nylas-signature"), json!(s));
    }
    if let Some(e) = &b.encoding {
        h.insert(cased(rng, "content-encoding"), json!(e));
    }
    for _ in 0..rng.below(3) {
        h.insert(nasty_text(rng, 8), any_json(rng, 0));
    }
    h
}

fn query(rng: &mut Rng) -> Option<Value> {
    match rng.below(4) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!({ cased(rng, "challenge"): nasty_text(rng, 10) })),
        _ => Some(any_json(rng, 1)),
    }
}

fn method(rng: &mut Rng, signed: bool) -> Value {
    // Mostly POST, so most events reach the signature check and the body.
    if rng.chance(if signed { 85 } else { 60 }) {
        return json!("POST");
    }
    match rng.below(10) {
        0 => any_json(rng, 0),
        1 => Value::String(nasty_text(rng, 6)),
        _ => json!(rng.pick(METHODS)),
    }
}

fn set(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

/// The `i`-th event of the run.
pub fn event(rng: &mut Rng, i: usize) -> HostileEvent {
    // One in twenty is no API Gateway event at all.
    if rng.below(20) == 0 {
        let doc = any_json(rng, 3);
        return HostileEvent {
            payload: serde_json::to_vec(&doc).unwrap_or_default(),
            signed_text: None,
        };
    }
    let b = body(rng, i);
    let method = method(rng, b.signed_text.is_some());
    let posted = method.as_str() == Some("POST");
    let headers = headers(rng, &b);
    let raw_query = nasty_text(rng, 24);
    let path = format!("/webhooks/nylas{}", nasty_text(rng, 4));
    let mut e = Map::new();
    if rng.chance(60) {
        // HTTP API, payload 2.0.
        e.insert("version".into(), json!("2.0"));
        e.insert("routeKey".into(), json!("POST /webhooks/nylas"));
        e.insert("rawPath".into(), json!(path));
        e.insert("rawQueryString".into(), json!(raw_query));
        set(&mut e, "queryStringParameters", query(rng));
        e.insert(
            "cookies".into(),
            if rng.chance(20) {
                any_json(rng, 1)
            } else {
                json!([])
            },
        );
        e.insert("headers".into(), Value::Object(headers));
        let mut http = Map::new();
        http.insert("method".into(), method);
        http.insert("path".into(), json!(path));
        http.insert("protocol".into(), json!("HTTP/1.1"));
        http.insert("sourceIp".into(), json!("203.0.113.10"));
        let context = if rng.chance(5) {
            any_json(rng, 1)
        } else {
            json!({"accountId": "123456789012", "apiId": "abc123", "http": http,
                   "requestId": format!("r-{i}"), "stage": "$default", "timeEpoch": 1_767_225_600_000u64})
        };
        e.insert("requestContext".into(), context);
    } else {
        // REST API, payload 1.0.
        e.insert("resource".into(), json!("/webhooks/nylas"));
        e.insert("path".into(), json!(path));
        e.insert("httpMethod".into(), method);
        set(&mut e, "queryStringParameters", query(rng));
        set(&mut e, "multiValueQueryStringParameters", query(rng));
        if rng.chance(50) {
            let multi: Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            e.insert("multiValueHeaders".into(), Value::Object(multi));
        }
        e.insert("headers".into(), Value::Object(headers));
        e.insert(
            "requestContext".into(),
            json!({"accountId": "123456789012", "resourcePath": "/webhooks/nylas", "stage": "prod",
                   "requestId": format!("r-{i}")}),
        );
        e.insert("pathParameters".into(), Value::Null);
        e.insert("stageVariables".into(), any_json(rng, 0));
    }
    set(&mut e, "body", b.field);
    set(&mut e, "isBase64Encoded", b.base64);
    HostileEvent {
        payload: serde_json::to_vec(&Value::Object(e)).unwrap_or_default(),
        signed_text: if posted { b.signed_text } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events_and_they_are_varied_and_partly_signed() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let mut signed = 0;
        let mut shapes = HashSet::new();
        for i in 0..500 {
            let (x, y) = (event(&mut a, i), event(&mut b, i));
            assert_eq!(x.payload, y.payload);
            signed += usize::from(x.signed_text.is_some());
            let v: Value = serde_json::from_slice(&x.payload).unwrap();
            shapes.insert(match &v {
                Value::Object(m) if m.contains_key("version") => "v2",
                Value::Object(m) if m.contains_key("httpMethod") => "v1",
                _ => "other",
            });
        }
        assert!((50..250).contains(&signed), "{signed} signed");
        assert_eq!(shapes.len(), 3);
    }
}
