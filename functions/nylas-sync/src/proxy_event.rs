//! The API Gateway proxy event as the ingest binary reads it from the Lambda Runtime API, and the
//! proxy response it posts back: HTTP API (payload 2.0) and REST API (payload 1.0) in one pass.
//!
//! Only what the ingest uses is kept: the method, where the `challenge` query parameter can be,
//! the `x-nylas-signature` and `Content-Encoding` headers (any casing), the body and its base64
//! flag. Everything else (path, request context, other headers) is skipped by the JSON parser
//! without being copied, and no URI is ever built: `lambda_http`'s conversion panics on a raw `"`,
//! `<`, `>`, space or newline in `rawQueryString` (aws-lambda-rust-runtime issues 461, 489, 515).
//!
//! It must never fail on a JSON document: a field of the wrong type counts as absent, so whatever
//! reaches the function is answered (a 4xx for anything malformed), never an invocation error.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::json_scan::decode_string;

/// What the ingest reads of one API Gateway event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProxyEvent {
    /// False when the document is not a JSON object (nothing API Gateway sends).
    pub is_object: bool,
    /// `httpMethod` (payload 1.0).
    pub http_method: Option<String>,
    /// `requestContext.http.method` (payload 2.0).
    pub context_method: Option<String>,
    /// `rawQueryString` (payload 2.0), undecoded.
    pub raw_query_string: Option<String>,
    /// `queryStringParameters` (both payloads; values decoded by API Gateway).
    pub query: QueryPick,
    /// `multiValueQueryStringParameters` (payload 1.0).
    pub multi_query: QueryPick,
    /// `headers` (both payloads; 2.0 lower-cases names and joins repeats with commas).
    pub headers: HeaderPick,
    /// `multiValueHeaders` (payload 1.0).
    pub multi_headers: HeaderPick,
    /// The body's bytes as the JSON string held them (decoded, not yet checked for UTF-8: that
    /// is done once the signature is, so a forged 1 MB body costs no pass for it).
    pub body: Option<Vec<u8>>,
    pub is_base64_encoded: bool,
}

impl ProxyEvent {
    /// The request method: 1.0's `httpMethod`, else 2.0's `requestContext.http.method`.
    pub fn method(&self) -> Option<&str> {
        self.http_method
            .as_deref()
            .or(self.context_method.as_deref())
    }

    /// The first `challenge` query parameter, decoded: from `rawQueryString` when present (as
    /// `lambda_http` does), else from the multi-valued map when it has entries, else the map.
    pub fn challenge(&self) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(raw) = &self.raw_query_string {
            return form_urlencoded::parse(raw.as_bytes())
                .find(|(k, _)| k == "challenge")
                .map(|(_, v)| v);
        }
        let map = if self.multi_query.entries > 0 {
            &self.multi_query
        } else {
            &self.query
        };
        map.challenge.first().map(|v| v.as_str().into())
    }

    /// The values of one picked header: those of `headers` when it holds the name (it replaces
    /// the multi-valued ones, as in `lambda_http`), else those of `multiValueHeaders`.
    fn header<'a>(&'a self, pick: impl Fn(&'a HeaderPick) -> &'a Vec<String>) -> &'a [String] {
        let single = pick(&self.headers);
        if single.is_empty() {
            pick(&self.multi_headers)
        } else {
            single
        }
    }

    /// The first `x-nylas-signature` value.
    pub fn signature(&self) -> Option<&str> {
        self.header(|h| &h.signature).first().map(String::as_str)
    }

    /// Every `Content-Encoding` value.
    pub fn content_encoding(&self) -> &[String] {
        self.header(|h| &h.content_encoding)
    }
}

/// The `challenge` entries of a query-parameter map, and how many entries it had.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryPick {
    pub entries: usize,
    pub challenge: Vec<String>,
}

/// The header values the ingest reads, names matched case-insensitively.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderPick {
    pub signature: Vec<String>,
    pub content_encoding: Vec<String>,
}

/// The API Gateway proxy response (`{statusCode, headers, body, isBase64Encoded}`), which both
/// payload formats accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResponse {
    pub status_code: u16,
    pub headers: BTreeMap<&'static str, &'static str>,
    pub body: String,
    pub is_base64_encoded: bool,
}

// ---------------------------------------------------------------------------------------------
// Lenient deserialisation: every reader below accepts any JSON value and keeps what fits.

