//! Passphrase key derivation for the root key: PBKDF2-HMAC-SHA256 (aws-lc-rs) and Argon2id
//! (the `argon2` crate), with parameters stored in the wrapped keyring.
//!
//! Parameters read back from a keyring file are checked against upper bounds before any
//! derivation runs, so an edited file cannot make unlocking run for hours or allocate
//! unbounded memory. This module does not read passphrases or files.

use std::num::NonZeroU32;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::pbkdf2;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::KEY_LEN;
use crate::mac::random_bytes;

/// Key derivation parameters of a root key, recorded in the wrapped keyring so the same
/// passphrase or key file opens it later. They contain no secret, because the salt is public.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "kebab-case")]
pub enum KdfParams {
    /// PBKDF2 with HMAC-SHA256 (RFC 8018) over a passphrase.
    Pbkdf2HmacSha256 {
        /// Iteration count, from 1 to [`KdfParams::MAX_PBKDF2_ITERATIONS`].
        iterations: u32,
        /// Salt in standard base64 with padding, at least [`KdfParams::MIN_SALT_LEN`] bytes.
        salt: String,
    },
    /// No KDF: the root key is a 32-byte key file or environment variable.
    Raw,
    /// Argon2id, version 0x13 (RFC 9106), over a passphrase, with no secret or associated
    /// data and a 32-byte output.
    #[serde(rename = "argon2id")]
    Argon2id {
        /// Memory size in KiB, from 8 × `parallelism` to
        /// [`KdfParams::MAX_ARGON2_MEMORY_KIB`].
        memory_kib: u32,
        /// Number of passes over the memory, at least 1. `memory_kib × iterations` is at most
        /// [`KdfParams::MAX_ARGON2_WORK_KIB`].
        iterations: u32,
        /// Number of lanes, from 1 to [`KdfParams::MAX_ARGON2_PARALLELISM`]. Lanes are
        /// computed one after another on the calling thread.
        parallelism: u32,
        /// Salt in standard base64 with padding, at least [`KdfParams::MIN_SALT_LEN`] bytes.
        salt: String,
    },
}

impl KdfParams {
    /// Default PBKDF2 iteration count, the figure the OWASP Password Storage Cheat Sheet gives
    /// for PBKDF2-HMAC-SHA256.
    pub const PBKDF2_ITERATIONS: u32 = 600_000;

    /// Largest iteration count accepted, so that an edited keyring file cannot make unlocking
    /// run for hours. By estimate, 10,000,000 iterations take about a second on a server core.
    pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

    /// Shortest salt accepted, in bytes (128 bits, the minimum of NIST SP 800-132).
    pub const MIN_SALT_LEN: usize = 16;

    /// Default Argon2id memory, 19 MiB: the OWASP Password Storage Cheat Sheet's first
    /// Argon2id configuration (m=19456 KiB, t=2, p=1).
    pub const ARGON2_MEMORY_KIB: u32 = 19_456;

    /// Default Argon2id pass count (OWASP: t=2 with 19 MiB).
    pub const ARGON2_ITERATIONS: u32 = 2;

    /// Default Argon2id lane count (OWASP: p=1).
    pub const ARGON2_PARALLELISM: u32 = 1;

    /// Largest Argon2id memory accepted, 2 GiB: the first recommended option of RFC 9106,
    /// section 4, and a bound on what an edited keyring file can make unlocking allocate.
    pub const MAX_ARGON2_MEMORY_KIB: u32 = 2 * 1024 * 1024;

    /// Largest Argon2id `memory_kib × iterations` accepted (4 GiB of memory passes), which
    /// bounds unlocking time. By estimate from about 13 ms for the 19 MiB, t=2 default on
    /// one server core, this is under two seconds in an optimized build.
    pub const MAX_ARGON2_WORK_KIB: u64 = 4 * 1024 * 1024;

    /// Largest Argon2id lane count accepted.
    pub const MAX_ARGON2_PARALLELISM: u32 = 16;

