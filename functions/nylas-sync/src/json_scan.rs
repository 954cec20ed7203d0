//! JSON strings read 64 bytes at a time: the ingest decodes the body of every API Gateway event
//! ([`decode_string`]) and skips the body of every notification it routes ([`skip_string`]),
//! up to 1 MB each, and both are mostly strings full of escapes (an event's body has one every
//! 25 bytes or so: every `"` of the notification is `\"`, every `\u003c` of its HTML `\\u003c`).
//!
//! Each 64-byte chunk is classified at once into bit masks ([`masks`]: its backslashes, quotes
//! and control characters; SSE2 on x86_64, eight bytes at a time in a `u64` elsewhere). The
//! decoder takes the escapes from the masks in order, lowest bit first; the skipper computes
//! which bytes are escaped for the whole chunk and checks each escape on its own. Neither
//! waits, for a chunk's loads and compares, on the escape before (a byte-at-a-time or
//! find-the-next-escape loop does), which is what makes escape-dense text fast.

/// The bytes classified at once.
pub const CHUNK: usize = 64;

/// Where a chunk's bytes are special: bit `i` stands for byte `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Masks {
    pub backslash: u64,
    pub quote: u64,
    /// Bytes 0x00 to 0x1F, which JSON does not allow raw in a string.
    pub control: u64,
}

/// Classifies a chunk (SSE2, part of every x86_64 target).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn masks(chunk: &[u8; CHUNK]) -> Masks {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut m = Masks {
        backslash: 0,
        quote: 0,
        control: 0,
    };
    for i in 0..CHUNK / 16 {
        // SAFETY: SSE2 is part of every x86_64 target; the unaligned load reads bytes
        // 16 * i to 16 * i + 15 of `chunk`, all within its 64.
        let (backslash, quote, control) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().add(16 * i).cast());
            (
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))),
                // v <= 0x1F (unsigned) exactly where min(v, 0x1F) == v.
                _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v)),
            )
        };
        m.backslash |= u64::from(backslash as u16) << (16 * i);
        m.quote |= u64::from(quote as u16) << (16 * i);
        m.control |= u64::from(control as u16) << (16 * i);
    }
    m
}

/// Classifies a chunk eight bytes at a time (every other target).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn masks(chunk: &[u8; CHUNK]) -> Masks {
    masks_portable(chunk)
}

/// [`masks`] in plain integer arithmetic, for any target (and to hold the SSE2 version to).
#[inline(always)]
pub fn masks_portable(chunk: &[u8; CHUNK]) -> Masks {
    let mut m = Masks {
        backslash: 0,
        quote: 0,
        control: 0,
    };
    for (i, word) in chunk.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        m.backslash |= zero_bytes(w ^ splat(b'\\')) << (8 * i);
        m.quote |= zero_bytes(w ^ splat(b'"')) << (8 * i);
        // A byte is 0x00 to 0x1F exactly where its top three bits are zero.
        m.control |= zero_bytes(w & splat(0xe0)) << (8 * i);
    }
    m
}

const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// One bit per byte of `w`, set where the byte is zero (exactly: no borrow crosses bytes).
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    let low7 = splat(0x7f);
    // The top bit of each byte: set where the byte is zero.
    let high = !(((w & low7) + low7) | w | low7);
    // The eight top bits gathered into the low byte, byte 0's lowest.
    ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

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

