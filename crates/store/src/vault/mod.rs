//! The Vault/OpenBao backend: secret versions live in a KV v2 mount, everything else in a
//! local SQLite store.
//!
//! A secret at `team/app/db` is stored at `<mount>/data/<prefix>/team/app/db`, so a secret
//! written there with `bao kv put` reads through Keyward and the other way round. Versions,
//! check-and-set, `deletion_time`, `destroyed`, `custom_metadata`, `cas_required`,
//! `max_versions` and `delete_version_after` are Vault's own. Two value modes exist:
//!
//! - plain (`encrypt_values = false`): a version's data is the secret's key/value map, as Vault
//!   users expect to see it. Vault's own storage encryption protects it at rest.
//! - `encrypt_values = true`: a version's data is `{"keyward_ciphertext": "<base64>",
//!   "keyward_created_by": "<accessor>"}`, sealed by Keyward's keyring and bound to its path and
//!   version like the SQLite backend's rows, so Vault operators see only ciphertext.
//!
//! Tokens, policies, key counts and rewrap progress stay in the wrapped [`SqliteStore`], which
//! also carries the keyring handle. Vault failures that mean the backend is down (unreachable,
//! timed out, 5xx, sealed) and a denial of Keyward's own token become [`StoreError::Backend`]
//! with the path in the message and no value or token.
//!
//! Not mapped: version stages beyond current, previous and destroyed (Vault has no `pending`
//! or `revoked` and no grace deadlines), `created_by` in plain mode (Vault does not record it,
//! so it reads as empty), and the per-call `default_max_versions` (the mount's own
//! `max_versions` setting applies instead).

mod convert;
mod keys;
mod versions;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use keyward_vault::VaultClient;
use time::OffsetDateTime;

use crate::handle::KeyringHandle;
use crate::model::{
    MetadataUpdate, NewVersion, PolicyRecord, SecretMeta, TokenRecord, VersionMeta,
};
use crate::path::{FolderPath, SecretPath};
use crate::sqlite::SqliteStore;
use crate::store::{RewrapProgress, SecretStore, StoreError, VersionRead};
use convert::vault_error;

/// Location in Vault and value mode of a [`VaultStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultStoreConfig {
    /// Path of the KV v2 mount, such as `secret`.
    pub mount: String,
    /// Folder inside the mount that contains Keyward's secrets, such as `keyward`; empty for the
    /// mount's root.
    pub prefix: String,
    /// Whether values are sealed with Keyward's keyring before they reach Vault.
    pub encrypt_values: bool,
}

/// A [`SecretStore`] whose secret versions live in a Vault or OpenBao KV v2 mount.
pub struct VaultStore {
    client: VaultClient,
    mount: String,
    prefix: String,
    encrypt_values: bool,
    local: Arc<SqliteStore>,
}

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("address", &self.client.address())
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("encrypt_values", &self.encrypt_values)
            .finish_non_exhaustive()
    }
}

impl VaultStore {
    /// Builds a store on `client` (already authenticated, or able to log in on first use) that
    /// keeps tokens and policies in `local`. Nothing is sent to Vault yet.
    ///
    /// Fails with [`StoreError::Invalid`] when the mount or prefix is not a valid path.
    pub fn new(
        client: VaultClient,
        config: VaultStoreConfig,
        local: Arc<SqliteStore>,
    ) -> Result<VaultStore, StoreError> {
        let prefix = config.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            SecretPath::parse(&prefix).map_err(|err| {
                StoreError::Invalid(format!("vault prefix {prefix:?} is invalid: {err}"))
            })?;
        }
        let mount = config.mount.trim_matches('/').to_owned();
        SecretPath::parse(&mount).map_err(|err| {
            StoreError::Invalid(format!("vault mount {mount:?} is invalid: {err}"))
        })?;

        Ok(VaultStore {
            client,
            mount,
            prefix,
            encrypt_values: config.encrypt_values,
            local,
        })
    }

    /// Returns the Vault client.
    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    /// Returns the local store that keeps tokens and policies.
    pub fn local(&self) -> &SqliteStore {
        &self.local
    }

    /// Returns a handle to the keyring that seals values in `encrypt_values` mode; the key
    /// manager swaps rotated keyrings in through it.
    pub fn keyring_handle(&self) -> KeyringHandle {
        self.local.keyring_handle()
    }

    /// Returns the path of a secret inside the mount.
    fn vault_path(&self, path: &SecretPath) -> String {
        if self.prefix.is_empty() {
            path.as_str().to_owned()
        } else {
            format!("{}/{}", self.prefix, path.as_str())
        }
    }

    /// Returns the current version of a secret, 0 when it does not exist.
    async fn current_version(&self, path: &SecretPath) -> Result<u64, StoreError> {
        match self
            .client
            .kv_read_metadata(&self.mount, &self.vault_path(path))
            .await
        {
            Ok(meta) => Ok(meta.current_version),
            Err(keyward_vault::VaultError::NotFound { .. }) => Ok(0),
            Err(err) => Err(vault_error(path, err)),
        }
    }

    /// Applies an undelete or destroy to `versions`, or to the current version when empty.
    /// A missing secret changes nothing and is not an error.
    async fn change_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
        change: versions::Change,
    ) -> Result<(), StoreError> {
        let targets = if versions.is_empty() {
            match self.current_version(path).await? {
                0 => return Ok(()),
                current => vec![current],
            }
        } else {
            versions.to_vec()
        };
        versions::apply_change(self, path, &targets, change).await
    }
}

