//! Secret metadata (read, write, delete) and folder listing.
//!
//! Metadata writes validate their input before touching the database and run in one
//! `BEGIN IMMEDIATE` transaction. Listing reads the `secrets` table only, so a secret whose
//! versions are all deleted or pruned is still listed, as in Vault. Versions live in `versions`.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use time::OffsetDateTime;

use super::SqliteStore;
use super::convert::{
    backend_error, from_column, json_to_map, map_to_json, nanos_to_time, time_to_nanos, to_column,
};
use super::versions::{begin_write, version_meta_from_row};
use crate::model::{MetadataUpdate, SecretMeta};
use crate::path::{FolderPath, SecretPath};
use crate::store::StoreError;

/// Maximum `max_versions` a secret may set.
const MAX_VERSIONS_LIMIT: u32 = 1000;

/// Maximum `delete_version_after`: 100 years, so that a version's deletion time still fits the
/// nanosecond timestamps the store keeps (they end in 2262).
const MAX_DELETE_VERSION_AFTER_SECS: u64 = 100 * 365 * 24 * 60 * 60;

/// Limits on `custom_metadata`, the same Vault's KV v2 applies: 64 keys, keys up to 128 bytes,
/// values up to 512 bytes.
const MAX_CUSTOM_METADATA_KEYS: usize = 64;
const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;

/// Rejects a metadata update whose values are out of range. Messages name the field and the
/// limit, never a custom metadata value.
fn validate_update(update: &MetadataUpdate) -> Result<(), StoreError> {
    if let Some(max) = update.max_versions
        && max > MAX_VERSIONS_LIMIT
    {
        return Err(StoreError::Invalid(format!(
            "max_versions {max} is above the limit of {MAX_VERSIONS_LIMIT}"
        )));
    }

    if let Some(secs) = update.delete_version_after_secs
        && secs > MAX_DELETE_VERSION_AFTER_SECS
    {
        return Err(StoreError::Invalid(format!(
            "delete_version_after {secs}s is above the limit of {MAX_DELETE_VERSION_AFTER_SECS}s"
        )));
    }

    if let Some(custom) = &update.custom_metadata {
        validate_custom_metadata(custom)?;
    }
    Ok(())
}

fn validate_custom_metadata(custom: &BTreeMap<String, String>) -> Result<(), StoreError> {
    if custom.len() > MAX_CUSTOM_METADATA_KEYS {
        return Err(StoreError::Invalid(format!(
            "custom_metadata has {} keys, above the limit of {MAX_CUSTOM_METADATA_KEYS}",
            custom.len()
        )));
    }

    for (key, value) in custom {
        if key.is_empty() {
            return Err(StoreError::Invalid(
                "custom_metadata has an empty key".to_owned(),
            ));
        }
        if key.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            return Err(StoreError::Invalid(format!(
                "custom_metadata key of {} bytes is above the limit of \
                 {MAX_CUSTOM_METADATA_KEY_LEN}",
                key.len()
            )));
        }
        if value.len() > MAX_CUSTOM_METADATA_VALUE_LEN {
            return Err(StoreError::Invalid(format!(
                "custom_metadata value of key {key:?} is longer than \
                 {MAX_CUSTOM_METADATA_VALUE_LEN} bytes"
            )));
        }
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "custom_metadata key {key:?} or its value contains a control character"
            )));
        }
    }
    Ok(())
}

