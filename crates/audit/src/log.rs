//! [`AuditLog`]: opening a log, resuming its chain and appending to it.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use aws_lc_rs::hmac;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::error::AuditError;
use crate::head::{self, Head, HeadFile};
use crate::key::{AuditKey, format_hmac};
use crate::line::{ZERO_HASH, check_line};
use crate::recover::read_tail;
use crate::writer::{Command, Shared, Writer};

/// Handle to an open audit log. Clones share one writer thread.
///
/// The writer thread stops when [`close`](AuditLog::close) is called or the last clone is
/// dropped. Both block the calling thread until entries already queued are written.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    hmac_key: hmac::Key,
    commands: mpsc::Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens (creating if missing) the log at `path` and its head file `<path>.head`, and
    /// resumes the chain after the last entry.
    ///
    /// A trailing line without a newline was cut by a crash during a write that was never
    /// acknowledged, so it is removed with a warning. Opening fails with
    /// [`AuditError::Corrupt`] if the last entry does not match its hash, if the head file is
    /// malformed, or if the head file records a later or different last entry than the log
    /// (the log was truncated or rewritten). Opening also fails if another `AuditLog`, in this
    /// process or another one, has the file open.
    ///
    /// Starts a dedicated writer thread, so appends never run file I/O or `fdatasync` on the
    /// caller's thread. `open` itself reads the end of the log on the calling thread.
    pub fn open(path: &Path, key: AuditKey) -> Result<AuditLog, AuditError> {
        let (file, created) = open_log_file(path)?;
        lock_log_file(&file, path)?;
        if created {
            sync_parent_dir(path)?;
        }

        let last = resume_chain(&file, path)?;

        let head_path = head::head_path(path);
        let (head_file, head_created) =
            HeadFile::open(&head_path).map_err(|e| AuditError::io("open", &head_path, e))?;
        if last.head_behind {
            head_file
                .write(&last.head)
                .map_err(|e| AuditError::io("write", &head_path, e))?;
        }
        if head_created {
            sync_parent_dir(&head_path)?;
        }

        let last_seq = last.head.seq;
        let shared = Arc::new(Shared::default());
        let writer = Writer::new(file, path, head_file, last.head, Arc::clone(&shared));
        let (commands, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|e| AuditError::io("start writer thread for", path, e))?;

        tracing::info!(path = %path.display(), last_seq, "audit log opened");
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                hmac_key: key.hmac_key(),
                commands,
                writer: Mutex::new(Some(handle)),
                shared,
            }),
        })
    }

    /// Appends one entry and returns its sequence number once it is durable (written and
    /// `fdatasync`ed; the head file is rewritten too, but synced only now and then, see
    /// [`crate::writer`]). Concurrent callers share one write and sync.
    ///
    /// On any error the caller must reject the request it was recording. After a write or
    /// sync failure every later append fails too, until the process restarts. If the returned
    /// future is dropped after the entry was queued, the entry is still written.
    pub async fn append(&self, entry: Map<String, Value>) -> Result<u64, AuditError> {
        if let Some(failure) = self.inner.shared.failure.get() {
            return Err(failure.to_error());
        }

        // Serialise here rather than on the writer thread, so callers on several async
        // workers share that work.
        let entry_json = Value::Object(entry).to_string();
        let (reply, response) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Append {
                entry_json,
                reply: Some(reply),
            })
            .map_err(|_| AuditError::Closed)?;

        response.await.map_err(|_| AuditError::Closed)?
    }

    /// Queues one entry after those already queued and returns without waiting for it to be
    /// durable: the writer syncs it with its batch like any other entry.
    ///
    /// For an entry whose loss in a crash would not hide anything, such as the `response`
    /// entry of an operation whose `request` entry [`append`](AuditLog::append) already made
    /// durable. Fails at once if the log has failed or is closed. If the write or sync of the
    /// entry fails later, the log enters its failed state and every later append fails, so
    /// the next request is refused.
    pub fn enqueue(&self, entry: Map<String, Value>) -> Result<(), AuditError> {
        if let Some(failure) = self.inner.shared.failure.get() {
            return Err(failure.to_error());
        }

        let entry_json = Value::Object(entry).to_string();
        self.inner
            .commands
            .send(Command::Append {
                entry_json,
                reply: None,
            })
            .map_err(|_| AuditError::Closed)
    }

    /// Returns `"hmac-sha256:<hex>"`, the HMAC-SHA256 of `value` under the audit key.
    ///
    /// Use it for values an operator may need to correlate across entries (a rejected token,
    /// a remote user name) without the log storing them.
    pub fn hmac(&self, value: &str) -> String {
        format_hmac(&self.inner.hmac_key, value)
    }

    /// Returns the path of the log file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Returns whether a write or sync failed, after which every append fails until restart.
    pub fn is_failed(&self) -> bool {
        self.inner.shared.failure.get().is_some()
    }

    /// Writes the entries already queued, then stops the writer thread and closes the files.
    /// Later appends on any clone fail with [`AuditError::Closed`].
    ///
    /// Blocks the calling thread until the last batch is synced.
    pub fn close(&self) {
        self.inner.stop_writer();
    }

    /// Number of `fdatasync` calls on the log file so far, for tests of group commit.
    #[doc(hidden)]
    pub fn sync_count(&self) -> u64 {
        self.inner.shared.log_syncs.load(Ordering::Relaxed)
    }

    /// Number of `fdatasync` calls on the head file so far, for tests of the head's syncs.
    #[doc(hidden)]
    pub fn head_sync_count(&self) -> u64 {
        self.inner.shared.head_syncs.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn stop_writer(&self) {
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handle) = handle else {
            return;
        };

        // A send error means the thread already stopped, which `join` reports.
        let _ = self.commands.send(Command::Close);
        if handle.join().is_err() {
            tracing::error!(path = %self.path.display(), "audit writer thread panicked");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// Opens the log for reading and appending. Returns whether the file was created.
fn open_log_file(path: &Path) -> Result<(File, bool), AuditError> {
    let new_file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path);

    match new_file {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map(|file| (file, false))
            .map_err(|e| AuditError::io("open", path, e)),
        Err(e) => Err(AuditError::io("create", path, e)),
    }
}

/// Takes an exclusive lock on the log, because two writers would fork the chain.
fn lock_log_file(file: &File, path: &Path) -> Result<(), AuditError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(AuditError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "lock {}: the audit log is already open for writing; stop the other process or close the other handle",
                path.display()
            ),
        ))),
        Err(TryLockError::Error(e)) => Err(AuditError::io("lock", path, e)),
    }
}

