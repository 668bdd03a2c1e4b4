//! Audit log checks: the audit dir exists and the current user may write to it, and the log's
//! hash chain verifies.
//!
//! Writability is judged from mode bits and ownership, without writing, so the live log is
//! never touched. Verifying reads the whole log, which takes time on a large one.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Check;
use super::files::User;
use crate::datadir::DataDir;

const DIR: &str = "audit dir";
const CHAIN: &str = "audit log chain";

/// Checks the audit dir and the log's chain in the data dir `data_dir`.
pub fn check(data_dir: &Path, user: User) -> Vec<Check> {
    let log = DataDir::new(data_dir).audit_log();
    vec![check_writable(&log, user), check_chain(&log)]
}

/// Checks that the directory of `log`, and `log` itself when it exists, are writable by
/// `user`. The server fails closed, rejecting every request, when it cannot append.
fn check_writable(log: &Path, user: User) -> Check {
    let Some(dir) = log.parent() else {
        return Check::fail(
            DIR,
            format!("{} has no parent directory", log.display()),
            "check data_dir in the configuration",
        );
    };
    let display = dir.display();
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => metadata,
        Ok(_) => {
            return Check::fail(
                DIR,
                format!("{display} is not a directory"),
                format!("move the file away and run mkdir -m 700 {display}"),
            );
        }
        Err(error) => {
            return Check::fail(
                DIR,
                format!("cannot read audit dir {display}: {error}"),
                format!("run mkdir -m 700 {display}, or check data_dir in the configuration"),
            );
        }
    };
    if !allows(&metadata, user, 0o3) {
        return Check::fail(
            DIR,
            format!(
                "audit dir {display} (mode {:04o}, uid {}) is not writable by uid {}",
                metadata.mode() & 0o7777,
                metadata.uid(),
                user.uid
            ),
            format!("run chmod 700 {display} as its owner, the user that runs the server"),
        );
    }

    if let Ok(file) = std::fs::metadata(log)
        && !allows(&file, user, 0o2)
    {
        return Check::fail(
            DIR,
            format!(
                "audit log {} (mode {:04o}) is not writable by uid {}",
                log.display(),
                file.mode() & 0o7777,
                user.uid
            ),
            format!("run chmod 600 {} as its owner", log.display()),
        );
    }
    Check::pass(DIR, format!("{display} is writable"))
}

/// Returns whether the mode bits of `metadata` grant `user` every permission in `required`
/// (`0o4` read, `0o2` write, `0o1` execute), taking the owner, group or other bits as the
/// kernel would.
fn allows(metadata: &Metadata, user: User, required: u32) -> bool {
    // Root ignores mode bits, but the server should not run as root, so for root the owner's
    // bits are judged: they are what the server's user gets when it owns the files.
    let shift = if user.uid == 0 || metadata.uid() == user.uid {
        6
    } else if metadata.gid() == user.gid {
        3
    } else {
        0
    };
    (metadata.mode() >> shift) & required == required
}

/// Verifies the hash chain of `log`; passes with the entry count, warns when verification
/// passed with reservations, such as a missing head file.
fn check_chain(log: &Path) -> Check {
    let display = log.display();
    if !log.exists() {
        return Check::fail(
            CHAIN,
            format!("audit log {display} not found"),
            "restore it from a backup, or start the server to begin a new log",
        );
    }

    match keyward_audit::verify(log) {
        Ok(report) => {
            let warnings = report.warnings();
            if warnings.is_empty() {
                return Check::pass(
                    CHAIN,
                    format!(
                        "{display}: chain intact up to sequence number {}",
                        report.last_seq
                    ),
                );
            }
            Check::warn(
                CHAIN,
                format!("audit log {display}: {}", warnings.join("; ")),
                format!("run keyward audit verify {display} for details"),
            )
        }
        Err(error) => Check::fail(
            CHAIN,
            format!("audit log {display} failed verification: {error}"),
            "keep the file as evidence, compare it with a backup and find out who changed it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use keyward_audit::{AuditKey, AuditLog};

    use super::*;
    use crate::doctor::Status;

    fn audit_dir(root: &Path, mode: u32) -> std::path::PathBuf {
        let dir = root.join("audit");
        std::fs::create_dir(&dir).expect("create audit dir");
        std::fs::set_permissions(&dir, Permissions::from_mode(mode)).expect("chmod");
        dir.join("audit.log")
    }

    #[test]
    fn writable_audit_dir_passes() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = audit_dir(root.path(), 0o700);

        let check = check_writable(&log, User::current());

        assert_eq!(check.status, Status::Pass, "{check:?}");
    }

    #[test]
    fn read_only_audit_dir_fails() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = audit_dir(root.path(), 0o500);

        let check = check_writable(&log, User::current());

        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.message.contains("mode 0500"), "{check:?}");
        std::fs::set_permissions(log.parent().expect("parent"), Permissions::from_mode(0o700))
            .expect("chmod back");
    }

    #[test]
    fn read_only_audit_log_fails() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = audit_dir(root.path(), 0o700);
        std::fs::write(&log, b"").expect("create log");
        std::fs::set_permissions(&log, Permissions::from_mode(0o400)).expect("chmod");

        let check = check_writable(&log, User::current());

        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.message.contains("mode 0400"), "{check:?}");
    }

    #[test]
    fn missing_audit_dir_fails() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = root.path().join("audit").join("audit.log");

        let check = check_writable(&log, User::current());

        assert_eq!(check.status, Status::Fail, "{check:?}");
    }

    #[test]
    fn other_users_bits_apply_to_strangers() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = audit_dir(root.path(), 0o700);
        let me = User::current();
        let stranger = User {
            uid: me.uid.wrapping_add(1),
            gid: me.gid.wrapping_add(1),
        };

        let check = check_writable(&log, stranger);

        assert_eq!(check.status, Status::Fail, "{check:?}");
    }

    #[tokio::test]
    async fn intact_log_passes_chain_check() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = audit_dir(root.path(), 0o700);
        let audit = AuditLog::open(&log, AuditKey::from_bytes([7; 32])).expect("open log");
        let mut entry = serde_json::Map::new();
        entry.insert("type".into(), "test".into());
        audit.append(entry).await.expect("append");
        audit.close();

        let check = check_chain(&log);

        assert_eq!(check.status, Status::Pass, "{check:?}");
        assert!(
            check
                .message
                .ends_with("chain intact up to sequence number 1"),
            "{check:?}"
        );
    }

    #[tokio::test]
    async fn edited_log_fails_chain_check() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = audit_dir(root.path(), 0o700);
        let audit = AuditLog::open(&log, AuditKey::from_bytes([7; 32])).expect("open log");
        let mut entry = serde_json::Map::new();
        entry.insert("type".into(), "test".into());
        audit.append(entry).await.expect("append");
        audit.close();
        let text = std::fs::read_to_string(&log).expect("read log");
        std::fs::write(&log, text.replace("\"test\"", "\"edit\"")).expect("edit log");

        let check = check_chain(&log);

        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.message.contains("failed verification"), "{check:?}");
        assert!(check.message.contains("was edited"), "{check:?}");
    }

    #[test]
    fn missing_log_fails_chain_check() {
        let root = tempfile::tempdir().expect("tempdir");
        let check = check_chain(&root.path().join("audit.log"));
        assert_eq!(check.status, Status::Fail, "{check:?}");
    }
}