    /// Returns PBKDF2-HMAC-SHA256 parameters with the default iteration count and a fresh
    /// 16-byte random salt.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] if the system random number generator fails.
    pub fn new_pbkdf2() -> Result<KdfParams, CryptoError> {
        let salt = random_bytes::<16>()?;
        Ok(KdfParams::Pbkdf2HmacSha256 {
            iterations: Self::PBKDF2_ITERATIONS,
            salt: BASE64.encode(salt),
        })
    }

    /// Returns Argon2id parameters with the OWASP defaults (19 MiB, 2 passes, 1 lane) and a
    /// fresh 16-byte random salt.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Random`] if the system random number generator fails.
    pub fn new_argon2id() -> Result<KdfParams, CryptoError> {
        let salt = random_bytes::<16>()?;
        Ok(KdfParams::Argon2id {
            memory_kib: Self::ARGON2_MEMORY_KIB,
            iterations: Self::ARGON2_ITERATIONS,
            parallelism: Self::ARGON2_PARALLELISM,
            salt: BASE64.encode(salt),
        })
    }

    /// Checks that the parameters are within bounds and the salt decodes.
    ///
    /// [`crate::WrappedKeyring::from_json`] and [`crate::RootKey::from_passphrase`] call this,
    /// so parameters from a file are checked before any derivation runs.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidKeyring`] naming the parameter that is out of range.
    pub fn validate(&self) -> Result<(), CryptoError> {
        match self {
            KdfParams::Raw => Ok(()),
            KdfParams::Pbkdf2HmacSha256 { iterations, salt } => {
                Self::check_iterations(*iterations)?;
                Self::decode_salt("pbkdf2", salt).map(|_| ())
            }
            KdfParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                salt,
            } => {
                argon2_params(*memory_kib, *iterations, *parallelism)?;
                Self::decode_salt("argon2id", salt).map(|_| ())
            }
        }
    }

    /// Derives a 32-byte key from `passphrase` into `out`, after [`KdfParams::validate`].
    ///
    /// For [`KdfParams::Raw`] the passphrase must be the 32-byte key itself.
    pub(crate) fn derive(
        &self,
        passphrase: &[u8],
        out: &mut [u8; KEY_LEN],
    ) -> Result<(), CryptoError> {
        match self {
            KdfParams::Raw => {
                if passphrase.len() != KEY_LEN {
                    return Err(CryptoError::InvalidKeyLength(passphrase.len()));
                }
                out.copy_from_slice(passphrase);
                Ok(())
            }
            KdfParams::Pbkdf2HmacSha256 { iterations, salt } => {
                let iterations = Self::check_iterations(*iterations)?;
                let salt = Self::decode_salt("pbkdf2", salt)?;
                pbkdf2_hmac_sha256(passphrase, &salt, iterations, out);
                Ok(())
            }
            KdfParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                salt,
            } => {
                let params = argon2_params(*memory_kib, *iterations, *parallelism)?;
                let salt = Self::decode_salt("argon2id", salt)?;
                argon2id(
                    &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                    passphrase,
                    &salt,
                    out,
                )
            }
        }
    }

    fn check_iterations(iterations: u32) -> Result<NonZeroU32, CryptoError> {
        if iterations > Self::MAX_PBKDF2_ITERATIONS {
            return Err(CryptoError::InvalidKeyring(format!(
                "pbkdf2 iteration count {iterations} exceeds the maximum of {}",
                Self::MAX_PBKDF2_ITERATIONS
            )));
        }
        NonZeroU32::new(iterations).ok_or_else(|| {
            CryptoError::InvalidKeyring("pbkdf2 iteration count must be at least 1".to_owned())
        })
    }

    fn decode_salt(algorithm: &str, salt: &str) -> Result<Vec<u8>, CryptoError> {
        let bytes = BASE64.decode(salt).map_err(|err| {
            CryptoError::InvalidKeyring(format!("{algorithm} salt is not valid base64: {err}"))
        })?;
        if bytes.len() < Self::MIN_SALT_LEN {
            return Err(CryptoError::InvalidKeyring(format!(
                "{algorithm} salt is {} bytes; at least {} are required",
                bytes.len(),
                Self::MIN_SALT_LEN
            )));
        }
        Ok(bytes)
    }
}

