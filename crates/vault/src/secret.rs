//! Secret-holding types: Vault tokens, AppRole secret IDs and secret data as JSON.
//!
//! Each wraps a zeroizing buffer, prints `[REDACTED]` in `Debug`, and has no `Display` or
//! `Serialize`, so a value reaches a log or an error only through an explicit `expose_*` call.

use std::fmt;

use zeroize::Zeroizing;

/// A Vault or OpenBao token.
#[derive(Clone)]
pub struct VaultToken(Zeroizing<String>);

impl VaultToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> VaultToken {
        VaultToken(Zeroizing::new(token.into()))
    }

    /// Returns the token. Callers must not log or persist it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultToken([REDACTED])")
    }
}

/// An AppRole `secret_id`: the password half of an AppRole login.
#[derive(Clone)]
pub struct SecretId(Zeroizing<String>);

impl SecretId {
    /// Wraps a secret ID.
    pub fn new(secret_id: impl Into<String>) -> SecretId {
        SecretId(Zeroizing::new(secret_id.into()))
    }

    /// Returns the secret ID. Callers must not log or persist it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretId([REDACTED])")
    }
}

/// The data of one KV v2 version: a serialised JSON object in a zeroizing buffer.
#[derive(Clone)]
pub struct SecretJson(Zeroizing<Vec<u8>>);

impl SecretJson {
    /// Wraps the bytes of a serialised JSON object. Returns `None` when they are not one.
    pub fn from_json_bytes(bytes: Vec<u8>) -> Option<SecretJson> {
        let bytes = Zeroizing::new(bytes);
        let is_object = serde_json::from_slice::<&serde_json::value::RawValue>(&bytes)
            .is_ok_and(|raw| raw.get().trim_start().starts_with('{'));
        is_object.then_some(SecretJson(bytes))
    }

    /// Serialises a JSON object.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> SecretJson {
        // A map with string keys always serialises.
        SecretJson(Zeroizing::new(serde_json::to_vec(map).unwrap_or_default()))
    }

    /// Returns the serialised JSON object. Callers must not log or persist it in plaintext.
    pub fn expose_json(&self) -> &[u8] {
        &self.0
    }

    /// Moves the bytes out; the caller takes over zeroizing them.
    pub fn into_bytes(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretJson([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted() {
        let token = VaultToken::new("s.very-secret-token");
        let secret_id = SecretId::new("secret-id-value");
        let json = SecretJson::from_json_bytes(br#"{"password":"hunter2"}"#.to_vec())
            .expect("object is accepted");

        let printed = format!("{token:?} {secret_id:?} {json:?}");

        assert!(!printed.contains("very-secret-token"));
        assert!(!printed.contains("secret-id-value"));
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn secret_json_accepts_objects_only() {
        assert!(SecretJson::from_json_bytes(b"{}".to_vec()).is_some());
        assert!(SecretJson::from_json_bytes(b" {\"a\":1}".to_vec()).is_some());
        assert!(SecretJson::from_json_bytes(b"[1]".to_vec()).is_none());
        assert!(SecretJson::from_json_bytes(b"\"text\"".to_vec()).is_none());
        assert!(SecretJson::from_json_bytes(b"{".to_vec()).is_none());
    }
}
