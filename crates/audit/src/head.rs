//! The head file `<log>.head`, which records the last durable entry of the log.
//!
//! The writer rewrites it in place after every batch, once the batch is synced to the log,
//! but syncs it only now and then (see [`crate::writer`]) and when the log closes. So after a
//! crash the head is never ahead of the log, and a log that ends before its head was
//! truncated. The head may be behind the log, which opening the log repairs. The file has a fixed length, so an update never changes its size and
//! `fdatasync` needs no metadata write. The head file is not signed: anyone able to rewrite
//! both files can hide a truncation, unless the head is also copied somewhere else.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::line::is_hash_hex;

/// Size of the head file: the JSON object padded with spaces, then a newline. With the
/// maximum seq (20 digits) the object takes 102 bytes.
const HEAD_LEN: usize = 128;

/// The last durable entry of a log: its sequence number and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    seq: u64,
    hash: String,
}

/// Returns the head file path for the log at `log_path`: the same name with `.head` appended.
pub(crate) fn head_path(log_path: &Path) -> PathBuf {
    let mut name = OsString::from(log_path.as_os_str());
    name.push(".head");
    PathBuf::from(name)
}

/// Encodes `head` as exactly [`HEAD_LEN`] bytes.
fn encode(head: &Head) -> [u8; HEAD_LEN] {
    let json = format!(r#"{{"seq":{},"hash":"{}"}}"#, head.seq, head.hash);

    let mut bytes = [b' '; HEAD_LEN];
    bytes[..json.len()].copy_from_slice(json.as_bytes());
    bytes[HEAD_LEN - 1] = b'\n';
    bytes
}

/// Parses the contents of a head file.
pub(crate) fn parse(bytes: &[u8]) -> Result<Head, String> {
    if bytes.len() != HEAD_LEN {
        return Err(format!("expected {HEAD_LEN} bytes, found {}", bytes.len()));
    }

    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let raw: RawHead =
        serde_json::from_str(text.trim_end()).map_err(|e| format!("invalid JSON: {e}"))?;
    if !is_hash_hex(&raw.hash) {
        return Err("hash is not 64 lowercase hex digits".to_owned());
    }

    Ok(Head {
        seq: raw.seq,
        hash: raw.hash,
    })
}

/// Reads the head file at `path`. Returns `Ok(None)` if it does not exist, and
/// `Ok(Some(Err(reason)))` if it exists but is malformed.
pub(crate) fn read(path: &Path) -> io::Result<Option<Result<Head, String>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };

    // Read one byte past the expected length so an oversized file is reported as such.
    let mut bytes = Vec::with_capacity(HEAD_LEN + 1);
    file.by_ref()
        .take(HEAD_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;

    Ok(Some(parse(&bytes)))
}

/// Open head file, owned by the writer thread.
pub(crate) struct HeadFile {
    file: File,
    path: PathBuf,
}

impl HeadFile {
    /// Opens the head file at `path`, creating it if missing. Returns whether it was created,
    /// in which case the caller must write it and sync the directory.
    pub fn open(path: &Path) -> io::Result<(HeadFile, bool)> {
        let new_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let (file, created) = match new_file {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (OpenOptions::new().write(true).open(path)?, false)
            }
            Err(e) => return Err(e),
        };

        let head_file = HeadFile {
            file,
            path: path.to_owned(),
        };
        Ok((head_file, created))
    }

    /// Overwrites the head in place and syncs it.
    pub fn write(&self, head: &Head) -> io::Result<()> {
        self.write_unsynced(head)?;
        self.sync()
    }

    /// Overwrites the head in place without syncing it. The head is [`HEAD_LEN`] bytes at
    /// offset 0, inside the first disk sector, written with one positional write that never
    /// changes the file's size, so a crash leaves the old or the new head, not a mix.
    pub fn write_unsynced(&self, head: &Head) -> io::Result<()> {
        self.file.write_all_at(&encode(head), 0)
    }

    /// Syncs the last head written.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::ZERO_HASH;

    #[test]
    fn encoded_head_has_fixed_length() {
        let small = encode(&Head {
            seq: 0,
            hash: ZERO_HASH.to_owned(),
        });
        let large = encode(&Head {
            seq: u64::MAX,
            hash: "f".repeat(64),
        });

        assert_eq!(small.len(), HEAD_LEN);
        assert_eq!(large.len(), HEAD_LEN);
        assert_eq!(large[HEAD_LEN - 1], b'\n');
    }

    #[test]
    fn encoded_head_parses_back() {
        let head = Head {
            seq: u64::MAX,
            hash: "ab".repeat(32),
        };

        assert_eq!(parse(&encode(&head)), Ok(head));
    }

    #[test]
    fn short_head_is_malformed() {
        assert!(parse(br#"{"seq":1,"hash":"00"}"#).is_err());
    }

    #[test]
    fn head_with_bad_hash_is_malformed() {
        let mut bytes = encode(&Head {
            seq: 1,
            hash: ZERO_HASH.to_owned(),
        });
        bytes[20] = b'Z';

        assert!(parse(&bytes).is_err());
    }

    #[test]
    fn head_path_appends_suffix() {
        assert_eq!(
            head_path(Path::new("data/audit.log")),
            PathBuf::from("data/audit.log.head")
        );
    }

    #[test]
    fn head_file_rewrites_in_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.head");

        let (file, created) = HeadFile::open(&path).expect("create head");
        assert!(created);
        file.write(&Head {
            seq: 12345,
            hash: "1".repeat(64),
        })
        .expect("write head");
        file.write(&Head {
            seq: 2,
            hash: "2".repeat(64),
        })
        .expect("rewrite head");

        let read_back = read(&path).expect("read head");
        assert_eq!(
            read_back,
            Some(Ok(Head {
                seq: 2,
                hash: "2".repeat(64)
            }))
        );
        assert_eq!(
            std::fs::metadata(&path).expect("metadata").len(),
            HEAD_LEN as u64
        );
    }

    #[test]
    fn missing_head_reads_as_none() {
        let dir = tempfile::tempdir().expect("temp dir");

        assert_eq!(read(&dir.path().join("absent.head")).expect("read"), None);
    }
}
