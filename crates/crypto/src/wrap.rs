//! Sealing the keyring under the root key, for storage as JSON beside the database.
//!
//! The key material is serialized into a zeroizing buffer and sealed with AES-256-GCM under
//! the root key. The associated data binds the format, the KDF parameters and the active key
//! id, so none of the clear JSON fields can be changed without the keyring failing to open.
//! This module does not read or write the file.
//!
//! Sealed payload layout (before encryption), all integers big-endian:
//!
//! | field               | size      |
//! |---------------------|-----------|
//! | payload version (1) | 1         |
//! | derivation secret   | 32        |
//! | key count           | 4         |
//! | per key: id         | 4         |
//! | per key: key bytes  | 32        |
//! | per key: created at | 8 (unix seconds) |
//! | per key: encryptions| 8         |

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::keyring::DataKey;
use crate::mac::random_bytes;
use crate::{CryptoError, KdfParams, KeyId, Keyring, RootKey};

/// The only wrapped keyring format this crate writes and reads.
pub const WRAPPED_KEYRING_FORMAT: u32 = 1;

/// Label at the start of the associated data, so a keyring seal cannot pass for any other.
const WRAP_AAD_LABEL: &[u8] = b"keyward wrapped keyring\0";

const PAYLOAD_VERSION: u8 = 1;
const PAYLOAD_HEADER_LEN: usize = 1 + KEY_LEN + 4;
const PAYLOAD_ENTRY_LEN: usize = 4 + KEY_LEN + 8 + 8;

/// A keyring sealed under a root key. Contains no secret in clear, so it may be stored as
/// plain JSON (`keyring.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKeyring {
    /// Wrapped keyring format, [`WRAPPED_KEYRING_FORMAT`].
    pub format: u32,
    /// Key derivation parameters of the root key, so the same passphrase or key file opens the
    /// keyring later.
    pub kdf: KdfParams,
    /// Id of the active data key.
    pub active: KeyId,
    /// Standard base64 of the nonce, the sealed key material and the tag.
    pub ciphertext: String,
}

