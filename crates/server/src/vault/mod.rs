//! The Vault-compatible API: resolves each request to a route, authenticates it, reads its
//! body within the size limit and calls the route's handler.
//!
//! The order of checks follows OpenBao 2.7. A request for response wrapping, which Keyward
//! does not implement, is rejected first (400), so that no operation runs and no secret is
//! returned unwrapped. Then a malformed path is rejected (400). Then `sys/health`,
//! `sys/seal-status` and `sys/leader` are served without a token. Then the token is
//! authenticated, and only after that does an unknown path get 404 or an unsupported method
//! 405. So a client without a valid token learns nothing about which routes exist. The body is
//! read last, within the body read timeout, so only an authenticated caller can make the server
//! wait for a body.

pub(crate) mod envelope;
mod keys;
mod kv;
pub(crate) mod params;
mod policy;
mod rotation;
pub(crate) mod routes;
mod sys;
mod token;
mod watch;

#[doc(hidden)]
pub use kv::parse_kv_request_parts;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use keyward_manager::{Caller, ManagerError, RequestContext};
use zeroize::Zeroizing;

use crate::errors::{ApiError, Rejection, manager_error_response};
use crate::request::{AppState, BodyProgress, RequestInfo, reject};
use crate::telemetry::{AUTH_FAILURES_TOTAL, RouteLabel, UNMATCHED_ROUTE};
use params::QueryParams;
use routes::{Operation, Route};

/// Header that carries the token in Vault's API.
pub(crate) const VAULT_TOKEN_HEADER: &str = "x-vault-token";

/// Headers with which a Vault client asks for a wrapped response.
const WRAPPING_HEADERS: [&str; 2] = ["x-vault-wrap-ttl", "x-vault-wrap-format"];

/// A request after routing, authentication and body reading.
pub(crate) struct ApiRequest<'a> {
    /// Request id and peer address.
    pub ctx: &'a RequestContext,
    /// The operation the method and query ask for.
    pub operation: Operation,
    /// The query parameters.
    pub query: QueryParams,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body; empty for operations that take none.
    pub body: Zeroizing<Vec<u8>>,
    /// The token the caller authenticated with, for `lookup-self` and `renew-self`, which
    /// return it to its owner as Vault does.
    pub token: Zeroizing<String>,
}

/// Reads the request's token from `X-Vault-Token`, or else from `Authorization: Bearer`.
pub(crate) fn request_token(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    if let Some(value) = headers.get(VAULT_TOKEN_HEADER) {
        return value
            .to_str()
            .ok()
            .map(|t| Zeroizing::new(t.trim().to_owned()));
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Zeroizing::new(token.trim().to_owned()))
}

/// The router's fallback handler: every API request enters here.
pub(crate) async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(info) = request.extensions().get::<RequestInfo>().cloned() else {
        return Rejection::internal("missing_request_context").to_response();
    };
    let method = request.method().as_str().to_owned();
    let raw_path = request.uri().path().to_owned();

    let mut route_label = RouteLabel(UNMATCHED_ROUTE);
    let mut response = match handle(&state, &info.ctx, request, &mut route_label).await {
        Ok(response) => response,
        Err(ApiError::Manager(error)) => manager_error_response(&error),
        Err(ApiError::Rejected(rejection)) => {
            reject(&state, &info.ctx, &method, &raw_path, &rejection).await
        }
    };
    response.extensions_mut().insert(route_label);
    response
}

/// Serves one request; sets `route_label` to the route's template as soon as the path is
/// resolved, so that failures are counted under their route too.
async fn handle(
    state: &AppState,
    ctx: &RequestContext,
    request: Request,
    route_label: &mut RouteLabel,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let progress = parts
        .extensions
        .get::<BodyProgress>()
        .cloned()
        .unwrap_or_default();

    // Ignoring the request would hand out secrets and tokens unwrapped to a client that
    // expects to pass on only a wrapping token.
    if WRAPPING_HEADERS
        .iter()
        .any(|name| parts.headers.contains_key(*name))
    {
        progress.finish();
        return Err(Rejection::wrapping_unsupported().into());
    }

    let route = routes::resolve(parts.uri.path())?;
    *route_label = RouteLabel(route.template());
    tracing::Span::current().record("route", route.template());
    let query = QueryParams::from_uri(&parts.uri)?;
    let operation = Operation::from_method(parts.method.as_str(), query.flag("list")?)
        .filter(|operation| route.supports(*operation));

    if route.is_unauthenticated() {
        progress.finish();
        let operation = operation.ok_or_else(Rejection::method_not_allowed_silent)?;
        return Ok(match route {
            Route::SealStatus => sys::seal_status(state),
            Route::Leader => sys::leader(),
            _ => sys::health(state, &query, operation),
        });
    }

    let token = request_token(&parts.headers);
    let caller = state
        .manager
        .authenticate(token.as_ref().map(|t| t.as_str()), ctx)
        .await
        .inspect_err(count_auth_failure)?;
    tracing::Span::current().record("accessor", caller.accessor());

    let Some(operation) = operation else {
        progress.finish();
        return Err(if route == Route::Unknown {
            Rejection::unsupported_path().into()
        } else {
            Rejection::unsupported_operation().into()
        });
    };

    let body = if matches!(operation, Operation::Write | Operation::Patch) {
        let read = read_body(&parts.headers, body, state.max_body_bytes);
        tokio::time::timeout(state.body_read_timeout, read)
            .await
            .map_err(|_elapsed| Rejection::body_read_timeout())??
    } else {
        Zeroizing::new(Vec::new())
    };
    progress.finish();

    let request = ApiRequest {
        ctx,
        operation,
        query,
        headers: parts.headers,
        body,
        token: token.unwrap_or_default(),
    };
    route_request(state, &request, &caller, route).await
}

