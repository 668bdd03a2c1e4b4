//! Queries of per-version provider references, revocations and notification deliveries.

use sqlx::Row;
use time::OffsetDateTime;

use super::{DbError, DeliveryRow, RevocationRow, RotationDb, from_ts, to_i64, to_u64, ts};

impl RotationDb {
    /// Records the provider's id for a version made outside a rotation (the first key an
    /// operator stored by hand, for example), so that its revocation can reach the provider.
    pub async fn set_provider_ref(
        &self,
        path: &str,
        version: u64,
        provider_ref: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO rotation_versions (path, version, provider_ref) VALUES (?1, ?2, ?3)
             ON CONFLICT (path, version) DO UPDATE SET provider_ref = ?3",
        )
        .bind(path)
        .bind(to_i64(version))
        .bind(provider_ref)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Returns the provider's id for a version, if one is recorded.
    pub async fn provider_ref(&self, path: &str, version: u64) -> Result<Option<String>, DbError> {
        let row = sqlx::query(
            "SELECT provider_ref FROM rotation_versions WHERE path = ?1 AND version = ?2",
        )
        .bind(path)
        .bind(to_i64(version))
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row.try_get("provider_ref")?,
            None => None,
        })
    }

    /// Returns the versions of `path` whose revocation is due at `now`.
    pub async fn due_revocations(
        &self,
        path: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<RevocationRow>, DbError> {
        let rows = sqlx::query(
            "SELECT version, provider_ref, revoke_at, attempts FROM rotation_versions
             WHERE path = ?1 AND revoke_at <= ?2 AND revoked_at IS NULL ORDER BY version",
        )
        .bind(path)
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RevocationRow {
                    version: to_u64(row.try_get("version")?).unwrap_or(0),
                    provider_ref: row.try_get("provider_ref")?,
                    revoke_at: from_ts(row.try_get("revoke_at")?, "revoke_at", path)?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Returns the versions of `path` still waiting for revocation, with their deadlines.
    pub async fn pending_revocations(
        &self,
        path: &str,
    ) -> Result<Vec<(u64, OffsetDateTime)>, DbError> {
        let rows = sqlx::query(
            "SELECT version, revoke_at FROM rotation_versions
             WHERE path = ?1 AND revoke_at IS NOT NULL AND revoked_at IS NULL ORDER BY version",
        )
        .bind(path)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    to_u64(row.try_get("version")?).unwrap_or(0),
                    from_ts(row.try_get("revoke_at")?, "revoke_at", path)?,
                ))
            })
            .collect()
    }

    /// Brings every revocation of `path` still waiting for its grace deadline forward to
    /// `now`, for an emergency: a leaked credential makes every older one suspect. Returns how
    /// many versions it moved.
    pub async fn expire_grace(&self, path: &str, now: OffsetDateTime) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE rotation_versions SET revoke_at = ?2
             WHERE path = ?1 AND revoke_at > ?2 AND revoked_at IS NULL",
        )
        .bind(path)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records that a version was revoked.
    pub async fn mark_revoked(
        &self,
        path: &str,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rotation_versions SET revoked_at = ?3, last_error = NULL WHERE path = ?1 AND version = ?2",
        )
        .bind(path)
        .bind(to_i64(version))
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed revocation and when to try again.
    pub async fn revocation_failed(
        &self,
        path: &str,
        version: u64,
        attempts: u32,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rotation_versions SET attempts = ?3, revoke_at = ?4, last_error = ?5
             WHERE path = ?1 AND version = ?2",
        )
        .bind(path)
        .bind(to_i64(version))
        .bind(i64::from(attempts))
        .bind(ts(retry_at))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a notification about to be sent; returns its id.
    pub async fn insert_delivery(
        &self,
        path: &str,
        url: &str,
        event: &str,
        now: OffsetDateTime,
    ) -> Result<i64, DbError> {
        let result = sqlx::query(
            "INSERT INTO rotation_deliveries (path, url, event, status, created_at) VALUES (?1, ?2, ?3, 'pending', ?4)",
        )
        .bind(path)
        .bind(url)
        .bind(event)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(result.last_insert_rowid())
    }

    /// Records the result of a delivery attempt.
    pub async fn update_delivery(
        &self,
        id: i64,
        status: &str,
        attempts: u32,
        error: Option<&str>,
        delivered_at: Option<OffsetDateTime>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rotation_deliveries SET status = ?2, attempts = ?3, last_error = ?4, delivered_at = ?5 WHERE id = ?1",
        )
        .bind(id)
        .bind(status)
        .bind(i64::from(attempts))
        .bind(error)
        .bind(delivered_at.map(ts))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Returns the delivery records of `path`, oldest first.
    pub async fn deliveries(&self, path: &str) -> Result<Vec<DeliveryRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, path, url, event, status, attempts, last_error FROM rotation_deliveries
             WHERE path = ?1 ORDER BY id",
        )
        .bind(path)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliveryRow {
                    id: row.try_get("id")?,
                    path: row.try_get("path")?,
                    url: row.try_get("url")?,
                    event: row.try_get("event")?,
                    status: row.try_get("status")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    last_error: row.try_get("last_error")?,
                })
            })
            .collect()
    }
}
