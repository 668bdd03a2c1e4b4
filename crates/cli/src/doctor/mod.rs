//! `keyward doctor`: checks a deployment's security settings and prints one line per check.
//!
//! Each check is a small function that returns a [`Check`]: pass, warn, fail, or skip when it
//! cannot run (a variable is not set, the server is not reachable). Every warning and failure
//! carries the fix. The command exits with 1 when any check fails; warnings alone exit 0.
//!
//! The checks only read: file modes, the configuration, the certificate, the audit log's
//! chain, and one `lookup-self` request when `KEYWARD_TOKEN` is set. Doctor changes nothing,
//! and it does not judge what it cannot see, such as firewall rules or the server's user.

mod audit;
mod certificate;
mod files;
mod passphrase;
mod settings;
mod token;

use serde::Serialize;
use serde_json::json;

use crate::cli::{DoctorArgs, Format};
use crate::config::Config;
use crate::datadir;
use crate::error::CliError;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The setting is safe.
    Pass,
    /// The setting works but weakens the deployment.
    Warn,
    /// The setting is unsafe or broken.
    Fail,
    /// The check could not run, and the message gives the reason.
    Skip,
}

impl Status {
    /// Returns the label that starts a line of the table.
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check's result. Messages never contain a secret: a passphrase is judged, not shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Name of the check, such as `data dir permissions`.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// Finding, naming the file or setting.
    pub message: String,
    /// Fix for a warning or failure, or `None` for pass and skip.
    pub fix: Option<String>,
}

impl Check {
    /// Creates a passed check.
    pub fn pass(name: &str, message: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, message.into(), None)
    }

    /// Creates a warning with its fix.
    pub fn warn(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, message.into(), Some(fix.into()))
    }

    /// Creates a failure with its fix.
    pub fn fail(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, message.into(), Some(fix.into()))
    }

    /// Creates a check that could not run, with the reason.
    pub fn skip(name: &str, reason: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, reason.into(), None)
    }

    fn new(name: &str, status: Status, message: String, fix: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            status,
            message,
            fix,
        }
    }

    /// Renders the check as one line of the table: the name for a pass, the reason for a
    /// skip, and the message with its fix otherwise.
    fn line(&self) -> String {
        let text = match (self.status, &self.fix) {
            (Status::Pass, _) => self.name.clone(),
            (Status::Skip, _) => format!("{}: {}", self.name, self.message),
            (_, Some(fix)) => format!("{}: {fix}", self.message),
            (_, None) => self.message.clone(),
        };
        format!("{}  {text}", self.status.label())
    }
}

/// `keyward doctor`.
pub async fn run(args: DoctorArgs) -> Result<(), CliError> {
    let mut config = Config::load(&args.config)?;
    // `init` writes `data_dir = "."`, so drop the `.` component to print paths that can be
    // pasted as they are.
    config.data_dir = config.data_dir.components().collect();
    let checks = run_checks(&config).await;

    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let failed = count(Status::Fail);
    let warnings = count(Status::Warn);
    match args.format {
        Format::Json => {
            let out = json!({ "checks": checks, "failed": failed, "warnings": warnings });
            println!("{out}");
        }
        Format::Table => {
            for check in &checks {
                println!("{}", check.line());
            }
            println!(
                "{} checks: {} passed, {warnings} warnings, {failed} failed, {} skipped",
                checks.len(),
                count(Status::Pass),
                count(Status::Skip),
            );
        }
    }

    if failed > 0 {
        return Err(CliError::Other(format!(
            "{failed} of {} checks failed: apply the fixes above and run keyward doctor again",
            checks.len()
        )));
    }
    Ok(())
}

/// Runs every check against `config`, in the order they are printed.
async fn run_checks(config: &Config) -> Vec<Check> {
    let user = files::User::current();
    let (cert_file, key_file) = datadir::tls_files(config);

    let mut checks = files::check_data_dir(config, &key_file, user);
    checks.push(passphrase::check(&config.root_key));
    checks.push(token::check(config).await);
    checks.extend(certificate::check(
        &cert_file,
        config.listen,
        time::OffsetDateTime::now_utc(),
    ));
    checks.extend(audit::check(&config.data_dir, user));
    let client_cert_required = config
        .tls
        .as_ref()
        .is_some_and(|tls| tls.require_client_cert && tls.client_ca.is_some());
    checks.push(settings::check_listen(config.listen, client_cert_required));
    checks.extend(settings::check_rate_limits(&config.limits));
    checks.extend(settings::check_request_limits(&config.limits));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_line_shows_name_only() {
        let check = Check::pass("data dir permissions", "mode 0700");
        assert_eq!(check.line(), "PASS  data dir permissions");
    }

    #[test]
    fn fail_line_shows_message_and_fix() {
        let check = Check::fail(
            "keyring.json permissions",
            "keyring.json mode 0644",
            "run chmod 600 keyring.json",
        );
        assert_eq!(
            check.line(),
            "FAIL  keyring.json mode 0644: run chmod 600 keyring.json"
        );
    }

    #[test]
    fn skip_line_shows_reason() {
        let check = Check::skip("root token", "KEYWARD_TOKEN is not set");
        assert_eq!(check.line(), "SKIP  root token: KEYWARD_TOKEN is not set");
    }

    #[test]
    fn check_serialises_with_lowercase_status() {
        let check = Check::warn("listen address", "listening on 0.0.0.0:8200", "restrict it");
        let value = serde_json::to_value(&check).expect("serialises");
        assert_eq!(
            value,
            json!({
                "name": "listen address",
                "status": "warn",
                "message": "listening on 0.0.0.0:8200",
                "fix": "restrict it",
            })
        );
    }
}