/// Syncs the directory containing `path`, so a newly created file survives a crash.
fn sync_parent_dir(path: &Path) -> Result<(), AuditError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };

    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("sync directory", dir, e))
}

/// Resume point of the chain.
struct ResumePoint {
    /// The last complete entry (seq 0 and the zero hash if there is none).
    head: Head,
    /// Whether the head file is missing or records an earlier entry, so it must be rewritten.
    head_behind: bool,
}

/// Checks the last complete entry against the head file, removes a trailing partial line,
/// and returns where the chain resumes.
fn resume_chain(file: &File, path: &Path) -> Result<ResumePoint, AuditError> {
    let len = file
        .metadata()
        .map_err(|e| AuditError::io("read metadata of", path, e))?
        .len();
    let tail = read_tail(file, len).map_err(|e| AuditError::io("read", path, e))?;

    let last = match &tail.last_line {
        None => Head {
            seq: 0,
            hash: ZERO_HASH.to_owned(),
        },
        Some(line) => {
            let checked = check_line(line).map_err(|reason| {
                AuditError::Corrupt(format!(
                    "last entry of {} is malformed ({reason}): run `keyward audit verify`",
                    path.display()
                ))
            })?;
            if !checked.hash_matches() {
                return Err(AuditError::Corrupt(format!(
                    "last entry of {} (seq {}) does not match its hash: run `keyward audit verify`",
                    path.display(),
                    checked.seq
                )));
            }
            Head {
                seq: checked.seq,
                hash: checked.hash,
            }
        }
    };

    // Compare with the head file before truncating anything, so a log that fails this check
    // is left untouched for `verify`.
    let head_path = head::head_path(path);
    let recorded = head::read(&head_path).map_err(|e| AuditError::io("read", &head_path, e))?;
    let head_behind = match recorded {
        None => {
            if last.seq > 0 {
                tracing::warn!(
                    path = %head_path.display(),
                    last_seq = last.seq,
                    "audit head file is missing; recreating it from the last log entry"
                );
            }
            true
        }
        Some(Err(reason)) => {
            return Err(AuditError::Corrupt(format!(
                "head file {} is malformed ({reason}): run `keyward audit verify`",
                head_path.display()
            )));
        }
        Some(Ok(recorded)) => check_head(&recorded, &last, path)?,
    };

    let partial_len = len - tail.complete_len;
    if partial_len > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = partial_len,
            last_seq = last.seq,
            "removing an unterminated last line of the audit log, left by a write interrupted before it was acknowledged"
        );
        file.set_len(tail.complete_len)
            .and_then(|()| file.sync_data())
            .map_err(|e| AuditError::io("truncate", path, e))?;
    }

    Ok(ResumePoint {
        head: last,
        head_behind,
    })
}