/// Checks Argon2id parameters against this crate's bounds and builds them with a 32-byte
/// output.
fn argon2_params(
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
) -> Result<Params, CryptoError> {
    let invalid = |message: String| Err(CryptoError::InvalidKeyring(message));

    if parallelism == 0 || parallelism > KdfParams::MAX_ARGON2_PARALLELISM {
        return invalid(format!(
            "argon2id parallelism {parallelism} is outside 1 to {}",
            KdfParams::MAX_ARGON2_PARALLELISM
        ));
    }
    if iterations == 0 {
        return invalid("argon2id iteration count must be at least 1".to_owned());
    }
    let min_memory = 8 * parallelism;
    if memory_kib < min_memory || memory_kib > KdfParams::MAX_ARGON2_MEMORY_KIB {
        return invalid(format!(
            "argon2id memory {memory_kib} KiB is outside {min_memory} to {} KiB (8 KiB per lane at least)",
            KdfParams::MAX_ARGON2_MEMORY_KIB
        ));
    }
    let work = u64::from(memory_kib) * u64::from(iterations);
    if work > KdfParams::MAX_ARGON2_WORK_KIB {
        return invalid(format!(
            "argon2id memory × iterations is {work} KiB, above the maximum of {} KiB",
            KdfParams::MAX_ARGON2_WORK_KIB
        ));
    }

    Params::new(memory_kib, iterations, parallelism, Some(KEY_LEN))
        .map_err(|err| CryptoError::InvalidKeyring(format!("invalid argon2id parameters: {err}")))
}

/// Runs `argon2` over `password` and `salt` into `out`, wiping its working memory afterwards.
///
/// The argon2 crate's own allocating entry point drops its blocks without wiping them, and the
/// final blocks determine the output, so this function allocates and zeroizes them itself.
fn argon2id(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let mut blocks = Zeroizing::new(vec![Block::default(); argon2.params().block_count()]);
    argon2
        .hash_password_into_with_memory(password, salt, out, blocks.as_mut_slice())
        .map_err(|err| CryptoError::InvalidKeyring(format!("argon2id derivation failed: {err}")))
}

/// Fills `out` with PBKDF2-HMAC-SHA256 (RFC 8018) of `password` and `salt`.
///
/// Exposed only so that known-answer tests can reach the KDF without the salt-length rule of
/// [`KdfParams`]; real callers use [`crate::RootKey::from_passphrase`].
///
/// # Panics
///
/// If `out` is longer than (2^32 - 1) * 32 bytes, the PBKDF2 maximum.
#[doc(hidden)]
pub fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], iterations: NonZeroU32, out: &mut [u8]) {
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password, out);
}

#[cfg(test)]
mod tests {
    use argon2::{AssociatedData, ParamsBuilder};

    use super::*;

    fn argon2(memory_kib: u32, iterations: u32, parallelism: u32) -> KdfParams {
        KdfParams::Argon2id {
            memory_kib,
            iterations,
            parallelism,
            salt: BASE64.encode([2u8; 16]),
        }
    }

    fn derive_hex(kdf: &KdfParams, passphrase: &[u8]) -> String {
        let mut out = [0u8; KEY_LEN];
        kdf.derive(passphrase, &mut out).expect("derive");
        hex::encode(out)
    }