/// Reads a secret's metadata and versions; see [`crate::SecretStore::read_metadata`].
pub(super) async fn read_metadata(
    store: &SqliteStore,
    path: &SecretPath,
) -> Result<SecretMeta, StoreError> {
    let mut tx = store.reader.begin().await.map_err(backend_error)?;

    let secret = sqlx::query(
        "SELECT created_time, updated_time, current_version, max_versions, cas_required,
                delete_version_after_secs, custom_metadata
         FROM secrets WHERE path = ?",
    )
    .bind(path.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend_error)?
    .ok_or(StoreError::NotFound)?;

    let rows = sqlx::query(
        "SELECT version, created_time, deletion_time, destroyed, stage, created_by,
                grace_deadline
         FROM secret_versions WHERE path = ? ORDER BY version",
    )
    .bind(path.as_str())
    .fetch_all(&mut *tx)
    .await
    .map_err(backend_error)?;
    tx.commit().await.map_err(backend_error)?;

    let mut versions = BTreeMap::new();
    for row in &rows {
        let meta = version_meta_from_row(row)?;
        versions.insert(meta.version, meta);
    }

    let max_versions: i64 = secret.try_get("max_versions").map_err(backend_error)?;
    let custom_metadata: String = secret.try_get("custom_metadata").map_err(backend_error)?;
    Ok(SecretMeta {
        created_time: nanos_to_time(secret.try_get("created_time").map_err(backend_error)?)?,
        updated_time: nanos_to_time(secret.try_get("updated_time").map_err(backend_error)?)?,
        current_version: from_column(
            secret.try_get("current_version").map_err(backend_error)?,
            "version",
        )?,
        // Vault reports 0 until pruning has removed version 1.
        oldest_version: match versions.keys().next() {
            Some(1) | None => 0,
            Some(oldest) => *oldest,
        },
        max_versions: u32::try_from(max_versions).map_err(|_| {
            StoreError::Corrupt(format!(
                "stored max_versions {max_versions} is out of range"
            ))
        })?,
        cas_required: secret.try_get("cas_required").map_err(backend_error)?,
        delete_version_after_secs: from_column(
            secret
                .try_get("delete_version_after_secs")
                .map_err(backend_error)?,
            "delete_version_after",
        )?,
        custom_metadata: json_to_map(&custom_metadata, "custom metadata")?,
        versions,
    })
}

/// Creates or changes a secret's metadata; see [`crate::SecretStore::write_metadata`].
///
/// A lower `max_versions` takes effect at the next write, which prunes, as in Vault.
pub(super) async fn write_metadata(
    store: &SqliteStore,
    path: &SecretPath,
    update: MetadataUpdate,
) -> Result<(), StoreError> {
    validate_update(&update)?;
    let delete_after = update
        .delete_version_after_secs
        .map(|secs| to_column(secs, "delete_version_after"))
        .transpose()?;
    let custom_metadata = update.custom_metadata.as_ref().map(map_to_json);

    let mut tx = begin_write(store).await?;
    let now_nanos = time_to_nanos(OffsetDateTime::now_utc())?;

    // Vault accepts metadata before any data, so a missing secret row is created with defaults
    // first, then every field the update names is set.
    sqlx::query(
        "INSERT INTO secrets (path, created_time, updated_time) VALUES (?1, ?2, ?2)
         ON CONFLICT (path) DO NOTHING",
    )
    .bind(path.as_str())
    .bind(now_nanos)
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;

    sqlx::query(
        "UPDATE secrets SET
            max_versions = COALESCE(?1, max_versions),
            cas_required = COALESCE(?2, cas_required),
            delete_version_after_secs = COALESCE(?3, delete_version_after_secs),
            custom_metadata = COALESCE(?4, custom_metadata),
            updated_time = ?5
         WHERE path = ?6",
    )
    .bind(update.max_versions.map(i64::from))
    .bind(update.cas_required)
    .bind(delete_after)
    .bind(custom_metadata)
    .bind(now_nanos)
    .bind(path.as_str())
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)
}

/// Removes a secret and all its versions; see [`crate::SecretStore::delete_metadata`]. A missing
/// secret is not an error, because Vault returns 204 for it too.
pub(super) async fn delete_metadata(
    store: &SqliteStore,
    path: &SecretPath,
) -> Result<(), StoreError> {
    let mut tx = begin_write(store).await?;

    // Versions go first explicitly, so removal does not depend on ON DELETE CASCADE.
    sqlx::query("DELETE FROM secret_versions WHERE path = ?")
        .bind(path.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    sqlx::query("DELETE FROM secrets WHERE path = ?")
        .bind(path.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)
}

/// Returns the smallest string greater than every string that starts with `prefix`, or `None`
/// for the empty prefix (no upper bound). Paths are ASCII, so incrementing the last byte works.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    let last = bytes.pop()?;
    bytes.push(last.checked_add(1)?);
    String::from_utf8(bytes).ok()
}

