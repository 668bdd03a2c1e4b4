//! The `SecretStore` trait every backend implements, and its error type.

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::{
    MetadataUpdate, NewVersion, PolicyRecord, SecretData, SecretMeta, TokenRecord, VersionMeta,
};
use crate::path::{FolderPath, SecretPath};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The secret, version, token or policy does not exist.
    #[error("not found")]
    NotFound,
    /// A check-and-set version did not match the current version.
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    /// The secret requires check-and-set and the write carried none.
    #[error("check-and-set parameter required for this call")]
    CasRequired,
    /// A request value is out of range or inconsistent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A stored ciphertext did not decrypt: wrong key, moved between rows, or modified.
    #[error("stored data failed to decrypt: {0}")]
    Crypto(#[from] keyward_crypto::CryptoError),
    /// A stored row is not in the expected shape.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend could not be reached or failed.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A rotation stage change found another pending version; the earlier rotation must be
    /// promoted or discarded first.
    #[error("the secret already has pending version {version}")]
    PendingExists {
        /// The pending version's number.
        version: u64,
    },
}

/// What a read of one version returns: its metadata, and its data unless the version is
/// deleted, destroyed or revoked.
#[derive(Debug)]
pub struct VersionRead {
    /// The version's metadata.
    pub meta: VersionMeta,
    /// The secret's `custom_metadata`, which Vault returns with every data read.
    pub custom_metadata: std::collections::BTreeMap<String, String>,
    /// The data, if the version is readable.
    pub data: Option<SecretData>,
}

/// What one [`SecretStore::rewrap_batch`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Versions re-encrypted onto the active key by this call.
    pub rewrapped: u64,
    /// Stored versions still under another key after this call.
    pub remaining: u64,
}

