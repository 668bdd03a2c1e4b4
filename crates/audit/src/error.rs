//! Error types of the audit log and of its verifier.

use std::io;
use std::path::Path;

/// Error returned by [`AuditLog::open`](crate::AuditLog::open) and
/// [`AuditLog::append`](crate::AuditLog::append).
///
/// When `append` returns any of these, the entry is not known to be durable and the caller
/// must reject the request it was recording.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing or syncing a file failed. The message names the file and the
    /// operation. After a failed write or sync the log stays failed until the process restarts.
    #[error("audit log i/o failed: {0}")]
    Io(io::Error),

    /// The log was closed, or its writer thread stopped.
    #[error("audit log is closed")]
    Closed,

    /// The log or its head file is damaged, so appending could hide tampering.
    #[error("audit log is corrupt: {0}")]
    Corrupt(String),
}

impl AuditError {
    /// Wraps `source` in an [`AuditError::Io`] whose message names the failed operation and
    /// the file, keeping the original [`io::ErrorKind`].
    pub(crate) fn io(operation: &str, path: &Path, source: io::Error) -> Self {
        AuditError::Io(io_context(operation, path, source))
    }
}

/// Error returned by [`verify`](crate::verify). Line numbers count from 1.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The line's `hash` field does not match the SHA-256 of its contents.
    #[error("audit log line {line} (seq {seq}) was edited: its hash does not match its contents")]
    Edited {
        /// Line number of the edited entry.
        line: u64,
        /// Sequence number written in that line.
        seq: u64,
    },

    /// The line has a higher sequence number than expected, and the expected one does not
    /// appear later in the file.
    #[error(
        "audit log entries were removed before line {line}: expected seq {expected_seq}, found seq {found_seq}"
    )]
    Removed {
        /// Line number where the gap shows.
        line: u64,
        /// Sequence number that should have come next.
        expected_seq: u64,
        /// Sequence number written in that line.
        found_seq: u64,
    },

    /// The line has a sequence number out of order: a lower one than expected (a moved or
    /// repeated entry), or a higher one while the expected entry appears later in the file.
    #[error(
        "audit log entries were reordered at line {line}: expected seq {expected_seq}, found seq {found_seq}"
    )]
    Reordered {
        /// Line number of the out-of-order entry.
        line: u64,
        /// Sequence number that should have come next.
        expected_seq: u64,
        /// Sequence number written in that line.
        found_seq: u64,
    },

    /// The line's `prev` field does not match the hash of the line before it, although the
    /// line itself is intact: an earlier line was rewritten with a recomputed hash.
    #[error(
        "audit log chain is broken at line {line} (seq {seq}): prev does not match the previous entry's hash"
    )]
    BrokenChain {
        /// Line number whose `prev` does not match.
        line: u64,
        /// Sequence number written in that line.
        seq: u64,
    },

    /// The head file records a later entry than the last one in the log, so entries were cut
    /// from the end.
    #[error(
        "audit log was truncated: its last entry is seq {last_seq} but its head file records seq {head_seq}"
    )]
    Truncated {
        /// Sequence number of the last complete entry in the log (0 if it has none).
        last_seq: u64,
        /// Sequence number recorded in the head file.
        head_seq: u64,
    },

    /// The head file records a hash for one of the log's entries that differs from the entry's
    /// hash, so the log was rewritten after the head file was.
    #[error("audit log line {line} (seq {seq}) does not match the hash recorded in its head file")]
    HeadMismatch {
        /// Line number of the entry the head file records.
        line: u64,
        /// Sequence number recorded in the head file.
        seq: u64,
    },

    /// A line is not a well-formed audit entry.
    #[error("audit log line {line} is malformed: {reason}")]
    Malformed {
        /// Line number of the malformed line.
        line: u64,
        /// Description of the problem.
        reason: String,
    },

    /// The head file is not in the expected format.
    #[error("audit head file is malformed: {reason}")]
    MalformedHead {
        /// Description of the problem.
        reason: String,
    },

    /// Reading the log or its head file failed. The message names the file.
    #[error("audit log verification failed: {0}")]
    Io(io::Error),
}

impl VerifyError {
    pub(crate) fn io(operation: &str, path: &Path, source: io::Error) -> Self {
        VerifyError::Io(io_context(operation, path, source))
    }
}

/// Builds an [`io::Error`] of the same kind whose message names the operation and the file.
pub(crate) fn io_context(operation: &str, path: &Path, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        format!("{operation} {}: {source}", path.display()),
    )
}
