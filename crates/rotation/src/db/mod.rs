//! The rotation engine's own SQLite tables: schedules with a due-time index and leases, rotation
//! runs (the persisted state machine), per-version provider references and grace deadlines, and
//! notification deliveries.
//!
//! Times are Unix seconds. The database runs in WAL mode with `synchronous=FULL`, so a recorded
//! step survives a power loss. It contains no secret values: only paths, version numbers, provider
//! ids (key ids, role names) and error messages. The secret values live in the secret store
//! behind [`crate::SecretTarget`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;

use crate::events::Step;

/// Errors of the rotation database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite returned an error.
    #[error("rotation database failed: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// A stored row has a value this version of Keyward does not understand.
    #[error(
        "rotation database has an invalid {field} in the row of {path:?}; was it written by a newer Keyward?"
    )]
    Corrupt {
        /// The column.
        field: &'static str,
        /// The secret path of the row.
        path: String,
    },
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS rotation_schedules (
    path TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    anchor INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'idle',
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_rotated_at INTEGER,
    lease_holder TEXT,
    lease_expires INTEGER
);
CREATE INDEX IF NOT EXISTS rotation_schedules_due ON rotation_schedules (due_at);

CREATE TABLE IF NOT EXISTS rotation_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    emergency INTEGER NOT NULL,
    step TEXT NOT NULL,
    step_done INTEGER NOT NULL,
    outcome TEXT,
    previous_version INTEGER,
    pending_version INTEGER,
    pending_ref TEXT,
    last_error TEXT,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rotation_runs_active ON rotation_runs (path) WHERE outcome IS NULL;
CREATE INDEX IF NOT EXISTS rotation_runs_path ON rotation_runs (path, id);

CREATE TABLE IF NOT EXISTS rotation_versions (
    path TEXT NOT NULL,
    version INTEGER NOT NULL,
    provider_ref TEXT,
    revoke_at INTEGER,
    revoked_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (path, version)
);
CREATE INDEX IF NOT EXISTS rotation_versions_revoke ON rotation_versions (revoke_at) WHERE revoked_at IS NULL;

CREATE TABLE IF NOT EXISTS rotation_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
"#;

/// A schedule row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRow {
    /// The secret's path.
    pub path: String,
    /// The policy, as JSON.
    pub policy_json: String,
    /// The instant named schedules count from.
    pub anchor: OffsetDateTime,
    /// When the scheduler next acts on this secret: the next rotation or retry.
    pub due_at: OffsetDateTime,
    /// `idle`, `running` or `failed`.
    pub status: String,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last rotation finished.
    pub last_rotated_at: Option<OffsetDateTime>,
}

/// A rotation run: one pass through the four steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    /// The run's id.
    pub id: i64,
    /// The secret's path.
    pub path: String,
    /// Whether this is an emergency rotation (zero grace, immediate revocation).
    pub emergency: bool,
    /// The step last recorded.
    pub step: Step,
    /// Whether that step finished (`false`: started, maybe interrupted).
    pub step_done: bool,
    /// `finished`, `rolled_back`, or `None` while the run is active.
    pub outcome: Option<String>,
    /// The version that was current when the run started.
    pub previous_version: Option<u64>,
    /// The pending version, once written.
    pub pending_version: Option<u64>,
    /// The provider's id for the pending credential, once known.
    pub pending_ref: Option<String>,
    /// The last error of this run.
    pub last_error: Option<String>,
    /// When the run started.
    pub started_at: OffsetDateTime,
}

/// A version waiting for revocation after its grace period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRow {
    /// The version.
    pub version: u64,
    /// The provider's id for its credential.
    pub provider_ref: Option<String>,
    /// When it is to be revoked.
    pub revoke_at: OffsetDateTime,
    /// Failed revocation attempts so far.
    pub attempts: u32,
}

/// A notification delivery record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The delivery's id.
    pub id: i64,
    /// The secret's path.
    pub path: String,
    /// The webhook URL.
    pub url: String,
    /// The event name, e.g. `finished`.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// The facts [`RotationDb::complete_finish`] records in one transaction.
#[derive(Clone, Debug)]
pub struct FinishRecord<'a> {
    /// The run.
    pub run_id: i64,
    /// The secret's path.
    pub path: &'a str,
    /// The new current version.
    pub version: u64,
    /// The provider's id for the new credential.
    pub provider_ref: Option<&'a str>,
    /// The replaced version and its revocation time.
    pub previous: Option<(u64, OffsetDateTime)>,
    /// When the secret is next due.
    pub next_due: OffsetDateTime,
    /// Now.
    pub now: OffsetDateTime,
}

/// The rotation engine's database.
#[derive(Clone, Debug)]
pub struct RotationDb {
    pool: SqlitePool,
}

fn ts(instant: OffsetDateTime) -> i64 {
    instant.unix_timestamp()
}

fn from_ts(seconds: i64, field: &'static str, path: &str) -> Result<OffsetDateTime, DbError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| DbError::Corrupt {
        field,
        path: path.to_owned(),
    })
}

