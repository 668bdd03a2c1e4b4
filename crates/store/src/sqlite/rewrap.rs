//! Counting versions per data key, and rewrapping them onto the active key in batches.
//!
//! A batch is one `BEGIN IMMEDIATE` transaction: the keyring is taken after the write lock, so
//! no write can seal a value under an older keyring between the batch's count and its commit.
//! Each version is decrypted with its path and version as associated data and sealed again
//! under the same binding. A crash before the commit leaves the batch undone, so every row is
//! always either old and decryptable or new and decryptable. This module does not change the
//! keyring and does not decide when to retire a key.

use std::collections::BTreeMap;

use keyward_crypto::Keyring;
use sqlx::Row;

use super::SqliteStore;
use super::convert::{backend_error, from_column, to_column};
use super::versions::begin_write;
use crate::aad::secret_aad;
use crate::path::SecretPath;
use crate::store::{RewrapProgress, StoreError};

/// Counts stored versions per key id; see [`crate::SecretStore::count_by_key`].
///
/// Runs on the one writer connection, so it waits for any write in progress to commit. A
/// write that took the keyring before a rotation is then counted, which a reader's snapshot
/// could miss, and a count of 0 for a key that is no longer active stays 0.
pub(super) async fn count_by_key(store: &SqliteStore) -> Result<BTreeMap<u32, u64>, StoreError> {
    let rows = sqlx::query(
        "SELECT key_id, COUNT(*) AS records FROM secret_versions
         WHERE key_id IS NOT NULL GROUP BY key_id",
    )
    .fetch_all(&store.writer)
    .await
    .map_err(backend_error)?;

    let mut counts = BTreeMap::new();
    for row in rows {
        let key_id: i64 = row.try_get("key_id").map_err(backend_error)?;
        let key_id = u32::try_from(key_id)
            .map_err(|_| StoreError::Corrupt(format!("stored key id {key_id} is out of range")))?;
        let records = from_column(row.try_get("records").map_err(backend_error)?, "count")?;
        counts.insert(key_id, records);
    }
    Ok(counts)
}

/// Rewraps up to `limit` versions; see [`crate::SecretStore::rewrap_batch`].
pub(super) async fn rewrap_batch(
    store: &SqliteStore,
    limit: usize,
) -> Result<RewrapProgress, StoreError> {
    if limit == 0 {
        return Err(StoreError::Invalid(
            "rewrap batch size must be at least 1".into(),
        ));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);

    let mut tx = begin_write(store).await?;
    let keyring = store.keyring();
    let active = i64::from(keyring.active_key_id());

    // Destroyed versions have a NULL `key_id` and never match. Two ranges instead of `<>`
    // let SQLite use the `key_id` index.
    let rows = sqlx::query(
        "SELECT path, version, ciphertext FROM secret_versions
         WHERE key_id < ?1 OR key_id > ?1 LIMIT ?2",
    )
    .bind(active)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend_error)?;

    let mut rewrapped = 0u64;
    for row in rows {
        let raw_path: String = row.try_get("path").map_err(backend_error)?;
        let path = SecretPath::parse(&raw_path).map_err(|error| {
            StoreError::Corrupt(format!("stored path {raw_path:?} is invalid: {error}"))
        })?;
        let version = from_column(row.try_get("version").map_err(backend_error)?, "version")?;
        let ciphertext: Vec<u8> = row.try_get("ciphertext").map_err(backend_error)?;

        let resealed = reseal(&keyring, &path, version, &ciphertext)?;
        let key_id = Keyring::key_id_of(&resealed)?;
        sqlx::query(
            "UPDATE secret_versions SET ciphertext = ?, key_id = ? WHERE path = ? AND version = ?",
        )
        .bind(resealed)
        .bind(i64::from(key_id))
        .bind(path.as_str())
        .bind(to_column(version, "version")?)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        rewrapped += 1;
    }

    let remaining: i64 = sqlx::query(
        "SELECT COUNT(*) AS remaining FROM secret_versions WHERE key_id < ?1 OR key_id > ?1",
    )
    .bind(active)
    .fetch_one(&mut *tx)
    .await
    .map_err(backend_error)?
    .try_get("remaining")
    .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)?;
    Ok(RewrapProgress {
        rewrapped,
        remaining: from_column(remaining, "count")?,
    })
}

/// Decrypts one version and seals it again under the active key with the same binding.
fn reseal(
    keyring: &Keyring,
    path: &SecretPath,
    version: u64,
    ciphertext: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let aad = secret_aad(path, version);
    let plaintext = keyring.decrypt(ciphertext, &aad).map_err(|error| {
        // Paths and versions are not secret; the log names the row that stops the rewrap.
        tracing::error!(path = %path, version, %error, "stored version does not decrypt; rewrap stopped");
        StoreError::Crypto(error)
    })?;
    Ok(keyring.encrypt(&plaintext, &aad)?)
}
