//! The AES-256-GCM primitive that every sealed value in this crate goes through.
//!
//! This module takes an explicit nonce and does not handle key ids or format versions, which
//! [`crate::format`] adds. It does not choose nonces either: callers draw them at random.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::mac::wipe;

/// Length of an AES-256 key in bytes.
pub const KEY_LEN: usize = 32;

/// Length of a GCM nonce in bytes (96 bits, the size GCM handles without extra hashing).
pub const NONCE_LEN: usize = 12;

/// Length of a GCM authentication tag in bytes.
pub const TAG_LEN: usize = 16;

/// Builds an aws-lc AES-256-GCM key from raw bytes.
pub(crate) fn new_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    if bytes.len() != KEY_LEN {
        return Err(CryptoError::InvalidKeyLength(bytes.len()));
    }
    let unbound = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| CryptoError::InvalidKeyLength(bytes.len()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Appends `plaintext` sealed under `key` and `nonce` to `out`, as ciphertext followed by tag.
///
/// The plaintext is copied into `out` and encrypted in place. Capacity for the tag is reserved
/// first so that appending it never reallocates and leaves a plaintext copy in freed memory.
pub(crate) fn seal_append(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    out.reserve_exact(plaintext.len() + TAG_LEN);
    let start = out.len();
    out.extend_from_slice(plaintext);

    let sealed = key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut out[start..],
    );

    match sealed {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(())
        }
        Err(_) => {
            out[start..].zeroize();
            out.truncate(start);
            Err(CryptoError::EncryptionFailed)
        }
    }
}

/// Opens `sealed` (ciphertext followed by tag) under `key` and `nonce`.
///
/// The result lives in a zeroizing buffer; on failure the copy is wiped before returning.
pub(crate) fn open(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < TAG_LEN {
        return Err(CryptoError::Truncated);
    }

    let mut buffer = Zeroizing::new(sealed.to_vec());
    let opened = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buffer,
        )
        .map(|plaintext| plaintext.len());

    match opened {
        Ok(plaintext_len) => {
            buffer.truncate(plaintext_len);
            Ok(buffer)
        }
        Err(_) => {
            wipe(&mut buffer);
            Err(CryptoError::DecryptionFailed)
        }
    }
}

/// Seals `plaintext` with AES-256-GCM under a caller-chosen nonce; returns ciphertext || tag.
///
/// Exposed only so that known-answer tests can reach the primitive behind the ciphertext
/// format. Reusing a nonce under one key breaks GCM, so real callers use [`crate::Keyring`].
///
/// # Errors
///
/// [`CryptoError::InvalidKeyLength`] unless `key` is 32 bytes.
#[doc(hidden)]
pub fn aes_256_gcm_seal(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = new_key(key)?;
    let mut out = Vec::new();
    seal_append(&key, *nonce, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Opens ciphertext || tag sealed by [`aes_256_gcm_seal`].
///
/// Exposed only for known-answer tests, like [`aes_256_gcm_seal`].
///
/// # Errors
///
/// [`CryptoError::InvalidKeyLength`], [`CryptoError::Truncated`] or
/// [`CryptoError::DecryptionFailed`].
#[doc(hidden)]
pub fn aes_256_gcm_open(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let key = new_key(key)?;
    open(&key, *nonce, aad, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let key = [7u8; KEY_LEN];
        let nonce = [9u8; NONCE_LEN];
        let sealed = aes_256_gcm_seal(&key, &nonce, b"context", b"hello").expect("seal");
        assert_eq!(sealed.len(), 5 + TAG_LEN);

        let opened = aes_256_gcm_open(&key, &nonce, b"context", &sealed).expect("open");
        assert_eq!(opened.as_slice(), b"hello");
    }

    #[test]
    fn open_with_other_aad_fails() {
        let key = [7u8; KEY_LEN];
        let nonce = [9u8; NONCE_LEN];
        let sealed = aes_256_gcm_seal(&key, &nonce, b"context", b"hello").expect("seal");

        let result = aes_256_gcm_open(&key, &nonce, b"other", &sealed);
        assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
    }

    #[test]
    fn short_key_is_rejected() {
        let result = aes_256_gcm_seal(&[0u8; 16], &[0u8; NONCE_LEN], b"", b"");
        assert!(matches!(result, Err(CryptoError::InvalidKeyLength(16))));
    }

    #[test]
    fn input_shorter_than_tag_is_truncated() {
        let result = aes_256_gcm_open(&[0u8; KEY_LEN], &[0u8; NONCE_LEN], b"", &[0u8; 15]);
        assert!(matches!(result, Err(CryptoError::Truncated)));
    }
}