/// Checks the head file's record against the log's last entry. Returns whether the head is
/// behind the log, which a crash between syncing the log and rewriting the head leaves.
fn check_head(recorded: &Head, last: &Head, path: &Path) -> Result<bool, AuditError> {
    if recorded.seq > last.seq {
        return Err(AuditError::Corrupt(format!(
            "audit log {} is shorter than its head file (log ends at seq {}, head file records seq {}): run `keyward audit verify`",
            path.display(),
            last.seq,
            recorded.seq
        )));
    }
    if recorded.seq == last.seq && recorded.hash != last.hash {
        return Err(AuditError::Corrupt(format!(
            "last entry of audit log {} (seq {}) differs from the one its head file records: run `keyward audit verify`",
            path.display(),
            last.seq
        )));
    }

    Ok(recorded.seq < last.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn audit_log_is_send_sync_clone() {
        assert_send_sync_clone::<AuditLog>();
    }

    #[test]
    fn head_ahead_of_log_is_rejected() {
        let recorded = Head {
            seq: 5,
            hash: "a".repeat(64),
        };
        let last = Head {
            seq: 4,
            hash: "b".repeat(64),
        };

        let error = check_head(&recorded, &last, Path::new("audit.log"));
        assert!(matches!(error, Err(AuditError::Corrupt(_))));
    }

    #[test]
    fn head_with_other_hash_is_rejected() {
        let recorded = Head {
            seq: 4,
            hash: "a".repeat(64),
        };
        let last = Head {
            seq: 4,
            hash: "b".repeat(64),
        };

        let error = check_head(&recorded, &last, Path::new("audit.log"));
        assert!(matches!(error, Err(AuditError::Corrupt(_))));
    }

    #[test]
    fn head_behind_log_is_accepted() {
        let recorded = Head {
            seq: 3,
            hash: "a".repeat(64),
        };
        let last = Head {
            seq: 4,
            hash: "b".repeat(64),
        };

        assert!(check_head(&recorded, &last, Path::new("audit.log")).expect("head behind is ok"));
    }

    #[test]
    fn head_at_log_end_is_current() {
        let last = Head {
            seq: 4,
            hash: "b".repeat(64),
        };

        assert!(!check_head(&last, &last, Path::new("audit.log")).expect("matching head is ok"));
    }
}
