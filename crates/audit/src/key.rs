//! The audit key, which pseudonymises sensitive strings before they reach the log.
//!
//! The key does not sign or encrypt the log: the hash chain is unkeyed, so that anyone can
//! verify a copy of the log without the key.

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Prefix of every value returned by [`AuditLog::hmac`](crate::AuditLog::hmac).
pub(crate) const HMAC_PREFIX: &str = "hmac-sha256:";

/// 32-byte key for HMAC-SHA256 of sensitive values written to the audit log.
///
/// The bytes are zeroized on drop and never printed by `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    /// Wraps 32 key bytes. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        AuditKey(bytes)
    }

    /// Builds the HMAC-SHA256 signing key. aws-lc-rs keeps its own copy of the key material
    /// and cleanses it when the returned key is dropped.
    pub(crate) fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Returns `"hmac-sha256:<hex>"` of `value` under `key`.
pub(crate) fn format_hmac(key: &hmac::Key, value: &str) -> String {
    let tag = hmac::sign(key, value.as_bytes());
    format!("{HMAC_PREFIX}{}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac_with(key_byte: u8, value: &str) -> String {
        let key = AuditKey::from_bytes([key_byte; 32]);
        format_hmac(&key.hmac_key(), value)
    }

    #[test]
    fn hmac_is_deterministic_per_key() {
        assert_eq!(hmac_with(1, "s.token-value"), hmac_with(1, "s.token-value"));
    }

    #[test]
    fn hmac_differs_across_keys() {
        assert_ne!(hmac_with(1, "s.token-value"), hmac_with(2, "s.token-value"));
    }

    #[test]
    fn hmac_differs_across_values() {
        assert_ne!(hmac_with(1, "alice"), hmac_with(1, "bob"));
    }

    #[test]
    fn hmac_hides_the_input() {
        let value = "s.token-value";
        let output = hmac_with(1, value);

        assert_ne!(output, value);
        assert!(!output.contains(value));
    }

    #[test]
    fn hmac_has_prefix_and_hex_digest() {
        let output = hmac_with(1, "alice");
        let digest = output.strip_prefix(HMAC_PREFIX).unwrap_or_default();

        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key, which HMAC zero-pads to the block size, so
        // the same key padded to 32 bytes gives the same tag.
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(b"Jefe");
        let key = AuditKey::from_bytes(bytes);

        assert_eq!(
            format_hmac(&key.hmac_key(), "what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_redacts_key_bytes() {
        let key = AuditKey::from_bytes([0xab; 32]);
        let debug = format!("{key:?}");

        assert!(!debug.contains("ab"));
        assert!(!debug.contains("171"));
    }
}
