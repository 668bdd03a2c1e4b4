//! Encryption core of Keyward: a keyring of AES-256-GCM data keys, a versioned ciphertext
//! format, root-key derivation (PBKDF2-HMAC-SHA256, Argon2id or a raw 32-byte key) and keyring
//! wrapping.
//!
//! On top of these it offers field-level encryption for application databases, usable on its
//! own: [`Encrypted<T>`] values bound to their table, column and row, and [`BlindIndex`] for
//! looking rows up by an encrypted column.
//!
//! The crate performs no I/O. Callers pass in bytes: a passphrase, the contents of a key file,
//! a stored `keyring.json`, a ciphertext from the database. AES-GCM, HMAC, HKDF and PBKDF2 come
//! from aws-lc-rs; Argon2id comes from the `argon2` crate.
//!
//! # Encrypting database fields
//!
//! ```
//! use keyward_crypto::{BlindIndex, CryptoError, Encrypted, EncryptionContext, Keyring, Zeroizing};
//!
//! let mut keyring = Keyring::generate()?;
//! let email_index = BlindIndex::for_column(&keyring, "users", "email")?
//!     .with_normalizer(|email| Zeroizing::new(email.trim_ascii().to_ascii_lowercase()));
//!
//! // Writing row 7: seal the email for exactly this row and column, and index it.
//! let context = EncryptionContext::new("users", "email", "7");
//! let email = "Ada@Example.com".to_owned();
//! let stored_email = Encrypted::seal(&keyring, &email, &context)?;
//! let stored_index = email_index.compute(email.as_bytes());
//!
//! // Looking up: the database compares index values; the row's context opens the email.
//! assert_eq!(email_index.compute(b"ada@example.com"), stored_index);
//! assert_eq!(stored_email.open(&keyring, &context)?, "Ada@Example.com");
//!
//! // The value does not open as another row's.
//! let row_8 = EncryptionContext::new("users", "email", "8");
//! assert!(matches!(stored_email.open(&keyring, &row_8), Err(CryptoError::WrongContext)));
//!
//! // After a data-key rotation, old values still open; rewrap moves them to the new key,
//! // and the blind index is unchanged.
//! keyring.rotate()?;
//! assert!(stored_email.needs_rewrap(&keyring));
//! let rewrapped = stored_email.rewrap(&keyring, &context)?;
//! assert_eq!(rewrapped.key_id(), 2);
//! assert_eq!(rewrapped.open(&keyring, &context)?, "Ada@Example.com");
//! assert_eq!(email_index.compute(b"ada@example.com"), stored_index);
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! `Encrypted<T>` serializes with serde as a base64 string, and with the cargo features
//! `sqlx-sqlite` or `sqlx-postgres` it binds and reads as a `BLOB` / `BYTEA` column through
//! sqlx. The example `users` (`cargo run -p keyward-crypto --example users --features
//! sqlx-sqlite`) runs the whole cycle against SQLite.
//!
//! # Encrypting bytes
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
//! # Ciphertext formats
//!
//! [`Keyring::encrypt`] returns format 1:
//!
//! | bytes       | content                              |
//! |-------------|--------------------------------------|
//! | 0           | format version, `0x01`               |
//! | 1..5        | data key id, `u32` big-endian        |
//! | 5..17       | 96-bit random nonce                  |
//! | 17..len-16  | AES-256-GCM ciphertext               |
//! | len-16..len | 128-bit tag                          |
//!
//! [`Keyring::encrypt_with_checks`] and [`Encrypted<T>`] return format 2, which adds a 4-byte
//! key check and a 4-byte context check after the key id, so that decryption can report
//! [`CryptoError::WrongKey`] and [`CryptoError::WrongContext`] apart from
//! [`CryptoError::Modified`]. The [`format`](mod@format) module documents both layouts byte by byte.
//!
//! In both, the AEAD associated data is the header followed by the caller's context bytes
//! (`aad`), so the header is authenticated and a value sealed for one context (say, a secret's
//! path and version) fails to decrypt under another. [`Keyring::decrypt`] reads both formats.
//!
//! # Limits and non-features
//!
//! - Nonces are random, so each data key is good for a bounded number of encryptions
//!   ([`Keyring::MAX_ENCRYPTIONS_PER_KEY`]). Counts survive a restart only through
//!   [`Keyring::wrap`], so wrap and store the keyring periodically.
//! - Re-encrypting old values onto a new data key is the caller's job: this crate reports
//!   which key sealed a value ([`Keyring::key_id_of`], [`Encrypted::needs_rewrap`]) and
//!   re-encrypts one value at a time ([`Encrypted::rewrap`]). It does not walk a database;
//!   once no value uses an old key, [`Keyring::retire`] removes it.
//! - Format 1 cannot tell a wrong key from a wrong context or modified bytes. Format 2 can,
//!   but its 32-bit checks are diagnostics, not key commitment. About one wrong key or context
//!   in 2^32 passes its check and is reported as modified. Anyone who can edit stored bytes
//!   can choose which error a decryption reports. Either way, nothing opens without a valid tag.
//! - [`Encrypted<T>`] hides a value's content but not its length: the ciphertext is the JSON
//!   length plus 41 bytes. Pad values before sealing if lengths matter.
//! - [`BlindIndex`] supports exact-match lookups only and reveals which rows hold equal
//!   values; see its module documentation. There is no searchable encryption for prefixes,
//!   ranges or substrings.
//! - Values returned by [`Encrypted::open`] are ordinary `T`s: the decrypted JSON buffer is
//!   zeroized, the `T` is not unless the caller wraps it.
//! - The crate does not manage key storage, key files or passphrases, and does not log.

mod aead;
mod blind_index;
mod context;
mod encrypted;
#[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
mod encrypted_sqlx;
mod error;
pub mod format;
mod kdf;
mod keyring;
mod mac;
mod root_key;
mod wrap;

/// Identifier of a data key within a keyring; stored in every ciphertext header.
pub type KeyId = u32;

pub use aead::{KEY_LEN, NONCE_LEN, TAG_LEN};
#[doc(hidden)]
pub use aead::{aes_256_gcm_open, aes_256_gcm_seal};
pub use blind_index::{BlindIndex, Normalizer};
pub use context::EncryptionContext;
pub use encrypted::Encrypted;
pub use error::CryptoError;
pub use format::{CIPHERTEXT_OVERHEAD, CIPHERTEXT_V2_OVERHEAD};
pub use kdf::KdfParams;
#[doc(hidden)]
pub use kdf::pbkdf2_hmac_sha256;
pub use keyring::Keyring;
pub use mac::{constant_time_eq, hmac_sha256, random_bytes};
pub use root_key::RootKey;
pub use wrap::{WRAPPED_KEYRING_FORMAT, WrappedKeyring};
pub use zeroize::Zeroizing;
