//! API Gateway events built from plain HTTP requests, so that the local host and the tests hand
//! the ingest handler exactly what Lambda would: `lambda_http` deserialises the event and applies
//! its own decoding (base64 bodies, query parameters) on the way in.

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The pieces of an HTTP request.
#[derive(Debug, Clone, Default)]
pub struct HttpRequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub raw_query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// Send the body base64-encoded, as API Gateway does for binary media (gzip bodies).
    pub base64: bool,
}

fn body_field(parts: &HttpRequestParts<'_>) -> Value {
    if parts.body.is_empty() {
        Value::Null
    } else if parts.base64 {
        Value::String(base64::engine::general_purpose::STANDARD.encode(parts.body))
    } else {
        Value::String(String::from_utf8_lossy(parts.body).into_owned())
    }
}

fn query_map(raw: &str) -> Map<String, Value> {
    // HTTP API joins repeated parameters with commas.
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match map.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                map.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    map
}

/// An HTTP API (payload format 2.0) event.
pub fn http_api_event(parts: &HttpRequestParts<'_>) -> Value {
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let name = name.to_ascii_lowercase();
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    let query = query_map(parts.raw_query);
    json!({
        "version": "2.0",
        "routeKey": format!("{} {}", parts.method, parts.path),
        "rawPath": parts.path,
        "rawQueryString": parts.raw_query,
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": parts.method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "local"
            },
            "requestId": "local-request",
            "routeKey": format!("{} {}", parts.method, parts.path),
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000u64
        },
        "body": body_field(parts),
        "isBase64Encoded": parts.base64,
    })
}

/// A REST API (payload format 1.0) proxy event.
pub fn rest_api_event(parts: &HttpRequestParts<'_>) -> Value {
    let mut headers = Map::new();
    let mut multi = Map::new();
    for (name, value) in &parts.headers {
        headers.insert(name.clone(), Value::String(value.clone()));
        let entry = multi
            .entry(name.clone())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(list) = entry {
            list.push(Value::String(value.clone()));
        }
    }
    let mut query = Map::new();
    let mut multi_query = Map::new();
    for (k, v) in form_urlencoded::parse(parts.raw_query.as_bytes()) {
        query.insert(k.to_string(), Value::String(v.to_string()));
        let entry = multi_query
            .entry(k.into_owned())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(list) = entry {
            list.push(Value::String(v.into_owned()));
        }
    }
    let nullable = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    json!({
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": parts.method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": nullable(query),
        "multiValueQueryStringParameters": nullable(multi_query),
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "local",
            "stage": "prod",
            "requestId": "local-request",
            "identity": { "sourceIp": "127.0.0.1" },
            "resourcePath": parts.path,
            "httpMethod": parts.method,
            "apiId": "local",
            "path": parts.path,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1767225600000u64
        },
        "body": body_field(parts),
        "isBase64Encoded": parts.base64,
    })
}

/// Turns an API Gateway event (any payload format `lambda_http` knows) into the request the
/// handler receives in Lambda.
pub fn request_from_event(event: &Value) -> Result<lambda_http::Request, serde_json::Error> {
    lambda_http::request::from_str(&event.to_string())
}
