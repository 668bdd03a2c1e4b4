//! `sys/health`, `sys/seal-status`, `sys/leader`, `sys/metrics` and `sys/internal/ui/mounts`.
//!
//! Keyward serves one mount, KV version 2 at `secret/`. The mounts endpoint describes it with
//! OpenBao's fields because the `bao` and `vault` CLIs call it before every `kv` command to
//! learn the mount's path and KV version.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use keyward_manager::{Caller, KV_MOUNT};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::ApiRequest;
use super::envelope::{Envelope, json_response};
use super::params::QueryParams;
use super::routes::Operation;
use crate::errors::{ApiError, Rejection, vault_errors};
use crate::request::AppState;
use crate::telemetry::{self, PROMETHEUS_CONTENT_TYPE};

/// `cluster_name` in `sys/health` and `sys/seal-status`.
const CLUSTER_NAME: &str = "keyward";

/// Fixed id of the built-in KV mount; it is never re-created, so its id never changes.
const KV_MOUNT_UUID: &str = "6b657977-6172-4400-8000-6b7673656372";

/// Serves `sys/health`, which needs no token.
///
/// Status follows Vault: 200 when initialised and unsealed, 503 when sealed, 501 when not
/// initialised; `?activecode=`, `?sealedcode=` and `?uninitcode=` override these (a value
/// outside 100..=599 is ignored). HEAD sends the status only.
///
/// A degraded server (storage backend failing, reads served from the cache) still returns
/// 200, since it serves requests and Vault clients take any other code as "do not use";
/// the body's `degraded: true` field says so (the field is left out when all is well, so a
/// healthy body matches OpenBao's field for field), and `?degradedcode=` sets another status for load
/// balancers that should drain a degraded node.
pub(super) fn health(state: &AppState, query: &QueryParams, operation: Operation) -> Response {
    let health = state.manager.health();
    let status = if !health.initialized {
        status_override(query, "uninitcode").unwrap_or(StatusCode::NOT_IMPLEMENTED)
    } else if health.sealed {
        status_override(query, "sealedcode").unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    } else if health.degraded
        && let Some(code) = status_override(query, "degradedcode")
    {
        code
    } else {
        status_override(query, "activecode").unwrap_or(StatusCode::OK)
    };

    if operation == Operation::Head {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        return response;
    }

    let body = HealthBody {
        initialized: health.initialized,
        sealed: health.sealed,
        standby: false,
        replication_performance_mode: "disabled",
        replication_dr_mode: "disabled",
        server_time_utc: OffsetDateTime::now_utc().unix_timestamp(),
        version: &health.version,
        cluster_name: CLUSTER_NAME,
        cluster_id: &state.cluster_id,
        degraded: health.degraded,
    };
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// `sys/health`'s body, in OpenBao's field order.
#[derive(Serialize)]
struct HealthBody<'a> {
    initialized: bool,
    sealed: bool,
    standby: bool,
    replication_performance_mode: &'static str,
    replication_dr_mode: &'static str,
    server_time_utc: i64,
    version: &'a str,
    cluster_name: &'static str,
    cluster_id: &'a str,
    /// Keyward's own field: the storage backend is failing and reads may be stale. Sent only
    /// when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    degraded: bool,
}

