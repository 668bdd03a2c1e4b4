//! The SQLite schema and its migrations.
//!
//! Migrations are numbered from 1 and applied in order inside one `BEGIN IMMEDIATE`
//! transaction, so a crash mid-migration leaves the previous schema intact. The applied number
//! is kept in `schema_version`. A database written by a newer build is rejected rather than
//! guessed at. This module does not set connection pragmas: the connection options do.

use sqlx::{Row, SqlitePool};

use super::convert::backend_error;
use crate::store::StoreError;

/// The statements of each migration, in order; migration N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&[&str]] = &[
    &[
        // One row per secret: created by its first version or by a metadata write.
        // `current_version` is the highest version ever written; it never goes down while the
        // row exists, so pruned version numbers are not reused.
        "CREATE TABLE secrets (
        path TEXT PRIMARY KEY NOT NULL,
        created_time INTEGER NOT NULL,
        updated_time INTEGER NOT NULL,
        current_version INTEGER NOT NULL DEFAULT 0 CHECK (current_version >= 0),
        max_versions INTEGER NOT NULL DEFAULT 0 CHECK (max_versions >= 0),
        cas_required INTEGER NOT NULL DEFAULT 0 CHECK (cas_required IN (0, 1)),
        delete_version_after_secs INTEGER NOT NULL DEFAULT 0
            CHECK (delete_version_after_secs >= 0),
        custom_metadata TEXT NOT NULL DEFAULT '{}'
    ) STRICT",
        // One row per kept version. The data is AEAD ciphertext bound to (path, version);
        // `key_id` repeats the ciphertext's key id so a key rotation can count and find the
        // records still under an old key. A destroyed version keeps its row without data.
        "CREATE TABLE secret_versions (
        path TEXT NOT NULL REFERENCES secrets (path) ON DELETE CASCADE,
        version INTEGER NOT NULL CHECK (version >= 1),
        created_time INTEGER NOT NULL,
        deletion_time INTEGER,
        destroyed INTEGER NOT NULL DEFAULT 0 CHECK (destroyed IN (0, 1)),
        stage TEXT NOT NULL
            CHECK (stage IN ('current', 'pending', 'previous', 'revoked', 'destroyed')),
        created_by TEXT NOT NULL,
        grace_deadline INTEGER,
        key_id INTEGER,
        ciphertext BLOB,
        PRIMARY KEY (path, version),
        CHECK ((destroyed = 0 AND ciphertext IS NOT NULL AND key_id IS NOT NULL)
            OR (destroyed = 1 AND ciphertext IS NULL AND key_id IS NULL))
    ) STRICT",
        "CREATE INDEX secret_versions_by_key_id ON secret_versions (key_id)",
        // Tokens are stored by keyed hash only. Times are Unix nanoseconds like everywhere else.
        "CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY NOT NULL,
        accessor TEXT NOT NULL UNIQUE,
        policies TEXT NOT NULL,
        display_name TEXT NOT NULL,
        created_time INTEGER NOT NULL,
        expire_time INTEGER,
        creation_ttl_secs INTEGER NOT NULL CHECK (creation_ttl_secs >= 0),
        renewable INTEGER NOT NULL CHECK (renewable IN (0, 1)),
        parent_accessor TEXT,
        meta TEXT NOT NULL
    ) STRICT",
        "CREATE TABLE policies (
        name TEXT PRIMARY KEY NOT NULL,
        text TEXT NOT NULL
    ) STRICT",
    ],
    &[
        // Revoking a token deletes its descendants, found through this index.
        "CREATE INDEX tokens_by_parent ON tokens (parent_accessor)",
        // Earlier builds deleted a revoked token without its children. Revoke those children and
        // their descendants now, as a revocation does from this version on.
        "WITH RECURSIVE orphaned (accessor) AS (
        SELECT accessor FROM tokens
        WHERE parent_accessor IS NOT NULL
          AND parent_accessor NOT IN (SELECT accessor FROM tokens)
        UNION
        SELECT child.accessor FROM tokens AS child
        JOIN orphaned ON child.parent_accessor = orphaned.accessor
    )
    DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM orphaned)",
        // Earlier builds also let a child outlive its parent. Cap each token's expiry at the
        // earliest expiry among its ancestors (NULL means no expiry), as creation does now.
        "WITH RECURSIVE capped (accessor, cap) AS (
        SELECT accessor, expire_time FROM tokens WHERE parent_accessor IS NULL
        UNION
        SELECT child.accessor,
               CASE WHEN capped.cap IS NULL THEN child.expire_time
                    WHEN child.expire_time IS NULL THEN capped.cap
                    ELSE min(child.expire_time, capped.cap) END
        FROM tokens AS child
        JOIN capped ON child.parent_accessor = capped.accessor
    )
    UPDATE tokens
    SET expire_time = (SELECT cap FROM capped WHERE capped.accessor = tokens.accessor)
    WHERE EXISTS (
        SELECT 1 FROM capped
        WHERE capped.accessor = tokens.accessor AND capped.cap IS NOT tokens.expire_time
    )",
    ],
];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the database's schema up to [`SCHEMA_VERSION`] and returns the version it found.
pub(super) async fn migrate(writer: &SqlitePool) -> Result<usize, StoreError> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(backend_error)?;

    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        ) STRICT",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;

    let found: i64 = sqlx::query("SELECT version FROM schema_version WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_error)?
        .map(|row| row.try_get("version"))
        .transpose()
        .map_err(backend_error)?
        .unwrap_or(0);
    let found = usize::try_from(found)
        .map_err(|_| StoreError::Corrupt(format!("stored schema version {found} is negative")))?;

    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {found} is newer than this build supports \
             ({SCHEMA_VERSION}); upgrade keyward"
        )));
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }

    for statements in &MIGRATIONS[found..] {
        for statement in *statements {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
    }

    // SCHEMA_VERSION is the length of a small constant slice.
    let version = i64::try_from(SCHEMA_VERSION).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO schema_version (id, version) VALUES (1, ?)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .bind(version)
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;

    tx.commit().await.map_err(backend_error)?;
    Ok(found)
}