    /// RFC 9106, section 5.3: the Argon2id test vector, which uses a secret and associated
    /// data that root-key derivation itself never sets.
    #[test]
    fn argon2id_matches_rfc9106_vector() {
        let params = ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .output_len(32)
            .data(AssociatedData::new(&[0x04; 12]).expect("12 bytes of associated data"))
            .build()
            .expect("valid parameters");
        let context =
            Argon2::new_with_secret(&[0x03; 8], Algorithm::Argon2id, Version::V0x13, params)
                .expect("valid secret");

        let mut out = [0u8; 32];
        argon2id(&context, &[0x01; 32], &[0x02; 16], &mut out).expect("derive");

        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    /// The OWASP defaults over a fixed passphrase and salt. The expected value was computed
    /// with Python's argon2-cffi 25.1 (`hash_secret_raw`, type ID, hash_len 32) and with
    /// `cryptography` 48's `Argon2id`, which agree.
    #[test]
    fn argon2id_owasp_defaults_match_reference() {
        let kdf = KdfParams::Argon2id {
            memory_kib: KdfParams::ARGON2_MEMORY_KIB,
            iterations: KdfParams::ARGON2_ITERATIONS,
            parallelism: KdfParams::ARGON2_PARALLELISM,
            salt: BASE64.encode(b"keyward-salt-001"),
        };

        assert_eq!(
            derive_hex(&kdf, b"correct horse battery staple"),
            "79bf796bdfa158bcc20f32b3ae12ca78e6fd4d88c0c9802f3d7746b4319446bf"
        );
    }

    #[test]
    fn argon2id_params_change_the_key() {
        let base = derive_hex(&argon2(64, 1, 1), b"pw");

        assert_ne!(base, derive_hex(&argon2(72, 1, 1), b"pw"));
        assert_ne!(base, derive_hex(&argon2(64, 2, 1), b"pw"));
        assert_ne!(base, derive_hex(&argon2(64, 1, 2), b"pw"));
        assert_ne!(base, derive_hex(&argon2(64, 1, 1), b"pw2"));
    }

    #[test]
    fn argon2id_out_of_bounds_params_are_rejected() {
        let max_memory = KdfParams::MAX_ARGON2_MEMORY_KIB;
        let cases = [
            ("zero parallelism", argon2(64, 1, 0)),
            (
                "too many lanes",
                argon2(1024, 1, KdfParams::MAX_ARGON2_PARALLELISM + 1),
            ),
            ("zero iterations", argon2(64, 0, 1)),
            ("memory under 8 KiB per lane", argon2(31, 1, 4)),
            ("memory over the maximum", argon2(max_memory + 1, 1, 1)),
            ("too much work", argon2(max_memory, 3, 1)),
            ("huge iteration count", argon2(64, u32::MAX, 1)),
        ];

        for (case, kdf) in cases {
            assert!(
                matches!(kdf.validate(), Err(CryptoError::InvalidKeyring(_))),
                "{case} must be rejected by validate"
            );
            let mut out = [0u8; KEY_LEN];
            assert!(
                matches!(
                    kdf.derive(b"pw", &mut out),
                    Err(CryptoError::InvalidKeyring(_))
                ),
                "{case} must be rejected before deriving"
            );
        }
    }

    #[test]
    fn argon2id_bounds_accept_rfc9106_options() {
        let first_option = argon2(KdfParams::MAX_ARGON2_MEMORY_KIB, 1, 4);
        let second_option = argon2(64 * 1024, 3, 4);

        assert!(first_option.validate().is_ok());
        assert!(second_option.validate().is_ok());
    }

    #[test]
    fn argon2id_short_salt_is_rejected() {
        let kdf = KdfParams::Argon2id {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            salt: BASE64.encode([2u8; 8]),
        };

        assert!(matches!(
            kdf.validate(),
            Err(CryptoError::InvalidKeyring(_))
        ));
    }

    #[test]
    fn new_argon2id_uses_owasp_defaults_and_fresh_salt() {
        let first = KdfParams::new_argon2id().expect("rng");
        let second = KdfParams::new_argon2id().expect("rng");
        assert_ne!(first, second);

        let KdfParams::Argon2id {
            memory_kib,
            iterations,
            parallelism,
            salt,
        } = first
        else {
            panic!("expected argon2id parameters");
        };
        assert_eq!((memory_kib, iterations, parallelism), (19_456, 2, 1));
        assert_eq!(BASE64.decode(salt).expect("base64").len(), 16);
    }

    #[test]
    fn argon2id_params_serialize_with_algorithm_tag() {
        let json = serde_json::to_string(&argon2(64, 1, 1)).expect("serialize");

        assert_eq!(
            json,
            r#"{"algorithm":"argon2id","memory_kib":64,"iterations":1,"parallelism":1,"salt":"AgICAgICAgICAgICAgICAg=="}"#
        );
        let parsed: KdfParams = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(parsed, argon2(64, 1, 1));
    }
}
