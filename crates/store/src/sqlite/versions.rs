//! Secret versions: write with check-and-set, read, soft-delete, undelete and destroy.
//!
//! Each write runs in one `BEGIN IMMEDIATE` transaction on the writer pool, so an error leaves
//! the database as it was. Data is encrypted before it reaches SQL and decrypted after it leaves;
//! this module never logs or formats it. Metadata and listing live in `metadata`.

use keyward_crypto::Keyring;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

use super::SqliteStore;
use super::cache::CachedRow;
use super::convert::{
    backend_error, from_column, json_to_map, nanos_to_time, optional_time, parse_stage,
    time_to_nanos, to_column,
};
use crate::aad::secret_aad;
use crate::model::{NewVersion, SecretData, Stage, VersionMeta};
use crate::path::SecretPath;
use crate::store::{StoreError, VersionRead};

/// The per-secret settings a write needs, read from the `secrets` row.
#[derive(Debug, Default)]
pub(super) struct WriteSettings {
    pub(super) current_version: u64,
    max_versions: u32,
    cas_required: bool,
    delete_version_after_secs: u64,
}

/// Checks a write's check-and-set value against the secret's current version, as Vault KV v2
/// does: `cas = 0` only writes a secret with no version, `cas = N` only when N is current.
fn check_cas(cas_required: bool, current_version: u64, cas: Option<u64>) -> Result<(), StoreError> {
    match cas {
        None if cas_required => Err(StoreError::CasRequired),
        None => Ok(()),
        Some(expected) if expected == current_version => Ok(()),
        Some(_) => Err(StoreError::CasMismatch),
    }
}

/// Returns the highest version number to prune after writing `new_version`, if any: versions
/// up to it fall outside the newest `keep`. A `keep` of 0 keeps every version.
fn prune_up_to(new_version: u64, keep: u32) -> Option<u64> {
    if keep == 0 {
        return None;
    }
    new_version
        .checked_sub(u64::from(keep))
        .filter(|&last| last > 0)
}

/// Returns whether a version's data may be returned now.
fn is_readable(meta: &VersionMeta, now: OffsetDateTime) -> bool {
    let deleted = meta.deletion_time.is_some_and(|time| time <= now);
    let grace_over = meta.stage == Stage::Previous
        && meta.grace_deadline.is_some_and(|deadline| deadline <= now);
    !(deleted || grace_over || meta.destroyed || meta.stage == Stage::Revoked)
}

/// Decodes the version columns shared by every version query.
pub(super) fn version_meta_from_row(row: &SqliteRow) -> Result<VersionMeta, StoreError> {
    let stage: String = row.try_get("stage").map_err(backend_error)?;
    Ok(VersionMeta {
        version: from_column(row.try_get("version").map_err(backend_error)?, "version")?,
        created_time: nanos_to_time(row.try_get("created_time").map_err(backend_error)?)?,
        deletion_time: optional_time(row.try_get("deletion_time").map_err(backend_error)?)?,
        destroyed: row.try_get("destroyed").map_err(backend_error)?,
        stage: parse_stage(&stage)?,
        created_by: row.try_get("created_by").map_err(backend_error)?,
        grace_deadline: optional_time(row.try_get("grace_deadline").map_err(backend_error)?)?,
    })
}

/// Opens a write transaction. `BEGIN IMMEDIATE` takes the write lock up front, so a
/// transaction that reads before it writes cannot hit SQLITE_BUSY at its first write.
pub(super) async fn begin_write(
    store: &SqliteStore,
) -> Result<Transaction<'static, Sqlite>, StoreError> {
    store
        .writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(backend_error)
}

pub(super) async fn write_settings(
    connection: &mut SqliteConnection,
    path: &SecretPath,
) -> Result<Option<WriteSettings>, StoreError> {
    let row = sqlx::query(
        "SELECT current_version, max_versions, cas_required, delete_version_after_secs
         FROM secrets WHERE path = ?",
    )
    .bind(path.as_str())
    .fetch_optional(&mut *connection)
    .await
    .map_err(backend_error)?;

    row.as_ref().map(settings_from_row).transpose()
}

