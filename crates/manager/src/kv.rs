//! Key/value secret operations, with Vault KV v2's paths and permission model on mount
//! `secret/`.
//!
//! Permissions are checked against the API path a Vault client would use, so existing Vault
//! policies such as `path "secret/data/app/*" { capabilities = ["read"] }` mean the same here.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use keyward_store::{
    FolderPath, MetadataUpdate, NewVersion, SecretData, SecretMeta, SecretPath, Stage, StoreError,
    VersionMeta,
};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::SecurityEvent;
use crate::manager::{Caller, Operation, RequestContext};
use crate::policy::Capability;
use crate::{ManagerError, SecretsManager};

/// The KV v2 mount's path.
pub const KV_MOUNT: &str = "secret";

/// How often a patch without `cas` tries to write when concurrent writes keep changing the
/// secret under it. Each round of competing writes lets at least one through, so this covers
/// bursts of about this many concurrent patches to one secret.
const PATCH_ATTEMPTS: u32 = 50;

/// Maximum pause between two patch attempts. The pause grows by 1 ms per failed attempt up to
/// this and is randomised, so competing patches stop retrying in lockstep.
const MAX_PATCH_BACKOFF: Duration = Duration::from_millis(20);

/// One version as read: metadata, and the data unless the version is deleted, destroyed or
/// revoked.
#[derive(Debug)]
pub struct KvRead {
    /// The version's metadata.
    pub meta: VersionMeta,
    /// The secret's custom metadata.
    pub custom_metadata: BTreeMap<String, String>,
    /// The data, if the version is readable.
    pub data: Option<SecretData>,
    /// The read's source: the backend (or a cache entry within its TTL), a stale
    /// cache entry, or the environment fallback.
    pub freshness: Freshness,
}

/// The source and age of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// From the backend, or from a cache entry within its TTL.
    Fresh,
    /// From the cache while the backend fails: the value as of the last successful sync.
    Stale {
        /// The secret's last successful sync with the backend.
        last_sync: OffsetDateTime,
    },
    /// From the environment-variable fallback, while both the backend and the cache fail.
    EnvFallback,
}

impl Freshness {
    /// Returns the name used in audit entries: `fresh`, `stale` or `env_fallback`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale { .. } => "stale",
            Freshness::EnvFallback => "env_fallback",
        }
    }

    /// Returns the last successful sync of a stale read.
    pub fn last_sync(&self) -> Option<OffsetDateTime> {
        match self {
            Freshness::Stale { last_sync } => Some(*last_sync),
            Freshness::Fresh | Freshness::EnvFallback => None,
        }
    }
}

/// Adds a non-fresh read's source and last sync to its audit entry; fresh reads get nothing,
/// so their entries look as they did before the resilience layer.
fn freshness_extra(extra: &mut Map<String, Value>, freshness: &Freshness) {
    if *freshness == Freshness::Fresh {
        return;
    }
    extra.insert("freshness".into(), json!(freshness.as_str()));
    if let Some(last_sync) = freshness.last_sync()
        && let Ok(formatted) = last_sync.format(&Rfc3339)
    {
        extra.insert("last_sync".into(), json!(formatted));
    }
}

impl SecretsManager {
    /// Returns whether the caller's policies grant `read` on a secret's data, without an audit
    /// entry or a security event: for deciding which events a caller may receive, such as a change
    /// notification, not for serving the secret itself.
    pub fn may_read(&self, caller: &Caller, path: &SecretPath) -> bool {
        self.may(caller, path, Capability::Read)
    }

    /// Returns whether the caller's policies grant `capability` on a secret's data, without an
    /// audit entry or a security event: for checks that add to an operation's own audited
    /// permission check.
    pub fn may(&self, caller: &Caller, path: &SecretPath, capability: Capability) -> bool {
        caller.policies.allows_any(&data_path(path), &[capability])
    }
}

fn data_path(path: &SecretPath) -> String {
    format!("{KV_MOUNT}/data/{path}")
}

fn metadata_path(path: &SecretPath) -> String {
    format!("{KV_MOUNT}/metadata/{path}")
}

fn version_extra(version: Option<u64>) -> Map<String, Value> {
    let mut extra = Map::new();
    if let Some(version) = version {
        extra.insert("version".into(), json!(version));
    }
    extra
}