/// Decodes the JSON string whose text starts at `bytes[start]` (just after its opening quote):
/// its bytes, and where it ends (just after its closing quote). Escapes are checked as JSON
/// defines them (`\uXXXX` surrogates in pairs); `None` for anything else or no closing quote.
/// Raw control characters are passed through and the text's UTF-8 is the caller's to check
/// (the event reader is lenient; see `proxy_event`). `capacity` is where the output buffer
/// starts (the string's length when it is known to be large).
pub fn decode_string(bytes: &[u8], start: usize, capacity: usize) -> Option<(Vec<u8>, usize)> {
    // Room for a whole chunk's bytes and the 16-byte copies' overshoot past them. The output
    // is written into the buffer's spare capacity, its length the bytes decoded so far: never
    // zeroed first (for a 1 MB body, a pass over a megabyte of memory for nothing).
    const SLACK: usize = CHUNK + 32;
    let mut out = Vec::with_capacity(capacity.max(SLACK));
    let mut at = start;
    while let Some(chunk) = bytes.get(at..at + CHUNK) {
        let chunk: &[u8; CHUNK] = chunk.try_into().ok()?;
        out.reserve(SLACK);
        let base = at;
        let m = masks(chunk);
        let mut special = m.backslash | m.quote;
        // Each step copies the plain bytes up to the next special one and handles that.
        loop {
            let done = at - base;
            if special == 0 {
                copy_run(&mut out, &bytes[at..], CHUNK - done);
                at = base + CHUNK;
                break;
            }
            let p = special.trailing_zeros() as usize;
            copy_run(&mut out, &bytes[at..], p - done);
            at = base + p;
            if m.quote & (1 << p) != 0 {
                return Some((out, at + 1));
            }
            at = escape(bytes, at, &mut out)?;
            let done = at - base;
            if done >= CHUNK {
                break; // the escape ran into the next chunk, which starts where it ended
            }
            special &= u64::MAX << done;
        }
    }
    // Fewer than a chunk's bytes left: one at a time.
    loop {
        match *bytes.get(at)? {
            b'"' => return Some((out, at + 1)),
            b'\\' => at = escape(bytes, at, &mut out)?,
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
}

/// Appends the first `n` bytes of `src` to `out` sixteen at a time (a run between two escapes
/// is short): each copy writes 16 bytes into the spare capacity, the length then takes in
/// those of the run; the rest is overwritten by what comes next.
#[inline(always)]
fn copy_run(out: &mut Vec<u8>, src: &[u8], n: usize) {
    let mut i = 0;
    while i < n {
        let spare = out.spare_capacity_mut();
        match (src.get(i..i + 16), spare.get_mut(..16)) {
            (Some(s), Some(d)) => {
                // SAFETY: `s` and `d` are 16 bytes each, checked above, and do not overlap
                // (`d` is the spare capacity of the decoder's own buffer).
                unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), d.as_mut_ptr().cast(), 16) };
                let take = (n - i).min(16);
                // SAFETY: the `take` bytes after the length have just been written.
                unsafe { out.set_len(out.len() + take) };
            }
            _ => {
                out.extend_from_slice(&src[i..n]);
                return;
            }
        }
        i += 16;
    }
}

/// Decodes the escape whose backslash is `bytes[at]` onto `out`: where the input goes on.
#[inline(always)]
fn escape(bytes: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let escaped = *bytes.get(at + 1)?;
    let simple = SIMPLE_ESCAPES[usize::from(escaped)];
    if simple != 0 {
        // The common case (`\"`, `\\`): one byte, written without a copy of variable length.
        out.push(simple);
        return Some(at + 2);
    }
    if escaped != b'u' {
        return None;
    }
    let (c, end) = unicode_escape(bytes, at + 2)?;
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    Some(end)
}

/// The four hex digits at `bytes[at..]` as a number.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let mut n = 0;
    for &d in digits {
        n = n << 4 | char::from(d).to_digit(16)?;
    }
    Some(n)
}

