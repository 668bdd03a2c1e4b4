//! Blind indexes: keyed hashes stored beside an encrypted column so that rows can be found by
//! exact value without decrypting the column.
//!
//! A blind index is HMAC-SHA256 of the (optionally normalized) plaintext under a key used for
//! nothing else. The database stores it in a separate indexed column, and a lookup computes
//! the index of the value searched for and compares in SQL.
//!
//! # What it leaks
//!
//! Equality. Anyone who can read the index column learns which rows contain the same value,
//! and how many do. For values with few possibilities (a country, a boolean, a small number) that
//! frequency alone can reveal them; do not index such columns. A guess can be tested only
//! with the index key. Whoever has that key (or the keyring it was derived from) can hash a
//! dictionary of likely values, such as known email addresses, and match them offline. It
//! supports exact match only: no prefix, range or case-insensitive search beyond what the
//! normalizer folds together.
//!
//! # Why its key is separate
//!
//! The index key is not a data key. Data keys rotate, and if the index followed them, every
//! row's index would change at rotation and lookups would miss rows until all were rewritten.
//! [`BlindIndex::for_column`] derives the key with [`Keyring::derive_subkey`], which does not
//! change when data keys rotate, and uses a different label per table and column, so the
//! same email in two columns gets unrelated indexes. Changing the index key means recomputing
//! every index from the decrypted values, which this crate leaves to the caller.

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::mac::constant_time_eq;
use crate::{CryptoError, Keyring};

/// A normalization applied to a value before it is hashed, such as trimming and lowercasing an
/// email address. Its output is zeroized after hashing.
pub type Normalizer = fn(&[u8]) -> Zeroizing<Vec<u8>>;

/// A keyed HMAC-SHA256 blind index for one column.
///
/// `Send + Sync`. `Debug` prints no key material.
///
/// ```
/// use keyward_crypto::{BlindIndex, CryptoError, Keyring, Zeroizing};
///
/// let keyring = Keyring::generate()?;
/// let email_index = BlindIndex::for_column(&keyring, "users", "email")?
///     .with_normalizer(|email| Zeroizing::new(email.trim_ascii().to_ascii_lowercase()));
///
/// let stored = email_index.compute(b"Ada@Example.com");
/// assert_eq!(email_index.compute(b" ada@example.com"), stored);
/// assert!(email_index.matches(b"ADA@EXAMPLE.COM", &stored));
/// assert!(!email_index.matches(b"bob@example.com", &stored));
/// # Ok::<(), CryptoError>(())
/// ```
pub struct BlindIndex {
    key: hmac::Key,
    normalizer: Option<Normalizer>,
}

impl BlindIndex {
    /// Length of an index value in bytes: the full HMAC-SHA256 output.
    pub const LEN: usize = 32;

    /// Creates the blind index of `column` in `table`, keyed by
    /// `keyring.derive_subkey("blind-index/<table>/<column>")`.
    ///
    /// The key survives data-key rotation and keyring wrapping, so stored indexes stay valid.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidIndexName`] if `table` or `column` is empty or contains `/`,
    /// which would make the label ambiguous.
    pub fn for_column(
        keyring: &Keyring,
        table: &str,
        column: &str,
    ) -> Result<BlindIndex, CryptoError> {
        let label = BlindIndex::key_label(table, column)?;
        let key = Zeroizing::new(keyring.derive_subkey(&label));
        Ok(BlindIndex::from_key(&key))
    }

    /// Returns the [`Keyring::derive_subkey`] label that [`BlindIndex::for_column`] uses:
    /// `blind-index/<table>/<column>`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidIndexName`] if `table` or `column` is empty or contains `/`.
    pub fn key_label(table: &str, column: &str) -> Result<String, CryptoError> {
        for name in [table, column] {
            if name.is_empty() || name.contains('/') {
                return Err(CryptoError::InvalidIndexName(name.to_owned()));
            }
        }
        Ok(format!("blind-index/{table}/{column}"))
    }

    /// Creates a blind index keyed by an explicit 32-byte key, for keys managed outside a
    /// keyring. The caller keeps the key secret and zeroizes its copy.
    pub fn from_key(key: &[u8; 32]) -> BlindIndex {
        BlindIndex {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            normalizer: None,
        }
    }

    /// Sets a normalization that [`BlindIndex::compute`] and [`BlindIndex::matches`] apply to
    /// every value before hashing.
    ///
    /// Normalizing here, rather than at each call site, keeps writes and lookups consistent.
    /// Changing the normalizer changes the index values, so stored indexes must be recomputed.
    pub fn with_normalizer(mut self, normalizer: Normalizer) -> BlindIndex {
        self.normalizer = Some(normalizer);
        self
    }

    /// Computes the index value of `value`, after normalization if one is set.
    pub fn compute(&self, value: &[u8]) -> [u8; Self::LEN] {
        let tag = match self.normalizer {
            Some(normalize) => hmac::sign(&self.key, &normalize(value)),
            None => hmac::sign(&self.key, value),
        };

        let mut out = [0u8; Self::LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Returns true if `stored` is the index value of `value`, comparing in constant time.
    pub fn matches(&self, value: &[u8], stored: &[u8]) -> bool {
        constant_time_eq(&self.compute(value), stored)
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndex")
            .field("normalizer", &self.normalizer.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hmac_sha256;

    #[test]
    fn compute_is_hmac_sha256_of_value() {
        let key = [9u8; 32];

        let index = BlindIndex::from_key(&key);

        assert_eq!(
            index.compute(b"ada@example.com"),
            hmac_sha256(&key, b"ada@example.com")
        );
    }

    #[test]
    fn normalizer_runs_before_hashing() {
        let key = [9u8; 32];
        let index = BlindIndex::from_key(&key)
            .with_normalizer(|value| Zeroizing::new(value.to_ascii_lowercase()));

        assert_eq!(index.compute(b"ADA"), hmac_sha256(&key, b"ada"));
    }

    #[test]
    fn key_label_rejects_ambiguous_names() {
        for (table, column) in [("", "email"), ("users", ""), ("a/b", "c"), ("a", "b/c")] {
            let result = BlindIndex::key_label(table, column);
            assert!(
                matches!(result, Err(CryptoError::InvalidIndexName(_))),
                "table {table:?} column {column:?} must be rejected"
            );
        }
        assert_eq!(
            BlindIndex::key_label("users", "email").expect("valid names"),
            "blind-index/users/email"
        );
    }

    #[test]
    fn debug_shows_only_normalizer_presence() {
        let index = BlindIndex::from_key(&[1u8; 32]);
        assert_eq!(format!("{index:?}"), "BlindIndex { normalizer: false, .. }");
    }
}
