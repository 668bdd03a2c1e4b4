//! The CLI's error type and its exit codes.
//!
//! Exit codes let scripts tell failures apart: 1 for a server or internal error, 2 for bad
//! usage (also what clap uses), 3 for authentication or permission failures, 4 for "not
//! found", 5 when the server cannot be reached, 6 when an audit log fails verification.

use std::process::ExitCode;

/// A command's failure. The message is one line and, where possible, names what to try.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or its input is invalid.
    #[error("{0}")]
    Usage(String),
    /// The token is missing, invalid or lacks permission, or the root key is wrong.
    #[error("{0}")]
    Auth(String),
    /// The requested item does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The server could not be reached.
    #[error("{0}")]
    Connection(String),
    /// The audit log failed verification.
    #[error("{0}")]
    AuditInvalid(String),
    /// Anything else: a server error, an I/O error, a bug.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// Returns the process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Other(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Auth(_) => 3,
            CliError::NotFound(_) => 4,
            CliError::Connection(_) => 5,
            CliError::AuditInvalid(_) => 6,
        })
    }
}
