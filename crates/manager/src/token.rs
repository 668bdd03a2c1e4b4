//! Token values: generation, keyed hashing, the request and result types of token creation,
//! and the checks applied to a creation request's display name, metadata and TTL.
//!
//! A token is 32 random bytes, shown once to its creator and stored only as an HMAC-SHA256
//! under a key derived from the keyring, so a copy of the database cannot be replayed as
//! credentials. The accessor is a separate random id that is safe to log.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_store::TokenRecord;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::ManagerError;

/// Prefix of every Keyward token, so leaked tokens are easy to find with secret scanners.
pub const TOKEN_PREFIX: &str = "kwt.";

/// Longest token string accepted before any lookup, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;

/// Maximum length of a requested token display name, in characters, before the `token-`
/// prefix is added.
const MAX_DISPLAY_NAME_LEN: usize = 128;

/// Most metadata pairs a token may carry.
const MAX_TOKEN_META: usize = 64;

/// Maximum length of a token metadata key, in bytes.
const MAX_TOKEN_META_KEY_LEN: usize = 128;

/// Maximum length of a token metadata value, in bytes.
const MAX_TOKEN_META_VALUE_LEN: usize = 512;

/// A token value. Zeroized on drop; `Debug` does not print it.
#[derive(Clone)]
pub struct TokenSecret(Zeroizing<String>);

impl TokenSecret {
    /// Returns the token string, to hand to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a token string read from the caller.
    pub fn from_string(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret([REDACTED])")
    }
}

/// A token creation request.
#[derive(Clone, Debug, Default)]
pub struct TokenCreateRequest {
    /// Policies for the new token; empty means the creator's own.
    pub policies: Vec<String>,
    /// Time to live in seconds; `None` means the manager's default.
    pub ttl_secs: Option<u64>,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// Free-form non-secret metadata.
    pub meta: BTreeMap<String, String>,
    /// Whether the token may be renewed; defaults to true.
    pub renewable: Option<bool>,
    /// Create the token without a parent (Vault's orphan token).
    pub no_parent: bool,
}

/// A newly created token and its stored record.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token value, shown once.
    pub token: TokenSecret,
    /// What the store keeps about it.
    pub record: TokenRecord,
}

/// Generates a new token value and accessor.
pub(crate) fn generate() -> Result<(TokenSecret, String), ManagerError> {
    let secret = keyward_crypto::random_bytes::<32>()
        .map_err(|e| ManagerError::Internal(format!("token generation failed: {e}")))?;
    let accessor = keyward_crypto::random_bytes::<18>()
        .map_err(|e| ManagerError::Internal(format!("token generation failed: {e}")))?;

    let value = Zeroizing::new(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret)));
    Ok((
        TokenSecret((*value).clone().into()),
        URL_SAFE_NO_PAD.encode(accessor),
    ))
}

/// The keyed hash under which a token is stored and looked up.
pub(crate) fn hash(key: &[u8; 32], token: &str) -> String {
    hex::encode(keyward_crypto::hmac_sha256(key, token.as_bytes()))
}

/// Returns `start + ttl`, or `Invalid` when the sum is past the range of a timestamp.
pub(crate) fn expiry_after(
    start: OffsetDateTime,
    ttl: Duration,
) -> Result<OffsetDateTime, ManagerError> {
    time::Duration::try_from(ttl)
        .ok()
        .and_then(|ttl| start.checked_add(ttl))
        .ok_or_else(|| {
            ManagerError::Invalid(format!(
                "ttl of {}s is too large: lower the requested ttl or the maximum token ttl",
                ttl.as_secs()
            ))
        })
}

