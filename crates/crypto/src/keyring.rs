//! The keyring: AES-256-GCM data keys with ids, one active for new encryptions.
//!
//! Older keys stay in the keyring so that values sealed under them still decrypt; re-encrypting
//! those values onto the active key is the caller's job. Storing the keyring is also the
//! caller's job, through [`Keyring::wrap`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::LessSafeKey;
use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::format::{self, CHECK_LEN, Checks};
use crate::mac::{constant_time_eq, hmac_sha256, random_bytes};
use crate::{CryptoError, KeyId};

/// Fixed HKDF info prefix for [`Keyring::derive_subkey`], which separates subkeys from any
/// later use of the derivation secret with another prefix.
const SUBKEY_INFO_PREFIX: &[u8] = b"keyward-crypto subkey v1\0";

/// HMAC message whose tag under a data key is that key's format 2 key check.
const KEY_CHECK_LABEL: &[u8] = b"keyward-crypto key check v1\0";

/// HMAC message whose tag under a data key is the key for that key's format 2 context checks.
const CONTEXT_CHECK_KEY_LABEL: &[u8] = b"keyward-crypto context check key v1\0";

/// One data key with its metadata.
pub(crate) struct DataKey {
    pub(crate) material: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
    pub(crate) created_at: u64,
    pub(crate) encryptions: AtomicU64,
    /// Format 2 key check, derived from the key material.
    key_check: [u8; CHECK_LEN],
    /// HMAC key for format 2 context checks, derived from the key material so that a context
    /// check means nothing under another key.
    context_check_key: hmac::Key,
}

impl DataKey {
    pub(crate) fn new(
        material: Zeroizing<[u8; KEY_LEN]>,
        created_at: u64,
        encryptions: u64,
    ) -> Result<DataKey, CryptoError> {
        let aead = aead::new_key(material.as_slice())?;
        let key_check = truncate_check(&hmac_sha256(material.as_slice(), KEY_CHECK_LABEL));
        let context_check_secret =
            Zeroizing::new(hmac_sha256(material.as_slice(), CONTEXT_CHECK_KEY_LABEL));
        let context_check_key = hmac::Key::new(hmac::HMAC_SHA256, context_check_secret.as_slice());

        Ok(DataKey {
            material,
            aead,
            created_at,
            encryptions: AtomicU64::new(encryptions),
            key_check,
            context_check_key,
        })
    }

    /// Computes the format 2 checks of this key for the context `aad`.
    fn checks(&self, aad: &[u8]) -> Checks {
        let tag = hmac::sign(&self.context_check_key, aad);
        Checks {
            key: self.key_check,
            context: truncate_check(tag.as_ref()),
        }
    }

    fn generate() -> Result<DataKey, CryptoError> {
        let material = Zeroizing::new(random_bytes::<KEY_LEN>()?);
        DataKey::new(material, unix_now(), 0)
    }

    /// Counts one encryption, or fails once the key has reached its budget.
    fn reserve_encryption(&self) -> Result<(), CryptoError> {
        self.encryptions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < Keyring::MAX_ENCRYPTIONS_PER_KEY).then_some(used + 1)
            })
            .map(|_| ())
            .map_err(|_| CryptoError::KeyringExhausted)
    }
}

/// A set of AES-256-GCM data keys and a derivation secret.
///
/// `Send + Sync`: encryption takes `&self`, so one keyring can serve many threads. `Debug`
/// prints key ids only.
pub struct Keyring {
    pub(crate) keys: BTreeMap<KeyId, DataKey>,
    pub(crate) active: KeyId,
    /// Random secret behind [`Keyring::derive_subkey`], independent of the data keys so that
    /// derived keys survive data-key rotation.
    pub(crate) derivation_secret: Zeroizing<[u8; KEY_LEN]>,
}

impl Keyring {
    /// Encryptions allowed under one data key before [`Keyring::encrypt`] rejects further requests.
    ///
    /// NIST SP 800-38D limits a key with random 96-bit nonces to 2^32 encryptions. This limit
    /// is half that, because counts are persisted only when the keyring is wrapped and a crash
    /// can lose the encryptions made since.
    pub const MAX_ENCRYPTIONS_PER_KEY: u64 = 1 << 31;

    /// Encryptions after which [`Keyring::needs_rotation`] returns true.
    pub const ROTATE_AFTER_ENCRYPTIONS: u64 = 1 << 30;

