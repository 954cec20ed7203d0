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
                let (body, end) = json_string(event, at + 1, event.len() - at)?;
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

/// The top-level object walked by hand (keys and the body decoded by [`json_string`]), each other
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
        let (key, end) = json_string(event, at + 1, 32)?;
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

/// Decodes the JSON string whose text starts at `bytes[start]` (just after its opening quote):
/// its bytes, and where it ends (just after its closing quote). Escapes are checked as JSON
/// defines them (`\uXXXX` surrogates in pairs); `None` for anything else or no closing quote.
/// The text's UTF-8 is the caller's to check. `capacity` is where the output buffer starts (the
/// string's length when it is known to be large).
///
/// Sixteen bytes at a time: each block is copied to the output whole and the output advances past
/// the bytes before the first `"` or `\` in it ([`first_special`]: SSE2 on x86_64, NEON on
/// aarch64), then that byte is handled and the next block starts just after it. An API Gateway
/// event's body holds an escape every fifteen bytes or so (every `"` of the notification is `\"`,
/// every `\u003c` of its HTML is `\\u003c`): one step per escape, each a block load, a compare
/// and a table lookup, instead of the eight-byte loop's exit and re-entry at every escape.
pub fn json_string(bytes: &[u8], start: usize, capacity: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = vec![0u8; capacity.max(BLOCK + 4)];
    let mut o = 0;
    let mut at = start;
    loop {
        // Room for a whole block, and for one escape's output (at most 4 bytes) after up to
        // fifteen of the block's bytes.
        if out.len() < o + BLOCK + 4 {
            out.resize((o + BLOCK + 4).max(out.len() * 2), 0);
        }
        if let Some(block) = bytes.get(at..at + BLOCK) {
            let block: &[u8; BLOCK] = block.try_into().ok()?;
            out[o..o + BLOCK].copy_from_slice(block);
            let k = first_special(block);
            at += k;
            o += k;
            if k == BLOCK {
                continue;
            }
        }
        // `bytes[at]` is a quote or a backslash, or fewer than a block's bytes are left.
        match *bytes.get(at)? {
            b'"' => {
                out.truncate(o);
                return Some((out, at + 1));
            }
            b'\\' => {}
            byte => {
                out[o] = byte;
                o += 1;
                at += 1;
                continue;
            }
        }
        let escaped = *bytes.get(at + 1)?;
        at += 2;
        let decoded = SIMPLE_ESCAPES[usize::from(escaped)];
        if decoded != 0 {
            out[o] = decoded;
            o += 1;
        } else if escaped == b'u' {
            let (c, end) = unicode_escape(bytes, at)?;
            at = end;
            o += c.encode_utf8(&mut out[o..o + 4]).len();
        } else {
            return None;
        }
    }
}

/// The bytes [`json_string`] examines at once.
const BLOCK: usize = 16;

/// What each two-character escape `\x` stands for, by `x` (0: not one of them).
const SIMPLE_ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 0x08;
    t[b'f' as usize] = 0x0c;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};

/// The index of the first `"` or `\` in `block`, or [`BLOCK`] if there is none.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn first_special(block: &[u8; BLOCK]) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86_64 target; the unaligned load reads exactly the 16 bytes
    // of `block`.
    let mask = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(quote, backslash)) as u32
    };
    (mask | 1 << BLOCK).trailing_zeros() as usize
}

/// The index of the first `"` or `\` in `block`, or [`BLOCK`] if there is none.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn first_special(block: &[u8; BLOCK]) -> usize {
    use std::arch::aarch64::{
        vceqq_u8, vdupq_n_u8, vget_lane_u64, vld1q_u8, vorrq_u8, vreinterpret_u64_u8,
        vreinterpretq_u16_u8, vshrn_n_u16,
    };
    // SAFETY: NEON is part of every aarch64 target; the load reads exactly the 16 bytes of
    // `block`.
    let nibbles = unsafe {
        let v = vld1q_u8(block.as_ptr());
        let special = vorrq_u8(
            vceqq_u8(v, vdupq_n_u8(b'"')),
            vceqq_u8(v, vdupq_n_u8(b'\\')),
        );
        // Four bits per byte, in order (the usual movemask of NEON).
        vget_lane_u64::<0>(vreinterpret_u64_u8(vshrn_n_u16::<4>(vreinterpretq_u16_u8(
            special,
        ))))
    };
    (nibbles.trailing_zeros() / 4) as usize
}

/// The index of the first `"` or `\` in `block`, or [`BLOCK`] if there is none.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn first_special(block: &[u8; BLOCK]) -> usize {
    block
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .unwrap_or(BLOCK)
}

