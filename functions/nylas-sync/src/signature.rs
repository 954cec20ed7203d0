//! Verification of `x-nylas-signature`: HMAC-SHA256 of the raw request bytes, keyed with a
//! destination's webhook secret, compared in constant time against every configured secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::WebhookSecret;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// Bytes hashed per secret before moving to the next one. With two secrets (rotation) the body is
/// still read from memory once: each chunk is hashed under every key while it is in cache.
const CHUNK: usize = 16 * 1024;

/// Why a signature was not accepted. Deliberately says nothing about the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing x-nylas-signature header")]
    Missing,
    #[error("x-nylas-signature is not a hex SHA-256 HMAC")]
    Malformed,
    #[error("x-nylas-signature does not match")]
    Mismatch,
}

/// Decodes a header value into the 32-byte tag it carries. Tolerates surrounding whitespace,
/// upper-case hex and a `sha256=` prefix (in any case), as Nylas's own SDKs do.
pub fn parse_signature_header(value: &[u8]) -> Result<[u8; TAG_LEN], SignatureError> {
    let value = value.trim_ascii();
    let value = match value.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case(b"sha256=") => value[7..].trim_ascii_start(),
        _ => value,
    };
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(value, &mut tag).map_err(|_| SignatureError::Malformed)?;
    Ok(tag)
}

/// Verifies `body` against the header value with every secret. Succeeds if any secret matches,
/// so a rotation can keep the previous secret valid for a while. Each comparison is constant
/// time; an empty secret list accepts nothing.
pub fn verify_signature(
    secrets: &[WebhookSecret],
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify_signature_index(secrets, header, body).map(|_| ())
}

/// As [`verify_signature`], and says which secret matched (its index in `secrets`; 0 is the
/// current one), so the ingest can tell when the previous secret is still in use.
pub fn verify_signature_index(
    secrets: &[WebhookSecret],
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<usize, SignatureError> {
    let tag = parse_signature_header(header.ok_or(SignatureError::Missing)?)?;
    let mut macs: Vec<(usize, HmacSha256)> = secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.expose().is_empty())
        .filter_map(|(i, s)| Some((i, HmacSha256::new_from_slice(s.expose().as_bytes()).ok()?)))
        .collect();
    if macs.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    for chunk in body.chunks(CHUNK) {
        for (_, mac) in &mut macs {
            mac.update(chunk);
        }
    }
    // Check every secret, not only until the first match, so timing does not say which matched.
    let matched = macs.into_iter().fold(None, |found, (i, mac)| {
        let ok = mac.verify_slice(&tag).is_ok();
        found.or(ok.then_some(i))
    });
    matched.ok_or(SignatureError::Mismatch)
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`: what Nylas puts in `x-nylas-signature`.
/// Used by tests, the emulator and the operator tooling to sign sample requests.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Vec<WebhookSecret> {
        list.iter().map(|s| WebhookSecret::new(*s)).collect()
    }

    const BODY: &[u8] = br#"{"type":"message.created","id":"n1"}"#;

    #[test]
    fn a_signature_made_with_the_current_secret_verifies() {
        let sig = sign("current", BODY);
        assert_eq!(
            verify_signature(&secrets(&["current"]), Some(sig.as_bytes()), BODY),
            Ok(())
        );
    }

    #[test]
    fn the_previous_secret_still_verifies_during_rotation() {
        let sig = sign("previous", BODY);
        let list = secrets(&["current", "previous"]);
        assert_eq!(verify_signature(&list, Some(sig.as_bytes()), BODY), Ok(()));
    }

    #[test]
    fn the_index_says_which_secret_matched() {
        let list = secrets(&["", "current", "previous"]);
        let sig = sign("previous", BODY);
        assert_eq!(
            verify_signature_index(&list, Some(sig.as_bytes()), BODY),
            Ok(2)
        );
        let sig = sign("current", BODY);
        assert_eq!(
            verify_signature_index(&list, Some(sig.as_bytes()), BODY),
            Ok(1)
        );
    }

    #[test]
    fn a_secret_removed_after_rotation_no_longer_verifies() {
        let sig = sign("previous", BODY);
        assert_eq!(
            verify_signature(&secrets(&["current"]), Some(sig.as_bytes()), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn upper_case_hex_whitespace_and_prefix_are_tolerated() {
        let sig = sign("s", BODY);
        let list = secrets(&["s"]);
        for header in [
            sig.to_uppercase(),
            format!("  {sig}\t"),
            format!("sha256={sig}"),
            format!("SHA256={}", sig.to_uppercase()),
            format!(" sha256= {sig} "),
        ] {
            assert_eq!(
                verify_signature(&list, Some(header.as_bytes()), BODY),
                Ok(()),
                "{header}"
            );
        }
    }

    #[test]
    fn a_tampered_body_is_rejected() {
        let sig = sign("s", BODY);
        let mut tampered = BODY.to_vec();
        tampered[5] ^= 1;
        assert_eq!(
            verify_signature(&secrets(&["s"]), Some(sig.as_bytes()), &tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_signature_is_rejected() {
        let mut sig = sign("s", BODY).into_bytes();
        sig[0] = if sig[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            verify_signature(&secrets(&["s"]), Some(&sig), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_empty_secret_list_accepts_nothing() {
        let sig = sign("", BODY);
        assert_eq!(
            verify_signature(&[], Some(sig.as_bytes()), BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&secrets(&[""]), Some(sig.as_bytes()), BODY),
            Err(SignatureError::Mismatch),
            "an empty string is not a usable secret"
        );
    }

    #[test]
    fn missing_truncated_and_non_hex_headers_are_told_apart_from_mismatches() {
        let list = secrets(&["s"]);
        let sig = sign("s", BODY);
        assert_eq!(
            verify_signature(&list, None, BODY),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(&list, Some(b""), BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(&list, Some(&sig.as_bytes()[..62]), BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(&list, Some(format!("{sig}00").as_bytes()), BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(&list, Some(&[b'z'; 64]), BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(&list, Some("é".repeat(32).as_bytes()), BODY),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn bodies_longer_than_one_chunk_verify_with_several_secrets() {
        let body = vec![7u8; CHUNK * 3 + 5];
        let sig = sign("b", &body);
        assert_eq!(
            verify_signature(&secrets(&["a", "b"]), Some(sig.as_bytes()), &body),
            Ok(())
        );
    }

    #[test]
    fn sign_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
