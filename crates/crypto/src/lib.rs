//! Encryption core of Keyward: a keyring of AES-256-GCM data keys, a versioned ciphertext
//! format, root-key derivation (PBKDF2-HMAC-SHA256 or a raw 32-byte key) and keyring wrapping.
//!
//! The crate performs no I/O. Callers pass in bytes: a passphrase, the contents of a key file,
//! a stored `keyring.json`, a ciphertext from the database. All primitives come from aws-lc-rs.
//!
//! # Ciphertext format
//!
//! [`Keyring::encrypt`] returns, for format version 1:
//!
//! | bytes       | content                              |
//! |-------------|--------------------------------------|
//! | 0           | format version, `0x01`               |
//! | 1..5        | data key id, `u32` big-endian        |
//! | 5..17       | 96-bit random nonce                  |
//! | 17..len-16  | AES-256-GCM ciphertext               |
//! | len-16..len | 128-bit tag                          |
//!
//! The AEAD associated data is the 5 header bytes followed by the caller's context bytes
//! (`aad`), so the header is authenticated and a value sealed for one context (say, a secret's
//! path and version) fails to decrypt under another.
//!
//! # Example
//!
//! ```
//! use keyward_crypto::{CryptoError, Keyring};
//!
//! let keyring = Keyring::generate()?;
//! let sealed = keyring.encrypt(b"sk-live-123", b"team/app/openai#1")?;
//!
//! let opened = keyring.decrypt(&sealed, b"team/app/openai#1")?;
//! assert_eq!(opened.as_slice(), b"sk-live-123");
//!
//! // The same bytes do not open in another context.
//! let moved = keyring.decrypt(&sealed, b"team/app/billing#1");
//! assert!(matches!(moved, Err(CryptoError::DecryptionFailed)));
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! # Limits
//!
//! - Nonces are random, so each data key is good for a bounded number of encryptions
//!   ([`Keyring::MAX_ENCRYPTIONS_PER_KEY`]). Counts survive a restart only through
//!   [`Keyring::wrap`], so wrap and store the keyring periodically.
//! - Re-encrypting old values onto a new data key is the caller's job; this crate only
//!   reports which key sealed a value ([`Keyring::key_id_of`]).
//! - Decryption cannot tell a wrong key from a wrong context or modified bytes.

mod aead;
mod error;
pub mod format;
mod keyring;
mod mac;
mod root_key;
mod wrap;

/// Identifier of a data key within a keyring; stored in every ciphertext header.
pub type KeyId = u32;

pub use aead::{KEY_LEN, NONCE_LEN, TAG_LEN};
#[doc(hidden)]
pub use aead::{aes_256_gcm_open, aes_256_gcm_seal};
pub use error::CryptoError;
pub use format::CIPHERTEXT_OVERHEAD;
pub use keyring::Keyring;
pub use mac::{constant_time_eq, hmac_sha256, random_bytes};
#[doc(hidden)]
pub use root_key::pbkdf2_hmac_sha256;
pub use root_key::{KdfParams, RootKey};
pub use wrap::{WRAPPED_KEYRING_FORMAT, WrappedKeyring};
pub use zeroize::Zeroizing;
