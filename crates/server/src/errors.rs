//! Error types: [`ServerError`] for starting and running the server, and the API errors that
//! become Vault-shaped JSON responses (`{"errors":["..."]}`).
//!
//! An API error is either a manager error (the manager has already audited it) or a
//! [`Rejection`]: a request turned away before it reached an operation, which the dispatcher
//! and the limit middleware record through `SecretsManager::record_rejected`. Clients get
//! generic messages; details of internal and backend failures go to the log only.

use std::io;
use std::net::SocketAddr;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_manager::ManagerError;
use keyward_store::PathError;
use serde_json::json;

use crate::tls::TlsError;

/// Error that kept the server from starting or stopped it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("failed to listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The accept loop failed.
    #[error("server failed: {0}")]
    Serve(io::Error),
}

/// A request turned away before it reached a manager operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// HTTP status sent to the client.
    pub status: StatusCode,
    /// The message in `errors`; `None` sends `{"errors":[]}` as Vault does for some responses.
    pub message: Option<String>,
    /// A short, stable reason for the audit log and metrics.
    pub reason: &'static str,
    /// Seconds for a `Retry-After` header.
    pub retry_after_secs: Option<u64>,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: Option<String>) -> Self {
        Self {
            status,
            message,
            reason,
            retry_after_secs: None,
        }
    }

    /// 400 for a malformed path (empty segment, `.`/`..`, percent escape, bad character).
    pub fn bad_path(error: &PathError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some(error.to_string()),
        )
    }

    /// 400 for a malformed body, query or parameter.
    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, Some(message.into()))
    }

    /// 404 for a path that no route serves.
    pub fn unsupported_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unsupported_path",
            Some("unsupported path".into()),
        )
    }

    /// 405 for a known path and a method it does not serve.
    pub fn unsupported_operation() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported_operation",
            Some("unsupported operation".into()),
        )
    }

    /// 405 with an empty error list, as Vault sends for `sys/health`.
    pub fn method_not_allowed_silent() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported_operation",
            None,
        )
    }

    /// 403 for a mount lookup the caller may not see, with OpenBao's message.
    pub fn mount_not_visible(path: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "mount_not_visible",
            Some(format!(
                "preflight capability check returned 403, please ensure client's policies grant access to path \"{path}/\""
            )),
        )
    }

    /// 415 for a PATCH without `Content-Type: application/merge-patch+json`.
    pub fn unsupported_media_type(provided: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some(format!(
                "PATCH requires Content-Type of application/merge-patch+json, provided {provided}"
            )),
        )
    }

    /// 413 for a body over the configured limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            Some(format!("request body larger than {limit} bytes")),
        )
    }

    /// 431 for a request head over the configured limit.
    pub fn headers_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            Some(format!(
                "request line and headers larger than {limit} bytes"
            )),
        )
    }

    /// 429 for a client over its rate.
    pub fn rate_limited(reason: &'static str, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                reason,
                Some("rate limit exceeded: slow down and retry later".into()),
            )
        }
    }

    /// 503 when every request slot is busy.
    pub fn overloaded() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_concurrent_requests",
                Some("server busy: too many concurrent requests, retry later".into()),
            )
        }
    }

    /// 503 when the client's address already has its share of the request slots busy.
    pub fn overloaded_address() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_concurrent_requests_address",
                Some(
                    "server busy: too many concurrent requests from this address, retry later"
                        .into(),
                ),
            )
        }
    }

    /// 400 for a request for response wrapping, which Keyward does not implement.
    pub fn wrapping_unsupported() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "response_wrapping_unsupported",
            Some("response wrapping is not supported".into()),
        )
    }

    /// 408 when the client did not send its body within the body read timeout.
    pub fn body_read_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_read_timeout",
            Some("request body not received in time".into()),
        )
    }

    /// 408 when the client did not send its body in time.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            Some("request body not received in time".into()),
        )
    }

    /// 503 when the request did not finish in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            Some("request timed out".into()),
        )
    }

    /// 500 for a request the router cannot serve because of a setup mistake.
    pub fn internal(reason: &'static str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            reason,
            Some("internal error".into()),
        )
    }

    /// Builds the Vault-shaped response.
    pub fn to_response(&self) -> Response {
        let errors: Vec<&str> = self.message.as_deref().into_iter().collect();
        let mut response = vault_errors(self.status, &errors);
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Everything a route handler can fail with.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The manager refused or failed the operation; it has audited the outcome.
    Manager(ManagerError),
    /// The request never reached an operation; it still needs an audit entry.
    Rejected(Rejection),
}

