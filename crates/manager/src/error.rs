//! The manager's error type.
//!
//! Messages are safe to send to a client: they name no secret value and no token, and for
//! authorisation failures they do not reveal whether a path exists.

use keyward_store::StoreError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn rfc3339(time: &OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.to_string())
}

/// Why a manager operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// Missing, unknown or expired token, or a path outside the token's policies.
    #[error("permission denied")]
    PermissionDenied,
    /// The caller's address failed authentication too often and is locked out for a while.
    #[error("too many failed authentication attempts: try again later")]
    LockedOut {
        /// Whole seconds, rounded up, until the lock ends (at least 1).
        retry_after_secs: u64,
    },
    /// The secret, version, token or policy does not exist.
    #[error("not found")]
    NotFound,
    /// A check-and-set version did not match.
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    /// The secret requires check-and-set and the request had none.
    #[error("check-and-set parameter required for this call")]
    CasRequired,
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The storage backend failed; nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The storage backend failed and the cached copy of the secret is older than the maximum
    /// staleness, so it is not served. The message names no value, only times.
    #[error(
        "storage backend unavailable and the cached copy of {path} is older than the maximum staleness of {max_stale_secs}s: last successful sync at {}; retry later",
        rfc3339(.last_sync)
    )]
    StaleLimitExceeded {
        /// The secret's path.
        path: String,
        /// The secret's last successful sync with the backend.
        last_sync: OffsetDateTime,
        /// The configured maximum staleness, in seconds.
        max_stale_secs: u64,
    },
    /// The audit log could not be written, so the request was refused.
    #[error("audit log unavailable: request refused")]
    AuditFailed,
    /// A bug or corrupt data. The detail is for the server log only.
    #[error("internal error: {0}")]
    Internal(String),
    /// A rotation tried to write a pending version while another one exists.
    #[error(
        "the secret already has pending version {version}: finish or discard that rotation first"
    )]
    PendingExists {
        /// The existing pending version.
        version: u64,
    },
}

impl ManagerError {
    /// Returns a short, stable name for audit entries and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ManagerError::PermissionDenied => "permission_denied",
            ManagerError::LockedOut { .. } => "locked_out",
            ManagerError::NotFound => "not_found",
            ManagerError::CasMismatch => "cas_mismatch",
            ManagerError::CasRequired => "cas_required",
            ManagerError::Invalid(_) => "invalid_request",
            ManagerError::Unavailable(_) => "unavailable",
            ManagerError::StaleLimitExceeded { .. } => "stale_limit_exceeded",
            ManagerError::AuditFailed => "audit_failed",
            ManagerError::Internal(_) => "internal",
            ManagerError::PendingExists { .. } => "pending_exists",
        }
    }
}

impl From<StoreError> for ManagerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ManagerError::NotFound,
            StoreError::CasMismatch => ManagerError::CasMismatch,
            StoreError::CasRequired => ManagerError::CasRequired,
            StoreError::Invalid(message) => ManagerError::Invalid(message),
            StoreError::Backend(message) => ManagerError::Unavailable(message),
            StoreError::PendingExists { version } => ManagerError::PendingExists { version },
            other => ManagerError::Internal(other.to_string()),
        }
    }
}
