//! The routing fields of a notification read straight from its bytes: the envelope's `id`,
//! `type`, `time` and `data`, in `data` the `grant_id` and `object`, in the object its `id` and
//! `grant_id`; every other value skipped, strings 64 bytes at a time ([`skip_string`]).
//!
//! What it accepts and refuses is serde_json's, reading these fields as `Option`s of derived
//! structs (the reader this one replaced, kept in the tests to hold it to that): `null` is an
//! absent field; a known field twice is refused; a struct may also be written as an array of
//! its fields in order, as serde's derive allows; `time` is an integer in `i64` (not `1.0`, not
//! `-0`, which serde_json reads as floats); strings read are checked as text (escapes, surrogate
//! pairs, no raw control characters, UTF-8), strings skipped as serde_json skips them; nothing
//! but whitespace after the document. Skipped values nest to any depth without recursion.

use std::borrow::Cow;
use std::fmt;

use crate::json_scan::{decode_string, skip_string};

pub struct Envelope<'a> {
    pub id: Option<Cow<'a, str>>,
    pub trigger: Option<Cow<'a, str>>,
    pub time: Option<i64>,
    pub data: Option<Data<'a>>,
}

pub struct Data<'a> {
    pub grant_id: Option<Cow<'a, str>>,
    pub object: Option<ObjectRef<'a>>,
}

pub struct ObjectRef<'a> {
    pub id: Option<Cow<'a, str>>,
    pub grant_id: Option<Cow<'a, str>>,
}

/// Why the bytes are not a notification's JSON: what was expected, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax {
    expected: &'static str,
    at: usize,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

type Read<T> = Result<T, Syntax>;