    /// Creates a keyring with one fresh random data key, id 1, and a fresh derivation secret.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] if the system random number generator fails.
    pub fn generate() -> Result<Keyring, CryptoError> {
        let mut keys = BTreeMap::new();
        keys.insert(1, DataKey::generate()?);

        Ok(Keyring {
            keys,
            active: 1,
            derivation_secret: Zeroizing::new(random_bytes::<KEY_LEN>()?),
        })
    }

    /// Assembles a keyring from unwrapped parts, checking that the active key is among them.
    pub(crate) fn from_parts(
        keys: BTreeMap<KeyId, DataKey>,
        active: KeyId,
        derivation_secret: Zeroizing<[u8; KEY_LEN]>,
    ) -> Result<Keyring, CryptoError> {
        if !keys.contains_key(&active) {
            return Err(CryptoError::InvalidKeyring(format!(
                "active key id {active} is not among the keyring's keys"
            )));
        }
        Ok(Keyring {
            keys,
            active,
            derivation_secret,
        })
    }

    /// Returns the id of the key used for new encryptions.
    pub fn active_key_id(&self) -> KeyId {
        self.active
    }

    /// Returns the ids of all keys, in ascending order.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }

    /// Returns when a key was created, in seconds since the Unix epoch.
    pub fn created_at(&self, id: KeyId) -> Option<u64> {
        self.keys.get(&id).map(|key| key.created_at)
    }

    /// Returns how many values a key has encrypted, including counts restored by
    /// [`Keyring::unwrap`].
    pub fn encryptions(&self, id: KeyId) -> Option<u64> {
        self.keys
            .get(&id)
            .map(|key| key.encryptions.load(Ordering::Relaxed))
    }

    /// Returns true once the active key has passed [`Keyring::ROTATE_AFTER_ENCRYPTIONS`].
    pub fn needs_rotation(&self) -> bool {
        self.encryptions(self.active)
            .is_some_and(|used| used >= Self::ROTATE_AFTER_ENCRYPTIONS)
    }

