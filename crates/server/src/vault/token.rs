//! Token routes under `auth/token/`: create (and create-orphan), lookup-self, renew-self,
//! revoke-self and revoke-accessor.
//!
//! Token creation accepts the fields the `bao token create` command sends. Options that
//! Keyward does not implement (use counts, periodic or batch tokens, explicit max TTL, custom
//! ids) are rejected with 400 when set, instead of being ignored, because ignoring `num_uses=1`
//! would silently hand out a token with unlimited uses.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use keyward_manager::{Caller, ManagerError, TokenCreateRequest};
use keyward_store::TokenRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::ApiRequest;
use super::envelope::{AuthBlock, Envelope, format_time, no_content};
use super::params::{json_body, name_list, optional_duration};
use crate::errors::{ApiError, Rejection};
use crate::request::AppState;

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default, deserialize_with = "name_list")]
    policies: Vec<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    ttl: Option<u64>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    renewable: Option<bool>,
    #[serde(default)]
    no_parent: bool,
    #[serde(default)]
    no_default_policy: bool,
    #[serde(default, deserialize_with = "optional_duration")]
    explicit_max_ttl: Option<u64>,
    #[serde(default, deserialize_with = "optional_duration")]
    period: Option<u64>,
    #[serde(default)]
    num_uses: Option<i64>,
    #[serde(default, rename = "type")]
    token_type: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    entity_alias: Option<String>,
}

#[derive(Deserialize)]
struct RenewBody {
    #[serde(default, deserialize_with = "optional_duration")]
    increment: Option<u64>,
}

#[derive(Deserialize)]
struct RevokeAccessorBody {
    #[serde(default)]
    accessor: Option<String>,
}

fn unsupported(option: &str) -> Rejection {
    Rejection::bad_request(
        "unsupported_option",
        format!("token option {option} is not supported by Keyward"),
    )
}

/// Turns the request body into the manager's request, rejecting options Keyward lacks.
fn create_request(body: CreateBody, orphan: bool) -> Result<TokenCreateRequest, Rejection> {
    if body.num_uses.is_some_and(|uses| uses != 0) {
        return Err(unsupported("num_uses"));
    }
    if body.period.is_some_and(|period| period != 0) {
        return Err(unsupported("period"));
    }
    if body.explicit_max_ttl.is_some_and(|ttl| ttl != 0) {
        return Err(unsupported("explicit_max_ttl"));
    }
    if body.no_default_policy {
        return Err(unsupported("no_default_policy"));
    }
    if body.id.as_deref().is_some_and(|id| !id.is_empty()) {
        return Err(unsupported("id"));
    }
    if body
        .entity_alias
        .as_deref()
        .is_some_and(|alias| !alias.is_empty())
    {
        return Err(unsupported("entity_alias"));
    }
    match body.token_type.as_deref() {
        None | Some("" | "service" | "default" | "default-service") => {}
        Some(_) => return Err(unsupported("type (only service tokens exist)")),
    }

    Ok(TokenCreateRequest {
        policies: body.policies,
        // The CLI sends "0s" when no TTL was given: that means the default.
        ttl_secs: body.ttl.filter(|ttl| *ttl > 0),
        display_name: body.display_name.filter(|name| !name.is_empty()),
        meta: body.meta.unwrap_or_default(),
        renewable: body.renewable,
        no_parent: orphan || body.no_parent,
    })
}

/// Seconds until `record` expires, rounded to the nearest second (so a token renewed for an
/// hour reports 3600, not 3599); 0 for a token without expiry.
fn remaining_secs(record: &TokenRecord) -> u64 {
    record.expire_time.map_or(0, |expire| {
        let left = (expire - OffsetDateTime::now_utc())
            .as_seconds_f64()
            .round();
        if left > 0.0 { left as u64 } else { 0 }
    })
}

fn auth_block(client_token: &str, record: &TokenRecord, lease_duration: u64) -> AuthBlock {
    AuthBlock {
        client_token: client_token.to_owned(),
        accessor: record.accessor.clone(),
        policies: record.policies.clone(),
        token_policies: record.policies.clone(),
        metadata: (!record.meta.is_empty()).then(|| record.meta.clone()),
        lease_duration,
        renewable: record.renewable,
        entity_id: "",
        token_type: "service",
        orphan: record.parent_accessor.is_none(),
        mfa_requirement: None,
        num_uses: 0,
    }
}

/// `auth/token/create` and `auth/token/create-orphan`.
pub(super) async fn create(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    orphan: bool,
) -> Result<Response, ApiError> {
    let body: CreateBody = json_body(&request.body)?;
    let create = create_request(body, orphan)?;

    let issued = state
        .manager
        .token_create(caller, request.ctx, create)
        .await?;
    let auth = auth_block(
        issued.token.expose(),
        &issued.record,
        issued.record.creation_ttl_secs,
    );
    Ok(Envelope::auth(&request.ctx.request_id, auth).into_response(StatusCode::OK))
}