impl WrappedKeyring {
    /// Serializes to pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a WrappedKeyring contains only strings and integers, which always serialize")
    }

    /// Parses JSON written by [`WrappedKeyring::to_json`].
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidKeyring`] if the JSON is malformed, names an unknown KDF, has KDF
    /// parameters that fail [`KdfParams::validate`] or has an unsupported format number.
    pub fn from_json(s: &str) -> Result<Self, CryptoError> {
        let wrapped: WrappedKeyring = serde_json::from_str(s).map_err(|err| {
            CryptoError::InvalidKeyring(format!("wrapped keyring JSON is malformed: {err}"))
        })?;
        wrapped.check_format()?;
        wrapped.kdf.validate()?;
        Ok(wrapped)
    }

    fn check_format(&self) -> Result<(), CryptoError> {
        if self.format == WRAPPED_KEYRING_FORMAT {
            Ok(())
        } else {
            Err(CryptoError::InvalidKeyring(format!(
                "unsupported wrapped keyring format {}: expected {WRAPPED_KEYRING_FORMAT}",
                self.format
            )))
        }
    }
}

impl Keyring {
    /// Seals the keyring under `root`, recording the root key's KDF parameters so the same
    /// passphrase or key file derives it again.
    ///
    /// Encryption counts are a snapshot: wrap and store again from time to time so that a
    /// restart does not lose them.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] if no nonce could be drawn.
    pub fn wrap(&self, root: &RootKey) -> Result<WrappedKeyring, CryptoError> {
        let kdf = root.kdf();
        let payload = self.encode_payload();
        let associated_data = wrap_associated_data(WRAPPED_KEYRING_FORMAT, kdf, self.active);

        let key = aead::new_key(root.expose_bytes())?;
        let nonce = random_bytes::<NONCE_LEN>()?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + payload.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        aead::seal_append(&key, nonce, &associated_data, &payload, &mut sealed)?;

        Ok(WrappedKeyring {
            format: WRAPPED_KEYRING_FORMAT,
            kdf: kdf.clone(),
            active: self.active,
            ciphertext: BASE64.encode(sealed),
        })
    }

    /// Opens a wrapped keyring with `root`, restoring its keys, derivation secret and counts.
    ///
    /// # Errors
    ///
    /// [`CryptoError::WrongRootKey`] if the seal does not open, which means a wrong passphrase
    /// or key file, or edited JSON; [`CryptoError::InvalidKeyring`] if the JSON fields or the
    /// sealed payload are malformed.
    pub fn unwrap(wrapped: &WrappedKeyring, root: &RootKey) -> Result<Keyring, CryptoError> {
        wrapped.check_format()?;
        let sealed = BASE64.decode(&wrapped.ciphertext).map_err(|err| {
            CryptoError::InvalidKeyring(format!("keyring ciphertext is not valid base64: {err}"))
        })?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::InvalidKeyring(format!(
                "keyring ciphertext is {} bytes, shorter than a nonce and a tag",
                sealed.len()
            )));
        }

        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let associated_data = wrap_associated_data(wrapped.format, &wrapped.kdf, wrapped.active);

        let key = aead::new_key(root.expose_bytes())?;
        let payload = aead::open(&key, nonce_bytes, &associated_data, body)
            .map_err(|_| CryptoError::WrongRootKey)?;

        decode_payload(&payload, wrapped.active)
    }

    fn encode_payload(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            PAYLOAD_HEADER_LEN + self.keys.len() * PAYLOAD_ENTRY_LEN,
        ));
        out.push(PAYLOAD_VERSION);
        out.extend_from_slice(self.derivation_secret.as_slice());
        let count = u32::try_from(self.keys.len())
            .expect("key counts are read as u32 and rotation stops at id u32::MAX, so this fits");
        out.extend_from_slice(&count.to_be_bytes());

        for (id, key) in &self.keys {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(key.material.as_slice());
            out.extend_from_slice(&key.created_at.to_be_bytes());
            out.extend_from_slice(&key.encryptions.load(Ordering::Relaxed).to_be_bytes());
        }
        out
    }
}

/// Builds the associated data: label, format, KDF parameters as JSON, active key id.
///
/// The label, format and id have fixed lengths, so the variable-length JSON between them
/// cannot be shifted to produce the same bytes from other values.
fn wrap_associated_data(format: u32, kdf: &KdfParams, active: KeyId) -> Vec<u8> {
    let kdf_json = serde_json::to_vec(kdf).expect("KdfParams contains only strings and integers");

    let mut out = Vec::with_capacity(WRAP_AAD_LABEL.len() + 8 + kdf_json.len());
    out.extend_from_slice(WRAP_AAD_LABEL);
    out.extend_from_slice(&format.to_be_bytes());
    out.extend_from_slice(&kdf_json);
    out.extend_from_slice(&active.to_be_bytes());
    out
}

fn invalid_payload(reason: &str) -> CryptoError {
    CryptoError::InvalidKeyring(format!("sealed keyring payload is malformed: {reason}"))
}

/// Rebuilds a keyring from a decrypted payload.
fn decode_payload(payload: &[u8], active: KeyId) -> Result<Keyring, CryptoError> {
    if payload.len() < PAYLOAD_HEADER_LEN {
        return Err(invalid_payload("shorter than its header"));
    }
    if payload[0] != PAYLOAD_VERSION {
        return Err(invalid_payload("unknown payload version"));
    }

    let mut derivation_secret = Zeroizing::new([0u8; KEY_LEN]);
    derivation_secret.copy_from_slice(&payload[1..1 + KEY_LEN]);
    let count = read_u32(&payload[1 + KEY_LEN..PAYLOAD_HEADER_LEN]);

    let entries = &payload[PAYLOAD_HEADER_LEN..];
    let expected_len = usize::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(PAYLOAD_ENTRY_LEN));
    if count == 0 || expected_len != Some(entries.len()) {
        return Err(invalid_payload(
            "key count does not match the payload length",
        ));
    }

    let mut keys = BTreeMap::new();
    for entry in entries.chunks_exact(PAYLOAD_ENTRY_LEN) {
        let id = read_u32(&entry[..4]);
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        material.copy_from_slice(&entry[4..4 + KEY_LEN]);
        let created_at = read_u64(&entry[4 + KEY_LEN..12 + KEY_LEN]);
        let encryptions = read_u64(&entry[12 + KEY_LEN..]);

        let key = DataKey::new(material, created_at, encryptions)?;
        if keys.insert(id, key).is_some() {
            return Err(invalid_payload("a key id appears twice"));
        }
    }

    Keyring::from_parts(keys, active, derivation_secret)
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut buffer = [0u8; 4];
    buffer.copy_from_slice(bytes);
    u32::from_be_bytes(buffer)
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(bytes);
    u64::from_be_bytes(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: KeyId) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&[id as u8; KEY_LEN]);
        out.extend_from_slice(&100u64.to_be_bytes());
        out.extend_from_slice(&5u64.to_be_bytes());
        out
    }

    fn payload(count: u32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![PAYLOAD_VERSION];
        out.extend_from_slice(&[0x5a; KEY_LEN]);
        out.extend_from_slice(&count.to_be_bytes());
        for entry in entries {
            out.extend_from_slice(entry);
        }
        out
    }

    fn assert_invalid(result: Result<Keyring, CryptoError>, case: &str) {
        assert!(
            matches!(result, Err(CryptoError::InvalidKeyring(_))),
            "{case} must be rejected as an invalid keyring"
        );
    }

    #[test]
    fn well_formed_payload_decodes() {
        let keyring = decode_payload(&payload(2, &[entry(1), entry(3)]), 3).expect("decode");

        assert_eq!(keyring.key_ids(), vec![1, 3]);
        assert_eq!(keyring.active_key_id(), 3);
        assert_eq!(keyring.created_at(3), Some(100));
        assert_eq!(keyring.encryptions(1), Some(5));
        assert_eq!(keyring.derivation_secret.as_slice(), &[0x5a; KEY_LEN]);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut keyring = Keyring::generate().expect("generate");
        keyring.rotate().expect("rotate");

        let decoded = decode_payload(&keyring.encode_payload(), 2).expect("decode");

        assert_eq!(decoded.key_ids(), vec![1, 2]);
        for id in [1, 2] {
            assert_eq!(decoded.keys[&id].material, keyring.keys[&id].material);
        }
        assert_eq!(decoded.derivation_secret, keyring.derivation_secret);
    }

    #[test]
    fn malformed_payloads_are_invalid() {
        let mut wrong_version = payload(1, &[entry(1)]);
        wrong_version[0] = 9;
        let mut trailing = payload(1, &[entry(1)]);
        trailing.push(0);

        assert_invalid(decode_payload(&[PAYLOAD_VERSION], 1), "a short header");
        assert_invalid(
            decode_payload(&wrong_version, 1),
            "an unknown payload version",
        );
        assert_invalid(decode_payload(&payload(0, &[]), 1), "an empty key list");
        assert_invalid(
            decode_payload(&payload(2, &[entry(1)]), 1),
            "a count mismatch",
        );
        assert_invalid(decode_payload(&trailing, 1), "trailing bytes");
        assert_invalid(
            decode_payload(&payload(2, &[entry(1), entry(1)]), 1),
            "a duplicate key id",
        );
        assert_invalid(
            decode_payload(&payload(1, &[entry(1)]), 2),
            "a missing active key",
        );
    }

    #[test]
    fn associated_data_binds_each_field() {
        let base = wrap_associated_data(1, &KdfParams::Raw, 1);

        assert_ne!(base, wrap_associated_data(2, &KdfParams::Raw, 1));
        assert_ne!(base, wrap_associated_data(1, &KdfParams::Raw, 2));
        let pbkdf2 = KdfParams::Pbkdf2HmacSha256 {
            iterations: 1,
            salt: String::new(),
        };
        assert_ne!(base, wrap_associated_data(1, &pbkdf2, 1));
        assert!(base.starts_with(WRAP_AAD_LABEL));
    }
}
