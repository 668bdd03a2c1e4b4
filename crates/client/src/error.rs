//! The client's error type. Messages name the secret path and what to try; they never contain
//! a token or a secret value.

use std::time::Duration;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid or incomplete.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The secret does not exist, or its current version is deleted.
    #[error("secret {path} not found")]
    NotFound {
        /// The secret's path.
        path: String,
    },
    /// The secret exists but has no such field.
    #[error("secret {path} has no field {field:?}")]
    MissingField {
        /// The secret's path.
        path: String,
        /// The field asked for.
        field: String,
    },
    /// The token is invalid, expired or lacks the `read` capability on the path.
    #[error("permission denied reading {path}: check the token and its policies")]
    PermissionDenied {
        /// The secret's path.
        path: String,
    },
    /// The server could not be reached or failed, and no usable cached or fallback value exists.
    #[error("keyward server unavailable while reading {path}: {reason}")]
    Unavailable {
        /// The secret's path.
        path: String,
        /// The transport error or HTTP status.
        reason: String,
    },
    /// The circuit breaker is open after repeated failures and no usable cached value exists.
    #[error(
        "keyward server unavailable while reading {path}: circuit open after repeated failures, next attempt in {retry_in:?}"
    )]
    CircuitOpen {
        /// The secret's path.
        path: String,
        /// Time until the breaker lets a request through again.
        retry_in: Duration,
    },
    /// The server's response could not be understood.
    #[error("invalid response from keyward server for {path}: {reason}")]
    InvalidResponse {
        /// The secret's path.
        path: String,
        /// The problem found in the response.
        reason: String,
    },
    /// The secret's data does not match the requested type.
    #[error("secret {path} does not match the requested type: {reason}")]
    Decode {
        /// The secret's path.
        path: String,
        /// serde's message, which names fields and types but not values.
        reason: String,
    },
}

impl Error {
    /// Returns whether the error is about the server being unreachable or failing (as opposed
    /// to a response such as "not found"), so a stale cached value may be served instead.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::CircuitOpen { .. })
    }
}