/// `auth/token/lookup-self`: the caller's own token, including the token itself in `id`, which
/// only echoes what the caller sent.
pub(super) async fn lookup_self(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let record = state.manager.token_lookup_self(caller, request.ctx).await?;
    let data = lookup_data(&record, request.token.as_str());
    Ok(Envelope::data(&request.ctx.request_id, data).into_response(StatusCode::OK))
}

fn lookup_data(record: &TokenRecord, token: &str) -> Value {
    json!({
        "accessor": record.accessor,
        "creation_time": record.created_time.unix_timestamp(),
        "creation_ttl": record.creation_ttl_secs,
        "display_name": record.display_name,
        "entity_id": "",
        "expire_time": record.expire_time.map(format_time),
        "explicit_max_ttl": 0,
        "id": token,
        "issue_time": format_time(record.created_time),
        "meta": (!record.meta.is_empty()).then_some(&record.meta),
        "num_uses": 0,
        "orphan": record.parent_accessor.is_none(),
        "path": "auth/token/create",
        "policies": record.policies,
        "renewable": record.renewable,
        "ttl": remaining_secs(record),
        "type": "service",
    })
}

/// `auth/token/renew-self` with an optional `increment`.
pub(super) async fn renew_self(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let body: RenewBody = json_body(&request.body)?;
    // The CLI sends `"increment": 0` when none was given: renew by the token's own TTL.
    let increment = body.increment.filter(|secs| *secs > 0);

    let record = state
        .manager
        .token_renew_self(caller, request.ctx, increment)
        .await?;
    let auth = auth_block(request.token.as_str(), &record, remaining_secs(&record));
    Ok(Envelope::auth(&request.ctx.request_id, auth).into_response(StatusCode::OK))
}

/// `auth/token/revoke-self`.
pub(super) async fn revoke_self(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    state.manager.token_revoke_self(caller, request.ctx).await?;
    Ok(no_content())
}

/// `auth/token/revoke-accessor`; an unknown accessor gets 200 with a warning, as in OpenBao.
pub(super) async fn revoke_accessor(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let body: RevokeAccessorBody = json_body(&request.body)?;
    let accessor = body
        .accessor
        .filter(|accessor| !accessor.is_empty())
        .ok_or_else(|| Rejection::bad_request("invalid_request", "missing accessor"))?;

    match state
        .manager
        .token_revoke_accessor(caller, request.ctx, &accessor)
        .await
    {
        Ok(()) => Ok(no_content()),
        Err(ManagerError::NotFound) => {
            let warnings = vec!["No token found with this accessor".to_owned()];
            Ok(Envelope::warnings(&request.ctx.request_id, warnings).into_response(StatusCode::OK))
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn body(json: &str) -> CreateBody {
        json_body(json.as_bytes()).expect("valid body")
    }

    #[test]
    fn cli_defaults_mean_manager_defaults() {
        let request = create_request(
            body(r#"{"policies":["p"],"ttl":"0s","explicit_max_ttl":"0s","period":"0s","display_name":"","num_uses":0,"renewable":true,"type":"service","entity_alias":""}"#),
            false,
        )
        .expect("accepted");
        assert_eq!(request.policies, ["p"]);
        assert_eq!(request.ttl_secs, None);
        assert_eq!(request.display_name, None);
        assert_eq!(request.renewable, Some(true));
        assert!(!request.no_parent);
    }

    #[test]
    fn ttl_string_is_parsed() {
        let request = create_request(body(r#"{"ttl":"1h30m"}"#), true).expect("accepted");
        assert_eq!(request.ttl_secs, Some(5400));
        assert!(request.no_parent);
    }

    #[test]
    fn unsupported_options_are_rejected() {
        for json in [
            r#"{"num_uses":1}"#,
            r#"{"period":"1h"}"#,
            r#"{"explicit_max_ttl":"1h"}"#,
            r#"{"type":"batch"}"#,
            r#"{"id":"custom"}"#,
            r#"{"no_default_policy":true}"#,
        ] {
            assert!(create_request(body(json), false).is_err(), "{json}");
        }
    }

    #[test]
    fn auth_block_reports_orphan_and_metadata() {
        let now = OffsetDateTime::now_utc();
        let record = TokenRecord {
            token_hash: "h".into(),
            accessor: "acc".into(),
            policies: vec!["default".into(), "p".into()],
            display_name: "token-svc".into(),
            created_time: now,
            expire_time: Some(now + Duration::hours(1)),
            creation_ttl_secs: 3600,
            renewable: true,
            parent_accessor: None,
            meta: BTreeMap::new(),
        };
        let block = auth_block("kwt.x", &record, 3600);
        assert!(block.orphan);
        assert_eq!(block.metadata, None);
        assert_eq!(block.token_policies, record.policies);

        let data = lookup_data(&record, "kwt.x");
        assert_eq!(data["id"], "kwt.x");
        assert_eq!(data["meta"], Value::Null);
        assert!(
            data["ttl"]
                .as_u64()
                .is_some_and(|ttl| ttl > 3590 && ttl <= 3600)
        );
    }
}
