//! The embedded SQLite backend: one database file in WAL mode.
//!
//! Writes go through a pool of one connection, so they are serialised, and each runs in a
//! `BEGIN IMMEDIATE` transaction with `synchronous = FULL`: a write that returned `Ok` survives
//! a crash or power loss, and one that returned `Err` changed nothing. New versions, the write
//! clients repeat, are committed in groups (see `batch`), with the same guarantee for each.
//! Reads use a separate pool of `query_only` connections, which WAL lets run alongside the
//! writer, and unversioned reads are served from an in-memory cache of ciphertext rows when it
//! has the secret (see `cache`). sqlx runs each connection on its own thread, so no call blocks
//! the async runtime.
//!
//! Secret data is stored only as ciphertext from the [`Keyring`], bound to its path and version
//! by [`secret_aad`](crate::secret_aad). The database also contains hashed tokens and policies in
//! plain text. The keyring sits in a [`KeyringHandle`], so a rotated keyring can be swapped in
//! while the store serves. Rewrapping older records onto the new key is a separate, batched
//! call. This backend does not coordinate several processes beyond SQLite's own locking (a busy
//! timeout).
//!
//! Where the trait leaves it open, it follows Vault: deleting a missing secret's metadata or a
//! missing policy succeeds, while revoking an unknown token accessor is
//! [`StoreError::NotFound`]. A duplicate token is [`StoreError::Invalid`].

mod batch;
mod cache;
mod convert;
mod metadata;
mod rewrap;
mod schema;
mod stages;
mod tokens;
mod versions;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyward_crypto::Keyring;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use crate::handle::KeyringHandle;
use crate::model::{
    MetadataUpdate, NewVersion, PolicyRecord, SecretMeta, TokenRecord, VersionMeta,
};
use crate::path::{FolderPath, SecretPath};
use crate::store::{RewrapProgress, SecretStore, StoreError, VersionRead};
use versions::VersionChange;

/// How long a connection waits for a lock another process holds before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;

/// A [`SecretStore`] in one SQLite file.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    keyring: KeyringHandle,
    cache: Arc<cache::ReadCache>,
    puts: tokio::sync::mpsc::Sender<batch::PutJob>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (mode 0600) and its schema if missing,
    /// and migrating an older schema.
    ///
    /// The parent directory must exist. Fails with [`StoreError::Backend`] if the file cannot
    /// be created or opened, or was written by a newer version of Keyward.
    pub async fn open(path: &Path, keyring: Arc<Keyring>) -> Result<SqliteStore, StoreError> {
        create_private_file(path).await?;

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Overwrite deleted content (destroyed ciphertexts, revoked tokens) with zeros
            // instead of leaving it in free pages.
            .pragma("secure_delete", "ON");

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|err| open_error(path, err))?;

        let found = match schema::migrate(&writer).await {
            Ok(found) => found,
            Err(err) => {
                writer.close().await;
                return Err(err);
            }
        };
        if found != schema::SCHEMA_VERSION {
            tracing::info!(
                path = %path.display(),
                from = found,
                to = schema::SCHEMA_VERSION,
                "migrated sqlite store schema"
            );
        }

        let reader = match SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.pragma("query_only", "ON"))
            .await
        {
            Ok(reader) => reader,
            Err(err) => {
                writer.close().await;
                return Err(open_error(path, err));
            }
        };

        tracing::info!(path = %path.display(), "opened sqlite store");
        let keyring = KeyringHandle::new(keyring);
        let puts = batch::spawn(writer.clone(), keyring.clone());
        Ok(SqliteStore {
            writer,
            reader,
            keyring,
            cache: Arc::default(),
            puts,
        })
    }

    /// Returns the keyring new writes use now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load()
    }

    /// Swaps in another keyring, such as one with a newly rotated key. Operations already in
    /// progress finish with the keyring they started with.
    ///
    /// The new keyring must still hold every key that stored versions use: a version whose
    /// key is missing no longer reads. Store the keyring durably before swapping it in, or
    /// versions written under a new key are lost with the next restart.
    pub fn set_keyring(&self, keyring: Arc<Keyring>) {
        self.keyring.replace(keyring);
        self.cache.invalidate(None);
    }

    /// Returns a handle to the store's keyring that the key manager can swap through.
    pub fn keyring_handle(&self) -> KeyringHandle {
        self.keyring.clone()
    }

    /// Runs `operation`, a change to the secret at `path` (to any secret when `None`), and
    /// drops the read cache's rows of it. Dropping the returned future early is safe: the
    /// cache then stays closed to new rows until the writer connection has finished the change.
    async fn change<T>(
        &self,
        path: Option<&SecretPath>,
        operation: impl std::future::Future<Output = T>,
    ) -> T {
        let guard = cache::ChangeGuard::begin(&self.cache, &self.writer, path);
        let result = operation.await;
        guard.finish();
        result
    }

    /// Queues a new version for the batch task and waits until its transaction committed.
    async fn put_batched(
        &self,
        path: &SecretPath,
        new: NewVersion,
        default_max_versions: u32,
    ) -> Result<VersionMeta, StoreError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job = batch::PutJob {
            path: path.clone(),
            new,
            default_max_versions,
            change: cache::ChangeGuard::begin(&self.cache, &self.writer, Some(path)),
            reply,
        };
        let stopped = || StoreError::Backend("the store's write task has stopped".to_owned());
        self.puts.send(job).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Closes both connection pools, waiting for calls in progress. The last connection to
    /// close checkpoints the write-ahead log into the database file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn open_error(path: &Path, err: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("cannot open database {}: {err}", path.display()))
}

