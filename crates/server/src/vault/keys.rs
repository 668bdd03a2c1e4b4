//! Keyward's key routes under `sys/keys`: status (`GET sys/keys`), data-key rotation
//! (`POST sys/keys/rotate`), rewrap (`POST sys/keys/rewrap`), retirement
//! (`DELETE sys/keys/<id>`) and root-key rotation (`POST sys/keys/rotate-root`).
//!
//! Vault has no equivalent routes, so the bodies are Keyward's own, in Vault's envelope. The
//! root-key body carries a passphrase or key: it is parsed from the zeroizing body buffer into
//! zeroizing fields, never logged, and the key is derived on a blocking thread.

use axum::http::StatusCode;
use axum::response::Response;
use keyward_crypto::{KdfParams, RootKey};
use keyward_manager::{Caller, KeyStatus, MAX_REWRAP_BATCH};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::ApiRequest;
use super::envelope::{Envelope, format_time, no_content};
use super::params::json_body;
use crate::errors::{ApiError, Rejection};
use crate::request::AppState;

/// Batch size of `sys/keys/rewrap` when the body names none.
pub(crate) const DEFAULT_REWRAP_BATCH: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewrapBody {
    #[serde(default)]
    batch_size: Option<u64>,
}

/// The body of `sys/keys/rotate-root`: a passphrase (with an optional KDF) or a raw key.
///
/// No `Debug`: the fields are secret. They are wiped on drop.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRootBody {
    #[serde(default)]
    passphrase: Option<String>,
    #[serde(default)]
    key_hex: Option<String>,
    #[serde(default)]
    kdf: Option<String>,
}

impl Drop for RotateRootBody {
    fn drop(&mut self) {
        self.passphrase.zeroize();
        self.key_hex.zeroize();
    }
}