    /// Encrypts `plaintext` under the active key, binding it to the context `aad`.
    ///
    /// `aad` is not stored in the output: decryption must pass the same bytes, such as the
    /// secret's path and version. The output is [`crate::CIPHERTEXT_OVERHEAD`] bytes longer
    /// than the plaintext; see [`crate::format`] for its layout.
    ///
    /// # Errors
    ///
    /// [`CryptoError::KeyringExhausted`] once the active key reached
    /// [`Keyring::MAX_ENCRYPTIONS_PER_KEY`]; [`CryptoError::Random`] if no nonce could be drawn.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.reserve_active_key()?;
        let header = format::header(self.active);
        seal(key, &header, plaintext, aad)
    }

    /// Encrypts like [`Keyring::encrypt`], in format 2, whose header also carries a 4-byte key
    /// check and a 4-byte context check.
    ///
    /// The checks let [`Keyring::decrypt`] report [`CryptoError::WrongKey`] or
    /// [`CryptoError::WrongContext`] instead of the catch-all
    /// [`CryptoError::DecryptionFailed`]. The output is [`crate::CIPHERTEXT_V2_OVERHEAD`] bytes
    /// longer than the plaintext. [`crate::Encrypted`] uses this format.
    ///
    /// # Errors
    ///
    /// As [`Keyring::encrypt`].
    pub fn encrypt_with_checks(
        &self,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.reserve_active_key()?;
        let header = format::header_v2(self.active, &key.checks(aad));
        seal(key, &header, plaintext, aad)
    }

    /// Decrypts a value made by [`Keyring::encrypt`] or [`Keyring::encrypt_with_checks`] with
    /// the same context `aad`.
    ///
    /// Dropping the returned buffer wipes it one volatile byte write at a time (zeroize 1.9),
    /// which costs about as much as the decryption itself for values of tens of KiB. Callers
    /// that decrypt large values can wipe the slice in bulk first (`Zeroize::zeroize` on
    /// `as_mut_slice()`, then `clear()`), as [`crate::Encrypted::open`] does.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Truncated`], [`CryptoError::UnsupportedFormat`] or
    /// [`CryptoError::UnknownKeyId`] for either format. For format 1,
    /// [`CryptoError::DecryptionFailed`] for a wrong key, a wrong context or modified bytes. For
    /// format 2, [`CryptoError::WrongKey`], [`CryptoError::WrongContext`], or
    /// [`CryptoError::Modified`] when both checks pass but the tag does not verify.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let parsed = format::parse(ciphertext)?;
        let key = self
            .keys
            .get(&parsed.key_id)
            .ok_or(CryptoError::UnknownKeyId(parsed.key_id))?;

        if let Some(stored) = &parsed.checks {
            let expected = key.checks(aad);
            if !constant_time_eq(&stored.key, &expected.key) {
                return Err(CryptoError::WrongKey(parsed.key_id));
            }
            if !constant_time_eq(&stored.context, &expected.context) {
                return Err(CryptoError::WrongContext);
            }
        }

        let associated_data = format::associated_data(parsed.header, aad);
        let opened = aead::open(&key.aead, parsed.nonce, &associated_data, parsed.sealed);
        match opened {
            Err(CryptoError::DecryptionFailed) if parsed.checks.is_some() => {
                Err(CryptoError::Modified)
            }
            other => other,
        }
    }

    /// Returns the active key after counting one encryption against its budget.
    fn reserve_active_key(&self) -> Result<&DataKey, CryptoError> {
        let key = self
            .keys
            .get(&self.active)
            .ok_or(CryptoError::KeyringExhausted)?;
        key.reserve_encryption()?;
        Ok(key)
    }

    /// Returns the id of the key a ciphertext of either format was sealed under, reading only
    /// its header.
    ///
    /// Nothing is authenticated here, so use the result to pick records for re-encryption,
    /// never to make a security decision.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Truncated`] or [`CryptoError::UnsupportedFormat`].
    pub fn key_id_of(ciphertext: &[u8]) -> Result<KeyId, CryptoError> {
        format::parse(ciphertext).map(|parsed| parsed.key_id)
    }

    /// Adds a fresh random key and makes it active; older keys then only decrypt.
    ///
    /// The new id is one more than the highest id so far. Wrap and store the keyring after
    /// rotating, or values encrypted under the new key cannot be decrypted after a restart.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`], or [`CryptoError::KeyringExhausted`] if id `u32::MAX` is taken.
    pub fn rotate(&mut self) -> Result<KeyId, CryptoError> {
        let highest = self.keys.keys().next_back().copied().unwrap_or(0);
        let id = highest
            .checked_add(1)
            .ok_or(CryptoError::KeyringExhausted)?;

        self.keys.insert(id, DataKey::generate()?);
        self.active = id;
        Ok(id)
    }

    /// Removes a decrypt-only key; its material is zeroized when dropped.
    ///
    /// Values still sealed under `id` no longer decrypt afterwards, so re-encrypt them onto the
    /// active key first: the keyring cannot see where its ciphertexts are stored. Ids are not
    /// reused, because [`Keyring::rotate`] always picks one above the active key's.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidKeyring`] if `id` is the active key;
    /// [`CryptoError::UnknownKeyId`] if the keyring has no key `id`.
    pub fn retire(&mut self, id: KeyId) -> Result<(), CryptoError> {
        if id == self.active {
            return Err(CryptoError::InvalidKeyring(format!(
                "key {id} is the active key: rotate to a new key before retiring it"
            )));
        }
        self.keys
            .remove(&id)
            .map(|_| ())
            .ok_or(CryptoError::UnknownKeyId(id))
    }

    /// Derives a stable 32-byte key for one purpose, such as hashing tokens or keying audit
    /// HMACs.
    ///
    /// Uses HKDF-SHA256 (RFC 5869) over the keyring's derivation secret with `label` in the
    /// info, so different labels give independent keys. The result does not change when data
    /// keys rotate or the keyring is wrapped and unwrapped. The caller should zeroize it after
    /// use.
    pub fn derive_subkey(&self, label: &str) -> [u8; 32] {
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, self.derivation_secret.as_slice());
        let info = [SUBKEY_INFO_PREFIX, label.as_bytes()];

        let mut out = [0u8; 32];
        prk.expand(&info, hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .expect("32 bytes is within the 8160-byte output limit of HKDF-SHA256");
        out
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

/// Seals `plaintext` under `key` with a fresh random nonce, as header, nonce, ciphertext, tag.
fn seal(
    key: &DataKey,
    header: &[u8],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce = random_bytes::<NONCE_LEN>()?;
    let associated_data = format::associated_data(header, aad);

    let mut out = Vec::with_capacity(header.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(header);
    out.extend_from_slice(&nonce);
    aead::seal_append(&key.aead, nonce, &associated_data, plaintext, &mut out)?;
    Ok(out)
}

/// Keeps the first [`CHECK_LEN`] bytes of an HMAC tag.
fn truncate_check(tag: &[u8]) -> [u8; CHECK_LEN] {
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&tag[..CHECK_LEN]);
    out
}

/// Seconds since the Unix epoch, or 0 if the clock is set before it.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
    }

    #[test]
    fn encrypt_rejects_after_budget_spent() {
        let keyring = Keyring::generate().expect("generate");
        let active = &keyring.keys[&keyring.active];
        active
            .encryptions
            .store(Keyring::MAX_ENCRYPTIONS_PER_KEY - 1, Ordering::Relaxed);

        keyring
            .encrypt(b"last", b"")
            .expect("last allowed encryption");
        let result = keyring.encrypt(b"one too many", b"");

        assert!(matches!(result, Err(CryptoError::KeyringExhausted)));
        assert_eq!(
            keyring.encryptions(1),
            Some(Keyring::MAX_ENCRYPTIONS_PER_KEY)
        );
    }

    #[test]
    fn needs_rotation_after_threshold() {
        let keyring = Keyring::generate().expect("generate");
        assert!(!keyring.needs_rotation());

        keyring.keys[&1]
            .encryptions
            .store(Keyring::ROTATE_AFTER_ENCRYPTIONS, Ordering::Relaxed);
        assert!(keyring.needs_rotation());
    }

    #[test]
    fn rotation_clears_needs_rotation() {
        let mut keyring = Keyring::generate().expect("generate");
        keyring.keys[&1]
            .encryptions
            .store(Keyring::ROTATE_AFTER_ENCRYPTIONS, Ordering::Relaxed);

        keyring.rotate().expect("rotate");
        assert!(!keyring.needs_rotation());
    }

    #[test]
    fn rotate_fails_when_ids_run_out() {
        let mut keyring = Keyring::generate().expect("generate");
        let key = keyring.keys.remove(&1).expect("key 1");
        keyring.keys.insert(KeyId::MAX, key);
        keyring.active = KeyId::MAX;

        assert!(matches!(
            keyring.rotate(),
            Err(CryptoError::KeyringExhausted)
        ));
        assert_eq!(keyring.active_key_id(), KeyId::MAX);
    }

    #[test]
    fn rotated_keys_and_derivation_secret_are_distinct() {
        let mut keyring = Keyring::generate().expect("generate");
        keyring.rotate().expect("rotate");

        let first = keyring.keys[&1].material.as_slice();
        let second = keyring.keys[&2].material.as_slice();
        assert_ne!(first, second);
        assert_ne!(first, keyring.derivation_secret.as_slice());
        assert_ne!(second, keyring.derivation_secret.as_slice());
    }

    #[test]
    fn debug_omits_key_material() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

        let mut keyring = Keyring::generate().expect("generate");
        keyring.rotate().expect("rotate");
        let debug = format!("{keyring:?} {keyring:#?}");

        let mut secrets: Vec<&[u8]> = vec![keyring.derivation_secret.as_slice()];
        secrets.extend(keyring.keys.values().map(|key| key.material.as_slice()));
        for secret in secrets {
            for encoding in [
                hex::encode(secret),
                hex::encode_upper(secret),
                STANDARD.encode(secret),
                URL_SAFE_NO_PAD.encode(secret),
                format!("{secret:?}"),
            ] {
                assert!(!debug.contains(&encoding), "Debug output leaks {encoding}");
            }
        }
        assert_eq!(
            debug.lines().next(),
            Some("Keyring { active: 2, key_ids: [1, 2], .. } Keyring {")
        );
    }

    #[test]
    fn generated_key_records_creation_time() {
        let keyring = Keyring::generate().expect("generate");
        let created = keyring.created_at(1).expect("key 1");
        assert!(created.abs_diff(unix_now()) < 60);
        assert_eq!(keyring.created_at(2), None);
    }

    #[test]
    fn retire_removes_only_decrypt_only_keys() {
        let mut keyring = Keyring::generate().expect("generate");
        let old = keyring.encrypt(b"old value", b"ctx").expect("encrypt");
        keyring.rotate().expect("rotate");

        assert!(matches!(
            keyring.retire(2),
            Err(CryptoError::InvalidKeyring(_))
        ));
        assert!(matches!(
            keyring.retire(9),
            Err(CryptoError::UnknownKeyId(9))
        ));
        assert_eq!(keyring.key_ids(), vec![1, 2]);

        keyring.retire(1).expect("retire key 1");
        assert_eq!(keyring.key_ids(), vec![2]);
        assert!(matches!(
            keyring.decrypt(&old, b"ctx"),
            Err(CryptoError::UnknownKeyId(1))
        ));
        assert_eq!(keyring.rotate().expect("rotate again"), 3);
    }
}
