//! Rotation stages: write a pending version, promote it to current, discard it, and revoke a
//! replaced version.
//!
//! Each change runs in one `BEGIN IMMEDIATE` transaction, so a crash leaves either the old or
//! the new stages. `secrets.current_version` stays the highest version number written (a
//! pending version counts), as Vault reports it; unversioned reads skip pending versions
//! instead (see `versions::get`). This module does not decide when to rotate: the rotation
//! engine does, through the manager.

use keyward_crypto::Keyring;
use sqlx::{Sqlite, Transaction};
use time::OffsetDateTime;

use super::SqliteStore;
use super::convert::{backend_error, from_column, parse_stage, time_to_nanos, to_column};
use super::versions::{begin_write, write_settings};
use crate::aad::secret_aad;
use crate::model::{NewVersion, Stage, VersionMeta};
use crate::path::SecretPath;
use crate::store::StoreError;

/// Returns the stage of one version, or `None` if the version does not exist.
async fn stage_of(
    tx: &mut Transaction<'static, Sqlite>,
    path: &SecretPath,
    version: u64,
) -> Result<Option<Stage>, StoreError> {
    let Ok(column) = i64::try_from(version) else {
        return Ok(None);
    };
    let raw: Option<String> =
        sqlx::query_scalar("SELECT stage FROM secret_versions WHERE path = ? AND version = ?")
            .bind(path.as_str())
            .bind(column)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend_error)?;
    raw.as_deref().map(parse_stage).transpose()
}

/// Returns the number of the version of `path` in `stage`, the highest if several are.
async fn version_in_stage(
    tx: &mut Transaction<'static, Sqlite>,
    path: &SecretPath,
    stage: Stage,
) -> Result<Option<u64>, StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM secret_versions WHERE path = ? AND stage = ?")
            .bind(path.as_str())
            .bind(stage.as_str())
            .fetch_one(&mut **tx)
            .await
            .map_err(backend_error)?;
    found.map(|v| from_column(v, "version")).transpose()
}

/// Writes a pending version; see [`crate::SecretStore::write_pending`].
pub(super) async fn write_pending(
    store: &SqliteStore,
    path: &SecretPath,
    new: NewVersion,
) -> Result<VersionMeta, StoreError> {
    let mut tx = begin_write(store).await?;
    let now = OffsetDateTime::now_utc();
    let now_nanos = time_to_nanos(now)?;

    if let Some(version) = version_in_stage(&mut tx, path, Stage::Pending).await? {
        return Err(StoreError::PendingExists { version });
    }

    let existing = write_settings(&mut tx, path).await?;
    let highest = existing
        .as_ref()
        .map_or(0, |settings| settings.current_version);
    let version = highest
        .checked_add(1)
        .ok_or_else(|| StoreError::Invalid(format!("secret {path} has no version number left")))?;
    let version_column = to_column(version, "version")?;

    if existing.is_some() {
        sqlx::query("UPDATE secrets SET current_version = ?, updated_time = ? WHERE path = ?")
            .bind(version_column)
            .bind(now_nanos)
            .bind(path.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
    } else {
        sqlx::query(
            "INSERT INTO secrets (path, created_time, updated_time, current_version)
             VALUES (?, ?, ?, ?)",
        )
        .bind(path.as_str())
        .bind(now_nanos)
        .bind(now_nanos)
        .bind(version_column)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    }

    // Taken inside the write transaction for the same reason as in `versions::put`.
    let keyring = store.keyring();
    let aad = secret_aad(path, version);
    let ciphertext = keyring.encrypt(new.data.expose_json(), &aad)?;
    let key_id = Keyring::key_id_of(&ciphertext)?;

    sqlx::query(
        "INSERT INTO secret_versions
            (path, version, created_time, deletion_time, destroyed, stage, created_by, key_id,
             ciphertext)
         VALUES (?, ?, ?, NULL, 0, 'pending', ?, ?, ?)",
    )
    .bind(path.as_str())
    .bind(version_column)
    .bind(now_nanos)
    .bind(new.created_by.as_str())
    .bind(i64::from(key_id))
    .bind(ciphertext)
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)?;

    Ok(VersionMeta {
        version,
        created_time: now,
        deletion_time: None,
        destroyed: false,
        stage: Stage::Pending,
        created_by: new.created_by,
        grace_deadline: None,
    })
}