/// Decodes the `secrets` columns of [`WriteSettings`].
fn settings_from_row(row: &SqliteRow) -> Result<WriteSettings, StoreError> {
    let max_versions: i64 = row.try_get("max_versions").map_err(backend_error)?;
    Ok(WriteSettings {
        current_version: from_column(
            row.try_get("current_version").map_err(backend_error)?,
            "version",
        )?,
        max_versions: u32::try_from(max_versions).map_err(|_| {
            StoreError::Corrupt(format!(
                "stored max_versions {max_versions} is out of range"
            ))
        })?,
        cas_required: row.try_get("cas_required").map_err(backend_error)?,
        delete_version_after_secs: from_column(
            row.try_get("delete_version_after_secs")
                .map_err(backend_error)?,
            "delete_version_after",
        )?,
    })
}

/// Reads a secret's write settings and the version an unversioned read shows (NULL when none),
/// in one statement. No row when the secret does not exist.
const READ_WRITE_SETTINGS: &str = "SELECT s.current_version, s.max_versions, s.cas_required,
        s.delete_version_after_secs,
        (SELECT version FROM secret_versions
         WHERE path = s.path AND stage != 'pending'
         ORDER BY stage = 'current' DESC, version DESC LIMIT 1) AS visible
    FROM secrets AS s WHERE s.path = ?";

/// Every statement of a new version, sent in one call inside a savepoint.
///
/// Parameters, in order: path, time, time and version for the `secrets` row. Then path, to
/// demote the current version. Then path, version, time, deletion time, created by, key id and
/// ciphertext for the new row. Last, path and the highest version to prune (0 prunes none).
///
/// Only anonymous `?` parameters: sqlx numbers them across the statements of one call, while
/// numbered ones (`?NNN`) past a statement's own count would be left unbound.
const WRITE_VERSION: &str = "SAVEPOINT put_version;
    INSERT INTO secrets (path, created_time, updated_time, current_version)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (path) DO UPDATE
        SET current_version = excluded.current_version, updated_time = excluded.updated_time;
    UPDATE secret_versions SET stage = 'previous' WHERE path = ? AND stage = 'current';
    INSERT INTO secret_versions
        (path, version, created_time, deletion_time, destroyed, stage, created_by, key_id,
         ciphertext)
        VALUES (?, ?, ?, ?, 0, 'current', ?, ?, ?);
    DELETE FROM secret_versions WHERE path = ? AND version <= ? AND stage != 'pending';
    RELEASE put_version;";

/// Writes a new version inside the write transaction open on `tx`; see
/// [`crate::SecretStore::put`].
///
/// The inner result is the write's own: when it is an error, the write left nothing behind and
/// the transaction can go on. The outer error means the transaction is in an unknown state
/// and must be rolled back.
pub(super) async fn put_in(
    tx: &mut SqliteConnection,
    keyring: &Keyring,
    path: &SecretPath,
    new: NewVersion,
    default_max_versions: u32,
) -> Result<Result<VersionMeta, StoreError>, StoreError> {
    let prepared = match prepare_put(tx, keyring, path, &new, default_max_versions).await {
        Ok(prepared) => prepared,
        Err(error) => return Ok(Err(error)),
    };

    let written = sqlx::query(WRITE_VERSION)
        .bind(path.as_str())
        .bind(prepared.now_nanos)
        .bind(prepared.now_nanos)
        .bind(prepared.version_column)
        .bind(path.as_str())
        .bind(path.as_str())
        .bind(prepared.version_column)
        .bind(prepared.now_nanos)
        .bind(prepared.deletion_nanos)
        .bind(new.created_by.as_str())
        .bind(i64::from(prepared.key_id))
        .bind(prepared.ciphertext)
        .bind(path.as_str())
        .bind(prepared.prune_up_to)
        .execute(&mut *tx)
        .await;
    if let Err(error) = written {
        // Some statements may have run: undo them, or give up on the transaction.
        let error = backend_error(error);
        let undone = sqlx::query("ROLLBACK TO put_version; RELEASE put_version;")
            .execute(&mut *tx)
            .await;
        if let Err(rollback) = undone {
            return Err(StoreError::Backend(format!(
                "{error}; rolling the write back failed too: {}",
                backend_error(rollback)
            )));
        }
        return Ok(Err(error));
    }

    Ok(Ok(VersionMeta {
        version: prepared.version,
        created_time: prepared.now,
        deletion_time: prepared.deletion_time,
        destroyed: false,
        stage: Stage::Current,
        created_by: new.created_by,
        grace_deadline: None,
    }))
}

