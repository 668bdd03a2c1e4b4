//! [`Encrypted<T>`]: a typed, encrypted field value for database columns and config files.
//!
//! A value is serialized to JSON in a zeroizing buffer and sealed with
//! [`Keyring::encrypt_with_checks`] (ciphertext format 2, see [`crate::format`]) under
//! associated data built from an [`EncryptionContext`]. The type parameter only records what
//! the plaintext deserializes to: it is not part of the ciphertext.
//!
//! This module does not store anything, choose contexts, or decide when to re-encrypt: the
//! caller opens values with the context of the row it read, and calls [`Encrypted::rewrap`]
//! for the values that [`Encrypted::needs_rewrap`] reports after a key rotation.

use std::any::type_name;
use std::fmt;
use std::io;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::format::{self, FORMAT_V2};
use crate::mac::wipe;
use crate::{CryptoError, EncryptionContext, KeyId, Keyring};

/// A value of type `T`, encrypted under a keyring's data key and bound to an
/// [`EncryptionContext`].
///
/// The bytes are a format 2 ciphertext: format byte, key id, key check, context check, nonce,
/// ciphertext and tag (see [`crate::format`]). They are not secret, so `Encrypted<T>` can be
/// stored, logged by length, cloned and compared freely. `Debug` prints only the key id and the
/// length.
///
/// - serde: serializes as a standard base64 string in human-readable formats (JSON, TOML) and
///   as raw bytes in binary formats.
/// - sqlx (features `sqlx-sqlite`, `sqlx-postgres`): binds and reads as `BLOB` / `BYTEA`.
///
/// ```
/// use keyward_crypto::{CryptoError, Encrypted, EncryptionContext, Keyring};
///
/// let keyring = Keyring::generate()?;
/// let context = EncryptionContext::new("users", "email", "42");
///
/// let email = Encrypted::<String>::seal(&keyring, &"ada@example.com".to_owned(), &context)?;
/// assert_eq!(email.open(&keyring, &context)?, "ada@example.com");
///
/// // Row 43 cannot use row 42's value.
/// let other_row = EncryptionContext::new("users", "email", "43");
/// assert!(matches!(email.open(&keyring, &other_row), Err(CryptoError::WrongContext)));
/// # Ok::<(), CryptoError>(())
/// ```
pub struct Encrypted<T> {
    bytes: Vec<u8>,
    key_id: KeyId,
    // `fn() -> T` keeps `Encrypted<T>` Send, Sync and covariant whatever `T` is, because no
    // `T` is ever held.
    value_type: PhantomData<fn() -> T>,
}

impl<T: Serialize> Encrypted<T> {
    /// Serializes `value` to JSON and encrypts it under the keyring's active key, bound to
    /// `context`.
    ///
    /// The JSON is written into a buffer that is zeroized when it grows and when it is dropped,
    /// so no plaintext copy stays in freed memory.
    ///
    /// # Errors
    ///
    /// [`CryptoError::SerializationFailed`] if `T`'s `Serialize` impl fails or a map key is not
    /// a string; [`CryptoError::KeyringExhausted`] or [`CryptoError::Random`] as for
    /// [`Keyring::encrypt`].
    pub fn seal(
        keyring: &Keyring,
        value: &T,
        context: &EncryptionContext,
    ) -> Result<Encrypted<T>, CryptoError> {
        let mut json = ZeroizingWriter::default();
        serde_json::to_writer(&mut json, value).map_err(|_| CryptoError::SerializationFailed {
            type_name: type_name::<T>(),
        })?;

        let bytes = keyring.encrypt_with_checks(&json.buffer, &context.associated_data())?;
        Ok(Encrypted::from_sealed(bytes, keyring.active_key_id()))
    }
}

impl<T: DeserializeOwned> Encrypted<T> {
    /// Decrypts the value and deserializes it, checking that it was sealed for `context`.
    ///
    /// The decrypted JSON is zeroized after deserialization. The returned `T` is the
    /// caller's to protect: wrap it in [`crate::Zeroizing`] if it should be wiped too.
    ///
    /// # Errors
    ///
    /// - [`CryptoError::UnknownKeyId`]: the keyring does not hold the key that sealed it.
    /// - [`CryptoError::WrongKey`]: another keyring's key with the same id sealed it.
    /// - [`CryptoError::WrongContext`]: it was sealed for another table, column or row.
    /// - [`CryptoError::Modified`]: the key and context checks passed but the bytes were
    ///   modified.
    /// - [`CryptoError::DecryptionFailed`]: a format 1 value did not open, for any of the
    ///   reasons above.
    /// - [`CryptoError::DeserializationFailed`]: the plaintext is not JSON for `T`.
    ///
    /// A value whose header was edited can end in any of the first five; see
    /// [`crate::format`].
    pub fn open(&self, keyring: &Keyring, context: &EncryptionContext) -> Result<T, CryptoError> {
        let mut json = keyring.decrypt(&self.bytes, &context.associated_data())?;

        // The serde_json error is dropped because its message can quote the plaintext.
        let value = serde_json::from_slice(&json).map_err(|_| CryptoError::DeserializationFailed {
            type_name: type_name::<T>(),
        });
        wipe(&mut json);
        value
    }
}

