//! `keyward audit verify`.

use serde_json::json;

use crate::cli::{AuditCommand, Format};
use crate::error::CliError;

/// Runs an `audit` subcommand.
pub fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify { file, format } => {
            let report = keyward_audit::verify(&file).map_err(|e| {
                CliError::AuditInvalid(format!(
                    "audit log {} failed verification: {e}",
                    file.display()
                ))
            })?;
            match format {
                Format::Json => println!(
                    "{}",
                    json!({
                        "valid": true,
                        "entries": report.entries,
                        "last_seq": report.last_seq,
                        "last_hash": report.last_hash,
                        "head_checked": report.head_checked,
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
                }
            }
            Ok(())
        }
    }
}