/// The values [`put_in`] writes, worked out before the first change.
struct PreparedPut {
    now: OffsetDateTime,
    now_nanos: i64,
    version: u64,
    version_column: i64,
    deletion_time: Option<OffsetDateTime>,
    deletion_nanos: Option<i64>,
    key_id: u32,
    ciphertext: Vec<u8>,
    /// Highest version number to prune, 0 to prune none.
    prune_up_to: i64,
}

/// Reads the secret's settings, checks the write against them and encrypts the data. Changes
/// nothing.
async fn prepare_put(
    tx: &mut SqliteConnection,
    keyring: &Keyring,
    path: &SecretPath,
    new: &NewVersion,
    default_max_versions: u32,
) -> Result<PreparedPut, StoreError> {
    let now = OffsetDateTime::now_utc();
    let now_nanos = time_to_nanos(now)?;

    let row = sqlx::query(READ_WRITE_SETTINGS)
        .bind(path.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_error)?;
    let (settings, visible) = match &row {
        Some(row) => {
            let visible: Option<i64> = row.try_get("visible").map_err(backend_error)?;
            let visible = visible.map(|v| from_column(v, "version")).transpose()?;
            (settings_from_row(row)?, visible.unwrap_or(0))
        }
        None => (WriteSettings::default(), 0),
    };
    // Check-and-set compares with the version unversioned reads return, so that a pending
    // rotation does not make every client's `cas` stale.
    check_cas(settings.cas_required, visible, new.cas)?;

    let version = settings
        .current_version
        .checked_add(1)
        .ok_or_else(|| StoreError::Invalid(format!("secret {path} has no version number left")))?;
    let version_column = to_column(version, "version")?;

    // With `delete_version_after`, Vault gives each new version a deletion time in the future;
    // reads treat the version as deleted once that time has passed.
    let deletion_time = match settings.delete_version_after_secs {
        0 => None,
        secs => {
            let delay = time::Duration::seconds(to_column(secs, "delete_version_after")?);
            let at = now.checked_add(delay).ok_or_else(|| {
                StoreError::Invalid(format!("delete_version_after {secs}s is too large"))
            })?;
            Some(at)
        }
    };
    let deletion_nanos = deletion_time.map(time_to_nanos).transpose()?;

    let aad = secret_aad(path, version);
    let ciphertext = keyring.encrypt(new.data.expose_json(), &aad)?;
    let key_id = Keyring::key_id_of(&ciphertext)?;

    let keep = match settings.max_versions {
        0 => default_max_versions,
        own => own,
    };
    // A pending version belongs to a rotation in progress and is never pruned.
    let prune_up_to = match prune_up_to(version, keep) {
        Some(last) => to_column(last, "version")?,
        None => 0,
    };

    Ok(PreparedPut {
        now,
        now_nanos,
        version,
        version_column,
        deletion_time,
        deletion_nanos,
        key_id,
        ciphertext,
        prune_up_to,
    })
}

/// Reads a secret's custom metadata and one version, given by number (the first parameter),
/// of the secret at the second parameter. The version columns are NULL if it has no such
/// version.
const READ_VERSION: &str = "SELECT s.custom_metadata, v.version, v.created_time, v.deletion_time,
        v.destroyed, v.stage, v.created_by, v.grace_deadline, v.ciphertext
    FROM secrets AS s
    LEFT JOIN secret_versions AS v ON v.path = s.path AND v.version = ?
    WHERE s.path = ?";