/// The character of a `\uXXXX` escape whose hex digits start at `bytes[at]` (a surrogate pair
/// read as one character), and where it ends.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let hex4 = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    };
    let first = hex4(at)?;
    match first {
        0xD800..=0xDBFF => {
            if bytes.get(at + 4..at + 6)? != b"\\u" {
                return None;
            }
            let second = hex4(at + 6)?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return None;
            }
            let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            Some((char::from_u32(c)?, at + 10))
        }
        0xDC00..=0xDFFF => None,
        c => Some((char::from_u32(c)?, at + 4)),
    }
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
    fn json_strings_decode_as_serde_json_decodes_them() {
        for text in [
            r#""""#,
            r#""plain""#,
            r#""\"q\" \\ \/ \b\f\n\r\t""#,
            r#""\u003cp\u003e \u00e9 \u2014 \ud83d\ude00 é""#,
            r#""{\"a\":\"\\u003c\\\"\"}""#,
        ] {
            let expected: String = serde_json::from_str(text).unwrap();
            for capacity in [0, 3, text.len()] {
                let (bytes, end) = json_string(text.as_bytes(), 1, capacity).unwrap();
                assert_eq!(String::from_utf8(bytes).unwrap(), expected, "{text}");
                assert_eq!(end, text.len(), "{text}");
            }
            let (bytes, end) = json_string(text.as_bytes(), 1, 0).unwrap();
            assert_eq!(String::from_utf8(bytes).unwrap(), expected, "{text}");
            assert_eq!(end, text.len(), "{text}");
        }
        for broken in [
            r#""no end"#,
            r#""bad \x escape""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\ud800 lone""#,
            r#""\udc00 low first""#,
            r#""\ud800\u0041""#,
            r#""\"#,
        ] {
            assert_eq!(json_string(broken.as_bytes(), 1, 0), None, "{broken}");
        }
    }

    #[test]
    fn first_special_finds_the_first_quote_or_backslash() {
        let mut block = [b'a'; BLOCK];
        assert_eq!(first_special(&block), BLOCK);
        for i in 0..BLOCK {
            for special in [b'"', b'\\'] {
                block = [b'a'; BLOCK];
                block[i] = special;
                assert_eq!(first_special(&block), i);
                if i + 1 < BLOCK {
                    block[BLOCK - 1] = b'"';
                    assert_eq!(first_special(&block), i);
                }
            }
            // Bytes that differ from `"` or `\` in one bit only, and high bytes.
            block = [b'"' ^ 0x80; BLOCK];
            block[i] = b'\\' ^ 1;
            assert_eq!(first_special(&block), BLOCK);
        }
    }

    proptest::proptest! {
        /// Any text, as serde_json encodes it or with escapes chosen at random (`\uXXXX` for any
        /// character, surrogate pairs included, `\/`), at any offset: decoded as serde_json decodes it.
        #[test]
        fn any_json_string_decodes_as_serde_json_decodes_it(
            text in "(?s).{0,80}|[\"\\\\a\n\u{e9}\u{1f600}]{0,80}",
            escape_all in proptest::collection::vec(0u8..4, 0..80),
            prefix in 0usize..20,
            capacity in 0usize..64,
        ) {
            let mut encoded = String::from("\"");
            for (i, c) in text.chars().enumerate() {
                match (escape_all.get(i).copied().unwrap_or(0), c) {
                    (1, c) => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            encoded.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    (2, '/') => encoded.push_str("\\/"),
                    (_, c) => {
                        let one = serde_json::to_string(&c.to_string()).unwrap();
                        encoded.push_str(&one[1..one.len() - 1]);
                    }
                }
            }
            encoded.push('"');
            let expected: String = serde_json::from_str(&encoded).unwrap();
            let input = format!("{}{encoded}]", " ".repeat(prefix));
            let (bytes, end) = json_string(input.as_bytes(), prefix + 1, capacity).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(bytes).unwrap(), expected);
            proptest::prop_assert_eq!(end, input.len() - 1);
        }

        /// Arbitrary bytes: whatever decodes, serde_json decodes to the same (where it accepts the
        /// string at all: it also refuses raw control characters and invalid UTF-8, which the
        /// reader leaves to its caller).
        #[test]
        fn arbitrary_bytes_decode_as_serde_json_or_not_at_all(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(b'"'), proptest::strategy::Just(b'\\'), proptest::strategy::Just(b'u'), proptest::strategy::Just(b'0'), proptest::strategy::Just(b'd'), proptest::num::u8::ANY],
                0..64,
            ),
        ) {
            let mut input = vec![b'"'];
            input.extend_from_slice(&bytes);
            let ours = json_string(&input, 1, 0);
            let theirs = serde_json::Deserializer::from_slice(&input)
                .into_iter::<String>()
                .next()
                .and_then(Result::ok);
            if let Some(theirs) = theirs {
                let (decoded, _) = ours.expect("serde_json read a string: so must the reader");
                proptest::prop_assert_eq!(decoded, theirs.into_bytes());
            }
        }
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