/// A JSON object whose known fields (by name) are read into `Self`; any other value gives
/// `Self::default()`.
trait Fields: Default {
    const NAMES: &'static [&'static str];
    const IGNORE_CASE: bool = false;
    /// Reads the value of the field `NAMES[index]`.
    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
    /// Called once per entry, known or not.
    fn entry(&mut self) {}
    /// Called when the value is an object.
    fn object(&mut self) {}
}

struct Lenient<T>(T);

impl<'de, T: Fields> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldsVisitor(PhantomData)).map(Lenient)
    }
}

struct FieldsVisitor<T>(PhantomData<T>);

/// Scalars and arrays where a reader wanted something else count as absent.
macro_rules! other_values_are_absent {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de, T: Fields> Visitor<'de> for FieldsVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    other_values_are_absent!();

    fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        skip_seq(seq)?;
        Ok(T::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut value = T::default();
        value.object();
        let seed = NameSeed {
            names: T::NAMES,
            ignore_case: T::IGNORE_CASE,
        };
        while let Some(index) = map.next_key_seed(seed)? {
            value.entry();
            match index {
                Some(i) => value.field(i, &mut map)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(value)
    }
}

/// An object key, as its index in `names` (borrowed from the input, never copied).
#[derive(Clone, Copy)]
struct NameSeed {
    names: &'static [&'static str],
    ignore_case: bool,
}

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.names.iter().position(|n| {
            if self.ignore_case {
                n.eq_ignore_ascii_case(key)
            } else {
                *n == key
            }
        }))
    }
}

/// A string, or absent for any other value.
struct LenientString(Option<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringVisitor).map(LenientString)
    }
}

struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    other_values_are_absent!();

    // serde_json hands over the decoded text once; this is its only copy.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map)?;
        Ok(None)
    }
}

/// The strings of a string or of an array (other elements skipped); empty for anything else.
struct StringList(Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringListVisitor).map(StringList)
    }
}

struct StringListVisitor;

impl<'de> Visitor<'de> for StringListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    other_values_are_absent!();

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![v.to_owned()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(LenientString(v)) = seq.next_element()? {
            out.extend(v);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map)?;
        Ok(Vec::new())
    }
}

/// `true` only for the JSON value `true`.
struct LenientBool(bool);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Anything but a boolean is read as a (skipped) string-or-absent.
        struct BoolVisitor;
        impl<'de> Visitor<'de> for BoolVisitor {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
                skip_seq(seq).map(|()| false)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
                skip_map(map).map(|()| false)
            }
        }
        d.deserialize_any(BoolVisitor).map(LenientBool)
    }
}

impl Fields for ProxyEvent {
    const NAMES: &'static [&'static str] = &[
        "httpMethod",
        "requestContext",
        "rawQueryString",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "headers",
        "multiValueHeaders",
        "body",
        "isBase64Encoded",
    ];

    fn object(&mut self) {
        self.is_object = true;
    }

    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => self.http_method = map.next_value::<LenientString>()?.0,
            1 => self.context_method = map.next_value::<Lenient<RequestContext>>()?.0.method,
            2 => self.raw_query_string = map.next_value::<LenientString>()?.0,
            3 => self.query = map.next_value::<Lenient<QueryPick>>()?.0,
            4 => self.multi_query = map.next_value::<Lenient<QueryPick>>()?.0,
            5 => self.headers = map.next_value::<Lenient<HeaderPick>>()?.0,
            6 => self.multi_headers = map.next_value::<Lenient<HeaderPick>>()?.0,
            7 => self.body = map.next_value::<LenientString>()?.0.map(String::into_bytes),
            _ => self.is_base64_encoded = map.next_value::<LenientBool>()?.0,
        }
        Ok(())
    }
}