fn to_u64(value: Option<i64>) -> Option<u64> {
    value.and_then(|value| u64::try_from(value).ok())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl RotationDb {
    /// Opens (creating if missing) the SQLite database at `path` and creates the engine's tables.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(StdDuration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates or replaces the schedule of `path`. An existing row keeps its lease, failures
    /// and last rotation time; its due time changes unless a rotation is in progress.
    pub async fn upsert_schedule(
        &self,
        path: &str,
        policy_json: &str,
        anchor: OffsetDateTime,
        due_at: OffsetDateTime,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO rotation_schedules (path, policy, anchor, due_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (path) DO UPDATE SET policy = ?2, anchor = ?3,
               due_at = CASE WHEN EXISTS (SELECT 1 FROM rotation_runs r WHERE r.path = ?1 AND r.outcome IS NULL)
                        THEN due_at ELSE ?4 END",
        )
        .bind(path)
        .bind(policy_json)
        .bind(ts(anchor))
        .bind(ts(due_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the schedule of `path`; returns whether there was one. Pending revocations stay.
    pub async fn delete_schedule(&self, path: &str) -> Result<bool, DbError> {
        let result = sqlx::query("DELETE FROM rotation_schedules WHERE path = ?1")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Returns the schedule of `path`.
    pub async fn schedule(&self, path: &str) -> Result<Option<ScheduleRow>, DbError> {
        let row = sqlx::query(
            "SELECT path, policy, anchor, due_at, status, failures, last_error, last_rotated_at
             FROM rotation_schedules WHERE path = ?1",
        )
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let path: String = row.try_get("path")?;
        Ok(Some(ScheduleRow {
            policy_json: row.try_get("policy")?,
            anchor: from_ts(row.try_get("anchor")?, "anchor", &path)?,
            due_at: from_ts(row.try_get("due_at")?, "due_at", &path)?,
            status: row.try_get("status")?,
            failures: u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
            last_error: row.try_get("last_error")?,
            last_rotated_at: row
                .try_get::<Option<i64>, _>("last_rotated_at")?
                .map(|at| from_ts(at, "last_rotated_at", &path))
                .transpose()?,
            path,
        }))
    }

    /// Returns up to `limit` paths with a rotation, retry or revocation due at `now`, earliest
    /// first, skipping paths leased by a live holder. Both lookups use an index on the due time.
    /// Revocations of a path whose policy was removed wait until a policy is set again, because
    /// the policy names the rotator that revokes.
    pub async fn due_paths(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT path FROM (
                SELECT path, due_at AS at FROM rotation_schedules
                WHERE due_at <= ?1 AND (lease_expires IS NULL OR lease_expires <= ?1)
                UNION ALL
                SELECT v.path, v.revoke_at AS at FROM rotation_versions v
                JOIN rotation_schedules s ON s.path = v.path
                WHERE v.revoke_at <= ?1 AND v.revoked_at IS NULL
                  AND (s.lease_expires IS NULL OR s.lease_expires <= ?1)
             ) GROUP BY path ORDER BY MIN(at) LIMIT ?2",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get("path").map_err(DbError::from))
            .collect()
    }

    /// Takes the lease on `path` for `holder` until `until`, if no other holder has a live one.
    /// Returns whether `holder` now has it.
    pub async fn try_lease(
        &self,
        path: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, DbError> {
        let result = sqlx::query(
            "UPDATE rotation_schedules SET lease_holder = ?2, lease_expires = ?4
             WHERE path = ?1 AND (lease_holder IS NULL OR lease_holder = ?2 OR lease_expires <= ?3)",
        )
        .bind(path)
        .bind(holder)
        .bind(ts(now))
        .bind(ts(until))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Extends a lease that `holder` still holds; returns `false` if it was lost.
    pub async fn renew_lease(
        &self,
        path: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, DbError> {
        let result = sqlx::query(
            "UPDATE rotation_schedules SET lease_expires = ?4
             WHERE path = ?1 AND lease_holder = ?2 AND lease_expires > ?3",
        )
        .bind(path)
        .bind(holder)
        .bind(ts(now))
        .bind(ts(until))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives up `holder`'s lease on `path`.
    pub async fn release_lease(&self, path: &str, holder: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rotation_schedules SET lease_holder = NULL, lease_expires = NULL
             WHERE path = ?1 AND lease_holder = ?2",
        )
        .bind(path)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the schedule's due time, status, failure count and last error.
    pub async fn set_schedule_state(
        &self,
        path: &str,
        due_at: OffsetDateTime,
        status: &str,
        failures: u32,
        last_error: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rotation_schedules SET due_at = ?2, status = ?3, failures = ?4, last_error = ?5
             WHERE path = ?1",
        )
        .bind(path)
        .bind(ts(due_at))
        .bind(status)
        .bind(i64::from(failures))
        .bind(last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Returns the query plan SQLite uses to find due paths; tests check it uses the indexes.
    pub async fn explain_due_paths(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT path FROM (
                SELECT path, due_at AS at FROM rotation_schedules
                WHERE due_at <= ?1 AND (lease_expires IS NULL OR lease_expires <= ?1)
                UNION ALL
                SELECT v.path, v.revoke_at AS at FROM rotation_versions v
                JOIN rotation_schedules s ON s.path = v.path
                WHERE v.revoke_at <= ?1 AND v.revoked_at IS NULL
                  AND (s.lease_expires IS NULL OR s.lease_expires <= ?1)
             ) GROUP BY path ORDER BY MIN(at) LIMIT ?2",
        )
        .bind(0_i64)
        .bind(10_i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("detail").map_err(DbError::from))
            .collect()
    }
}

mod runs;
mod versions;