impl<T> Encrypted<T> {
    /// Wraps ciphertext bytes read from storage, checking only the header.
    ///
    /// Format 1 values (from [`Keyring::encrypt`] with [`EncryptionContext::associated_data`]
    /// as the context) are accepted too, so a column can move to `Encrypted<T>` and be
    /// rewrapped into format 2 later.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnsupportedFormat`] or [`CryptoError::Truncated`]. Nothing is
    /// authenticated until [`Encrypted::open`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Encrypted<T>, CryptoError> {
        let key_id = format::parse(&bytes)?.key_id;
        Ok(Encrypted::from_sealed(bytes, key_id))
    }

    fn from_sealed(bytes: Vec<u8>, key_id: KeyId) -> Encrypted<T> {
        Encrypted {
            bytes,
            key_id,
            value_type: PhantomData,
        }
    }

    /// Returns the ciphertext bytes, for storing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Returns the ciphertext as the `Vec` that sqlx's byte-string impls take.
    #[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
    pub(crate) fn bytes(&self) -> &Vec<u8> {
        &self.bytes
    }

    /// Returns the ciphertext bytes, consuming the value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Returns the id of the data key that sealed this value, read from its header.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Returns true if the value is not sealed in format 2 under the keyring's active key,
    /// so [`Encrypted::rewrap`] would move it.
    pub fn needs_rewrap(&self, keyring: &Keyring) -> bool {
        self.key_id != keyring.active_key_id() || self.bytes.first() != Some(&FORMAT_V2)
    }

    /// Decrypts the value and encrypts it again under the keyring's active key, in format 2.
    ///
    /// The plaintext bytes are carried over unchanged and never deserialized into `T`. Call
    /// this after [`Keyring::rotate`] for each value where [`Encrypted::needs_rewrap`] is
    /// true, store the result, and remove the old key only once no value uses it.
    ///
    /// # Errors
    ///
    /// The decryption errors of [`Encrypted::open`] (except deserialization), and the
    /// encryption errors of [`Encrypted::seal`].
    pub fn rewrap(
        &self,
        keyring: &Keyring,
        context: &EncryptionContext,
    ) -> Result<Encrypted<T>, CryptoError> {
        let aad = context.associated_data();
        let mut plaintext = keyring.decrypt(&self.bytes, &aad)?;

        let bytes = keyring.encrypt_with_checks(&plaintext, &aad);
        wipe(&mut plaintext);
        Ok(Encrypted::from_sealed(bytes?, keyring.active_key_id()))
    }
}

impl<T> Clone for Encrypted<T> {
    fn clone(&self) -> Self {
        Encrypted::from_sealed(self.bytes.clone(), self.key_id)
    }
}

impl<T> PartialEq for Encrypted<T> {
    /// Compares ciphertext bytes, which differ between two seals of the same value.
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<T> Eq for Encrypted<T> {}

impl<T> AsRef<[u8]> for Encrypted<T> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T> fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypted")
            .field("key_id", &self.key_id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl<T> Serialize for Encrypted<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&BASE64.encode(&self.bytes))
        } else {
            serializer.serialize_bytes(&self.bytes)
        }
    }
}

impl<'de, T> Deserialize<'de> for Encrypted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = EncryptedVisitor(PhantomData);
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(visitor)
        } else {
            deserializer.deserialize_byte_buf(visitor)
        }
    }
}

struct EncryptedVisitor<T>(PhantomData<fn() -> T>);

impl<T> Visitor<'_> for EncryptedVisitor<T> {
    type Value = Encrypted<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an encrypted value as a standard base64 string or as bytes")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let bytes = BASE64
            .decode(text)
            .map_err(|err| E::custom(format_args!("encrypted value is not valid base64: {err}")))?;
        self.visit_byte_buf(bytes)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        self.visit_byte_buf(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
        Encrypted::from_bytes(bytes)
            .map_err(|err| E::custom(format_args!("invalid encrypted value: {err}")))
    }
}

/// An `io::Write` sink whose buffer is zeroized on drop and whenever it grows.
///
/// A plain `Vec<u8>` that grows frees its old allocation without wiping it, which would leave
/// a prefix of the serialized plaintext in freed memory.
#[derive(Default)]
struct ZeroizingWriter {
    buffer: Zeroizing<Vec<u8>>,
}

impl io::Write for ZeroizingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let needed = self.buffer.len() + data.len();
        if needed > self.buffer.capacity() {
            let capacity = needed.max(2 * self.buffer.capacity()).max(64);
            let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
            grown.extend_from_slice(&self.buffer);
            let mut old = std::mem::replace(&mut self.buffer, grown);
            wipe(&mut old);
        }

        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ZeroizingWriter {
    fn drop(&mut self) {
        wipe(&mut self.buffer);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn writer_keeps_bytes_across_growth() {
        let mut writer = ZeroizingWriter::default();
        let chunk = [7u8; 50];

        for round in 1..=10 {
            let before = writer.buffer.capacity();
            writer.write_all(&chunk).expect("in-memory write");
            assert_eq!(writer.buffer.len(), 50 * round);
            assert!(writer.buffer.capacity() >= before);
        }
        assert!(writer.buffer.iter().all(|&byte| byte == 7));
    }

    #[test]
    fn writer_output_matches_serde_json() {
        let value = serde_json::json!({"email": "ada@example.com", "tags": [1, 2, 3]});
        let mut writer = ZeroizingWriter::default();

        serde_json::to_writer(&mut writer, &value).expect("serialize");

        let expected = serde_json::to_vec(&value).expect("serialize");
        assert_eq!(writer.buffer.as_slice(), expected.as_slice());
    }

    #[test]
    fn debug_shows_only_key_id_and_length() {
        let keyring = Keyring::generate().expect("generate keyring");
        let context = EncryptionContext::new("t", "c", "1");
        let sealed = Encrypted::seal(&keyring, &"x".to_owned(), &context).expect("seal");

        assert_eq!(
            format!("{sealed:?}"),
            format!(
                "Encrypted {{ key_id: 1, len: {} }}",
                sealed.as_bytes().len()
            )
        );
    }
}
