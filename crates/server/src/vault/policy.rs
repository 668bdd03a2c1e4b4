//! ACL policy routes: `sys/policies/acl[/<name>]`, which the `bao policy` commands use, and
//! Vault's older `sys/policy[/<name>]`, which some client libraries still call.

use axum::http::StatusCode;
use axum::response::Response;
use keyward_manager::Caller;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiRequest;
use super::envelope::{Envelope, json_response, no_content};
use super::params::json_body;
use super::routes::Operation;
use crate::errors::{ApiError, Rejection};
use crate::request::AppState;

#[derive(Deserialize)]
struct PolicyBody {
    #[serde(default)]
    policy: Option<String>,
    /// The older API's name for `policy`.
    #[serde(default)]
    rules: Option<String>,
}

/// `LIST sys/policies/acl`: the policy names.
pub(super) async fn list(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let names = state.manager.policy_list(caller, request.ctx).await?;
    let data = json!({ "keys": names });
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

/// `sys/policies/acl/<name>`: read, write or delete one policy.
///
/// A read returns `name` and `policy` plus OpenBao's constant flags; OpenBao's `modified` and
/// `version` fields are left out because Keyward does not keep policy history.
pub(super) async fn acl(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    name: &str,
) -> Result<Response, ApiError> {
    if request.operation != Operation::Read {
        return write_or_delete(state, request, caller, name).await;
    }

    let text = state.manager.policy_read(caller, request.ctx, name).await?;
    let data = policy_data(name, "policy", text);
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

/// `GET sys/policy`: names under both `policies` and `keys`, at the top level and in `data`.
pub(super) async fn legacy_list(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let names = state.manager.policy_list(caller, request.ctx).await?;
    let data = json!({ "keys": names, "policies": names });
    Ok(legacy_response(&request.ctx.request_id, data))
}

/// `sys/policy/<name>`: read (as `rules`), write or delete one policy.
///
/// As with [`acl`], OpenBao's `modified` and `version` fields are left out.
pub(super) async fn legacy(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    name: &str,
) -> Result<Response, ApiError> {
    if request.operation != Operation::Read {
        return write_or_delete(state, request, caller, name).await;
    }

    let text = state.manager.policy_read(caller, request.ctx, name).await?;
    let data = policy_data(name, "rules", text);
    Ok(legacy_response(&request.ctx.request_id, data))
}

/// Builds a policy read's fields; `text_field` is `policy` in the current API and `rules` in
/// the older one. The flags are constant because Keyward has no policy check-and-set and no
/// identity templates.
fn policy_data(name: &str, text_field: &str, text: String) -> Value {
    let mut data = json!({
        "allow_slashes_in_identity_templates": false,
        "allow_wildcards_in_identity_templates": false,
        "cas_required": false,
        "name": name,
    });
    if let Value::Object(fields) = &mut data {
        fields.insert(text_field.to_owned(), Value::String(text));
    }
    data
}

async fn write_or_delete(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    name: &str,
) -> Result<Response, ApiError> {
    match request.operation {
        Operation::Write => {
            let body: PolicyBody = json_body(&request.body)?;
            let text = body
                .policy
                .or(body.rules)
                .ok_or_else(|| Rejection::bad_request("invalid_request", "missing policy"))?;
            state
                .manager
                .policy_write(caller, request.ctx, name, &text)
                .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            state
                .manager
                .policy_delete(caller, request.ctx, name)
                .await?;
            Ok(no_content())
        }
        _ => Err(Rejection::unsupported_operation().into()),
    }
}

/// Builds an older-API response, which repeats `data`'s fields at the top level.
fn legacy_response(request_id: &str, data: Value) -> Response {
    let mut body = match Envelope::data(request_id, data.clone()).to_value() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    if let Value::Object(fields) = data {
        for (key, value) in fields {
            body.insert(key, value);
        }
    }
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn legacy_response_repeats_data_at_top_level() {
        let response = legacy_response("r", json!({ "keys": ["a"], "policies": ["a"] }));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body reads");
        let value: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(value["keys"], json!(["a"]));
        assert_eq!(value["policies"], json!(["a"]));
        assert_eq!(value["data"]["keys"], json!(["a"]));
        assert_eq!(value["request_id"], "r");
    }

    #[test]
    fn rules_is_accepted_for_policy() {
        let body: PolicyBody = json_body(br#"{"rules":"path \"a\" {}"}"#).expect("parses");
        assert_eq!(body.policy.or(body.rules).as_deref(), Some("path \"a\" {}"));
    }
}