/// Like [`READ_VERSION`] for the version an unversioned read shows: the `current` one, else
/// (after the current version was destroyed) the highest one that is not pending. Keep it in
/// step with the `visible` column of [`READ_WRITE_SETTINGS`].
const READ_VISIBLE_VERSION: &str = "SELECT s.custom_metadata, v.version, v.created_time,
        v.deletion_time, v.destroyed, v.stage, v.created_by, v.grace_deadline, v.ciphertext
    FROM secrets AS s
    LEFT JOIN secret_versions AS v ON v.path = s.path AND v.version = (
        SELECT version FROM secret_versions
        WHERE path = s.path AND stage != 'pending'
        ORDER BY stage = 'current' DESC, version DESC LIMIT 1)
    WHERE s.path = ?";

/// Reads one version; see [`crate::SecretStore::get`].
pub(super) async fn get(
    store: &SqliteStore,
    path: &SecretPath,
    version: Option<u64>,
) -> Result<VersionRead, StoreError> {
    // Taken before the snapshot: if a key is retired while this read runs, this keyring still
    // has the key of any row the snapshot can show (see `decrypt_with_either`).
    let keyring_before = store.keyring();

    // Version 0 never exists, and a number past i64 cannot have been stored.
    let version_column = match version {
        Some(0) => return Err(StoreError::NotFound),
        Some(version) => Some(i64::try_from(version).map_err(|_| StoreError::NotFound)?),
        None => None,
    };

    // A cached row is under a key the keyring still has: rewrapping, the only step before a
    // key is retired, empties the cache and keeps it empty while it runs.
    if version_column.is_none()
        && let Some(row) = store.cache.get(path)
    {
        return read_cached(&store.keyring(), path, &row);
    }
    let snapshot = store.cache.snapshot(path);

    // One statement, so the secret row and the version row come from the same snapshot, in
    // one hand-off to the connection's thread instead of a transaction of several. An
    // unversioned read skips pending versions, so that a rotation in progress stays
    // invisible; a secret whose only version is pending reads as not found.
    // One statement per case, so neither plan depends on whether a parameter is NULL.
    let query = match version_column {
        Some(version) => sqlx::query(READ_VERSION).bind(version),
        None => sqlx::query(READ_VISIBLE_VERSION),
    };
    let row = query
        .bind(path.as_str())
        .fetch_optional(&store.reader)
        .await
        .map_err(backend_error)?
        .ok_or(StoreError::NotFound)?;
    let found: Option<i64> = row.try_get("version").map_err(backend_error)?;
    let Some(found) = found else {
        return Err(StoreError::NotFound);
    };
    let version = from_column(found, "version")?;

    let custom_metadata: String = row.try_get("custom_metadata").map_err(backend_error)?;
    let custom_metadata = json_to_map(&custom_metadata, "custom metadata")?;

    let meta = version_meta_from_row(&row)?;
    let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext").map_err(backend_error)?;
    let data = if is_readable(&meta, OffsetDateTime::now_utc()) {
        let ciphertext = ciphertext.as_deref().ok_or_else(|| {
            StoreError::Corrupt(format!("version {version} of {path} has no data"))
        })?;
        Some(decrypt_with_either(
            &store.keyring(),
            &keyring_before,
            path,
            version,
            ciphertext,
        )?)
    } else {
        None
    };

    if version_column.is_none() {
        let row = CachedRow {
            meta: meta.clone(),
            custom_metadata: custom_metadata.clone(),
            ciphertext,
        };
        store.cache.insert(path, snapshot, row);
    }

    Ok(VersionRead {
        meta,
        custom_metadata,
        data,
    })
}

