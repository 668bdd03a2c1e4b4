//! File-mode checks of the data dir: the dir is 0700 and owned by the current user, and each
//! file holding key material or ciphertext is 0600. A stricter mode passes too.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Check;
use crate::config::{Config, RootKeySource};
use crate::datadir::DataDir;

/// Mode bits the data dir may have: the owner's only.
const DIR_MODE: u32 = 0o700;

/// Mode bits a private file may have: the owner's read and write.
const FILE_MODE: u32 = 0o600;

/// The effective user and group of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

impl User {
    /// Returns the user running this process.
    pub fn current() -> Self {
        Self {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }
}

/// Checks the data dir, `keyring.json`, `keyward.db` (and its `-wal` file when present), the
/// root key file when the configuration names one, and the TLS private key `key_file`.
pub fn check_data_dir(config: &Config, key_file: &Path, user: User) -> Vec<Check> {
    let dir = DataDir::new(&config.data_dir);
    let init_fix =
        "check data_dir in the configuration, or run keyward init to create the data dir";

    let mut checks = vec![
        check_private_dir("data dir permissions", &config.data_dir, user),
        check_private_file("keyring.json permissions", &dir.keyring(), init_fix),
        check_private_file("keyward.db permissions", &dir.database(), init_fix),
    ];

    // Files the server creates when a feature first needs them: each holds audit records,
    // rotation state or cached secrets, so each must be the owner's only once it exists.
    let audit_log = dir.audit_log();
    let optional = [
        (
            "keyward.db-wal permissions",
            config.data_dir.join("keyward.db-wal"),
        ),
        ("audit log permissions", audit_log.clone()),
        (
            "rotation.db permissions",
            config.data_dir.join("rotation.db"),
        ),
        (
            "rotation.db-wal permissions",
            config.data_dir.join("rotation.db-wal"),
        ),
        (
            "read cache permissions",
            config.data_dir.join("read-cache.bin"),
        ),
    ];
    for (name, path) in optional {
        if path.exists() {
            checks.push(check_private_file(name, &path, init_fix));
        }
    }
    if let Some(audit_dir) = audit_log.parent()
        && audit_dir != config.data_dir
        && audit_dir.exists()
    {
        checks.push(check_private_dir("audit dir permissions", audit_dir, user));
    }

    if let RootKeySource::KeyFile { path } = &config.root_key {
        checks.push(check_private_file(
            "root key file permissions",
            path,
            "check [root_key] path in the configuration",
        ));
    }

    checks.push(check_private_file(
        "TLS key permissions",
        key_file,
        "check [tls] key_file in the configuration, or put the server's key at this path",
    ));
    checks
}

/// Checks that `path` is a directory owned by `user` with no group or other permissions.
pub fn check_private_dir(name: &str, path: &Path, user: User) -> Check {
    let display = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            return Check::fail(
                name,
                format!("cannot read data dir {display}: {error}"),
                "check data_dir in the configuration, or run keyward init to create it",
            );
        }
    };
    if !metadata.is_dir() {
        return Check::fail(
            name,
            format!("data dir {display} is not a directory"),
            "point data_dir in the configuration at the directory keyward init created",
        );
    }

    if metadata.uid() != user.uid {
        return Check::fail(
            name,
            format!(
                "data dir {display} is owned by uid {}, not by the current user (uid {})",
                metadata.uid(),
                user.uid
            ),
            format!(
                "run keyward doctor as the user that runs the server, or run chown -R SERVER_USER {display}"
            ),
        );
    }

    let mode = metadata.mode();
    if mode & 0o777 & !DIR_MODE != 0 {
        return Check::fail(
            name,
            format!(
                "data dir {display} mode {:04o} lets other users in",
                mode & 0o7777
            ),
            format!("run chmod 700 {display}"),
        );
    }
    Check::pass(name, format!("{display} has mode {:04o}", mode & 0o7777))
}