/// `GET sys/keys`: every data key with its state and counts.
pub(super) async fn status(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let keys = state.manager.keys_status(caller, request.ctx).await?;
    let active = keys
        .iter()
        .find(|key| key.state == keyward_manager::KeyState::Active)
        .map(|key| key.id);
    let data = json!({
        "active_key_id": active,
        "keys": keys.iter().map(key_json).collect::<Vec<Value>>(),
    });
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

fn key_json(key: &KeyStatus) -> Value {
    json!({
        "id": key.id,
        "created": key.created.map(format_time),
        "state": key.state.as_str(),
        "encryptions": key.encryptions,
        "records": key.records,
    })
}

/// `POST sys/keys/rotate`: a new active data key.
pub(super) async fn rotate(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let rotated = state.manager.keys_rotate(caller, request.ctx).await?;
    let data = json!({
        "key_id": rotated.key_id,
        "previous_key_id": rotated.previous_key_id,
    });
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

/// `POST sys/keys/rewrap`: one batch of `batch_size` versions (default 500, at most 10,000).
pub(super) async fn rewrap(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let body: RewrapBody = json_body(&request.body)?;
    let batch_size = match body.batch_size {
        None => DEFAULT_REWRAP_BATCH,
        Some(size) => usize::try_from(size)
            .ok()
            .filter(|size| (1..=MAX_REWRAP_BATCH).contains(size))
            .ok_or_else(|| {
                Rejection::bad_request(
                    "invalid_request",
                    format!("batch_size {size} is out of range: use 1 to {MAX_REWRAP_BATCH}"),
                )
            })?,
    };

    let progress = state
        .manager
        .keys_rewrap(caller, request.ctx, batch_size)
        .await?;
    let data = json!({
        "rewrapped": progress.rewrapped,
        "remaining": progress.remaining,
    });
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

/// `DELETE sys/keys/<id>`: retire a data key that no stored version uses.
pub(super) async fn retire(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    key_id: u32,
) -> Result<Response, ApiError> {
    state
        .manager
        .keys_retire(caller, request.ctx, key_id)
        .await?;
    Ok(no_content())
}

/// `POST sys/keys/rotate-root`: seal the keyring under a root key from `passphrase` (with
/// `kdf` `pbkdf2`, the default, or `argon2id`) or from `key_hex` (64 hex characters).
pub(super) async fn rotate_root(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    // Checked first, so that an unauthorised caller cannot make the server derive keys.
    state
        .manager
        .keys_rotate_root_allowed(caller, request.ctx)
        .await?;
    let mut body: RotateRootBody = json_body(&request.body)?;
    let source = RootKeyInput::from_body(&mut body)?;
    let new_root = derive_root_key(source).await?;

    let rotated = state
        .manager
        .keys_rotate_root(caller, request.ctx, new_root)
        .await?;
    let data = json!({
        "kdf": rotated.kdf,
        "previous_kdf": rotated.previous_kdf,
    });
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

/// The source of the new root key, checked but not yet derived.
enum RootKeyInput {
    Passphrase(Zeroizing<String>, KdfParams),
    Key(Zeroizing<Vec<u8>>),
}

impl RootKeyInput {
    fn from_body(body: &mut RotateRootBody) -> Result<RootKeyInput, Rejection> {
        let invalid = |message: &str| Rejection::bad_request("invalid_request", message);
        let passphrase = body.passphrase.take().map(Zeroizing::new);
        let key_hex = body.key_hex.take().map(Zeroizing::new);

        match (passphrase, key_hex) {
            (Some(passphrase), None) => {
                if passphrase.is_empty() {
                    return Err(invalid("passphrase is empty"));
                }
                let kdf = match body.kdf.as_deref() {
                    None | Some("pbkdf2") => KdfParams::new_pbkdf2(),
                    Some("argon2id") => KdfParams::new_argon2id(),
                    Some(_) => return Err(invalid("kdf must be \"pbkdf2\" or \"argon2id\"")),
                }
                .map_err(|_| Rejection::internal("random_failed"))?;
                Ok(RootKeyInput::Passphrase(passphrase, kdf))
            }
            (None, Some(key_hex)) => {
                if body.kdf.is_some() {
                    return Err(invalid("kdf applies to a passphrase, not to key_hex"));
                }
                let trimmed = key_hex.trim();
                if trimmed.len() != 64 {
                    return Err(invalid("key_hex must be 64 hex characters (32 bytes)"));
                }
                let bytes = hex::decode(trimmed)
                    .map(Zeroizing::new)
                    .map_err(|_| invalid("key_hex must be 64 hex characters (32 bytes)"))?;
                Ok(RootKeyInput::Key(bytes))
            }
            (Some(_), Some(_)) => Err(invalid("give either passphrase or key_hex, not both")),
            (None, None) => Err(invalid("missing passphrase or key_hex")),
        }
    }
}

/// Derives the root key; PBKDF2 and Argon2id take tens of milliseconds, so they run on a
/// blocking thread.
async fn derive_root_key(source: RootKeyInput) -> Result<RootKey, Rejection> {
    let derived = tokio::task::spawn_blocking(move || match source {
        RootKeyInput::Passphrase(passphrase, kdf) => {
            RootKey::from_passphrase(passphrase.as_bytes(), &kdf)
        }
        RootKeyInput::Key(bytes) => RootKey::from_bytes(&bytes),
    })
    .await;
    match derived {
        Ok(Ok(key)) => Ok(key),
        Ok(Err(error)) => {
            tracing::error!(%error, "root key derivation failed");
            Err(Rejection::internal("key_derivation_failed"))
        }
        Err(error) => {
            tracing::error!(%error, "root key derivation task failed");
            Err(Rejection::internal("key_derivation_failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(raw: &str) -> Result<RootKeyInput, Rejection> {
        let mut body: RotateRootBody = json_body(raw.as_bytes()).expect("body parses");
        RootKeyInput::from_body(&mut body)
    }

    #[test]
    fn passphrase_defaults_to_pbkdf2() {
        let Ok(RootKeyInput::Passphrase(passphrase, kdf)) = input(r#"{"passphrase":"pw"}"#) else {
            panic!("expected a passphrase");
        };
        assert_eq!(passphrase.as_str(), "pw");
        assert!(matches!(kdf, KdfParams::Pbkdf2HmacSha256 { .. }));

        let Ok(RootKeyInput::Passphrase(_, kdf)) = input(r#"{"passphrase":"pw","kdf":"argon2id"}"#)
        else {
            panic!("expected a passphrase");
        };
        assert!(matches!(kdf, KdfParams::Argon2id { .. }));
    }

    #[test]
    fn key_hex_decodes_32_bytes() {
        let hex = "ab".repeat(32);
        let Ok(RootKeyInput::Key(bytes)) = input(&format!(r#"{{"key_hex":"{hex}"}}"#)) else {
            panic!("expected a key");
        };
        assert_eq!(bytes.as_slice(), &[0xab; 32]);
    }

    #[test]
    fn bad_root_key_bodies_are_rejected() {
        let hex = "ab".repeat(32);
        for raw in [
            "{}".to_owned(),
            r#"{"passphrase":""}"#.to_owned(),
            r#"{"passphrase":"pw","kdf":"md5"}"#.to_owned(),
            format!(r#"{{"passphrase":"pw","key_hex":"{hex}"}}"#),
            format!(r#"{{"key_hex":"{hex}","kdf":"pbkdf2"}}"#),
            r#"{"key_hex":"abcd"}"#.to_owned(),
            format!(r#"{{"key_hex":"{}"}}"#, "zz".repeat(32)),
        ] {
            let rejection = input(&raw)
                .err()
                .unwrap_or_else(|| panic!("accepted {raw}"));
            assert_eq!(rejection.status, StatusCode::BAD_REQUEST, "{raw}");
            let message = rejection.message.unwrap_or_default();
            assert!(!message.contains("pw\""), "{message}");
            assert!(!message.contains(&hex), "{message}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_without_echo() {
        let result = json_body::<RotateRootBody>(br#"{"passphrase":"secret-pw","extra":1}"#);
        let rejection = result.err().expect("unknown field rejected");
        assert!(!rejection.message.unwrap_or_default().contains("secret-pw"));
    }
}