/// The character of a `\uXXXX` escape whose hex digits start at `bytes[at]` (a surrogate pair
/// read as one character), and where it ends.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let first = hex4(bytes, at)?;
    match first {
        0xD800..=0xDBFF => {
            if bytes.get(at + 4..at + 6)? != b"\\u" {
                return None;
            }
            let second = hex4(bytes, at + 6)?;
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

/// Skips the JSON string whose text starts at `bytes[start]` (just after its opening quote), as
/// serde_json skips a string it ignores: escapes must be one of JSON's (`\u` with any four hex
/// digits, paired or not), raw control characters are refused. Where the string ends (just
/// after its closing quote), or `None`.
///
/// Nothing is decoded, so no escape has to wait for the one before: which bytes are escaped is
/// computed for the whole chunk from its backslashes ([`escaped_bytes`]), the end is the first
/// quote not escaped, and each escape before it is checked on its own.
pub fn skip_string(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    // Whether the previous chunk ended in an odd run of backslashes (escaping this one's first byte).
    let mut carry = 0;
    while let Some(chunk) = bytes.get(at..at + CHUNK) {
        let chunk: &[u8; CHUNK] = chunk.try_into().ok()?;
        match skip_in_chunk(bytes, at, chunk, &mut carry)? {
            Some(end) => return Some(end),
            None => at += CHUNK,
        }
    }
    // The last bytes, padded with spaces (which end nothing and are allowed): a string that
    // does not end in them does not end at all.
    let rest = bytes.get(at..)?;
    let mut padded = [b' '; CHUNK];
    padded[..rest.len()].copy_from_slice(rest);
    skip_in_chunk(bytes, at, &padded, &mut carry).flatten()
}

/// One chunk of [`skip_string`] at `bytes[base..]`: `Some(Some(end))` where the string ends in
/// it, `Some(None)` where it goes on, `None` for a string JSON does not allow.
#[inline(always)]
fn skip_in_chunk(
    bytes: &[u8],
    base: usize,
    chunk: &[u8; CHUNK],
    carry: &mut u64,
) -> Option<Option<usize>> {
    let m = masks(chunk);
    let escaped = escaped_bytes(m.backslash, carry);
    let quotes = m.quote & !escaped;
    // The string's bytes in this chunk: all of them, or those before its closing quote.
    let within = if quotes == 0 {
        u64::MAX
    } else {
        (1 << quotes.trailing_zeros()) - 1
    };
    if m.control & within != 0 {
        return None;
    }
    let mut escapes = escaped & within;
    while escapes != 0 {
        let p = escapes.trailing_zeros() as usize;
        // `chunk[p]` is `bytes[base + p]` except in the padding, where it is a space (refused).
        let byte = chunk[p];
        if SIMPLE_ESCAPES[usize::from(byte)] == 0
            && (byte != b'u' || hex4(bytes, base + p + 1).is_none())
        {
            return None;
        }
        escapes &= escapes - 1;
    }
    Some((quotes != 0).then(|| base + quotes.trailing_zeros() as usize + 1))
}

/// The bytes of a chunk that a backslash escapes (the byte after each odd-numbered backslash of
/// a run), from the chunk's backslashes and whether the previous chunk's last byte escapes this
/// one's first (`carry`, updated for the next chunk). simdjson's method: adding a run's first
/// backslash to the run carries out of its end, which tells the runs of odd length from the even
/// ones without a loop.
#[inline(always)]
fn escaped_bytes(backslash: u64, carry: &mut u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    // A backslash escaped by the previous chunk escapes nothing.
    let backslash = backslash & !*carry;
    let follows_backslash = backslash << 1 | *carry;
    let odd_starts = backslash & !EVEN & !follows_backslash;
    let (even_starts_sum, overflow) = odd_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    (EVEN ^ (even_starts_sum << 1)) & follows_backslash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_decode_as_serde_json_decodes_them() {
        let long = format!(r#""{}\"{}\u00e9""#, "a".repeat(70), "\\\\".repeat(40));
        for text in [
            r#""""#,
            r#""plain""#,
            r#""\"q\" \\ \/ \b\f\n\r\t""#,
            r#""\u003cp\u003e \u00e9 \u2014 \ud83d\ude00 é""#,
            r#""{\"a\":\"\\u003c\\\"\"}""#,
            &long,
        ] {
            let expected: String = serde_json::from_str(text).unwrap();
            for capacity in [0, 3, text.len()] {
                let (bytes, end) = decode_string(text.as_bytes(), 1, capacity).unwrap();
                assert_eq!(String::from_utf8(bytes).unwrap(), expected, "{text}");
                assert_eq!(end, text.len(), "{text}");
            }
            assert_eq!(skip_string(text.as_bytes(), 1), Some(text.len()), "{text}");
        }
        for broken in [
            r#""no end"#,
            r#""bad \x escape""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\"#,
        ] {
            assert_eq!(decode_string(broken.as_bytes(), 1, 0), None, "{broken}");
            assert_eq!(skip_string(broken.as_bytes(), 1), None, "{broken}");
        }
        // Unpaired surrogates are refused when decoded, passed over when skipped (as serde_json
        // does: only a string read as text must be valid Unicode).
        for lone in [
            r#""\ud800 lone""#,
            r#""\udc00 low first""#,
            r#""\ud800\u0041""#,
        ] {
            assert_eq!(decode_string(lone.as_bytes(), 1, 0), None, "{lone}");
            assert_eq!(skip_string(lone.as_bytes(), 1), Some(lone.len()), "{lone}");
        }
    }

    #[test]
    fn runs_of_backslashes_across_chunk_boundaries_end_where_serde_json_ends_them() {
        for lead in 0..2 * CHUNK {
            for run in 0..6 {
                for tail in [r#"""#, r#"u0041""#, r#"n""#, r#"x""#, ""] {
                    let text = format!("\"{}{}{tail} after\"", "a".repeat(lead), "\\".repeat(run));
                    let mut skipped = serde_json::Deserializer::from_str(&text)
                        .into_iter::<serde::de::IgnoredAny>();
                    let theirs = match skipped.next() {
                        Some(Ok(_)) => Some(skipped.byte_offset()),
                        _ => None,
                    };
                    assert_eq!(skip_string(text.as_bytes(), 1), theirs, "{text}");
                }
            }
        }
    }

    #[test]
    fn the_masks_mark_every_special_byte_and_nothing_else() {
        for i in 0..CHUNK {
            for byte in 0..=255u8 {
                let mut chunk = [b'a'; CHUNK];
                chunk[i] = byte;
                let m = masks(&chunk);
                assert_eq!(m, masks_portable(&chunk), "byte {byte:#x} at {i}");
                let bit = 1u64 << i;
                assert_eq!(m.backslash, if byte == b'\\' { bit } else { 0 });
                assert_eq!(m.quote, if byte == b'"' { bit } else { 0 });
                assert_eq!(m.control, if byte < 0x20 { bit } else { 0 });
            }
        }
    }

    /// Text of any length (past several chunks), with every kind of escape, at any offset.
    fn encoded() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-z ]{0,40}",
            Just("\\\"".to_string()),
            Just("\\\\".to_string()),
            Just("\\/\\b\\f\\n\\r\\t".to_string()),
            Just("\\u003c".to_string()),
            Just("\\ud83d\\ude00".to_string()),
            Just("\u{e9}\u{2014}".to_string()),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    proptest! {
        /// Any text, as serde_json encodes it or with escapes chosen at random (`\uXXXX` for any
        /// character, surrogate pairs included, `\/`), at any offset: decoded as serde_json decodes it.
        #[test]
        fn any_json_string_decodes_as_serde_json_decodes_it(
            text in "(?s).{0,200}|[\"\\\\a\n\u{e9}\u{1f600}]{0,200}",
            escape_all in proptest::collection::vec(0u8..4, 0..200),
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
            let (bytes, end) = decode_string(input.as_bytes(), prefix + 1, capacity).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(bytes).unwrap(), expected);
            proptest::prop_assert_eq!(end, input.len() - 1);
        }

        /// Arbitrary bytes: whatever decodes, serde_json decodes to the same (where it accepts the
        /// string at all: it also refuses raw control characters and invalid UTF-8, which the
        /// decoder leaves to its caller).
        #[test]
        fn arbitrary_bytes_decode_as_serde_json_or_not_at_all(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(b'"'), proptest::strategy::Just(b'\\'), proptest::strategy::Just(b'u'), proptest::strategy::Just(b'0'), proptest::strategy::Just(b'd'), proptest::num::u8::ANY],
                0..200,
            ),
        ) {
            let mut input = vec![b'"'];
            input.extend_from_slice(&bytes);
            let ours = decode_string(&input, 1, 0);
            let theirs = serde_json::Deserializer::from_slice(&input)
                .into_iter::<String>()
                .next()
                .and_then(Result::ok);
            if let Some(theirs) = theirs {
                let (decoded, _) = ours.expect("serde_json read a string: so must the decoder");
                proptest::prop_assert_eq!(decoded, theirs.into_bytes());
            }
        }

        #[test]
        fn any_string_decodes_and_skips_as_serde_json_does(
            text in encoded(),
            prefix in 0usize..70,
            capacity in 0usize..64,
        ) {
            let expected: String = serde_json::from_str(&text).unwrap();
            let input = format!("{}{text}]", " ".repeat(prefix));
            let (bytes, end) = decode_string(input.as_bytes(), prefix + 1, capacity).unwrap();
            prop_assert_eq!(String::from_utf8(bytes).unwrap(), expected);
            prop_assert_eq!(end, input.len() - 1);
            prop_assert_eq!(skip_string(input.as_bytes(), prefix + 1), Some(input.len() - 1));
        }

        /// Arbitrary bytes: the skipper accepts exactly what serde_json's accepts, and ends where
        /// it ends.
        #[test]
        fn arbitrary_bytes_skip_as_serde_json_skips_them(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'u'), Just(b'0'), Just(b'd'), Just(0x1f), Just(b'a'), any::<u8>()],
                0..200,
            ),
        ) {
            let mut input = vec![b'"'];
            input.extend_from_slice(&bytes);
            let mut skipped = serde_json::Deserializer::from_slice(&input)
                .into_iter::<serde::de::IgnoredAny>();
            let theirs = match skipped.next() {
                Some(Ok(_)) => Some(skipped.byte_offset()),
                _ => None,
            };
            prop_assert_eq!(skip_string(&input, 1), theirs);
        }
    }
}