/// Promotes a pending version; see [`crate::SecretStore::promote_pending`].
pub(super) async fn promote_pending(
    store: &SqliteStore,
    path: &SecretPath,
    version: u64,
    grace_deadline: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    let mut tx = begin_write(store).await?;
    let now_nanos = time_to_nanos(OffsetDateTime::now_utc())?;
    let version_column = to_column(version, "version")?;

    match stage_of(&mut tx, path, version).await? {
        None => return Err(StoreError::NotFound),
        Some(Stage::Pending) => {}
        Some(Stage::Current) => {
            // Promoted by an earlier attempt: report the version it replaced.
            let replaced: Option<i64> = sqlx::query_scalar(
                "SELECT max(version) FROM secret_versions
                 WHERE path = ? AND version < ? AND stage IN ('previous', 'revoked')",
            )
            .bind(path.as_str())
            .bind(version_column)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_error)?;
            return replaced.map(|v| from_column(v, "version")).transpose();
        }
        Some(stage) => {
            return Err(StoreError::Invalid(format!(
                "version {version} of {path} is {} and cannot be promoted; only a pending \
                 version can",
                stage.as_str()
            )));
        }
    }

    let old = version_in_stage(&mut tx, path, Stage::Current).await?;
    let deadline_nanos = time_to_nanos(grace_deadline)?;
    sqlx::query(
        "UPDATE secret_versions SET stage = 'previous', grace_deadline = ?
         WHERE path = ? AND stage = 'current'",
    )
    .bind(deadline_nanos)
    .bind(path.as_str())
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;

    sqlx::query("UPDATE secret_versions SET stage = 'current' WHERE path = ? AND version = ?")
        .bind(path.as_str())
        .bind(version_column)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    sqlx::query("UPDATE secrets SET updated_time = ? WHERE path = ?")
        .bind(now_nanos)
        .bind(path.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)?;
    Ok(old)
}

/// Erases the data of one version and sets its stage, in the open transaction.
async fn erase(
    tx: &mut Transaction<'static, Sqlite>,
    path: &SecretPath,
    version: u64,
    stage: Stage,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE secret_versions
         SET ciphertext = NULL, key_id = NULL, destroyed = 1, stage = ?, grace_deadline = NULL
         WHERE path = ? AND version = ?",
    )
    .bind(stage.as_str())
    .bind(path.as_str())
    .bind(to_column(version, "version")?)
    .execute(&mut **tx)
    .await
    .map_err(backend_error)?;
    Ok(())
}

/// Discards a pending version; see [`crate::SecretStore::discard_pending`].
pub(super) async fn discard_pending(
    store: &SqliteStore,
    path: &SecretPath,
    version: u64,
) -> Result<(), StoreError> {
    let mut tx = begin_write(store).await?;
    match stage_of(&mut tx, path, version).await? {
        None | Some(Stage::Destroyed) => return Ok(()),
        Some(Stage::Pending) => erase(&mut tx, path, version, Stage::Destroyed).await?,
        Some(stage) => {
            return Err(StoreError::Invalid(format!(
                "version {version} of {path} is {} and cannot be discarded; only a pending \
                 version can",
                stage.as_str()
            )));
        }
    }
    tx.commit().await.map_err(backend_error)
}

/// Revokes a replaced version; see [`crate::SecretStore::revoke_version`].
pub(super) async fn revoke_version(
    store: &SqliteStore,
    path: &SecretPath,
    version: u64,
) -> Result<(), StoreError> {
    let mut tx = begin_write(store).await?;
    match stage_of(&mut tx, path, version).await? {
        None => return Err(StoreError::NotFound),
        Some(Stage::Revoked) => return Ok(()),
        // A destroyed version has no data left to reject. Marking it revoked records that its
        // provider credential is revoked too, and brings back no data.
        Some(Stage::Previous | Stage::Destroyed) => {
            erase(&mut tx, path, version, Stage::Revoked).await?;
        }
        Some(stage) => {
            return Err(StoreError::Invalid(format!(
                "version {version} of {path} is {} and cannot be revoked; only a replaced \
                 (previous) version can",
                stage.as_str()
            )));
        }
    }
    tx.commit().await.map_err(backend_error)
}