/// Returns the listing entry that `path` contributes under `prefix`: its next segment, with a
/// trailing `/` when the path continues below it.
fn child_entry<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    match rest.find('/') {
        Some(slash) => Some(&rest[..=slash]),
        None if rest.is_empty() => None,
        None => Some(rest),
    }
}

/// Lists the names directly under a folder; see [`crate::SecretStore::list`].
pub(super) async fn list(
    store: &SqliteStore,
    folder: &FolderPath,
) -> Result<Vec<String>, StoreError> {
    let prefix = folder.as_prefix();

    // A range on the primary key instead of LIKE: '_' and '%' are valid in paths and would be
    // LIKE wildcards, and the range uses the index.
    let rows = match prefix_upper_bound(prefix) {
        Some(upper) => {
            sqlx::query("SELECT path FROM secrets WHERE path >= ? AND path < ? ORDER BY path")
                .bind(prefix)
                .bind(upper)
                .fetch_all(&store.reader)
                .await
        }
        None => {
            sqlx::query("SELECT path FROM secrets ORDER BY path")
                .fetch_all(&store.reader)
                .await
        }
    }
    .map_err(backend_error)?;

    let mut entries = BTreeSet::new();
    for row in &rows {
        let path: &str = row.try_get("path").map_err(backend_error)?;
        if let Some(entry) = child_entry(prefix, path) {
            entries.insert(entry.to_owned());
        }
    }
    Ok(entries.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bound_increments_last_byte() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("team/").as_deref(), Some("team0"));
        assert_eq!(prefix_upper_bound("a_b/").as_deref(), Some("a_b0"));
    }

    #[test]
    fn child_entry_takes_next_segment() {
        assert_eq!(child_entry("", "db"), Some("db"));
        assert_eq!(child_entry("", "team/db"), Some("team/"));
        assert_eq!(child_entry("team/", "team/db"), Some("db"));
        assert_eq!(child_entry("team/", "team/svc/db"), Some("svc/"));
        assert_eq!(child_entry("team/", "teams/db"), None);
        assert_eq!(child_entry("team/", "team/"), None);
    }

    #[test]
    fn max_versions_above_limit_is_invalid() {
        let ok = MetadataUpdate {
            max_versions: Some(MAX_VERSIONS_LIMIT),
            ..Default::default()
        };
        assert!(validate_update(&ok).is_ok());
        let too_many = MetadataUpdate {
            max_versions: Some(MAX_VERSIONS_LIMIT + 1),
            ..Default::default()
        };
        assert!(matches!(
            validate_update(&too_many),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn delete_version_after_above_limit_is_invalid() {
        let update = MetadataUpdate {
            delete_version_after_secs: Some(MAX_DELETE_VERSION_AFTER_SECS + 1),
            ..Default::default()
        };
        assert!(matches!(
            validate_update(&update),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn custom_metadata_limits_are_enforced() {
        let custom = |pairs: Vec<(String, String)>| MetadataUpdate {
            custom_metadata: Some(pairs.into_iter().collect()),
            ..Default::default()
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());

        assert!(validate_update(&custom(vec![pair("owner", "team-a")])).is_ok());

        let too_many = (0..=MAX_CUSTOM_METADATA_KEYS)
            .map(|i| pair(&format!("k{i}"), "v"))
            .collect();
        let long_key = vec![pair(&"k".repeat(MAX_CUSTOM_METADATA_KEY_LEN + 1), "v")];
        let long_value = vec![pair("k", &"v".repeat(MAX_CUSTOM_METADATA_VALUE_LEN + 1))];
        let control = vec![pair("k", "line\nbreak")];
        let empty_key = vec![pair("", "v")];
        for pairs in [too_many, long_key, long_value, control, empty_key] {
            assert!(matches!(
                validate_update(&custom(pairs)),
                Err(StoreError::Invalid(_))
            ));
        }
    }
}
