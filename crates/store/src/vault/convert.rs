//! Conversions between the Vault client's types and the store's: errors, version and secret
//! metadata.

use keyward_vault::{KvMetadata, VaultError};
use time::OffsetDateTime;

use crate::model::{SecretMeta, Stage, VersionMeta};
use crate::path::SecretPath;
use crate::store::StoreError;

/// Maps a client error on the secret at `path` to a store error.
pub(super) fn vault_error(path: &SecretPath, err: VaultError) -> StoreError {
    vault_error_at(&format!("secret {path}"), err)
}

/// Maps a client error to a store error; `subject` names what the call was about.
///
/// An outage becomes [`StoreError::Backend`], and so does a denial: Keyward's own token lacks a
/// capability, which no change to the request fixes. Client errors never contain values or
/// tokens, so their text can be passed on.
pub(super) fn vault_error_at(subject: &str, err: VaultError) -> StoreError {
    match err {
        VaultError::NotFound { .. } => StoreError::NotFound,
        VaultError::CasMismatch { .. } => StoreError::CasMismatch,
        VaultError::CasRequired { .. } => StoreError::CasRequired,
        VaultError::PermissionDenied { .. } => StoreError::Backend(format!(
            "vault denied Keyward's token access to {subject}; grant its policy the KV v2 \
             capabilities on the mount and prefix"
        )),
        VaultError::Invalid { message, .. } => StoreError::Invalid(format!(
            "vault rejected the request for {subject}: {message}"
        )),
        VaultError::Decode { reason, .. } => {
            StoreError::Corrupt(format!("unexpected vault response for {subject}: {reason}"))
        }
        VaultError::Config(message) => StoreError::Invalid(message),
        other => StoreError::Backend(format!("vault backend failed for {subject}: {other}")),
    }
}

/// Returns a version's stage: Vault tracks only the current version, older ones, and
/// destroyed ones.
pub(super) fn stage(version: u64, current_version: u64, destroyed: bool) -> Stage {
    if destroyed {
        Stage::Destroyed
    } else if version == current_version {
        Stage::Current
    } else {
        Stage::Previous
    }
}

/// Builds a version's metadata.
pub(super) fn version_meta(
    version: u64,
    created_time: OffsetDateTime,
    deletion_time: Option<OffsetDateTime>,
    destroyed: bool,
    current_version: u64,
    created_by: String,
) -> VersionMeta {
    VersionMeta {
        version,
        created_time,
        deletion_time,
        destroyed,
        stage: stage(version, current_version, destroyed),
        created_by,
        grace_deadline: None,
    }
}

/// Converts a secret's metadata. `created_by` is empty: Vault does not return it here.
pub(super) fn secret_meta(meta: KvMetadata) -> SecretMeta {
    let current = meta.current_version;
    let versions = meta
        .versions
        .into_iter()
        .map(|(number, state)| {
            let version = version_meta(
                number,
                state.created_time,
                state.deletion_time,
                state.destroyed,
                current,
                String::new(),
            );
            (number, version)
        })
        .collect();

    SecretMeta {
        created_time: meta.created_time,
        updated_time: meta.updated_time,
        current_version: current,
        oldest_version: meta.oldest_version,
        max_versions: meta.max_versions,
        cas_required: meta.cas_required,
        delete_version_after_secs: meta.delete_version_after_secs,
        custom_metadata: meta.custom_metadata,
        versions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> SecretPath {
        SecretPath::parse("team/db").expect("test path is valid")
    }

    #[test]
    fn outages_map_to_backend_errors() {
        let outages = [
            VaultError::Unreachable {
                address: "http://127.0.0.1:1".into(),
                operation: "read kv/data/team/db".into(),
                reason: "connection refused".into(),
            },
            VaultError::Timeout {
                operation: "read kv/data/team/db".into(),
                timeout_secs: 5,
            },
            VaultError::Server {
                operation: "read kv/data/team/db".into(),
                status: 503,
                message: "Vault is sealed".into(),
            },
            VaultError::PermissionDenied {
                operation: "read kv/data/team/db".into(),
            },
        ];
        for err in outages {
            let mapped = vault_error(&path(), err);
            let StoreError::Backend(message) = mapped else {
                panic!("expected a backend error, got {mapped:?}");
            };
            assert!(message.contains("team/db"), "{message}");
        }
    }

    #[test]
    fn request_errors_keep_their_kind() {
        let op = || "write kv/data/team/db".to_owned();
        assert!(matches!(
            vault_error(&path(), VaultError::NotFound { operation: op() }),
            StoreError::NotFound
        ));
        assert!(matches!(
            vault_error(&path(), VaultError::CasMismatch { operation: op() }),
            StoreError::CasMismatch
        ));
        assert!(matches!(
            vault_error(&path(), VaultError::CasRequired { operation: op() }),
            StoreError::CasRequired
        ));
        assert!(matches!(
            vault_error(
                &path(),
                VaultError::Invalid {
                    operation: op(),
                    status: 400,
                    message: "bad".into()
                }
            ),
            StoreError::Invalid(_)
        ));
    }

    #[test]
    fn stage_follows_current_version() {
        assert_eq!(stage(3, 3, false), Stage::Current);
        assert_eq!(stage(2, 3, false), Stage::Previous);
        assert_eq!(stage(3, 3, true), Stage::Destroyed);
    }
}
