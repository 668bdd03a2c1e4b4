//! HMAC-SHA256, constant-time comparison and random bytes.
//!
//! Thin wrappers over aws-lc-rs, so that callers need not depend on it directly.

use aws_lc_rs::{constant_time, hmac, rand};

use crate::CryptoError;

/// Computes HMAC-SHA256 of `message` under `key` (RFC 2104, FIPS 198-1).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, message);

    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Compares two byte strings in time that depends only on their lengths.
///
/// Slices of different lengths return `false` at once, so lengths must not be secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Returns `N` bytes from the operating system's random number generator.
///
/// # Errors
///
/// [`CryptoError::Random`] if the generator fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let first: [u8; 32] = random_bytes().expect("system rng");
        let second: [u8; 32] = random_bytes().expect("system rng");
        assert_ne!(first, second);
    }
}