#[async_trait]
impl SecretStore for VaultStore {
    async fn put(
        &self,
        path: &SecretPath,
        version: NewVersion,
        _default_max_versions: u32,
    ) -> Result<VersionMeta, StoreError> {
        versions::put(self, path, version).await
    }

    async fn get(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<VersionRead, StoreError> {
        versions::get(self, path, version).await
    }

    async fn delete_versions(&self, path: &SecretPath, versions: &[u64]) -> Result<(), StoreError> {
        versions::apply_change(self, path, versions, versions::Change::Delete).await
    }

    async fn undelete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.change_versions(path, versions, versions::Change::Undelete)
            .await
    }

    async fn destroy_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.change_versions(path, versions, versions::Change::Destroy)
            .await
    }

    async fn read_metadata(&self, path: &SecretPath) -> Result<SecretMeta, StoreError> {
        let meta = self
            .client
            .kv_read_metadata(&self.mount, &self.vault_path(path))
            .await
            .map_err(|err| vault_error(path, err))?;
        Ok(convert::secret_meta(meta))
    }

    async fn write_metadata(
        &self,
        path: &SecretPath,
        update: MetadataUpdate,
    ) -> Result<(), StoreError> {
        let update = keyward_vault::KvMetadataUpdate {
            max_versions: update.max_versions,
            cas_required: update.cas_required,
            delete_version_after_secs: update.delete_version_after_secs,
            custom_metadata: update.custom_metadata,
        };
        self.client
            .kv_write_metadata(&self.mount, &self.vault_path(path), &update)
            .await
            .map_err(|err| vault_error(path, err))
    }

    async fn delete_metadata(&self, path: &SecretPath) -> Result<(), StoreError> {
        match self
            .client
            .kv_delete_metadata(&self.mount, &self.vault_path(path))
            .await
        {
            Ok(()) | Err(keyward_vault::VaultError::NotFound { .. }) => Ok(()),
            Err(err) => Err(vault_error(path, err)),
        }
    }

    async fn list(&self, folder: &FolderPath) -> Result<Vec<String>, StoreError> {
        let folder_path = match (self.prefix.is_empty(), folder.as_prefix()) {
            (true, inner) => inner.to_owned(),
            (false, "") => self.prefix.clone(),
            (false, inner) => format!("{}/{inner}", self.prefix),
        };
        self.client
            .kv_list(&self.mount, &folder_path)
            .await
            .map_err(|err| convert::vault_error_at(&format!("folder {folder_path:?}"), err))
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.local.create_token(token).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<TokenRecord, StoreError> {
        self.local.token_by_hash(token_hash).await
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<TokenRecord, StoreError> {
        self.local.token_by_accessor(accessor).await
    }

    async fn set_token_expiry(
        &self,
        accessor: &str,
        expire_time: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        self.local.set_token_expiry(accessor, expire_time).await
    }

    async fn revoke_token(&self, accessor: &str) -> Result<u64, StoreError> {
        self.local.revoke_token(accessor).await
    }

    async fn put_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError> {
        self.local.put_policy(policy).await
    }

    async fn get_policy(&self, name: &str) -> Result<PolicyRecord, StoreError> {
        self.local.get_policy(name).await
    }

    async fn all_policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        self.local.all_policies().await
    }

    async fn delete_policy(&self, name: &str) -> Result<(), StoreError> {
        self.local.delete_policy(name).await
    }

    async fn count_by_key(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        let mut counts = self.local.count_by_key().await?;
        if self.encrypt_values {
            for (key_id, records) in keys::count_in_vault(self).await? {
                *counts.entry(key_id).or_insert(0) += records;
            }
        }
        Ok(counts)
    }

    async fn write_pending(
        &self,
        _path: &SecretPath,
        _version: NewVersion,
    ) -> Result<VersionMeta, StoreError> {
        Err(stages_unsupported())
    }

    async fn promote_pending(
        &self,
        _path: &SecretPath,
        _version: u64,
        _grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        Err(stages_unsupported())
    }

    async fn discard_pending(&self, _path: &SecretPath, _version: u64) -> Result<(), StoreError> {
        Err(stages_unsupported())
    }

    async fn revoke_version(&self, _path: &SecretPath, _version: u64) -> Result<(), StoreError> {
        Err(stages_unsupported())
    }

    async fn rewrap_batch(&self, limit: usize) -> Result<RewrapProgress, StoreError> {
        if self.encrypt_values {
            // Each KV v2 version is immutable, and writing a new one would change its number
            // and so its binding.
            return Err(StoreError::Invalid(
                "the vault backend cannot rewrap stored values: KV v2 versions are immutable; \
                 older versions keep their data key until they are destroyed"
                    .into(),
            ));
        }
        self.local.rewrap_batch(limit).await
    }
}

/// The error of every rotation stage method: KV v2 has no pending stage, and a version that
/// Vault reads cannot be hidden from Vault's own clients.
fn stages_unsupported() -> StoreError {
    StoreError::Invalid(
        "rotation stages are not supported on the vault backend: KV v2 has no pending stage; \
         keep secrets with a rotation policy on the sqlite backend"
            .to_owned(),
    )
}
