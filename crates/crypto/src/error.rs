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
    #[error("unsupported ciphertext format version {0:#04x}: expected 0x01 or 0x02")]
    UnsupportedFormat(u8),

    /// The authentication tag of a format 1 ciphertext did not verify.
    ///
    /// Format 1 carries no key or context check, and AES-GCM cannot tell a wrong key, a wrong
    /// context (associated data) and modified bytes apart, so all three end here.
    #[error("decryption failed: wrong key, wrong context (associated data) or modified ciphertext")]
    DecryptionFailed,

    /// The key check of a format 2 ciphertext does not match the keyring's key with that id.
    ///
    /// The value was sealed by another keyring whose key has the same id, or its header bytes
    /// were modified.
    #[error(
        "key check failed for data key id {0}: the value was sealed by another keyring, or its header was modified"
    )]
    WrongKey(KeyId),

    /// The context check of a format 2 ciphertext does not match the given context.
    ///
    /// The value was sealed for another context (another table, column or row for
    /// [`crate::Encrypted`]), or its header bytes were modified.
    #[error(
        "context check failed: the value was sealed for another table, column or row, or its header was modified"
    )]
    WrongContext,

    /// The key and context checks of a format 2 ciphertext passed but the tag did not verify.
    ///
    /// The nonce, body or tag were modified. With 32-bit checks, about one wrong key or
    /// context in 2^32 also passes its check and ends here.
    #[error("decryption failed: the key and context checks passed, so the ciphertext was modified")]
    Modified,

    /// A value could not be serialized to JSON before sealing.
    ///
    /// Only the type name is reported, because serializer messages can quote the value.
    #[error(
        "serializing a value of type {type_name} to JSON failed: its Serialize impl returned an error or a map key is not a string"
    )]
    SerializationFailed {
        /// Rust type name of the value.
        type_name: &'static str,
    },

    /// A decrypted value is not valid JSON for the requested type.
    ///
    /// Only the type name is reported, because deserializer messages quote the plaintext.
    #[error(
        "the decrypted value does not deserialize as {type_name}: the column holds values of another type"
    )]
    DeserializationFailed {
        /// Rust type name requested.
        type_name: &'static str,
    },

    /// A table or column name cannot be used in a blind index key label.
    #[error(
        "invalid blind index name {0:?}: table and column names must be non-empty and contain no '/'"
    )]
    InvalidIndexName(String),

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