/// The event as serde reads it from any deserializer: the reference [`ProxyEvent::read`] is held
/// to (the property tests check that both read the same from every generated event). The binary
/// uses `read`, which decodes the body in one pass; the field names and their readers are shared.
impl<'de> Deserialize<'de> for ProxyEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lenient::<ProxyEvent>::deserialize(d).map(|l| l.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading an event from its bytes: one pass over the body.

impl ProxyEvent {
    /// Reads an event from the invocation's bytes as the Runtime API hands them over: the same
    /// fields and leniency as the `Deserialize` implementation, with the body's JSON string
    /// decoded in one pass straight into the body's buffer (serde_json decodes it into a scratch
    /// buffer, checks that buffer's UTF-8 and copies it again) and its UTF-8 left unchecked (see
    /// [`ProxyEvent::body`]). Bytes that are not one JSON document give an event that is not an
    /// object (answered 400), never a failure.
    pub fn read(event: &[u8]) -> ProxyEvent {
        read_object(event).unwrap_or_default()
    }

    /// Sets the field named `key` from the value at `event[at..]`; returns where the value ends.
    fn read_field(&mut self, key: &[u8], event: &[u8], at: usize) -> Option<usize> {
        let index = <ProxyEvent as Fields>::NAMES
            .iter()
            .position(|n| n.as_bytes() == key);
        match index {
            Some(0) => value(event, at, |v: LenientString| self.http_method = v.0),
            Some(1) => value(event, at, |v: Lenient<RequestContext>| {
                self.context_method = v.0.method
            }),
            Some(2) => value(event, at, |v: LenientString| self.raw_query_string = v.0),
            Some(3) => value(event, at, |v: Lenient<QueryPick>| self.query = v.0),
            Some(4) => value(event, at, |v: Lenient<QueryPick>| self.multi_query = v.0),
            Some(5) => value(event, at, |v: Lenient<HeaderPick>| self.headers = v.0),
            Some(6) => value(event, at, |v: Lenient<HeaderPick>| self.multi_headers = v.0),
            Some(7) if event.get(at) == Some(&b'"') => {
                let (body, end) = decode_string(event, at + 1, event.len() - at)?;
                self.body = Some(body);
                Some(end)
            }
            Some(7) => value(event, at, |v: LenientString| {
                self.body = v.0.map(String::into_bytes)
            }),
            Some(_) => value(event, at, |v: LenientBool| self.is_base64_encoded = v.0),
            None => value(event, at, |_: IgnoredAny| ()),
        }
    }
}

/// The top-level object walked by hand (keys and the body decoded by [`decode_string`]), each other
/// value read by serde_json from where it starts.
fn read_object(event: &[u8]) -> Option<ProxyEvent> {
    let mut read = ProxyEvent {
        is_object: true,
        ..ProxyEvent::default()
    };
    let mut at = skip_whitespace(event, 0);
    if event.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(event, at + 1);
    if event.get(at) == Some(&b'}') {
        return ends_here(event, at + 1).then_some(read);
    }
    loop {
        if event.get(at) != Some(&b'"') {
            return None;
        }
        let (key, end) = decode_string(event, at + 1, 32)?;
        at = skip_whitespace(event, end);
        if event.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(event, at + 1);
        at = skip_whitespace(event, read.read_field(&key, event, at)?);
        match event.get(at) {
            Some(b',') => at = skip_whitespace(event, at + 1),
            Some(b'}') => return ends_here(event, at + 1).then_some(read),
            _ => return None,
        }
    }
}

/// Reads one JSON value of type `T` at `event[at..]` and hands it to `set`; returns its end.
fn value<T: serde::de::DeserializeOwned>(
    event: &[u8],
    at: usize,
    set: impl FnOnce(T),
) -> Option<usize> {
    let mut values = serde_json::Deserializer::from_slice(event.get(at..)?).into_iter::<T>();
    let v = values.next()?.ok()?;
    set(v);
    Some(at + values.byte_offset())
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

fn ends_here(bytes: &[u8], at: usize) -> bool {
    skip_whitespace(bytes, at) == bytes.len()
}

#[derive(Default)]
struct RequestContext {
    method: Option<String>,
}

impl Fields for RequestContext {
    const NAMES: &'static [&'static str] = &["http"];
    fn field<'de, A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        self.method = map.next_value::<Lenient<HttpContext>>()?.0.method;
        Ok(())
    }
}

#[derive(Default)]
struct HttpContext {
    method: Option<String>,
}

impl Fields for HttpContext {
    const NAMES: &'static [&'static str] = &["method"];
    fn field<'de, A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        self.method = map.next_value::<LenientString>()?.0;
        Ok(())
    }
}

impl Fields for QueryPick {
    const NAMES: &'static [&'static str] = &["challenge"];
    fn entry(&mut self) {
        self.entries += 1;
    }
    fn field<'de, A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        self.challenge.extend(map.next_value::<StringList>()?.0);
        Ok(())
    }
}

