//! Queries of rotation runs: the persisted state machine.

use sqlx::Row;
use time::OffsetDateTime;

use super::{DbError, FinishRecord, RotationDb, RunRow, from_ts, to_i64, to_u64, ts};
use crate::events::Step;

impl RotationDb {
    /// Returns the active (unfinished) run of `path`.
    pub async fn active_run(&self, path: &str) -> Result<Option<RunRow>, DbError> {
        let row = sqlx::query("SELECT * FROM rotation_runs WHERE path = ?1 AND outcome IS NULL")
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row)).transpose()
    }

    /// Returns the most recent runs of `path`, newest first.
    pub async fn runs(&self, path: &str, limit: u32) -> Result<Vec<RunRow>, DbError> {
        let rows =
            sqlx::query("SELECT * FROM rotation_runs WHERE path = ?1 ORDER BY id DESC LIMIT ?2")
                .bind(path)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Records a new run at step `create`, started, and marks the schedule running and due now,
    /// so that another process resumes it promptly if this one dies.
    pub async fn start_run(
        &self,
        path: &str,
        emergency: bool,
        previous_version: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<RunRow, DbError> {
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query(
            "INSERT INTO rotation_runs (path, emergency, step, step_done, previous_version, started_at, updated_at)
             VALUES (?1, ?2, 'create', 0, ?3, ?4, ?4)",
        )
        .bind(path)
        .bind(emergency)
        .bind(previous_version.map(to_i64))
        .bind(ts(now))
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        sqlx::query("UPDATE rotation_schedules SET status = 'running', due_at = MIN(due_at, ?2) WHERE path = ?1")
            .bind(path)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RunRow {
            id,
            path: path.to_owned(),
            emergency,
            step: Step::Create,
            step_done: false,
            outcome: None,
            previous_version,
            pending_version: None,
            pending_ref: None,
            last_error: None,
            started_at: now,
        })
    }

    /// Records a run's progress. An ended run is left as it is, so a process that lost its
    /// lease cannot rewrite what the new holder concluded.
    pub async fn record_step(&self, run: &RunRow, now: OffsetDateTime) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rotation_runs SET step = ?2, step_done = ?3, pending_version = ?4, pending_ref = ?5,
               last_error = ?6, updated_at = ?7
             WHERE id = ?1 AND outcome IS NULL",
        )
        .bind(run.id)
        .bind(run.step.as_str())
        .bind(run.step_done)
        .bind(run.pending_version.map(to_i64))
        .bind(run.pending_ref.as_deref())
        .bind(run.last_error.as_deref())
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a run with `outcome` (`rolled_back`).
    pub async fn end_run(
        &self,
        run_id: i64,
        outcome: &str,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE rotation_runs SET outcome = ?2, last_error = COALESCE(?3, last_error), updated_at = ?4 WHERE id = ?1")
            .bind(run_id)
            .bind(outcome)
            .bind(error)
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a finished rotation in one transaction: the run's outcome, the new version's
    /// provider reference, the old version's revocation time and the schedule's next due time.
    pub async fn complete_finish(&self, record: &FinishRecord<'_>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE rotation_runs SET step = 'finish', step_done = 1, outcome = 'finished', updated_at = ?2
             WHERE id = ?1",
        )
        .bind(record.run_id)
        .bind(ts(record.now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO rotation_versions (path, version, provider_ref) VALUES (?1, ?2, ?3)
             ON CONFLICT (path, version) DO UPDATE SET provider_ref = COALESCE(?3, provider_ref)",
        )
        .bind(record.path)
        .bind(to_i64(record.version))
        .bind(record.provider_ref)
        .execute(&mut *tx)
        .await?;
        if let Some((previous, revoke_at)) = record.previous {
            sqlx::query(
                "INSERT INTO rotation_versions (path, version, revoke_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (path, version) DO UPDATE SET revoke_at = ?3
                 WHERE revoked_at IS NULL",
            )
            .bind(record.path)
            .bind(to_i64(previous))
            .bind(ts(revoke_at))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE rotation_schedules SET due_at = ?2, status = 'idle', failures = 0, last_error = NULL,
               last_rotated_at = ?3
             WHERE path = ?1",
        )
        .bind(record.path)
        .bind(ts(record.next_due))
        .bind(ts(record.now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<RunRow, DbError> {
    let path: String = row.try_get("path")?;
    let step_text: String = row.try_get("step")?;
    let step = Step::parse(&step_text).ok_or_else(|| DbError::Corrupt {
        field: "step",
        path: path.clone(),
    })?;
    Ok(RunRow {
        id: row.try_get("id")?,
        emergency: row.try_get("emergency")?,
        step,
        step_done: row.try_get("step_done")?,
        outcome: row.try_get("outcome")?,
        previous_version: to_u64(row.try_get("previous_version")?),
        pending_version: to_u64(row.try_get("pending_version")?),
        pending_ref: row.try_get("pending_ref")?,
        last_error: row.try_get("last_error")?,
        started_at: from_ts(row.try_get("started_at")?, "started_at", &path)?,
        path,
    })
}
