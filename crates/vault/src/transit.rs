//! The transit secrets engine: named keys that encrypt, decrypt and rewrap data without the
//! key ever leaving Vault.
//!
//! Plaintext goes to Vault base64-encoded inside a zeroizing request body and comes back into
//! a zeroizing buffer. Ciphertexts (`vault:v<N>:...`) are not secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::client::{Authenticated, VaultClient, check_segments, decode_error};
use crate::error::VaultError;

impl VaultClient {
    /// Creates an `aes256-gcm96` transit key named `name`. Creating a key that exists leaves
    /// it unchanged.
    pub async fn transit_create_key(&self, mount: &str, name: &str) -> Result<(), VaultError> {
        let path = key_path(mount, "keys", name)?;
        let body = Zeroizing::new(br#"{"type":"aes256-gcm96"}"#.to_vec());
        self.call(
            Method::POST,
            &path,
            &[],
            Some(body),
            Authenticated::Yes,
            &format!("create {path}"),
        )
        .await?;
        Ok(())
    }

    /// Adds a new version to the key `name`; new encryptions use it, older versions still
    /// decrypt.
    pub async fn transit_rotate_key(&self, mount: &str, name: &str) -> Result<(), VaultError> {
        let path = format!("{}/rotate", key_path(mount, "keys", name)?);
        self.call(
            Method::POST,
            &path,
            &[],
            Some(Zeroizing::new(b"{}".to_vec())),
            Authenticated::Yes,
            &format!("rotate {path}"),
        )
        .await?;
        Ok(())
    }

    /// Encrypts `plaintext` under the latest version of key `name` and returns Vault's
    /// ciphertext (`vault:v<N>:...`).
    pub async fn transit_encrypt(
        &self,
        mount: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<String, VaultError> {
        let path = key_path(mount, "encrypt", name)?;
        let operation = format!("encrypt {path}");

        let encoded = Zeroizing::new(BASE64.encode(plaintext));
        let mut body = Zeroizing::new(Vec::with_capacity(encoded.len() + 16));
        body.extend_from_slice(br#"{"plaintext":""#);
        body.extend_from_slice(encoded.as_bytes());
        body.extend_from_slice(br#""}"#);

        let response = self
            .call(
                Method::POST,
                &path,
                &[],
                Some(body),
                Authenticated::Yes,
                &operation,
            )
            .await?;
        ciphertext_from(&response.body, &operation)
    }

    /// Decrypts a ciphertext made by key `name`.
    pub async fn transit_decrypt(
        &self,
        mount: &str,
        name: &str,
        ciphertext: &str,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let path = key_path(mount, "decrypt", name)?;
        let operation = format!("decrypt {path}");
        let body = serde_json::json!({ "ciphertext": ciphertext });
        let body = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());

        let response = self
            .call(
                Method::POST,
                &path,
                &[],
                Some(body),
                Authenticated::Yes,
                &operation,
            )
            .await?;

        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            data: Plaintext<'a>,
        }
        #[derive(Deserialize)]
        struct Plaintext<'a> {
            // Base64 never needs JSON escapes, so the text borrows from the zeroizing body.
            plaintext: &'a str,
        }
        let envelope: Envelope<'_> =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        let plaintext = BASE64
            .decode(envelope.data.plaintext)
            .map_err(|err| decode_error(&operation, format!("plaintext is not base64: {err}")))?;
        Ok(Zeroizing::new(plaintext))
    }

    /// Re-encrypts a ciphertext under the latest version of key `name` without returning the
    /// plaintext.
    pub async fn transit_rewrap(
        &self,
        mount: &str,
        name: &str,
        ciphertext: &str,
    ) -> Result<String, VaultError> {
        let path = key_path(mount, "rewrap", name)?;
        let operation = format!("rewrap {path}");
        let body = serde_json::json!({ "ciphertext": ciphertext });
        let body = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());

        let response = self
            .call(
                Method::POST,
                &path,
                &[],
                Some(body),
                Authenticated::Yes,
                &operation,
            )
            .await?;
        ciphertext_from(&response.body, &operation)
    }
}

fn key_path(mount: &str, action: &str, name: &str) -> Result<String, VaultError> {
    check_segments("mount", mount, false)?;
    if name.contains('/') {
        return Err(VaultError::Config(format!(
            "transit key name {name:?} must not contain '/'"
        )));
    }
    check_segments("transit key name", name, false)?;
    Ok(format!("{mount}/{action}/{name}"))
}

fn ciphertext_from(body: &[u8], operation: &str) -> Result<String, VaultError> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Ciphertext,
    }
    #[derive(Deserialize)]
    struct Ciphertext {
        ciphertext: String,
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|err| decode_error(operation, err))?;
    Ok(envelope.data.ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_single_segments() {
        assert_eq!(
            key_path("transit", "encrypt", "keyward-root").expect("valid name"),
            "transit/encrypt/keyward-root"
        );
        assert!(key_path("transit", "encrypt", "a/b").is_err());
        assert!(key_path("transit", "encrypt", "..").is_err());
        assert!(key_path("", "encrypt", "k").is_err());
    }
}