/// A place secrets, tokens and policies are kept.
///
/// Implementations store secret data only as ciphertext bound to its path and version, and make
/// each method atomic: when it returns an error, nothing has changed.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Writes a new version and returns its metadata. Enforces check-and-set and
    /// `cas_required`, marks the old current version `previous`, and prunes versions beyond
    /// `max_versions` (the secret's own, else `default_max_versions`).
    async fn put(
        &self,
        path: &SecretPath,
        version: NewVersion,
        default_max_versions: u32,
    ) -> Result<VersionMeta, StoreError>;

    /// Reads one version, or the current one when `version` is `None`. A missing secret or
    /// version is [`StoreError::NotFound`].
    async fn get(&self, path: &SecretPath, version: Option<u64>)
    -> Result<VersionRead, StoreError>;

    /// Soft-deletes versions (the current one when `versions` is empty). Unknown versions are
    /// ignored, as in Vault.
    async fn delete_versions(&self, path: &SecretPath, versions: &[u64]) -> Result<(), StoreError>;

    /// Clears the deletion time of soft-deleted versions.
    async fn undelete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError>;

    /// Erases the data of the given versions for good.
    async fn destroy_versions(&self, path: &SecretPath, versions: &[u64])
    -> Result<(), StoreError>;

    /// Reads a secret's metadata and version list.
    async fn read_metadata(&self, path: &SecretPath) -> Result<SecretMeta, StoreError>;

    /// Creates or changes a secret's metadata.
    async fn write_metadata(
        &self,
        path: &SecretPath,
        update: MetadataUpdate,
    ) -> Result<(), StoreError>;

    /// Removes a secret: its metadata and every version.
    async fn delete_metadata(&self, path: &SecretPath) -> Result<(), StoreError>;

    /// Lists the names directly under a folder, sorted; sub-folders end with `/`.
    async fn list(&self, folder: &FolderPath) -> Result<Vec<String>, StoreError>;

    /// Stores a new token. Fails if its hash or accessor already exists.
    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// Finds a token by its keyed hash.
    async fn token_by_hash(&self, token_hash: &str) -> Result<TokenRecord, StoreError>;

    /// Finds a token by its accessor.
    async fn token_by_accessor(&self, accessor: &str) -> Result<TokenRecord, StoreError>;

    /// Updates a token's expiry (renewal).
    async fn set_token_expiry(
        &self,
        accessor: &str,
        expire_time: Option<time::OffsetDateTime>,
    ) -> Result<(), StoreError>;

    /// Deletes a token by accessor together with all its descendants: the tokens it created,
    /// the tokens those created, and so on, so that no child outlives its parent. Returns how
    /// many tokens were deleted (at least 1). The whole tree goes in one atomic step; an
    /// unknown accessor is [`StoreError::NotFound`] and deletes nothing.
    async fn revoke_token(&self, accessor: &str) -> Result<u64, StoreError>;

    /// Creates or replaces a policy.
    async fn put_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError>;

    /// Reads a policy.
    async fn get_policy(&self, name: &str) -> Result<PolicyRecord, StoreError>;

    /// Reads every policy (the manager keeps them compiled in memory).
    async fn all_policies(&self) -> Result<Vec<PolicyRecord>, StoreError>;

    /// Deletes a policy.
    async fn delete_policy(&self, name: &str) -> Result<(), StoreError>;

    /// Counts the stored (not destroyed) versions under each data key id. Soft-deleted
    /// versions count, because an undelete makes them readable again.
    ///
    /// The count includes every write already in progress, so that a key retired on a count
    /// of 0 protects no version.
    async fn count_by_key(&self) -> Result<BTreeMap<u32, u64>, StoreError>;

    /// Re-encrypts up to `limit` stored versions that are not under the active data key onto
    /// it, in one transaction, and returns how many it moved and how many remain.
    ///
    /// Each version keeps its path and version binding and its plaintext. A crash leaves every
    /// version either as it was or moved, so calling again resumes the work. A `limit` of 0 is
    /// [`StoreError::Invalid`]; a version whose key the keyring lacks fails the call with
    /// [`StoreError::Crypto`] and moves nothing.
    async fn rewrap_batch(&self, limit: usize) -> Result<RewrapProgress, StoreError>;

    /// Writes a new `pending` version without changing which version is current, for a
    /// rotation that has not finished. Unversioned reads keep returning the current version.
    /// Fails with [`StoreError::PendingExists`] if the secret already has a pending version.
    /// Check-and-set does not apply: `version.cas` is ignored.
    ///
    /// The default implementation returns [`StoreError::Invalid`]; backends that support
    /// rotation override all four stage methods.
    async fn write_pending(
        &self,
        path: &SecretPath,
        version: NewVersion,
    ) -> Result<VersionMeta, StoreError> {
        let _ = (path, version);
        Err(stages_unsupported())
    }

    /// Makes the pending `version` current and marks the old current version `previous` with
    /// `grace_deadline`, in one transaction. Returns the old current version's number.
    /// Succeeds without change when `version` is already current (returning the newest
    /// `previous` or `revoked` version below it), so that a repeated call is harmless.
    async fn promote_pending(
        &self,
        path: &SecretPath,
        version: u64,
        grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let _ = (path, version, grace_deadline);
        Err(stages_unsupported())
    }

    /// Erases a pending version's data and marks it `destroyed`. Succeeds when the secret or
    /// the version is already gone or destroyed; any other stage is [`StoreError::Invalid`].
    async fn discard_pending(&self, path: &SecretPath, version: u64) -> Result<(), StoreError> {
        let _ = (path, version);
        Err(stages_unsupported())
    }

    /// Erases a `previous` version's data and marks it `revoked`, so that every read refuses
    /// it. Succeeds when it is already revoked; revoking the current or a pending version is
    /// [`StoreError::Invalid`], and a missing version is [`StoreError::NotFound`].
    async fn revoke_version(&self, path: &SecretPath, version: u64) -> Result<(), StoreError> {
        let _ = (path, version);
        Err(stages_unsupported())
    }
}

/// The error of a stage method on a backend without rotation stages.
pub(crate) fn stages_unsupported() -> StoreError {
    StoreError::Invalid(
        "rotation stages are not supported on this storage backend; use the sqlite backend \
         for secrets with a rotation policy"
            .to_owned(),
    )
}
