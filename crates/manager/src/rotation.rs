//! Secret operations for the rotation engine: write a pending version, promote it, discard it,
//! revoke a replaced version, and read any version, each audited under the engine's own
//! identity ([`ROTATION_ACCESSOR`]).
//!
//! The engine runs inside the server without a token, so these methods check no policy: the
//! server checks the `rotate` capability ([`SecretsManager::require_rotate`]) when an operator
//! asks for a rotation, and the engine acts on the policies operators set. This module does not
//! schedule or run rotations; the rotation crate does.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use keyward_store::{NewVersion, SecretData, SecretMeta, SecretPath, VersionMeta, VersionRead};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::events::SecurityEvent;
use crate::manager::{Caller, Operation, RequestContext, base_entry};
use crate::policy::Capability;
use crate::{ManagerError, SecretsManager};

/// The accessor under which the rotation engine's changes are audited and stored as
/// `created_by`. It is not a token: no request can authenticate as it.
pub const ROTATION_ACCESSOR: &str = "rotation-engine";

/// Numbers the engine's operations so that each one's request and response entries share an id.
static NEXT_OPERATION: AtomicU64 = AtomicU64::new(1);

/// Returns the request context of one engine operation. The remote address is unspecified
/// (0.0.0.0) because no connection is involved.
pub fn rotation_context() -> RequestContext {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let sequence = NEXT_OPERATION.fetch_add(1, Ordering::Relaxed);
    RequestContext {
        request_id: format!("rotation-{nanos:x}-{sequence}"),
        remote_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn data_path(path: &SecretPath) -> String {
    format!("{}/data/{path}", crate::KV_MOUNT)
}

fn version_field(version: Option<u64>) -> Map<String, Value> {
    let mut extra = Map::new();
    if let Some(version) = version {
        extra.insert("version".into(), json!(version));
    }
    extra
}

impl SecretsManager {
    /// Checks that `caller` may start or configure rotations of `path`: the `rotate`
    /// capability on the secret's data path (`secret/data/<path>`). A denial publishes a
    /// `PermissionDenied` event.
    pub fn require_rotate(&self, caller: &Caller, path: &SecretPath) -> Result<(), ManagerError> {
        self.require(caller, &data_path(path), &[Capability::Rotate])
    }

    /// Checks that `caller` may give `path` a rotation policy that runs a command on the
    /// server: the `sudo` capability on `sys/rotation/policy/<path>`, on top of `rotate`.
    pub fn require_rotation_command(
        &self,
        caller: &Caller,
        path: &SecretPath,
    ) -> Result<(), ManagerError> {
        self.require(
            caller,
            &format!("sys/rotation/policy/{path}"),
            &[Capability::Sudo],
        )
    }

    /// Runs a rotation request of `caller` (`operation` names it, such as `rotation.rotate`):
    /// checks the `rotate` capability, writes the request entry, runs `action`, then writes the
    /// response entry. `extra` goes into both entries and must hold no secret value.
    pub async fn rotation_request<T, F>(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        operation: &'static str,
        path: &SecretPath,
        extra: Map<String, Value>,
        action: F,
    ) -> Result<T, ManagerError>
    where
        F: Future<Output = Result<T, ManagerError>>,
    {
        let op = Operation {
            ctx,
            accessor: caller.accessor(),
            name: operation,
            path: data_path(path),
        };
        if let Err(error) = self.require_rotate(caller, path) {
            let result = Err(error);
            self.audit_response(&op, &result, extra).await?;
            return result;
        }

        let mut entry = base_entry("request", ctx);
        entry.insert("accessor".into(), json!(op.accessor));
        entry.insert("operation".into(), json!(op.name));
        entry.insert("path".into(), json!(op.path));
        entry.extend(extra.clone());
        self.append_audit(entry).await?;

        let result = action.await;
        self.audit_response(&op, &result, extra).await?;
        result
    }

    /// Records a leaked-secret report: an audit entry and a `KeyCompromised` event. The caller
    /// must hold `rotate` on the path; the emergency rotation itself is the engine's job.
    pub async fn report_compromised(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        path: &SecretPath,
        reason: &str,
    ) -> Result<(), ManagerError> {
        // Leak scanners often quote the leaked value in their reason, so the log keeps only its
        // HMAC under the audit key: equal reasons can be matched, none can be read back.
        let reason_hmac = self.audit.hmac(reason);
        let mut extra = Map::new();
        extra.insert("reason_hmac".into(), json!(reason_hmac));
        self.rotation_request(caller, ctx, "rotation.compromised", path, extra, async {
            Ok(())
        })
        .await?;
        self.events.publish(SecurityEvent::KeyCompromised {
            accessor: caller.accessor().to_owned(),
            path: path.to_string(),
            reason_hmac,
        });
        Ok(())
    }

    /// Writes `data` as a new pending version of `path`; unversioned reads keep returning the
    /// current version. Fails with [`ManagerError::PendingExists`] when one already exists.
    pub async fn rotation_write_pending(
        &self,
        path: &SecretPath,
        data: SecretData,
    ) -> Result<VersionMeta, ManagerError> {
        let ctx = rotation_context();
        let op = self.engine_operation(&ctx, "rotation.write_pending", path);
        self.audit_request(&op).await?;

        let result = self
            .store
            .write_pending(
                path,
                NewVersion {
                    data,
                    cas: None,
                    created_by: ROTATION_ACCESSOR.to_owned(),
                },
            )
            .await
            .map_err(ManagerError::from);
        let version = result.as_ref().ok().map(|meta| meta.version);
        self.finish_engine_write(&op, path, "rotation_pending", version, result)
            .await
    }

    /// Makes pending `version` current; the old current version becomes previous with
    /// `grace_deadline`. Returns the replaced version. Repeating it is harmless.
    pub async fn rotation_promote(
        &self,
        path: &SecretPath,
        version: u64,
        grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, ManagerError> {
        let ctx = rotation_context();
        let op = self.engine_operation(&ctx, "rotation.promote", path);
        self.audit_request(&op).await?;

        let result = self
            .store
            .promote_pending(path, version, grace_deadline)
            .await
            .map_err(ManagerError::from);
        self.finish_engine_write(&op, path, "rotation_promote", Some(version), result)
            .await
    }

    /// Erases pending `version` (a rotation that rolled back). Succeeds if it is already gone.
    pub async fn rotation_discard(
        &self,
        path: &SecretPath,
        version: u64,
    ) -> Result<(), ManagerError> {
        let ctx = rotation_context();
        let op = self.engine_operation(&ctx, "rotation.discard", path);
        self.audit_request(&op).await?;

        let result = self
            .store
            .discard_pending(path, version)
            .await
            .map_err(ManagerError::from);
        self.finish_engine_write(&op, path, "rotation_discard", Some(version), result)
            .await
    }

    /// Revokes replaced `version`: its data is erased and every read refuses it.
    pub async fn rotation_revoke(
        &self,
        path: &SecretPath,
        version: u64,
    ) -> Result<(), ManagerError> {
        let ctx = rotation_context();
        let op = self.engine_operation(&ctx, "rotation.revoke", path);
        self.audit_request(&op).await?;

        let result = self
            .store
            .revoke_version(path, version)
            .await
            .map_err(ManagerError::from);
        let result = self
            .finish_engine_write(&op, path, "rotation_revoke", Some(version), result)
            .await;
        if result.is_ok() {
            self.events.publish(SecurityEvent::VersionRevoked {
                path: path.to_string(),
                version,
            });
        }
        result
    }

    /// Reads a version (the current one when `version` is `None`) for the engine, pending
    /// versions included. The read has no data when the version is revoked, destroyed,
    /// deleted or past its grace deadline.
    pub async fn rotation_read(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<VersionRead, ManagerError> {
        let ctx = rotation_context();
        let op = self.engine_operation(&ctx, "rotation.read", path);
        let result = self
            .store
            .get(path, version)
            .await
            .map_err(ManagerError::from);

        let read_version = result.as_ref().ok().map(|read| read.meta.version);
        self.audit_response(&op, &result, version_field(read_version))
            .await?;
        if let (Ok(read), Some(version)) = (&result, read_version)
            && read.data.is_some()
        {
            self.events.publish(SecurityEvent::SecretRead {
                accessor: ROTATION_ACCESSOR.to_owned(),
                path: path.to_string(),
                version,
            });
        }
        result
    }

    /// Reads a secret's version list with stages, without an audit entry, because it contains no value.
    pub async fn rotation_versions(&self, path: &SecretPath) -> Result<SecretMeta, ManagerError> {
        Ok(self.store.read_metadata(path).await?)
    }

    /// Writes an audit entry of type `rotation` for one engine step and publishes `event`, if
    /// any. `fields` must hold no secret value.
    pub async fn record_rotation_step(
        &self,
        fields: Map<String, Value>,
        event: Option<SecurityEvent>,
    ) -> Result<(), ManagerError> {
        let mut entry = base_entry("rotation", &rotation_context());
        entry.insert("accessor".into(), json!(ROTATION_ACCESSOR));
        entry.extend(fields);
        let written = self.append_audit(entry).await;
        if let Some(event) = event {
            self.events.publish(event);
        }
        written
    }

    fn engine_operation<'a>(
        &self,
        ctx: &'a RequestContext,
        name: &'static str,
        path: &SecretPath,
    ) -> Operation<'a> {
        Operation {
            ctx,
            accessor: ROTATION_ACCESSOR,
            name,
            path: data_path(path),
        }
    }

    /// Drops cached reads, writes the response entry and publishes a `SecretWritten` event.
    async fn finish_engine_write<T>(
        &self,
        op: &Operation<'_>,
        path: &SecretPath,
        kind: &'static str,
        version: Option<u64>,
        result: Result<T, ManagerError>,
    ) -> Result<T, ManagerError> {
        self.invalidate_after_write(path, &result).await;
        self.audit_response(op, &result, version_field(version))
            .await?;
        if result.is_ok() {
            self.events.publish(SecurityEvent::SecretWritten {
                accessor: ROTATION_ACCESSOR.to_owned(),
                path: path.to_string(),
                operation: kind,
                version,
            });
        }
        result
    }
}