/// Creates the database file readable and writable by its owner only. SQLite gives the `-wal`
/// and `-shm` files the same mode. An existing file is left as it is, with a warning if other
/// users may read it.
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);

    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_shared(path).await;
            Ok(())
        }
        Err(err) => Err(StoreError::Backend(format!(
            "cannot create database file {}: {err}; check that its directory exists and is \
             writable",
            path.display()
        ))),
    }
}

#[cfg(unix)]
async fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    if let Ok(meta) = tokio::fs::metadata(path).await {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "database file is accessible to other users; run chmod 600 on it"
            );
        }
    }
}

#[cfg(not(unix))]
async fn warn_if_shared(_path: &Path) {}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put(
        &self,
        path: &SecretPath,
        version: NewVersion,
        default_max_versions: u32,
    ) -> Result<VersionMeta, StoreError> {
        self.put_batched(path, version, default_max_versions).await
    }

    async fn get(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<VersionRead, StoreError> {
        versions::get(self, path, version).await
    }

    async fn delete_versions(&self, path: &SecretPath, versions: &[u64]) -> Result<(), StoreError> {
        self.change(
            Some(path),
            versions::change_versions(self, path, versions, VersionChange::Delete),
        )
        .await
    }

    async fn undelete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.change(
            Some(path),
            versions::change_versions(self, path, versions, VersionChange::Undelete),
        )
        .await
    }

    async fn destroy_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.change(
            Some(path),
            versions::change_versions(self, path, versions, VersionChange::Destroy),
        )
        .await
    }

    async fn read_metadata(&self, path: &SecretPath) -> Result<SecretMeta, StoreError> {
        metadata::read_metadata(self, path).await
    }

    async fn write_metadata(
        &self,
        path: &SecretPath,
        update: MetadataUpdate,
    ) -> Result<(), StoreError> {
        self.change(Some(path), metadata::write_metadata(self, path, update))
            .await
    }

    async fn delete_metadata(&self, path: &SecretPath) -> Result<(), StoreError> {
        self.change(Some(path), metadata::delete_metadata(self, path))
            .await
    }

    async fn list(&self, folder: &FolderPath) -> Result<Vec<String>, StoreError> {
        metadata::list(self, folder).await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        tokens::create_token(self, token).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<TokenRecord, StoreError> {
        tokens::token_by_hash(self, token_hash).await
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<TokenRecord, StoreError> {
        tokens::token_by_accessor(self, accessor).await
    }

    async fn set_token_expiry(
        &self,
        accessor: &str,
        expire_time: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        tokens::set_token_expiry(self, accessor, expire_time).await
    }

    async fn revoke_token(&self, accessor: &str) -> Result<u64, StoreError> {
        tokens::revoke_token(self, accessor).await
    }

    async fn put_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError> {
        tokens::put_policy(self, policy).await
    }

    async fn get_policy(&self, name: &str) -> Result<PolicyRecord, StoreError> {
        tokens::get_policy(self, name).await
    }

    async fn all_policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        tokens::all_policies(self).await
    }

    async fn delete_policy(&self, name: &str) -> Result<(), StoreError> {
        tokens::delete_policy(self, name).await
    }

    async fn count_by_key(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        rewrap::count_by_key(self).await
    }

    async fn write_pending(
        &self,
        path: &SecretPath,
        version: NewVersion,
    ) -> Result<VersionMeta, StoreError> {
        self.change(Some(path), stages::write_pending(self, path, version))
            .await
    }

    async fn promote_pending(
        &self,
        path: &SecretPath,
        version: u64,
        grace_deadline: time::OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        self.change(
            Some(path),
            stages::promote_pending(self, path, version, grace_deadline),
        )
        .await
    }

    async fn discard_pending(&self, path: &SecretPath, version: u64) -> Result<(), StoreError> {
        self.change(Some(path), stages::discard_pending(self, path, version))
            .await
    }

    async fn revoke_version(&self, path: &SecretPath, version: u64) -> Result<(), StoreError> {
        self.change(Some(path), stages::revoke_version(self, path, version))
            .await
    }

    async fn rewrap_batch(&self, limit: usize) -> Result<RewrapProgress, StoreError> {
        self.change(None, rewrap::rewrap_batch(self, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pragma(pool: &SqlitePool, name: &'static str) -> String {
        use sqlx::Row;

        let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(pool)
            .await
            .expect("pragma reads");
        row.try_get::<String, _>(0)
            .or_else(|_| row.try_get::<i64, _>(0).map(|value| value.to_string()))
            .expect("pragma value decodes")
    }

    #[tokio::test]
    async fn connections_use_durable_settings() {
        let dir = tempfile::tempdir().expect("temporary directory is created");
        let keyring = Arc::new(Keyring::generate().expect("keyring is generated"));
        let store = SqliteStore::open(&dir.path().join("k.db"), keyring)
            .await
            .expect("opens");

        for pool in [&store.writer, &store.reader] {
            assert_eq!(pragma(pool, "journal_mode").await, "wal");
            // 2 is FULL: each commit syncs the write-ahead log.
            assert_eq!(pragma(pool, "synchronous").await, "2");
            assert_eq!(pragma(pool, "foreign_keys").await, "1");
            assert_eq!(pragma(pool, "secure_delete").await, "1");
            assert_eq!(pragma(pool, "busy_timeout").await, "5000");
        }
        assert_eq!(pragma(&store.writer, "query_only").await, "0");
        assert_eq!(pragma(&store.reader, "query_only").await, "1");
        store.close().await;
    }
}
