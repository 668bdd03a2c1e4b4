//! Keyward's rotation routes: policies (`sys/rotation/policy/<path>`), status
//! (`sys/rotation/status/<path>`), on-demand rotation (`POST sys/rotate/<path>`) and leak
//! reports (`POST sys/keyward/compromised`).
//!
//! Every route needs the `rotate` capability on the secret's data path
//! (`secret/data/<path>`). A policy whose rotator or notifications read other secrets also
//! needs `read` on those. A policy with a command generator needs `sudo` on
//! `sys/rotation/policy/<path>`. The routes return 400 (`rotation is not enabled`) when the
//! server runs without a rotation engine. The engine's work itself (steps, retries,
//! revocation) is in the rotation crate; this module only maps HTTP onto it.

use axum::http::StatusCode;
use axum::response::Response;
use keyward_manager::policy::Capability;
use keyward_manager::{Caller, ManagerError};
use keyward_rotation::{
    EngineError, GeneratorSpec, PathOutcome, RotationPolicy, RotatorSpec, RunResult, Scheduler,
};
use keyward_store::SecretPath;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiRequest;
use super::envelope::{Envelope, format_time, no_content};
use super::params::json_body;
use super::routes::Operation;
use crate::errors::{ApiError, Rejection};
use crate::request::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    emergency: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompromisedBody {
    path: String,
    #[serde(default)]
    reason: String,
}

fn scheduler(state: &AppState) -> Result<&Scheduler, ApiError> {
    state.rotation.as_deref().ok_or_else(|| {
        Rejection::bad_request(
            "rotation_disabled",
            "rotation is not enabled on this server: it runs only with the sqlite storage backend",
        )
        .into()
    })
}

/// Maps an engine error onto the manager's error kinds, so that it gets Vault's status codes.
/// Engine messages name paths, versions and providers but no value, so clients see them.
fn engine_error(error: EngineError) -> ManagerError {
    match error {
        // The caller has `rotate` on the path by now, so naming the missing policy reveals
        // nothing it could not learn from the status route.
        EngineError::NoPolicy(path) => ManagerError::Invalid(format!(
            "secret {path} has no rotation policy: set one with `keyward rotation set {path}` \
             or PUT sys/rotation/policy/{path}"
        )),
        EngineError::Policy(error) => ManagerError::Invalid(error.to_string()),
        EngineError::Schedule(error) => ManagerError::Invalid(error.to_string()),
        EngineError::LeaseBusy(path) => ManagerError::Invalid(format!(
            "secret {path} is being rotated already; retry once that rotation ends"
        )),
        // The rotation database failed or the lease was lost: retrying later may work.
        error @ (EngineError::Db(_) | EngineError::LeaseLost(_)) => {
            tracing::error!(%error, "rotation failed");
            ManagerError::Unavailable(error.to_string())
        }
        other => {
            tracing::warn!(error = %other, "rotation failed");
            ManagerError::Invalid(format!("rotation failed: {other}"))
        }
    }
}