impl Fields for HeaderPick {
    const NAMES: &'static [&'static str] = &["x-nylas-signature", "content-encoding"];
    const IGNORE_CASE: bool = true;
    fn field<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        let values = map.next_value::<StringList>()?.0;
        if index == 0 {
            self.signature.extend(values);
        } else {
            self.content_encoding.extend(values);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readers, which must agree.
    fn read(json: &str) -> ProxyEvent {
        let event: ProxyEvent = serde_json::from_str(json).expect("any JSON document is read");
        assert_eq!(ProxyEvent::read(json.as_bytes()), event, "{json}");
        event
    }

    #[test]
    fn bytes_that_are_not_one_json_document_are_not_an_object() {
        for bytes in [
            &b""[..],
            b"{",
            b"{\"body\":\"x\"",
            b"{\"body\":\"x\"}}",
            b"{\"body\":\"x\"} x",
            b"{\"body\" \"x\"}",
            b"{\"body\":\"x\",}",
            b"{,}",
            b"{\"body\":\"\\ud800\"}",
            b"{\"headers\":{\"a\":}}",
            b"not json",
        ] {
            let e = ProxyEvent::read(bytes);
            assert!(!e.is_object, "{}", String::from_utf8_lossy(bytes));
            assert_eq!(e, ProxyEvent::default());
        }
        // A body's UTF-8 is checked after its signature, by the ingest.
        let e = ProxyEvent::read(b"{\"body\":\"\xff\"}");
        assert_eq!(e.body.as_deref(), Some(&b"\xff"[..]));
        // Whitespace anywhere JSON allows it, escaped keys, duplicate keys (the last one wins).
        let e = read(
            " {\r\n\t\"b\\u006fdy\" :\t\"a\" , \"body\":\"b\\\"\" ,\"httpMethod\":\"POST\"}\n",
        );
        assert_eq!(e.body.as_deref(), Some(&b"b\""[..]));
        assert_eq!(e.method(), Some("POST"));
    }

    #[test]
    fn an_http_api_event_gives_method_query_headers_and_body() {
        let e = read(
            r#"{"version":"2.0","rawPath":"/x","rawQueryString":"a=1&challenge=%22q%20\"<>","headers":{"X-Nylas-Signature":"ab","content-encoding":"gzip","host":"h"},
               "requestContext":{"http":{"method":"GET","path":"/x"},"stage":"$default"},"body":"b\u00e9","isBase64Encoded":false}"#,
        );
        assert_eq!(e.method(), Some("GET"));
        assert_eq!(e.challenge().as_deref(), Some("\"q \"<>"));
        assert_eq!(e.signature(), Some("ab"));
        assert_eq!(e.content_encoding(), ["gzip"]);
        assert_eq!(e.body.as_deref(), Some("bé".as_bytes()));
    }

    #[test]
    fn a_rest_api_event_prefers_single_headers_and_multi_valued_queries() {
        let e = read(
            r#"{"httpMethod":"POST","headers":{"Content-Encoding":"identity"},
               "multiValueHeaders":{"Content-Encoding":["gzip","gzip"],"X-NYLAS-SIGNATURE":["s1","s2"]},
               "queryStringParameters":{"challenge":"b"},"multiValueQueryStringParameters":{"challenge":["a","b"]},
               "isBase64Encoded":true,"body":"aGk="}"#,
        );
        assert_eq!(e.method(), Some("POST"));
        assert_eq!(e.challenge().as_deref(), Some("a"));
        assert_eq!(e.content_encoding(), ["identity"]);
        assert_eq!(e.signature(), Some("s1"));
        assert!(e.is_base64_encoded);
    }

    #[test]
    fn any_json_document_is_read_and_wrong_types_count_as_absent() {
        for doc in [
            "null",
            "[]",
            "[1,{\"a\":2}]",
            "\"s\"",
            "1.5",
            "{}",
            r#"{"httpMethod":5,"requestContext":[],"rawQueryString":{"a":1},"headers":"x","multiValueHeaders":{"x-nylas-signature":[1,null,"ok"]},"body":{"b":[1]},"isBase64Encoded":"true"}"#,
            r#"{"body":"a","body":"b","headers":null,"queryStringParameters":{"challenge":null}}"#,
        ] {
            let e = read(doc);
            assert_eq!(e.method(), None, "{doc}");
            assert!(!e.is_base64_encoded, "{doc}");
        }
        let e = read(r#"{"multiValueHeaders":{"x-nylas-signature":[1,null,"ok"]}}"#);
        assert_eq!(e.signature(), Some("ok"));
        assert!(!read("[]").is_object);
    }
}
