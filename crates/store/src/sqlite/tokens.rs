//! Tokens and policies.
//!
//! A token row is keyed by the token's keyed hash and, separately, by its accessor; the token
//! itself never reaches this module. Policies are stored as the operator wrote them and are not
//! parsed here: the manager compiles them.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use super::SqliteStore;
use super::convert::{
    backend_error, from_column, json_to_map, map_to_json, nanos_to_time, optional_time,
    time_to_nanos, to_column,
};
use super::versions::begin_write;
use crate::model::{PolicyRecord, TokenRecord};
use crate::store::StoreError;

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    let policies: String = row.try_get("policies").map_err(backend_error)?;
    let policies = serde_json::from_str(&policies).map_err(|err| {
        StoreError::Corrupt(format!(
            "stored token policies are not a JSON string array: {err}"
        ))
    })?;
    let meta: String = row.try_get("meta").map_err(backend_error)?;

    Ok(TokenRecord {
        token_hash: row.try_get("token_hash").map_err(backend_error)?,
        accessor: row.try_get("accessor").map_err(backend_error)?,
        policies,
        display_name: row.try_get("display_name").map_err(backend_error)?,
        created_time: nanos_to_time(row.try_get("created_time").map_err(backend_error)?)?,
        expire_time: optional_time(row.try_get("expire_time").map_err(backend_error)?)?,
        creation_ttl_secs: from_column(
            row.try_get("creation_ttl_secs").map_err(backend_error)?,
            "creation_ttl",
        )?,
        renewable: row.try_get("renewable").map_err(backend_error)?,
        parent_accessor: row.try_get("parent_accessor").map_err(backend_error)?,
        meta: json_to_map(&meta, "token meta")?,
    })
}

/// Stores a new token; a duplicate hash or accessor is [`StoreError::Invalid`].
pub(super) async fn create_token(
    store: &SqliteStore,
    token: &TokenRecord,
) -> Result<(), StoreError> {
    // A Vec of strings always serialises.
    let policies = serde_json::to_string(&token.policies).unwrap_or_else(|_| "[]".to_owned());
    let expire_time = token.expire_time.map(time_to_nanos).transpose()?;

    let mut tx = begin_write(store).await?;
    let inserted = sqlx::query(
        "INSERT INTO tokens
            (token_hash, accessor, policies, display_name, created_time, expire_time,
             creation_ttl_secs, renewable, parent_accessor, meta)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(token.token_hash.as_str())
    .bind(token.accessor.as_str())
    .bind(policies)
    .bind(token.display_name.as_str())
    .bind(time_to_nanos(token.created_time)?)
    .bind(expire_time)
    .bind(to_column(token.creation_ttl_secs, "creation_ttl")?)
    .bind(token.renewable)
    .bind(token.parent_accessor.as_deref())
    .bind(map_to_json(&token.meta))
    .execute(&mut *tx)
    .await;

    match inserted {
        Ok(_) => tx.commit().await.map_err(backend_error),
        // The message names neither the hash nor the accessor: the caller knows which it sent.
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Err(StoreError::Invalid(
            "a token with the same hash or accessor already exists".to_owned(),
        )),
        Err(err) => Err(backend_error(err)),
    }
}

const TOKEN_COLUMNS_BY_HASH: &str = "SELECT token_hash, accessor, policies, display_name, \
    created_time, expire_time, creation_ttl_secs, renewable, parent_accessor, meta \
    FROM tokens WHERE token_hash = ?";

const TOKEN_COLUMNS_BY_ACCESSOR: &str = "SELECT token_hash, accessor, policies, display_name, \
    created_time, expire_time, creation_ttl_secs, renewable, parent_accessor, meta \
    FROM tokens WHERE accessor = ?";

async fn find_token(
    store: &SqliteStore,
    query: &'static str,
    key: &str,
) -> Result<TokenRecord, StoreError> {
    let row = sqlx::query(query)
        .bind(key)
        .fetch_optional(&store.reader)
        .await
        .map_err(backend_error)?
        .ok_or(StoreError::NotFound)?;
    token_from_row(&row)
}

/// Finds a token by its keyed hash. Expired tokens are returned too: the caller decides.
pub(super) async fn token_by_hash(
    store: &SqliteStore,
    token_hash: &str,
) -> Result<TokenRecord, StoreError> {
    find_token(store, TOKEN_COLUMNS_BY_HASH, token_hash).await
}

/// Finds a token by its accessor.
pub(super) async fn token_by_accessor(
    store: &SqliteStore,
    accessor: &str,
) -> Result<TokenRecord, StoreError> {
    find_token(store, TOKEN_COLUMNS_BY_ACCESSOR, accessor).await
}

/// Sets a token's expiry; an unknown accessor is [`StoreError::NotFound`].
pub(super) async fn set_token_expiry(
    store: &SqliteStore,
    accessor: &str,
    expire_time: Option<OffsetDateTime>,
) -> Result<(), StoreError> {
    let expire_time = expire_time.map(time_to_nanos).transpose()?;

    let mut tx = begin_write(store).await?;
    let updated = sqlx::query("UPDATE tokens SET expire_time = ? WHERE accessor = ?")
        .bind(expire_time)
        .bind(accessor)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await.map_err(backend_error)
}

/// Deletes a token and every token descended from it (its children, their children and so
/// on) in one transaction, and returns how many tokens were deleted. An unknown accessor is
/// [`StoreError::NotFound`], as Vault rejects revoking an unknown accessor.
pub(super) async fn revoke_token(store: &SqliteStore, accessor: &str) -> Result<u64, StoreError> {
    let mut tx = begin_write(store).await?;
    // UNION (not UNION ALL) stops the recursion even if edited rows formed a parent cycle.
    let deleted = sqlx::query(
        "WITH RECURSIVE tree (accessor) AS (
             SELECT accessor FROM tokens WHERE accessor = ?1
             UNION
             SELECT child.accessor FROM tokens AS child
             JOIN tree ON child.parent_accessor = tree.accessor
         )
         DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree)",
    )
    .bind(accessor)
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await.map_err(backend_error)?;
    Ok(deleted.rows_affected())
}