/// `sys/rotation/policy/<path>`: GET, PUT/POST (a JSON policy) and DELETE.
pub(super) async fn policy(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    path: &SecretPath,
) -> Result<Response, ApiError> {
    let scheduler = scheduler(state)?;
    let engine = scheduler.engine();
    let key = path.as_str();
    match request.operation {
        Operation::Read => {
            let status = state
                .manager
                .rotation_request(
                    caller,
                    request.ctx,
                    "rotation.policy.read",
                    path,
                    Map::new(),
                    async { engine.status(key).await.map_err(engine_error) },
                )
                .await?
                .ok_or(ManagerError::NotFound)?;
            let policy = serde_json::to_value(&status.policy)
                .map_err(|error| ManagerError::Internal(error.to_string()))?;
            Ok(Envelope::data(&request.ctx.request_id, policy).into_response(StatusCode::OK))
        }
        Operation::Write => {
            let text = std::str::from_utf8(&request.body).map_err(|_| {
                Rejection::bad_request("invalid_request", "the rotation policy must be UTF-8 JSON")
            })?;
            let policy = RotationPolicy::from_json(text)
                .map_err(|error| Rejection::bad_request("invalid_request", error.to_string()))?;
            check_policy_references(state, caller, path, &policy)?;
            let due = state
                .manager
                .rotation_request(
                    caller,
                    request.ctx,
                    "rotation.policy.write",
                    path,
                    Map::new(),
                    async { engine.set_policy(key, &policy).await.map_err(engine_error) },
                )
                .await?;
            let data = json!({ "next_due": format_time(due) });
            Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
        }
        Operation::Delete => {
            let removed = state
                .manager
                .rotation_request(
                    caller,
                    request.ctx,
                    "rotation.policy.delete",
                    path,
                    Map::new(),
                    async { engine.remove_policy(key).await.map_err(engine_error) },
                )
                .await?;
            if !removed {
                return Err(ManagerError::NotFound.into());
            }
            Ok(no_content())
        }
        _ => Err(Rejection::unsupported_operation().into()),
    }
}

/// Requires `update` on the secret, `read` on every secret the policy's rotator and
/// notifications use, and `sudo` for a command generator.
///
/// A policy decides the secret's future values: its generator's strength, or a provider such
/// as an OpenAI base URL that returns a value of its choosing. Setting one is therefore a write
/// of the secret, and `rotate` alone only runs a policy that someone with `update` set. Without the
/// other checks a policy's author could send a secret they cannot read to a URL they choose,
/// or run a program on the server.
fn check_policy_references(
    state: &AppState,
    caller: &Caller,
    path: &SecretPath,
    policy: &RotationPolicy,
) -> Result<(), ApiError> {
    if !state.manager.may(caller, path, Capability::Update) {
        return Err(ManagerError::PermissionDenied.into());
    }
    if matches!(policy.generator, GeneratorSpec::Command { .. }) {
        state.manager.require_rotation_command(caller, path)?;
    }

    let mut references: Vec<&str> = policy
        .notify
        .iter()
        .map(|notify| notify.signing_key_secret.as_str())
        .collect();
    match &policy.rotator {
        // A webhook rotator sends every new value to its URL, so its author must be allowed
        // to read the secret itself.
        Some(RotatorSpec::Webhook {
            signing_key_secret, ..
        }) => {
            references.push(signing_key_secret);
            references.push(path.as_str());
        }
        Some(RotatorSpec::Postgres {
            admin_url_secret, ..
        }) => references.push(admin_url_secret),
        Some(RotatorSpec::Openai {
            admin_key_secret, ..
        }) => references.push(admin_key_secret),
        Some(RotatorSpec::Custom { .. }) | None => {}
    }

    for reference in references {
        let referenced = SecretPath::parse(reference).map_err(|error| {
            Rejection::bad_request(
                "invalid_request",
                format!(
                    "the policy names secret {reference:?}, which is not a valid path: {error}"
                ),
            )
        })?;
        if !state.manager.may_read(caller, &referenced) {
            return Err(ManagerError::PermissionDenied.into());
        }
    }
    Ok(())
}