impl SecretsManager {
    /// Reads a version of a secret (the current one when `version` is `None`).
    pub async fn kv_read(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<KvRead, ManagerError> {
        let op = self.operation(caller, ctx, "kv.read", data_path(path));
        let result = async {
            self.require(caller, &op.path, &[Capability::Read])?;
            if let Some(layer) = &self.resilience {
                return self.read_resilient(layer, path, version).await;
            }
            let read = self.store.get(path, version).await?;
            // A pending version belongs to a rotation that has not finished: only the engine
            // reads it, through `rotation_read`.
            let data = read.data.filter(|_| read.meta.stage != Stage::Pending);
            Ok(KvRead {
                meta: read.meta,
                custom_metadata: read.custom_metadata,
                data,
                freshness: Freshness::Fresh,
            })
        }
        .await;

        let read_version = result.as_ref().ok().map(|r| r.meta.version);
        let mut extra = version_extra(read_version);
        if let Ok(read) = &result {
            freshness_extra(&mut extra, &read.freshness);
        }
        self.audit_response(&op, &result, extra).await?;
        if let (Ok(read), Some(version)) = (&result, read_version)
            && read.data.is_some()
        {
            self.events.publish(SecurityEvent::SecretRead {
                accessor: caller.accessor().to_owned(),
                path: path.to_string(),
                version,
            });
        }
        result
    }

    /// Writes a new version. `cas` is Vault's check-and-set: 0 means "only if new", N means
    /// "only if the current version is N".
    pub async fn kv_write(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        data: SecretData,
        cas: Option<u64>,
    ) -> Result<VersionMeta, ManagerError> {
        let op = self.operation(caller, ctx, "kv.write", data_path(path));
        if let Err(error) = self.require_create_or_update(caller, &op.path, path).await {
            return self
                .finish_write(&op, caller, path, "write", Err(error))
                .await;
        }
        self.audit_request(&op).await?;

        let result = self
            .store
            .put(
                path,
                NewVersion {
                    data,
                    cas,
                    created_by: caller.accessor().to_owned(),
                },
                self.config.default_max_versions,
            )
            .await
            .map_err(ManagerError::from);
        self.finish_write(&op, caller, path, "write", result).await
    }

    /// Applies a JSON merge patch (RFC 7396) to the current version and writes the result as a
    /// new version.
    pub async fn kv_patch(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        patch: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionMeta, ManagerError> {
        let op = self.operation(caller, ctx, "kv.patch", data_path(path));
        if let Err(error) = self.require(caller, &op.path, &[Capability::Patch]) {
            return self
                .finish_write(&op, caller, path, "patch", Err(error))
                .await;
        }
        self.audit_request(&op).await?;

        let result = self.apply_patch(caller, path, &patch, cas).await;
        self.finish_write(&op, caller, path, "patch", result).await
    }

    async fn apply_patch(
        &self,
        caller: &Caller,
        path: &SecretPath,
        patch: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionMeta, ManagerError> {
        for attempt in 1..=PATCH_ATTEMPTS {
            if attempt > 1 {
                patch_backoff(attempt).await;
            }
            let current = self.store.get(path, None).await?;
            let Some(data) = current.data else {
                // Vault returns 404 when the current version is deleted or destroyed.
                return Err(ManagerError::NotFound);
            };
            if cas.is_some_and(|cas| cas != current.meta.version) {
                return Err(ManagerError::CasMismatch);
            }

            let mut merged = Value::Object(data.expose_map());
            merge_patch(&mut merged, &Value::Object(patch.clone()));
            let Value::Object(merged) = merged else {
                return Err(ManagerError::Invalid("patch must be a JSON object".into()));
            };

            let write = self
                .store
                .put(
                    path,
                    NewVersion {
                        data: SecretData::from_map(&merged),
                        cas: Some(current.meta.version),
                        created_by: caller.accessor().to_owned(),
                    },
                    self.config.default_max_versions,
                )
                .await;
            match write {
                // Someone wrote in between: read again unless the caller pinned a version.
                Err(StoreError::CasMismatch) if cas.is_none() => continue,
                other => return other.map_err(ManagerError::from),
            }
        }
        Err(ManagerError::CasMismatch)
    }

    /// Soft-deletes versions; an empty list deletes the current version (`DELETE
    /// secret/data/P`), a non-empty one is `secret/delete/P`.
    pub async fn kv_delete(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), ManagerError> {
        let (api_path, capability) = if versions.is_empty() {
            (data_path(path), Capability::Delete)
        } else {
            (format!("{KV_MOUNT}/delete/{path}"), Capability::Update)
        };
        let op = self.operation(caller, ctx, "kv.delete", api_path);
        self.versions_operation(&op, caller, path, versions, capability, "delete")
            .await
    }

    /// Restores soft-deleted versions.
    pub async fn kv_undelete(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "kv.undelete",
            format!("{KV_MOUNT}/undelete/{path}"),
        );
        self.versions_operation(&op, caller, path, versions, Capability::Update, "undelete")
            .await
    }

    /// Erases versions' data for good.
    pub async fn kv_destroy(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "kv.destroy",
            format!("{KV_MOUNT}/destroy/{path}"),
        );
        self.versions_operation(&op, caller, path, versions, Capability::Update, "destroy")
            .await
    }

    async fn versions_operation(
        &self,
        op: &Operation<'_>,
        caller: &Caller,
        path: &SecretPath,
        versions: &[u64],
        capability: Capability,
        kind: &'static str,
    ) -> Result<(), ManagerError> {
        if let Err(error) = self.require(caller, &op.path, &[capability]) {
            return self.finish_write(op, caller, path, kind, Err(error)).await;
        }
        if kind != "delete" && versions.is_empty() {
            let error = ManagerError::Invalid("no versions provided".into());
            return self.finish_write(op, caller, path, kind, Err(error)).await;
        }
        self.audit_request(op).await?;

        let result = match kind {
            "delete" => self.store.delete_versions(path, versions).await,
            "undelete" => self.store.undelete_versions(path, versions).await,
            _ => self.store.destroy_versions(path, versions).await,
        }
        .map_err(ManagerError::from);
        self.finish_write(op, caller, path, kind, result).await
    }

    /// Reads a secret's metadata and version list.
    pub async fn kv_read_metadata(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
    ) -> Result<SecretMeta, ManagerError> {
        let op = self.operation(caller, ctx, "kv.metadata.read", metadata_path(path));
        let result = async {
            self.require(caller, &op.path, &[Capability::Read])?;
            Ok(self.store.read_metadata(path).await?)
        }
        .await;
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Creates or changes a secret's metadata.
    pub async fn kv_write_metadata(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        update: MetadataUpdate,
    ) -> Result<(), ManagerError> {
        let op = self.operation(caller, ctx, "kv.metadata.write", metadata_path(path));
        if let Err(error) = self.require_metadata_write(caller, &op.path, path).await {
            return self
                .finish_write(&op, caller, path, "metadata_write", Err(error))
                .await;
        }
        self.audit_request(&op).await?;

        let result = self
            .store
            .write_metadata(path, update)
            .await
            .map_err(ManagerError::from);
        self.finish_write(&op, caller, path, "metadata_write", result)
            .await
    }

    /// Deletes a secret with all its versions and metadata.
    pub async fn kv_delete_metadata(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
    ) -> Result<(), ManagerError> {
        let op = self.operation(caller, ctx, "kv.metadata.delete", metadata_path(path));
        if let Err(error) = self.require(caller, &op.path, &[Capability::Delete]) {
            return self
                .finish_write(&op, caller, path, "metadata_delete", Err(error))
                .await;
        }
        self.audit_request(&op).await?;

        let result = self
            .store
            .delete_metadata(path)
            .await
            .map_err(ManagerError::from);
        self.finish_write(&op, caller, path, "metadata_delete", result)
            .await
    }

    /// Lists the names under a folder; an empty folder is `NotFound`, as in Vault.
    pub async fn kv_list(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        folder: &FolderPath,
    ) -> Result<Vec<String>, ManagerError> {
        let api_path = format!("{KV_MOUNT}/metadata/{}", folder.as_prefix());
        let op = self.operation(caller, ctx, "kv.list", api_path);
        let result = async {
            self.require(caller, &op.path, &[Capability::List])?;
            let keys = self.store.list(folder).await?;
            if keys.is_empty() {
                return Err(ManagerError::NotFound);
            }
            Ok(keys)
        }
        .await;
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Whether the caller may see that the KV mount serves `path` (for
    /// `sys/internal/ui/mounts/<path>`).
    pub async fn mount_visible(&self, caller: &Caller, path: &str) -> bool {
        let in_mount = path == KV_MOUNT || path.starts_with(&format!("{KV_MOUNT}/"));
        in_mount
            && caller
                .policies
                .grants_anything_under(&format!("{KV_MOUNT}/"))
    }

    pub(crate) fn operation<'a>(
        &self,
        caller: &'a Caller,
        ctx: &'a RequestContext,
        name: &'static str,
        path: String,
    ) -> Operation<'a> {
        Operation {
            ctx,
            accessor: caller.accessor(),
            name,
            path,
        }
    }

    /// Requires `create` on a new path and `update` on an existing one, as Vault does. The
    /// secret is looked up only when the caller has just one of the two.
    async fn require_create_or_update(
        &self,
        caller: &Caller,
        api_path: &str,
        path: &SecretPath,
    ) -> Result<(), ManagerError> {
        let granted = caller.policies.capabilities(api_path);
        let admin = granted.contains(&Capability::Admin);
        let create = admin || granted.contains(&Capability::Create);
        let update = admin || granted.contains(&Capability::Update);
        if create && update {
            return Ok(());
        }
        if !create && !update {
            return self.require(caller, api_path, &[Capability::Create]);
        }

        let exists = match self.store.read_metadata(path).await {
            Ok(meta) => meta.current_version > 0,
            Err(StoreError::NotFound) => false,
            Err(other) => return Err(other.into()),
        };
        let needed = if exists {
            Capability::Update
        } else {
            Capability::Create
        };
        self.require(caller, api_path, &[needed])
    }

    async fn require_metadata_write(
        &self,
        caller: &Caller,
        api_path: &str,
        path: &SecretPath,
    ) -> Result<(), ManagerError> {
        self.require_create_or_update(caller, api_path, path).await
    }

    async fn finish_write<T>(
        &self,
        op: &Operation<'_>,
        caller: &Caller,
        path: &SecretPath,
        kind: &'static str,
        result: Result<T, ManagerError>,
    ) -> Result<T, ManagerError>
    where
        T: WrittenVersion,
    {
        let version = result.as_ref().ok().and_then(WrittenVersion::version);
        self.invalidate_after_write(path, &result).await;
        // A change that succeeded has its `request` entry and its store commit on disk, so
        // its `response` entry is synced with the next batch instead of being waited for. A
        // denied or failed one may have no durable entry yet, so it waits.
        if result.is_ok() {
            self.queue_audit_response(op, &result, version_extra(version))?;
        } else {
            self.audit_response(op, &result, version_extra(version))
                .await?;
        }
        if result.is_ok() {
            self.events.publish(SecurityEvent::SecretWritten {
                accessor: caller.accessor().to_owned(),
                path: path.to_string(),
                operation: kind,
                version,
            });
            if version.is_some() {
                self.check_encryption_budget(op.ctx).await;
            }
        }
        result
    }
}

/// Sleeps a random time of up to `attempt` milliseconds, and never more than
/// [`MAX_PATCH_BACKOFF`], before another patch attempt.
async fn patch_backoff(attempt: u32) {
    let ceiling = MAX_PATCH_BACKOFF.min(Duration::from_millis(u64::from(attempt)));
    let ceiling_micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    // Jitter only needs to differ between tasks, not to be unpredictable: a freshly keyed
    // SipHash of the attempt number is enough.
    let jitter = RandomState::new().hash_one(attempt) % ceiling_micros.saturating_add(1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// Results that name the version they wrote, for audit entries and events.
trait WrittenVersion {
    fn version(&self) -> Option<u64>;
}

impl WrittenVersion for VersionMeta {
    fn version(&self) -> Option<u64> {
        Some(self.version)
    }
}

impl WrittenVersion for () {
    fn version(&self) -> Option<u64> {
        None
    }
}

/// Applies an RFC 7396 JSON merge patch: objects merge key by key, `null` removes a key, any
/// other value replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7396_examples() {
        // Cases from RFC 7396, appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }
}