async fn route_request(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    route: Route,
) -> Result<Response, ApiError> {
    match route {
        Route::KvData(path) => kv::data(state, request, caller, &path).await,
        Route::KvVersions(action, path) => {
            kv::versions(state, request, caller, action, &path).await
        }
        Route::KvMetadata(raw) => kv::metadata(state, request, caller, &raw).await,
        Route::Mounts(path) => sys::mounts(state, request, caller, &path).await,
        Route::TokenLookupSelf => token::lookup_self(state, request, caller).await,
        Route::TokenCreate { orphan } => token::create(state, request, caller, orphan).await,
        Route::TokenRevokeSelf => token::revoke_self(state, request, caller).await,
        Route::TokenRevokeAccessor => token::revoke_accessor(state, request, caller).await,
        Route::TokenRenewSelf => token::renew_self(state, request, caller).await,
        Route::PolicyList => policy::list(state, request, caller).await,
        Route::Policy(name) => policy::acl(state, request, caller, &name).await,
        Route::LegacyPolicyList => policy::legacy_list(state, request, caller).await,
        Route::LegacyPolicy(name) => policy::legacy(state, request, caller, &name).await,
        Route::KeysStatus => keys::status(state, request, caller).await,
        Route::KeysRotate => keys::rotate(state, request, caller).await,
        Route::KeysRewrap => keys::rewrap(state, request, caller).await,
        Route::KeysRotateRoot => keys::rotate_root(state, request, caller).await,
        Route::Key(id) => keys::retire(state, request, caller, id).await,
        Route::Watch => watch::open(state, request, caller).await,
        Route::Metrics => sys::metrics(state, request),
        Route::RotationPolicy(path) => rotation::policy(state, request, caller, &path).await,
        Route::RotationStatus(path) => rotation::status(state, request, caller, &path).await,
        Route::Rotate(path) => rotation::rotate(state, request, caller, &path).await,
        Route::Compromised => rotation::compromised(state, request, caller).await,
        Route::Health | Route::SealStatus | Route::Leader | Route::Unknown => {
            Err(Rejection::unsupported_path().into())
        }
    }
}

/// Counts a failed authentication; a storage failure during the lookup is not one.
fn count_auth_failure(error: &ManagerError) {
    let reason = match error {
        ManagerError::PermissionDenied => "denied",
        ManagerError::LockedOut { .. } => "locked_out",
        _ => return,
    };
    metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => reason).increment(1);
}

/// Reads the whole body, rejecting it with 413 as soon as it passes `limit` bytes.
async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Rejection::payload_too_large(limit));
    }

    let mut bytes = Zeroizing::new(Vec::new());
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| {
            Rejection::bad_request("body_read_failed", "failed to read the request body")
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            return Err(Rejection::payload_too_large(limit));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_comes_from_vault_header_first() {
        let mut headers = HeaderMap::new();
        headers.insert(VAULT_TOKEN_HEADER, HeaderValue::from_static("kwt.one"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer kwt.two"),
        );
        assert_eq!(
            request_token(&headers).as_deref().map(String::as_str),
            Some("kwt.one")
        );
    }

    #[test]
    fn bearer_token_is_accepted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer kwt.two"),
        );
        assert_eq!(
            request_token(&headers).as_deref().map(String::as_str),
            Some("kwt.two")
        );
    }

    #[test]
    fn other_authorization_schemes_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic a2V5OnZhbA=="),
        );
        assert!(request_token(&headers).is_none());
    }

    #[tokio::test]
    async fn body_over_limit_is_rejected() {
        let headers = HeaderMap::new();
        let rejection = read_body(&headers, Body::from(vec![b'a'; 11]), 10)
            .await
            .expect_err("too large");
        assert_eq!(rejection.reason, "body_too_large");

        let read = read_body(&headers, Body::from(vec![b'a'; 10]), 10)
            .await
            .expect("fits");
        assert_eq!(read.len(), 10);
    }

    #[tokio::test]
    async fn declared_length_over_limit_is_rejected_early() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1000"));
        let rejection = read_body(&headers, Body::empty(), 10)
            .await
            .expect_err("too large");
        assert_eq!(rejection.reason, "body_too_large");
    }
}