/// Builds an unversioned read from a cached row, deciding from the clock now whether its data
/// may be returned.
fn read_cached(
    keyring: &Keyring,
    path: &SecretPath,
    row: &CachedRow,
) -> Result<VersionRead, StoreError> {
    let version = row.meta.version;
    let data = if is_readable(&row.meta, OffsetDateTime::now_utc()) {
        let ciphertext = row.ciphertext.as_deref().ok_or_else(|| {
            StoreError::Corrupt(format!("version {version} of {path} has no data"))
        })?;
        Some(decrypt(keyring, path, version, ciphertext)?)
    } else {
        None
    };

    Ok(VersionRead {
        meta: row.meta.clone(),
        custom_metadata: row.custom_metadata.clone(),
        data,
    })
}

/// Decrypts with the keyring taken after the read, falling back to the one taken before it.
///
/// A row written under a key rotated in during the read is known only to the later keyring.
/// A row read from a snapshot older than a rewrap may be under a key retired during the read,
/// known only to the earlier keyring.
fn decrypt_with_either(
    after: &Keyring,
    before: &Keyring,
    path: &SecretPath,
    version: u64,
    ciphertext: &[u8],
) -> Result<SecretData, StoreError> {
    match decrypt(after, path, version, ciphertext) {
        Err(StoreError::Crypto(keyward_crypto::CryptoError::UnknownKeyId(_))) => {
            decrypt(before, path, version, ciphertext)
        }
        other => other,
    }
}

fn decrypt(
    keyring: &Keyring,
    path: &SecretPath,
    version: u64,
    ciphertext: &[u8],
) -> Result<SecretData, StoreError> {
    let aad = secret_aad(path, version);
    let mut plaintext = keyring.decrypt(ciphertext, &aad)?;

    // Move the buffer out instead of copying it; `SecretData` zeroizes it from here on.
    let bytes = std::mem::take(&mut *plaintext);
    SecretData::from_json_bytes(bytes).map_err(|_| {
        StoreError::Corrupt(format!("version {version} of {path} is not a JSON object"))
    })
}

/// Returns the versions a delete, undelete or destroy applies to: the given ones without
/// duplicates, or the current one when the list is empty. Numbers past `i64::MAX` cannot exist
/// and are dropped.
async fn target_versions(
    tx: &mut Transaction<'static, Sqlite>,
    path: &SecretPath,
    versions: &[u64],
) -> Result<Vec<i64>, StoreError> {
    if !versions.is_empty() {
        let mut targets: Vec<i64> = versions
            .iter()
            .filter_map(|&v| i64::try_from(v).ok())
            .collect();
        targets.sort_unstable();
        targets.dedup();
        return Ok(targets);
    }
    // The version an unversioned read shows, so that a rotation's pending version is never
    // the one deleted or destroyed in its place.
    let visible: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM secret_versions WHERE path = ? AND stage != 'pending'
         ORDER BY stage = 'current' DESC, version DESC LIMIT 1",
    )
    .bind(path.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend_error)?;
    Ok(visible.into_iter().collect())
}

/// The three version-state changes, each one UPDATE over all the versions it applies to.
#[derive(Clone, Copy, Debug)]
pub(super) enum VersionChange {
    /// Set the deletion time to now, unless already deleted or destroyed.
    Delete,
    /// Clear the deletion time, unless destroyed.
    Undelete,
    /// Erase the ciphertext and mark the version destroyed.
    Destroy,
}

impl VersionChange {
    /// Returns the UPDATE for a set of versions. Every statement takes the same numbered
    /// parameters (?1 now, ?2 path, ?3 the versions as a JSON array); SQLite allows a statement
    /// to leave ?1 unused. Passing the list as one JSON parameter keeps it to one statement
    /// whatever its length, below SQLite's limit on bound parameters.
    fn statement(self) -> &'static str {
        match self {
            // A version whose deletion time is still in the future (delete_version_after) is
            // deleted now; one already deleted keeps its original deletion time, as in Vault.
            VersionChange::Delete => {
                "UPDATE secret_versions SET deletion_time = ?1
                 WHERE path = ?2 AND version IN (SELECT value FROM json_each(?3))
                   AND destroyed = 0
                   AND (deletion_time IS NULL OR deletion_time > ?1)"
            }
            VersionChange::Undelete => {
                "UPDATE secret_versions SET deletion_time = NULL
                 WHERE path = ?2 AND version IN (SELECT value FROM json_each(?3))
                   AND destroyed = 0"
            }
            VersionChange::Destroy => {
                "UPDATE secret_versions
                 SET ciphertext = NULL, key_id = NULL, destroyed = 1, stage = 'destroyed'
                 WHERE path = ?2 AND version IN (SELECT value FROM json_each(?3))"
            }
        }
    }
}