/// Checks that `path` is a file with no group or other permissions; `missing_fix` is the fix
/// when it does not exist.
pub fn check_private_file(name: &str, path: &Path, missing_fix: &str) -> Check {
    let display = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Check::fail(name, format!("{display} not found"), missing_fix);
        }
        Err(error) => {
            return Check::fail(
                name,
                format!("cannot read {display}: {error}"),
                "make the file readable by the user that runs the server",
            );
        }
    };
    if !metadata.is_file() {
        return Check::fail(name, format!("{display} is not a file"), missing_fix);
    }

    let mode = metadata.mode();
    if mode & 0o777 & !FILE_MODE != 0 {
        return Check::fail(
            name,
            format!(
                "{display} mode {:04o} lets other users read or change it",
                mode & 0o7777
            ),
            format!("run chmod 600 {display}"),
        );
    }
    Check::pass(name, format!("{display} has mode {:04o}", mode & 0o7777))
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::doctor::Status;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
    }

    fn private_file(dir: &Path, name: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, b"x").expect("write file");
        set_mode(&path, mode);
        path
    }

    #[test]
    fn private_dir_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o700, 0o500] {
            set_mode(dir.path(), mode);
            let check = check_private_dir("data dir permissions", dir.path(), User::current());
            assert_eq!(check.status, Status::Pass, "mode {mode:o}: {check:?}");
        }
        set_mode(dir.path(), 0o700);
    }

    #[test]
    fn group_readable_dir_fails_with_chmod() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_mode(dir.path(), 0o750);

        let check = check_private_dir("data dir permissions", dir.path(), User::current());

        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.message.contains("mode 0750"), "{check:?}");
        assert_eq!(
            check.fix,
            Some(format!("run chmod 700 {}", dir.path().display()))
        );
    }

    #[test]
    fn dir_of_other_user_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_mode(dir.path(), 0o700);
        let me = User::current();
        let other = User {
            uid: me.uid.wrapping_add(1),
            gid: me.gid,
        };

        let check = check_private_dir("data dir permissions", dir.path(), other);

        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.message.contains(&format!("owned by uid {}", me.uid)),
            "{check:?}"
        );
    }

    #[test]
    fn missing_dir_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let check = check_private_dir(
            "data dir permissions",
            &dir.path().join("absent"),
            User::current(),
        );
        assert_eq!(check.status, Status::Fail, "{check:?}");
    }

    #[test]
    fn private_file_modes_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o600, 0o400] {
            let path = private_file(dir.path(), "keyring.json", mode);
            let check = check_private_file("keyring.json permissions", &path, "init");
            assert_eq!(check.status, Status::Pass, "mode {mode:o}: {check:?}");
        }
    }

    #[test]
    fn world_readable_file_fails_with_chmod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = private_file(dir.path(), "keyring.json", 0o644);

        let check = check_private_file("keyring.json permissions", &path, "init");

        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert_eq!(
            check.message,
            format!(
                "{} mode 0644 lets other users read or change it",
                path.display()
            )
        );
        assert_eq!(check.fix, Some(format!("run chmod 600 {}", path.display())));
    }

    #[test]
    fn missing_file_fails_with_given_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let check = check_private_file(
            "root key file permissions",
            &dir.path().join("root.key"),
            "check [root_key] path",
        );
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert_eq!(check.fix.as_deref(), Some("check [root_key] path"));
    }

    #[test]
    fn data_dir_checks_cover_wal_and_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        set_mode(dir.path(), 0o700);
        private_file(dir.path(), "keyring.json", 0o600);
        private_file(dir.path(), "keyward.db", 0o600);
        private_file(dir.path(), "keyward.db-wal", 0o644);
        private_file(dir.path(), "rotation.db", 0o644);
        std::fs::create_dir(dir.path().join("audit")).expect("audit dir");
        set_mode(&dir.path().join("audit"), 0o755);
        private_file(&dir.path().join("audit"), "audit.log", 0o644);
        let key_file = private_file(dir.path(), "root.key", 0o600);
        let tls_key = private_file(dir.path(), "key.pem", 0o600);
        let config = Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:8200".parse().expect("valid address"),
            root_key: RootKeySource::KeyFile { path: key_file },
            tls: None,
            limits: Default::default(),
            storage: Default::default(),
            rotation: Default::default(),
        };

        let checks = check_data_dir(&config, &tls_key, User::current());

        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "data dir permissions",
                "keyring.json permissions",
                "keyward.db permissions",
                "keyward.db-wal permissions",
                "audit log permissions",
                "rotation.db permissions",
                "audit dir permissions",
                "root key file permissions",
                "TLS key permissions",
            ]
        );
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "keyward.db-wal permissions",
                "audit log permissions",
                "rotation.db permissions",
                "audit dir permissions",
            ]
        );
    }
}
