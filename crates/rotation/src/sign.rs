//! HMAC-SHA256 signatures of outgoing webhook requests.
//!
//! A request carries `X-Keyward-Timestamp: <unix seconds>` and
//! `X-Keyward-Signature: sha256=<hex>`, where the MAC covers `"<timestamp>.<body>"`. Binding the
//! timestamp lets receivers reject replays older than a few minutes. Receivers verify with
//! [`verify`], which compares in constant time.

use aws_lc_rs::hmac;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-keyward-signature";
/// Header carrying the Unix timestamp, in seconds.
pub const TIMESTAMP_HEADER: &str = "x-keyward-timestamp";

/// Returns the `X-Keyward-Signature` value for `body` sent at `timestamp`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// Checks a signature header value against `body` and `timestamp` in constant time.
pub fn verify(key: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_tag) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), &message, &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_known_answer() {
        // HMAC-SHA256(key = "key", "1700000000.{}") computed with Python's hmac module.
        let signature = sign(b"key", 1_700_000_000, b"{}");
        assert_eq!(
            signature,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn signature_verifies_and_rejects_changes() {
        let header = sign(b"key", 42, b"body");
        assert!(verify(b"key", 42, b"body", &header));
        assert!(!verify(b"key", 43, b"body", &header));
        assert!(!verify(b"key", 42, b"bodY", &header));
        assert!(!verify(b"other", 42, b"body", &header));
        assert!(!verify(b"key", 42, b"body", "sha1=00"));
    }
}