/// Serves `sys/seal-status`, which needs no token; `bao status` calls it.
///
/// Keyward has one root key rather than key shares, so it reports one share with a
/// threshold of one.
pub(super) fn seal_status(state: &AppState) -> Response {
    let health = state.manager.health();
    let body = json!({
        "type": "keyward",
        "initialized": health.initialized,
        "sealed": health.sealed,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "recovery_seal": false,
        "version": health.version,
        "commit_date": "",
        "migration": false,
        "cluster_name": CLUSTER_NAME,
        "cluster_id": state.cluster_id,
        "storage_type": "keyward",
    });
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// Serves `sys/leader`, which needs no token; Keyward nodes do not form an HA cluster.
pub(super) fn leader() -> Response {
    json_response(StatusCode::OK, br#"{"ha_enabled":false}"#.to_vec())
}

/// Serves `sys/metrics?format=prometheus` to any caller with a valid token, as Vault does by
/// default. Vault's JSON format (no `format` parameter) is not implemented and gets 400.
pub(super) fn metrics(state: &AppState, request: &ApiRequest<'_>) -> Result<Response, ApiError> {
    if request.query.get("format") != Some("prometheus") {
        return Err(Rejection::bad_request(
            "unsupported_metrics_format",
            "unsupported metrics format: request sys/metrics?format=prometheus",
        )
        .into());
    }
    let Some(handle) = telemetry::handle() else {
        return Ok(vault_errors(
            StatusCode::SERVICE_UNAVAILABLE,
            &["metrics unavailable: another metrics recorder is installed in this process"],
        ));
    };

    // The expiry gauge counts down between reloads, so it is refreshed on every scrape.
    state.certificate_expiry.publish(OffsetDateTime::now_utc());
    let mut response = Response::new(Body::from(handle.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
    );
    Ok(response)
}

fn status_override(query: &QueryParams, name: &str) -> Option<StatusCode> {
    let code: u16 = query.get(name)?.parse().ok()?;
    (100..=599)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())
        .flatten()
}

/// `sys/internal/ui/mounts[/<path>]`: the mount serving `path`, if the caller may see it.
///
/// A path outside `secret/`, or a caller whose policies grant nothing under it, gets OpenBao's
/// 403 "preflight capability check" response.
pub(super) async fn mounts(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    path: &str,
) -> Result<Response, ApiError> {
    let ctx = request.ctx;
    let version = state.manager.health().version;

    if path.is_empty() {
        let mut secret = serde_json::Map::new();
        if state.manager.mount_visible(caller, KV_MOUNT).await {
            secret.insert(format!("{KV_MOUNT}/"), kv_mount(&version));
        }
        let data = json!({ "auth": {}, "secret": secret });
        return Ok(Envelope::data(&ctx.request_id, data).into_response(StatusCode::OK));
    }

    if !state.manager.mount_visible(caller, path).await {
        return Err(Rejection::mount_not_visible(path).into());
    }
    Ok(Envelope::data(&ctx.request_id, kv_mount(&version)).into_response(StatusCode::OK))
}

/// The KV mount's description, with the fields OpenBao 2.7 returns.
fn kv_mount(version: &str) -> Value {
    json!({
        "accessor": "kv_keyward",
        "config": {
            "default_lease_ttl": 0,
            "force_no_cache": false,
            "max_lease_ttl": 0,
        },
        "deprecation_status": "supported",
        "description": "key/value secret storage",
        "external_entropy_access": false,
        "local": false,
        "options": { "version": "2" },
        "path": format!("{KV_MOUNT}/"),
        "plugin_version": "",
        "running_plugin_version": format!("v{version}+builtin.keyward"),
        "running_sha256": "",
        "seal_wrap": false,
        "type": "kv",
        "uuid": KV_MOUNT_UUID,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Uri;

    fn query(raw: &str) -> QueryParams {
        let uri: Uri = raw.parse().expect("valid uri");
        QueryParams::from_uri(&uri).expect("valid query")
    }

    #[test]
    fn status_codes_can_be_overridden() {
        assert_eq!(
            status_override(&query("/v1/sys/health?sealedcode=299"), "sealedcode"),
            Some(StatusCode::from_u16(299).expect("valid"))
        );
        assert_eq!(
            status_override(&query("/v1/sys/health?sealedcode=9999"), "sealedcode"),
            None
        );
        assert_eq!(
            status_override(&query("/v1/sys/health"), "activecode"),
            None
        );
    }

    #[test]
    fn mount_describes_kv_version_2() {
        let mount = kv_mount("0.1.0");
        assert_eq!(mount["type"], "kv");
        assert_eq!(mount["path"], "secret/");
        assert_eq!(mount["options"], json!({ "version": "2" }));
    }
}
