//! HMAC-SHA256, constant-time comparison and random bytes.
//!
//! Thin wrappers over aws-lc-rs, so that callers need not depend on it directly.

use aws_lc_rs::{constant_time, hmac, rand};
use zeroize::Zeroize;

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

/// Zeroizes a plaintext buffer and empties it.
///
/// Dropping a `Zeroizing<Vec<u8>>` wipes its elements one volatile byte write at a time
/// (zeroize 1.9), several times slower than the bulk fill used for a slice. Wiping the slice
/// here and clearing the vector leaves only spare capacity, which the drop wipes in bulk.
pub(crate) fn wipe(buffer: &mut Vec<u8>) {
    buffer.as_mut_slice().zeroize();
    buffer.clear();
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
    fn wipe_empties_and_keeps_allocation() {
        let mut buffer = vec![0xAB; 100];
        buffer.truncate(60);

        wipe(&mut buffer);

        // The zeros cannot be read back without unsafe code. What matters for the drop is that
        // the allocation is kept, so `Zeroizing` wipes all of it as spare capacity.
        assert!(buffer.is_empty());
        assert_eq!(buffer.capacity(), 100);
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let first: [u8; 32] = random_bytes().expect("system rng");
        let second: [u8; 32] = random_bytes().expect("system rng");
        assert_ne!(first, second);
    }
}
