//! `keyward audit verify`.
//!
//! A log that cannot be read exits with 1, like any other I/O failure. Exit code 6 means that
//! the log was read and failed verification.

use std::path::Path;

use keyward_audit::VerifyError;
use serde_json::json;

use crate::cli::{AuditCommand, Format};
use crate::error::CliError;

/// Runs an `audit` subcommand.
pub fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify { file, format } => {
            check_readable(&file)?;
            let report = keyward_audit::verify(&file).map_err(|e| verify_error(&file, e))?;
            match format {
                Format::Json => println!(
                    "{}",
                    json!({
                        "valid": true,
                        "entries": report.entries,
                        "last_seq": report.last_seq,
                        "last_hash": report.last_hash,
                        "head_checked": report.head_checked,
                        "partial_last_line": report.partial_last_line,
                    })
                ),
                Format::Table => {
                    println!(
                        "audit log {} is intact: {} entries, last sequence number {}",
                        file.display(),
                        report.entries,
                        report.last_seq
                    );
                    if !report.head_checked {
                        println!(
                            "warning: no head file found, so a cut-off tail cannot be detected"
                        );
                    }
                    if report.partial_last_line {
                        println!(
                            "warning: the log ends with a partial line, a write cut off by a \
                             crash before it was acknowledged; it was not checked, and the \
                             server removes it when it next opens the log"
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// Fails with exit code 1 when `file` is missing, unreadable or a directory.
fn check_readable(file: &Path) -> Result<(), CliError> {
    let cannot_read = |reason: String| {
        CliError::Other(format!(
            "cannot read audit log {}: {reason}",
            file.display()
        ))
    };

    let metadata = std::fs::metadata(file).map_err(|e| cannot_read(e.to_string()))?;
    if metadata.is_dir() {
        return Err(cannot_read(
            "it is a directory (give the log file, such as audit/audit.log in the data dir)".into(),
        ));
    }
    std::fs::File::open(file).map_err(|e| cannot_read(e.to_string()))?;
    Ok(())
}

fn verify_error(file: &Path, error: VerifyError) -> CliError {
    match error {
        // The message of the I/O error names the operation and the file (the log or its head).
        VerifyError::Io(io_error) => CliError::Other(format!(
            "cannot read audit log {}: {io_error}",
            file.display()
        )),
        tampered => CliError::AuditInvalid(format!(
            "{} failed verification: {tampered}",
            file.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use super::*;

    #[test]
    fn missing_log_is_read_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("audit.log");

        let error = check_readable(&missing).expect_err("no such file");

        assert_eq!(error.exit_code(), ExitCode::from(1));
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot read audit log {}: ", missing.display())),
            "{error}"
        );
    }

    #[test]
    fn directory_is_read_failure() {
        let dir = tempfile::tempdir().expect("tempdir");

        let error = check_readable(dir.path()).expect_err("a directory");

        assert_eq!(error.exit_code(), ExitCode::from(1));
        assert!(error.to_string().contains("is a directory"), "{error}");
    }

    #[test]
    fn verification_failure_is_worded_once() {
        let error = verify_error(
            Path::new("audit.log"),
            VerifyError::Edited { line: 3, seq: 3 },
        );

        assert_eq!(error.exit_code(), ExitCode::from(6));
        let message = error.to_string();
        assert_eq!(message.matches("verification").count(), 1, "{message}");
        assert!(
            message.starts_with("audit.log failed verification: "),
            "{message}"
        );
    }
}
