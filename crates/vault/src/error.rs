//! The client's error type.
//!
//! Errors name the operation that failed and its path. They never contain a token, a secret ID or
//! secret data: request bodies are not echoed, and Vault's own error strings describe the
//! failure, not the values sent.

/// Why a call to Vault or OpenBao failed.
///
/// [`VaultError::is_retryable`] separates "the backend is down" (unreachable, timed out, 5xx,
/// sealed) from rejections of the request itself (4xx), which a retry does not change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The client configuration is unusable (address, CA file, mount name).
    #[error("invalid vault client configuration: {0}")]
    Config(String),
    /// No connection could be made, or it broke before a response arrived.
    #[error("vault at {address} is unreachable during {operation}: {reason}")]
    Unreachable {
        /// The server address.
        address: String,
        /// Operation in progress, such as `read secret/data/app/db`.
        operation: String,
        /// The transport error.
        reason: String,
    },
    /// The request got no complete response within the client's timeout.
    #[error("vault request {operation} timed out after {timeout_secs} s")]
    Timeout {
        /// Operation in progress.
        operation: String,
        /// The timeout that expired, in seconds.
        timeout_secs: u64,
    },
    /// Vault responded with a 5xx status: sealed, standby without forwarding, or an internal
    /// failure.
    #[error("vault failed {operation} with status {status}: {message}")]
    Server {
        /// Operation in progress.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// Vault's error text.
        message: String,
    },
    /// The token lacks a capability, has expired, or a login was rejected (403).
    #[error("vault denied {operation}: permission denied; check the token's or role's policies")]
    PermissionDenied {
        /// Operation in progress.
        operation: String,
    },
    /// The path, version, key or mount does not exist (404).
    #[error("vault has nothing at {operation}: not found")]
    NotFound {
        /// Operation in progress.
        operation: String,
    },
    /// A KV v2 write's `cas` did not match the current version.
    #[error(
        "vault rejected {operation}: check-and-set parameter did not match the current version"
    )]
    CasMismatch {
        /// Operation in progress.
        operation: String,
    },
    /// A KV v2 write carried no `cas` on a secret that requires one.
    #[error("vault rejected {operation}: check-and-set parameter required")]
    CasRequired {
        /// Operation in progress.
        operation: String,
    },
    /// Vault rejected the request as invalid (another 4xx status).
    #[error("vault rejected {operation} with status {status}: {message}")]
    Invalid {
        /// Operation in progress.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// Vault's error text.
        message: String,
    },
    /// The response did not have the expected shape.
    #[error("unexpected vault response to {operation}: {reason}")]
    Decode {
        /// Operation in progress.
        operation: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl VaultError {
    /// Returns whether the failure means the backend is down or overloaded (unreachable, timed
    /// out, 5xx), so the same request may succeed later. 4xx responses are not retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            VaultError::Unreachable { .. } | VaultError::Timeout { .. } | VaultError::Server { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backend_failures_are_retryable() {
        let op = || "read kv/data/a".to_owned();
        let retryable = [
            VaultError::Unreachable {
                address: "http://127.0.0.1:1".into(),
                operation: op(),
                reason: "connection refused".into(),
            },
            VaultError::Timeout {
                operation: op(),
                timeout_secs: 5,
            },
            VaultError::Server {
                operation: op(),
                status: 503,
                message: "Vault is sealed".into(),
            },
        ];
        let final_answers = [
            VaultError::PermissionDenied { operation: op() },
            VaultError::NotFound { operation: op() },
            VaultError::CasMismatch { operation: op() },
            VaultError::CasRequired { operation: op() },
            VaultError::Invalid {
                operation: op(),
                status: 400,
                message: "bad".into(),
            },
        ];

        for error in &retryable {
            assert!(error.is_retryable(), "{error} should be retryable");
        }
        for error in &final_answers {
            assert!(!error.is_retryable(), "{error} should not be retryable");
        }
    }
}