/// Builds a token's display name as Vault does: `token`, or `token-<name>` with each character
/// other than an ASCII letter, digit or `-` replaced by `-` and one trailing `-` removed.
pub(crate) fn display_name(requested: Option<&str>) -> Result<String, ManagerError> {
    let Some(name) = requested.filter(|name| !name.is_empty()) else {
        return Ok("token".to_owned());
    };
    if name.chars().count() > MAX_DISPLAY_NAME_LEN {
        return Err(ManagerError::Invalid(format!(
            "display_name is longer than {MAX_DISPLAY_NAME_LEN} characters: shorten it"
        )));
    }

    let full: String = format!("token-{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(full.strip_suffix('-').unwrap_or(&full).to_owned())
}

/// Checks token metadata against the limits that secret `custom_metadata` has too.
pub(crate) fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), ManagerError> {
    if meta.len() > MAX_TOKEN_META {
        return Err(ManagerError::Invalid(format!(
            "a token may carry at most {MAX_TOKEN_META} metadata pairs"
        )));
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err(ManagerError::Invalid("token meta has an empty key".into()));
        }
        if key.len() > MAX_TOKEN_META_KEY_LEN {
            return Err(ManagerError::Invalid(format!(
                "token meta key of {} bytes is above the limit of {MAX_TOKEN_META_KEY_LEN} bytes",
                key.len()
            )));
        }
        if value.len() > MAX_TOKEN_META_VALUE_LEN {
            return Err(ManagerError::Invalid(format!(
                "token meta value of key {key:?} is longer than {MAX_TOKEN_META_VALUE_LEN} bytes"
            )));
        }
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(ManagerError::Invalid(format!(
                "token meta key {key:?} or its value contains a control character"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_prefixed() {
        let (a, accessor_a) = generate().expect("rng works");
        let (b, accessor_b) = generate().expect("rng works");
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_ne!(a.expose(), b.expose());
        assert_ne!(accessor_a, accessor_b);
        assert!(a.expose().len() > 40);
    }

    #[test]
    fn token_debug_is_redacted() {
        let (token, _) = generate().expect("rng works");
        let printed = format!("{token:?}");
        assert!(!printed.contains(token.expose()));
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn hash_depends_on_key_and_token() {
        let first = hash(&[1; 32], "kwt.abc");
        assert_eq!(first, hash(&[1; 32], "kwt.abc"));
        assert_ne!(first, hash(&[2; 32], "kwt.abc"));
        assert_ne!(first, hash(&[1; 32], "kwt.abd"));
        assert!(!first.contains("abc"));
    }

    #[test]
    fn token_lookup_uses_keyed_hmac() {
        // No code compares a presented token with a stored one byte by byte: the store looks
        // the token up by this HMAC-SHA256 under a server key. The lookup's timing can depend
        // only on the MAC, which a caller cannot steer towards a stored value without the key.
        let key = [9u8; 32];
        let token = "kwt.presented-token";
        let tag = hex::decode(hash(&key, token)).expect("hash is hex");
        let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);

        assert_eq!(tag.len(), 32);
        assert!(aws_lc_rs::hmac::verify(&mac_key, token.as_bytes(), &tag).is_ok());
        assert!(aws_lc_rs::hmac::verify(&mac_key, b"kwt.presented-tokem", &tag).is_err());
    }

    #[test]
    fn display_name_is_sanitised_like_vault() {
        let cases = [
            (None, "token"),
            (Some(""), "token"),
            (Some("svc"), "token-svc"),
            (Some("my app/v2"), "token-my-app-v2"),
            (Some("ci-"), "token-ci"),
            (Some("ci."), "token-ci"),
            (Some("naïve\u{1b}[31m"), "token-na-ve--31m"),
        ];
        for (requested, expected) in cases {
            assert_eq!(
                display_name(requested).expect("valid name"),
                expected,
                "{requested:?}"
            );
        }
    }

    #[test]
    fn display_name_length_is_bounded() {
        let longest = "a".repeat(MAX_DISPLAY_NAME_LEN);
        assert!(display_name(Some(&longest)).is_ok());
        let too_long = "é".repeat(MAX_DISPLAY_NAME_LEN + 1);
        assert!(matches!(
            display_name(Some(&too_long)),
            Err(ManagerError::Invalid(_))
        ));
    }

    #[test]
    fn token_meta_limits_are_enforced() {
        let meta = |key: &str, value: &str| BTreeMap::from([(key.to_owned(), value.to_owned())]);
        assert!(validate_meta(&meta("team", "payments")).is_ok());
        assert!(validate_meta(&meta(&"k".repeat(MAX_TOKEN_META_KEY_LEN), "v")).is_ok());
        assert!(validate_meta(&meta("k", &"v".repeat(MAX_TOKEN_META_VALUE_LEN))).is_ok());

        for (key, value) in [
            (String::new(), "v".to_owned()),
            ("k".repeat(MAX_TOKEN_META_KEY_LEN + 1), "v".to_owned()),
            ("k".to_owned(), "v".repeat(MAX_TOKEN_META_VALUE_LEN + 1)),
            ("k\n".to_owned(), "v".to_owned()),
            ("k".to_owned(), "line\u{7}bell".to_owned()),
        ] {
            let result = validate_meta(&meta(&key, &value));
            assert!(
                matches!(result, Err(ManagerError::Invalid(_))),
                "{} byte key, {} byte value accepted",
                key.len(),
                value.len()
            );
        }

        let too_many: BTreeMap<String, String> = (0..=MAX_TOKEN_META)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect();
        assert!(validate_meta(&too_many).is_err());
    }

    #[test]
    fn expiry_past_time_range_is_invalid() {
        let now = OffsetDateTime::now_utc();
        assert!(expiry_after(now, Duration::from_secs(3600)).is_ok());
        assert!(matches!(
            expiry_after(now, Duration::from_secs(300_000_000_000)),
            Err(ManagerError::Invalid(_))
        ));
        assert!(matches!(
            expiry_after(now, Duration::MAX),
            Err(ManagerError::Invalid(_))
        ));
    }
}