impl From<ManagerError> for ApiError {
    fn from(error: ManagerError) -> Self {
        ApiError::Manager(error)
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        ApiError::Rejected(rejection)
    }
}

/// Builds `{"errors": [...]}` with `status`.
pub(crate) fn vault_errors(status: StatusCode, errors: &[&str]) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}

/// Maps a manager error onto Vault's status codes and messages.
///
/// Unknown tokens, wrong tokens, forbidden paths and secrets the caller may not read all get
/// the same 403 body, so a response does not reveal which one it was.
pub(crate) fn manager_error_response(error: &ManagerError) -> Response {
    match error {
        ManagerError::PermissionDenied => {
            vault_errors(StatusCode::FORBIDDEN, &["permission denied"])
        }
        ManagerError::LockedOut { retry_after_secs } => {
            let mut response = vault_errors(
                StatusCode::TOO_MANY_REQUESTS,
                &["too many failed authentication attempts: try again later"],
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            response
        }
        ManagerError::NotFound => vault_errors(StatusCode::NOT_FOUND, &[]),
        // OpenBao 2.7 returns 400 for both check-and-set failures.
        ManagerError::CasMismatch | ManagerError::CasRequired => {
            vault_errors(StatusCode::BAD_REQUEST, &[&error.to_string()])
        }
        ManagerError::Invalid(message) => vault_errors(StatusCode::BAD_REQUEST, &[message]),
        ManagerError::Unavailable(detail) => {
            tracing::error!(%detail, "storage backend unavailable");
            vault_errors(
                StatusCode::SERVICE_UNAVAILABLE,
                &["storage unavailable: retry later"],
            )
        }
        // The message names the path, the staleness limit and the last sync time, never a value.
        ManagerError::StaleLimitExceeded { .. } => {
            tracing::warn!(error = %error, "stale read rejected: cached copy past the maximum staleness");
            vault_errors(StatusCode::SERVICE_UNAVAILABLE, &[&error.to_string()])
        }
        ManagerError::AuditFailed => vault_errors(
            StatusCode::SERVICE_UNAVAILABLE,
            &["audit log unavailable: request refused"],
        ),
        ManagerError::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            vault_errors(StatusCode::INTERNAL_SERVER_ERROR, &["internal error"])
        }
        other => {
            tracing::error!(error = %other, "unmapped manager error");
            vault_errors(StatusCode::INTERNAL_SERVER_ERROR, &["internal error"])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body reads");
        serde_json::from_slice(&bytes).expect("body is JSON")
    }

    #[tokio::test]
    async fn not_found_has_empty_error_list() {
        let response = manager_error_response(&ManagerError::NotFound);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(response).await, json!({ "errors": [] }));
    }

    #[tokio::test]
    async fn cas_mismatch_is_bad_request() {
        let response = manager_error_response(&ManagerError::CasMismatch);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(response).await,
            json!({ "errors": ["check-and-set parameter did not match the current version"] })
        );
    }

    #[tokio::test]
    async fn internal_detail_is_not_sent() {
        let response = manager_error_response(&ManagerError::Internal("db row 7 corrupt".into()));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body_json(response).await,
            json!({ "errors": ["internal error"] })
        );
    }

    #[tokio::test]
    async fn unavailable_detail_is_not_sent() {
        let response =
            manager_error_response(&ManagerError::Unavailable("disk /var/x full".into()));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_json(response).await.to_string();
        assert!(!body.contains("/var/x"), "{body}");
    }

    #[tokio::test]
    async fn stale_limit_names_last_sync() {
        let error = ManagerError::StaleLimitExceeded {
            path: "app/db".into(),
            last_sync: time::macros::datetime!(2026-12-04 20:01:07 UTC),
            max_stale_secs: 3600,
        };
        let response = manager_error_response(&error);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_json(response).await.to_string();
        assert!(body.contains("2026-12-04T20:01:07Z"), "{body}");
        assert!(body.contains("app/db"), "{body}");
    }

    #[tokio::test]
    async fn lockout_sends_remaining_seconds() {
        let response = manager_error_response(&ManagerError::LockedOut {
            retry_after_secs: 287,
        });
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(287u64))
        );
    }

    #[tokio::test]
    async fn rate_limit_sets_retry_after() {
        let response = Rejection::rate_limited("rate_limited_address", 0).to_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(1u64))
        );
    }
}