/// `GET sys/rotation/status/<path>`: the schedule, failures, the unfinished run and the
/// versions waiting for revocation.
pub(super) async fn status(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    path: &SecretPath,
) -> Result<Response, ApiError> {
    let scheduler = scheduler(state)?;
    let engine = scheduler.engine();
    let key = path.as_str();
    let status = state
        .manager
        .rotation_request(
            caller,
            request.ctx,
            "rotation.status",
            path,
            Map::new(),
            async { engine.status(key).await.map_err(engine_error) },
        )
        .await?
        .ok_or(ManagerError::NotFound)?;

    let stages = state.manager.rotation_versions(path).await.ok();
    let version_in = |stage: keyward_store::Stage| {
        stages.as_ref().and_then(|meta| {
            meta.versions
                .values()
                .filter(|version| version.stage == stage)
                .map(|version| version.version)
                .max()
        })
    };
    let active_run = status.active_run.as_ref().map(|run| {
        json!({
            "id": run.id,
            "step": run.step.as_str(),
            "step_done": run.step_done,
            "emergency": run.emergency,
            "pending_version": run.pending_version,
            "started_at": format_time(run.started_at),
            "last_error": run.last_error,
        })
    });
    let revocations: Vec<Value> = status
        .pending_revocations
        .iter()
        .map(
            |(version, deadline)| json!({ "version": version, "deadline": format_time(*deadline) }),
        )
        .collect();
    let versions: Map<String, Value> = stages
        .as_ref()
        .map(|meta| {
            meta.versions
                .values()
                .map(|version| (version.version.to_string(), json!(version.stage.as_str())))
                .collect()
        })
        .unwrap_or_default();
    let data = json!({
        "path": status.path,
        "versions": versions,
        "state": status.state,
        "next_due": format_time(status.next_due),
        "failures": status.failures,
        "last_error": status.last_error,
        "last_rotated_at": status.last_rotated_at.map(format_time),
        "current_version": version_in(keyward_store::Stage::Current),
        "pending_version": version_in(keyward_store::Stage::Pending),
        "active_run": active_run,
        "pending_revocations": revocations,
    });
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

fn outcome_json(outcome: &PathOutcome) -> Value {
    let result = match outcome.runs.last() {
        Some(RunResult::Finished) => "finished",
        Some(RunResult::RolledBack) => "rolled_back",
        Some(RunResult::Retrying) => "retrying",
        Some(RunResult::Failed) => "failed",
        None => "nothing_to_do",
    };
    json!({ "result": result, "revoked": outcome.revoked })
}

/// `POST sys/rotate/<path>` with `{"emergency": bool}`: rotates now and returns when the
/// rotation finished, rolled back or failed (and, for an emergency, after the old credential
/// was revoked).
pub(super) async fn rotate(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    path: &SecretPath,
) -> Result<Response, ApiError> {
    let scheduler = scheduler(state)?;
    let body: RotateBody = json_body(&request.body)?;
    let mut extra = Map::new();
    extra.insert("emergency".into(), json!(body.emergency));
    let outcome = state
        .manager
        .rotation_request(caller, request.ctx, "rotation.rotate", path, extra, async {
            scheduler
                .rotate_now(path.as_str(), body.emergency)
                .await
                .map_err(engine_error)
        })
        .await?;
    respond_with_outcome(state, request, path, &outcome).await
}

async fn respond_with_outcome(
    state: &AppState,
    request: &ApiRequest<'_>,
    path: &SecretPath,
    outcome: &PathOutcome,
) -> Result<Response, ApiError> {
    let mut data = outcome_json(outcome);
    let current = state
        .manager
        .rotation_versions(path)
        .await
        .ok()
        .and_then(|meta| {
            meta.versions
                .values()
                .filter(|version| version.stage == keyward_store::Stage::Current)
                .map(|version| version.version)
                .max()
        });
    data["current_version"] = json!(current);
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

/// `POST sys/keyward/compromised` with `{"path": ..., "reason": ...}`: a leak report. Records
/// a `KeyCompromised` event, then rotates the secret as an emergency (no grace period, the
/// old credential revoked before the response).
pub(super) async fn compromised(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let scheduler = scheduler(state)?;
    let body: CompromisedBody = json_body(&request.body)?;
    let path = SecretPath::parse(&body.path).map_err(|error| Rejection::bad_path(&error))?;

    state
        .manager
        .report_compromised(caller, request.ctx, &path, &body.reason)
        .await?;

    let mut extra = Map::new();
    extra.insert("emergency".into(), json!(true));
    let outcome = state
        .manager
        .rotation_request(
            caller,
            request.ctx,
            "rotation.rotate",
            &path,
            extra,
            async {
                scheduler
                    .rotate_now(path.as_str(), true)
                    .await
                    .map_err(engine_error)
            },
        )
        .await?;
    respond_with_outcome(state, request, &path, &outcome).await
}
