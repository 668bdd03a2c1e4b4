//! Integration tests of the audit log through its public API and its files on disk.

mod batching;
mod chain;
mod failure;
mod recovery;
mod tamper;

use std::path::{Path, PathBuf};

use keyward_audit::{AuditKey, AuditLog};
use serde_json::{Map, Value};
use tempfile::TempDir;

/// A temporary directory with a log path inside it.
struct Fixture {
    _dir: TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("audit.log");
        Fixture { _dir: dir, path }
    }

    fn open(&self) -> AuditLog {
        AuditLog::open(&self.path, test_key(1)).expect("open audit log")
    }

    fn head_path(&self) -> PathBuf {
        head_path(&self.path)
    }

    /// Opens the log, appends `count` entries one after another, and closes it.
    async fn write_entries(&self, count: u64) {
        let log = self.open();
        for n in 1..=count {
            let seq = log.append(entry(n)).await.expect("append entry");
            assert!(seq > 0);
        }
        log.close();
    }

    fn read_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).expect("read log");
        text.lines().map(str::to_owned).collect()
    }

    /// Replaces the log with `lines`, each followed by a newline.
    fn write_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&self.path, text).expect("rewrite log");
    }
}

fn head_path(log_path: &Path) -> PathBuf {
    let mut name = log_path.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

fn test_key(byte: u8) -> AuditKey {
    AuditKey::from_bytes([byte; 32])
}

/// Builds a small entry whose content depends on `n`.
fn entry(n: u64) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("event".to_owned(), Value::from("secret.read"));
    entry.insert(
        "path".to_owned(),
        Value::from(format!("team/app/secret-{n}")),
    );
    entry.insert("n".to_owned(), Value::from(n));
    entry
}
