//! The root key that wraps the keyring.
//!
//! A root key comes from a passphrase through a KDF ([`KdfParams`]: PBKDF2-HMAC-SHA256 or
//! Argon2id), or directly from 32 raw bytes (a key file or an environment variable). Reading
//! those files or variables is the caller's job: this module only turns bytes into a key.

use std::fmt;

use zeroize::Zeroizing;

use crate::aead::KEY_LEN;
use crate::mac::random_bytes;
use crate::{CryptoError, KdfParams};

/// A 32-byte key that seals the keyring, with the KDF parameters it came from.
///
/// Zeroized on drop; `Debug` prints no key bytes.
pub struct RootKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    kdf: KdfParams,
}

impl RootKey {
    /// Builds a root key from exactly 32 raw bytes, such as the contents of a key file.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidKeyLength`] if `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<RootKey, CryptoError> {
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength(bytes.len()));
        }

        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(RootKey {
            bytes: key,
            kdf: KdfParams::Raw,
        })
    }

    /// Derives a root key from a passphrase with the given KDF parameters, which the key keeps
    /// for [`Keyring::wrap`](crate::Keyring::wrap) to record.
    ///
    /// With [`KdfParams::Raw`] no derivation happens: `passphrase` must then be the 32-byte key
    /// itself, as with [`RootKey::from_bytes`]. PBKDF2 at 600,000 iterations and Argon2id at
    /// the OWASP defaults each take tens of milliseconds in an optimized build (Argon2id also
    /// allocates its memory size), so async callers should run this on a blocking thread.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidKeyring`] if the parameters fail [`KdfParams::validate`];
    /// [`CryptoError::InvalidKeyLength`] for a `Raw` key of the wrong length.
    pub fn from_passphrase(passphrase: &[u8], kdf: &KdfParams) -> Result<RootKey, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        kdf.derive(passphrase, &mut key)?;

        Ok(RootKey {
            bytes: key,
            kdf: kdf.clone(),
        })
    }

    /// Generates a fresh random root key, for example for a new key file.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] if the system random number generator fails.
    pub fn generate() -> Result<RootKey, CryptoError> {
        let bytes = Zeroizing::new(random_bytes::<KEY_LEN>()?);
        Ok(RootKey {
            bytes,
            kdf: KdfParams::Raw,
        })
    }

    /// Returns the KDF parameters this key was derived with: [`KdfParams::Raw`] for a key from
    /// [`RootKey::from_bytes`] or [`RootKey::generate`]. [`Keyring::wrap`](crate::Keyring::wrap)
    /// records them.
    pub fn kdf(&self) -> &KdfParams {
        &self.kdf
    }

    /// Returns the raw key bytes.
    ///
    /// Meant only for writing a newly generated key to a key file with restrictive permissions.
    /// Anything that copies these bytes elsewhere (a log, an error, a `String`, a buffer that is
    /// not zeroized) defeats the protection of the whole keyring.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;

    fn pbkdf2(iterations: u32) -> KdfParams {
        KdfParams::Pbkdf2HmacSha256 {
            iterations,
            salt: BASE64.encode([3u8; 16]),
        }
    }

    #[test]
    fn same_passphrase_derives_same_key() {
        let first = RootKey::from_passphrase(b"correct horse", &pbkdf2(10)).expect("derive");
        let second = RootKey::from_passphrase(b"correct horse", &pbkdf2(10)).expect("derive");
        assert_eq!(first.expose_bytes(), second.expose_bytes());
    }

    #[test]
    fn other_passphrase_derives_other_key() {
        let first = RootKey::from_passphrase(b"correct horse", &pbkdf2(10)).expect("derive");
        let second = RootKey::from_passphrase(b"battery staple", &pbkdf2(10)).expect("derive");
        assert_ne!(first.expose_bytes(), second.expose_bytes());
    }

    #[test]
    fn zero_iterations_are_rejected() {
        let result = RootKey::from_passphrase(b"pw", &pbkdf2(0));
        assert!(matches!(result, Err(CryptoError::InvalidKeyring(_))));
    }

    #[test]
    fn excessive_iterations_are_rejected() {
        let result = RootKey::from_passphrase(b"pw", &pbkdf2(KdfParams::MAX_PBKDF2_ITERATIONS + 1));
        assert!(matches!(result, Err(CryptoError::InvalidKeyring(_))));
    }

    #[test]
    fn short_salt_is_rejected() {
        let kdf = KdfParams::Pbkdf2HmacSha256 {
            iterations: 10,
            salt: BASE64.encode([3u8; 8]),
        };
        let result = RootKey::from_passphrase(b"pw", &kdf);
        assert!(matches!(result, Err(CryptoError::InvalidKeyring(_))));
    }

    #[test]
    fn salt_that_is_not_base64_is_rejected() {
        let kdf = KdfParams::Pbkdf2HmacSha256 {
            iterations: 10,
            salt: "not base64!".to_owned(),
        };
        let result = RootKey::from_passphrase(b"pw", &kdf);
        assert!(matches!(result, Err(CryptoError::InvalidKeyring(_))));
    }

    #[test]
    fn raw_kdf_takes_key_bytes_unchanged() {
        let key = RootKey::from_passphrase(&[5u8; 32], &KdfParams::Raw).expect("raw key");
        assert_eq!(key.expose_bytes(), &[5u8; 32]);
    }

    #[test]
    fn raw_key_of_wrong_length_is_rejected() {
        assert!(matches!(
            RootKey::from_bytes(&[0u8; 31]),
            Err(CryptoError::InvalidKeyLength(31))
        ));
        assert!(matches!(
            RootKey::from_bytes(&[0u8; 33]),
            Err(CryptoError::InvalidKeyLength(33))
        ));
    }

    #[test]
    fn new_pbkdf2_uses_default_iterations_and_fresh_salt() {
        let first = KdfParams::new_pbkdf2().expect("rng");
        let second = KdfParams::new_pbkdf2().expect("rng");
        assert_ne!(first, second);

        let KdfParams::Pbkdf2HmacSha256 { iterations, salt } = first else {
            panic!("expected pbkdf2 parameters");
        };
        assert_eq!(iterations, 600_000);
        assert_eq!(BASE64.decode(salt).expect("base64").len(), 16);
    }

    #[test]
    fn kdf_params_serialize_with_algorithm_tag() {
        let json = serde_json::to_string(&pbkdf2(10)).expect("serialize");
        assert_eq!(
            json,
            r#"{"algorithm":"pbkdf2-hmac-sha256","iterations":10,"salt":"AwMDAwMDAwMDAwMDAwMDAw=="}"#
        );
        let raw = serde_json::to_string(&KdfParams::Raw).expect("serialize");
        assert_eq!(raw, r#"{"algorithm":"raw"}"#);
    }
}
