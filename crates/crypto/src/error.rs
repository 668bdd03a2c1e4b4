//! The error type shared by every operation of this crate.
//!
//! Messages never contain key material, plaintext or passphrases: they name the failing value
//! only by something public, such as a key id or a length.

use crate::KeyId;

/// Errors returned by keyring, AEAD, KDF and wrapping operations.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext names a data key that the keyring does not contain.
    #[error("unknown data key id {0}: the keyring does not hold it")]
    UnknownKeyId(KeyId),

    /// The input is shorter than a header, a nonce and a tag.
    #[error("ciphertext is truncated: it is shorter than the header, nonce and tag")]
    Truncated,

    /// The first byte of the ciphertext is not a format version this crate reads.
    #[error("unsupported ciphertext format version {0:#04x}: expected 0x01")]
    UnsupportedFormat(u8),

    /// The authentication tag did not verify.
    ///
    /// AES-GCM cannot tell a wrong key, a wrong context (associated data) and modified bytes
    /// apart, so all three end here.
    #[error("decryption failed: wrong key, wrong context (associated data) or modified ciphertext")]
    DecryptionFailed,

    /// Sealing failed, which AES-GCM does only for a plaintext longer than about 64 GiB.
    #[error("encryption failed: the plaintext is longer than AES-256-GCM allows")]
    EncryptionFailed,

    /// The wrapped keyring did not open under the given root key.
    #[error(
        "the keyring did not open: wrong passphrase or key file, or the wrapped keyring was modified"
    )]
    WrongRootKey,

    /// The wrapped keyring or its KDF parameters are malformed.
    #[error("invalid keyring: {0}")]
    InvalidKeyring(String),

    /// A raw root key was not exactly 32 bytes long.
    #[error("invalid root key length {0}: a raw root key must be exactly 32 bytes")]
    InvalidKeyLength(usize),

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// The active data key has used up its encryption budget, or no new key id is left.
    #[error("the active data key has reached its encryption limit: rotate the data key")]
    KeyringExhausted,
}
