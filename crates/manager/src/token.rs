//! Token values: generation, keyed hashing, and the request and result types of token creation.
//!
//! A token is 32 random bytes, shown once to its creator and stored only as an HMAC-SHA256
//! under a key derived from the keyring, so a copy of the database cannot be replayed as
//! credentials. The accessor is a separate random id that is safe to log.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_store::TokenRecord;
use zeroize::Zeroizing;

use crate::ManagerError;

/// Prefix of every Keyward token, so leaked tokens are easy to find with secret scanners.
pub const TOKEN_PREFIX: &str = "kwt.";

/// Longest token string accepted before any lookup, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;

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
}