pub fn envelope(bytes: &[u8]) -> Read<Envelope<'_>> {
    let mut r = Reader { bytes, at: 0 };
    let mut env = Envelope {
        id: None,
        trigger: None,
        time: None,
        data: None,
    };
    r.record(&["id", "type", "time", "data"], |r, field| {
        match field {
            0 => env.id = r.optional_str()?,
            1 => env.trigger = r.optional_str()?,
            2 => env.time = r.optional_i64()?,
            _ => env.data = r.optional(Reader::data)?,
        }
        Ok(())
    })?;
    if r.peek().is_some() {
        return r.fail("the end of the document");
    }
    Ok(env)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, expected: &'static str) -> Read<T> {
        Err(Syntax {
            expected,
            at: self.at,
        })
    }

    /// The next byte that is not whitespace (left unread).
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.at) {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    fn eat(&mut self, byte: u8, expected: &'static str) -> Read<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    fn data(&mut self) -> Read<Data<'a>> {
        let mut data = Data {
            grant_id: None,
            object: None,
        };
        self.record(&["grant_id", "object"], |r, field| {
            match field {
                0 => data.grant_id = r.optional_str()?,
                _ => data.object = r.optional(Reader::object_ref)?,
            }
            Ok(())
        })?;
        Ok(data)
    }

    fn object_ref(&mut self) -> Read<ObjectRef<'a>> {
        let mut object = ObjectRef {
            id: None,
            grant_id: None,
        };
        self.record(&["id", "grant_id"], |r, field| {
            match field {
                0 => object.id = r.optional_str()?,
                _ => object.grant_id = r.optional_str()?,
            }
            Ok(())
        })?;
        Ok(object)
    }

    /// A struct of the named fields: an object (other keys skipped, a named one at most once),
    /// or an array of exactly one value per field, in order. `field` reads the value of the
    /// field of that index.
    fn record(
        &mut self,
        names: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Read<()>,
    ) -> Read<()> {
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut seen = 0u8;
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return self.fail("a key");
                    }
                    let key = self.str()?;
                    self.eat(b':', "':'")?;
                    match names.iter().position(|n| *n == key) {
                        Some(i) if seen & 1 << i != 0 => return self.fail("no repeated field"),
                        Some(i) => {
                            seen |= 1 << i;
                            field(self, i)?;
                        }
                        None => self.skip_value()?,
                    }
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return self.fail("',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                for i in 0..names.len() {
                    if i > 0 {
                        self.eat(b',', "',' and the next field")?;
                    }
                    if self.peek() == Some(b']') {
                        return self.fail("a value for every field");
                    }
                    field(self, i)?;
                }
                self.eat(b']', "']' after the last field")
            }
            _ => self.fail("an object"),
        }
    }

    /// `null` as `None`, anything else read by `read`.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(None);
        }
        read(self).map(Some)
    }

    fn optional_str(&mut self) -> Read<Option<Cow<'a, str>>> {
        self.optional(|r| {
            if r.peek() == Some(b'"') {
                r.str()
            } else {
                r.fail("a string")
            }
        })
    }

    /// A string read as text, borrowed when it has no escapes. The reader is at its quote.
    fn str(&mut self) -> Read<Cow<'a, str>> {
        let start = self.at + 1;
        let Some(end) = skip_string(self.bytes, start) else {
            return self.fail("a valid string");
        };
        let raw = &self.bytes[start..end - 1];
        let text = if raw.contains(&b'\\') {
            decode_string(self.bytes, start, raw.len())
                .and_then(|(bytes, _)| String::from_utf8(bytes).ok())
                .map(Cow::Owned)
        } else {
            std::str::from_utf8(raw).ok().map(Cow::Borrowed)
        };
        match text {
            Some(text) => {
                self.at = end;
                Ok(text)
            }
            None => self.fail("a string of valid Unicode"),
        }
    }

    fn optional_i64(&mut self) -> Read<Option<i64>> {
        self.optional(|r| {
            if !matches!(r.peek(), Some(b'-' | b'0'..=b'9')) {
                return r.fail("an integer");
            }
            let start = r.at;
            let integer = r.number()?;
            let token = &r.bytes[start..r.at];
            let (negative, digits) = match token.strip_prefix(b"-") {
                Some(digits) => (true, digits),
                None => (false, token),
            };
            // serde_json reads a fraction, an exponent, `-0` and anything beyond `u64` as a
            // float, which is not an i64.
            let magnitude = std::str::from_utf8(digits)
                .ok()
                .filter(|_| integer)
                .and_then(|d| d.parse::<u64>().ok());
            let value = match (negative, magnitude) {
                (false, Some(m)) => i64::try_from(m).ok(),
                (true, Some(m)) if m > 0 => 0i64.checked_sub_unsigned(m),
                _ => None,
            };
            match value {
                Some(v) => Ok(v),
                None => {
                    r.at = start;
                    r.fail("an integer that fits in 64 bits")
                }
            }
        })
    }

    /// A number as JSON writes one; whether it is an integer (no fraction, no exponent).
    fn number(&mut self) -> Read<bool> {
        let digits = |r: &mut Self| {
            let from = r.at;
            while matches!(r.bytes.get(r.at), Some(b'0'..=b'9')) {
                r.at += 1;
            }
            r.at > from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at) {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.bytes.get(self.at), Some(b'0'..=b'9')) {
                    return self.fail("no leading zero");
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.fail("a digit"),
        }
        let mut integer = true;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            integer = false;
            if !digits(self) {
                return self.fail("a digit after '.'");
            }
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            integer = false;
            if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return self.fail("a digit in the exponent");
            }
        }
        Ok(integer)
    }

    fn literal(&mut self, word: &'static [u8]) -> Read<()> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            self.fail("true, false or null")
        }
    }

    /// Skips one value of any shape and depth: containers are tracked on a stack of their
    /// opening bytes, not by recursion.
    fn skip_value(&mut self) -> Read<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value: a scalar, or an opening bracket (then, for an object, its first key).
            match self.peek() {
                Some(b'"') => match skip_string(self.bytes, self.at + 1) {
                    Some(end) => self.at = end,
                    None => return self.fail("a valid string"),
                },
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(bracket @ (b'[' | b'{')) => {
                    self.at += 1;
                    let close = if bracket == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
                        open.push(bracket);
                        if bracket == b'{' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                _ => return self.fail("a value"),
            }
            // After a value: close what ends here, up to a comma (then the next value).
            loop {
                let Some(&bracket) = open.last() else {
                    return Ok(());
                };
                match (bracket, self.peek()) {
                    (_, Some(b',')) => {
                        self.at += 1;
                        if bracket == b'{' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    (b'[', Some(b']')) | (b'{', Some(b'}')) => {
                        self.at += 1;
                        open.pop();
                    }
                    _ => return self.fail("',' or a closing bracket"),
                }
            }
        }
    }

    /// An object's key and its colon, skipped.
    fn skip_key(&mut self) -> Read<()> {
        if self.peek() != Some(b'"') {
            return self.fail("a key");
        }
        match skip_string(self.bytes, self.at + 1) {
            Some(end) => self.at = end,
            None => return self.fail("a valid string"),
        }
        self.eat(b':', "':'")
    }
}