/// Applies a delete, undelete or destroy to `versions` (the current version when empty) in one
/// transaction and one statement. Duplicates count once; unknown versions and a missing secret
/// change nothing and are not errors.
pub(super) async fn change_versions(
    store: &SqliteStore,
    path: &SecretPath,
    versions: &[u64],
    change: VersionChange,
) -> Result<(), StoreError> {
    let mut tx = begin_write(store).await?;
    let now_nanos = time_to_nanos(OffsetDateTime::now_utc())?;

    let targets = target_versions(&mut tx, path, versions).await?;
    if targets.is_empty() {
        return Ok(());
    }
    // A list of integers always serialises.
    let targets = serde_json::to_string(&targets).unwrap_or_else(|_| "[]".to_owned());
    sqlx::query(change.statement())
        .bind(now_nanos)
        .bind(path.as_str())
        .bind(targets)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_follows_vault_rules() {
        assert!(check_cas(false, 0, None).is_ok());
        assert!(check_cas(false, 0, Some(0)).is_ok());
        assert!(check_cas(false, 3, Some(3)).is_ok());
        assert!(matches!(
            check_cas(false, 3, Some(0)),
            Err(StoreError::CasMismatch)
        ));
        assert!(matches!(
            check_cas(false, 3, Some(2)),
            Err(StoreError::CasMismatch)
        ));
        assert!(matches!(
            check_cas(true, 3, None),
            Err(StoreError::CasRequired)
        ));
        assert!(check_cas(true, 3, Some(3)).is_ok());
    }

    #[test]
    fn prune_keeps_newest_versions() {
        assert_eq!(prune_up_to(3, 3), None);
        assert_eq!(prune_up_to(4, 3), Some(1));
        assert_eq!(prune_up_to(10, 1), Some(9));
        assert_eq!(prune_up_to(10, 0), None);
        assert_eq!(prune_up_to(1, 5), None);
    }

    fn meta(stage: Stage) -> VersionMeta {
        VersionMeta {
            version: 1,
            created_time: OffsetDateTime::UNIX_EPOCH,
            deletion_time: None,
            destroyed: false,
            stage,
            created_by: "accessor".to_owned(),
            grace_deadline: None,
        }
    }

    #[test]
    fn readability_depends_on_state_and_time() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1);
        let later = now + time::Duration::minutes(1);
        let earlier = now - time::Duration::minutes(1);

        assert!(is_readable(&meta(Stage::Current), now));
        assert!(!is_readable(&meta(Stage::Revoked), now));

        let deleted = VersionMeta {
            deletion_time: Some(earlier),
            ..meta(Stage::Current)
        };
        assert!(!is_readable(&deleted, now));
        let deleted_later = VersionMeta {
            deletion_time: Some(later),
            ..meta(Stage::Current)
        };
        assert!(is_readable(&deleted_later, now));

        let destroyed = VersionMeta {
            destroyed: true,
            ..meta(Stage::Destroyed)
        };
        assert!(!is_readable(&destroyed, now));

        let grace_over = VersionMeta {
            grace_deadline: Some(earlier),
            ..meta(Stage::Previous)
        };
        assert!(!is_readable(&grace_over, now));
        let in_grace = VersionMeta {
            grace_deadline: Some(later),
            ..meta(Stage::Previous)
        };
        assert!(is_readable(&in_grace, now));
    }
}
