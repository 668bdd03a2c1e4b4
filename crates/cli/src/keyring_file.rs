//! Crash-safe replacement of small files, and the sink that saves the keyring to
//! `keyring.json` with it.
//!
//! A replacement writes a temporary file (mode 0600) beside the target, syncs it, renames it
//! over the target and syncs the directory. A crash at any point leaves either the old file or
//! the new one, never a mix or an empty file. This module does not lock against a second
//! process writing the same file.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keyward_crypto::WrappedKeyring;
use keyward_manager::KeyringSink;

/// Replaces `path` with `bytes` atomically; the new file has mode 0600.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;

    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;

    // The rename is durable only once the directory entry is synced.
    File::open(dir)?.sync_all()
}

/// Saves the wrapped keyring to a file with [`replace_file`].
#[derive(Debug)]
pub struct KeyringFile {
    path: PathBuf,
}

impl KeyringFile {
    /// Creates a sink that writes to `path`, normally the data dir's `keyring.json`.
    pub fn new(path: PathBuf) -> KeyringFile {
        KeyringFile { path }
    }
}

impl KeyringSink for KeyringFile {
    fn save(&self, wrapped: &WrappedKeyring) -> Result<(), String> {
        replace_file(&self.path, wrapped.to_json().as_bytes())
            .map_err(|error| format!("cannot replace {}: {error}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_swaps_content_and_keeps_mode_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        std::fs::write(&path, "old").expect("write old");

        replace_file(&path, b"new").expect("replace");

        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("keyring.json")],
            "no temporary file left"
        );
    }

    #[test]
    fn replace_into_missing_directory_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing-dir").join("keyring.json");
        assert!(replace_file(&path, b"new").is_err());
        assert!(!path.exists());
    }
}