/// Creates or replaces a policy.
pub(super) async fn put_policy(
    store: &SqliteStore,
    policy: &PolicyRecord,
) -> Result<(), StoreError> {
    let mut tx = begin_write(store).await?;
    sqlx::query(
        "INSERT INTO policies (name, text) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET text = excluded.text",
    )
    .bind(policy.name.as_str())
    .bind(policy.text.as_str())
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    tx.commit().await.map_err(backend_error)
}

fn policy_from_row(row: &SqliteRow) -> Result<PolicyRecord, StoreError> {
    Ok(PolicyRecord {
        name: row.try_get("name").map_err(backend_error)?,
        text: row.try_get("text").map_err(backend_error)?,
    })
}

/// Reads a policy; an unknown name is [`StoreError::NotFound`].
pub(super) async fn get_policy(
    store: &SqliteStore,
    name: &str,
) -> Result<PolicyRecord, StoreError> {
    let row = sqlx::query("SELECT name, text FROM policies WHERE name = ?")
        .bind(name)
        .fetch_optional(&store.reader)
        .await
        .map_err(backend_error)?
        .ok_or(StoreError::NotFound)?;
    policy_from_row(&row)
}

/// Reads every policy, sorted by name.
pub(super) async fn all_policies(store: &SqliteStore) -> Result<Vec<PolicyRecord>, StoreError> {
    let rows = sqlx::query("SELECT name, text FROM policies ORDER BY name")
        .fetch_all(&store.reader)
        .await
        .map_err(backend_error)?;
    rows.iter().map(policy_from_row).collect()
}

/// Deletes a policy. A missing policy is not an error, because Vault returns 204 for it too.
pub(super) async fn delete_policy(store: &SqliteStore, name: &str) -> Result<(), StoreError> {
    let mut tx = begin_write(store).await?;
    sqlx::query("DELETE FROM policies WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    tx.commit().await.map_err(backend_error)
}
