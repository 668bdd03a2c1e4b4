//! The writer thread: group commit of queued entries.
//!
//! The thread blocks until an entry arrives, then takes every other entry already queued, up
//! to [`MAX_BATCH`]. It numbers and chains them and writes them with one `write`. Then it
//! syncs the log with one `fdatasync`, rewrites the head file, and only then replies to the
//! callers that wait (an entry queued with [`AuditLog::enqueue`](crate::AuditLog::enqueue)
//! has no caller waiting; it is synced with its batch all the same).
//! Entries that arrive while a sync runs form the next batch, so the number of syncs grows
//! with the number of batches, not with the number of entries.
//!
//! The head file is rewritten after every batch but synced only every [`HEAD_SYNC_INTERVAL`]
//! or [`HEAD_SYNC_BATCHES`] batches, whichever comes first, and when the writer stops. The log
//! is always synced before the head is written, so the head on disk is never ahead of the
//! log. After a crash it may be behind, and opening the log moves it up to the log's last
//! entry. Syncing the head on every batch would double the syncs a caller waits for.
//!
//! Fail closed: when a write or sync fails, every caller in the batch gets the error, and the
//! writer rejects every later entry without touching the files until the process restarts.
//! It does not retry, because after a failed `fdatasync` Linux may already have dropped the
//! unwritten pages and cleared the error, so a retry could report success for lost data.
//! Lines of a failed batch may still reach the disk. Their callers received an error, so the
//! log may record a request that was rejected, but it never misses one that was served.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::error::{AuditError, io_context};
use crate::head::{Head, HeadFile};
use crate::line::{format_line, format_time};

/// Maximum number of entries per write and sync, which bounds the batch buffer.
pub(crate) const MAX_BATCH: usize = 4096;

/// A batch buffer larger than this is freed after its batch instead of being reused.
const KEEP_BUFFER_CAPACITY: usize = 1 << 20;

/// Maximum time the head file goes unsynced while batches are written.
pub(crate) const HEAD_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Most batches written between two syncs of the head file.
pub(crate) const HEAD_SYNC_BATCHES: u32 = 64;

/// Result returned to one caller of `append`.
pub(crate) type AppendReply = oneshot::Sender<Result<u64, AuditError>>;

/// A request to the writer thread.
pub(crate) enum Command {
    /// Append one entry, already serialised as a compact JSON object. `reply` is `None` when
    /// no caller waits for the entry to be durable.
    Append {
        entry_json: String,
        reply: Option<AppendReply>,
    },
    /// Commit what is queued before this command, then stop.
    Close,
}

/// The first write or sync failure, after which the log rejects all appends.
#[derive(Debug)]
pub(crate) struct Failure {
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    /// Error for an append rejected because of this earlier failure.
    pub fn to_error(&self) -> AuditError {
        AuditError::Io(io::Error::new(
            self.kind,
            format!(
                "{} (the audit log rejects all entries after a failed write; fix the cause and restart)",
                self.message
            ),
        ))
    }
}

/// State shared between the writer thread and the `AuditLog` handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Number of `fdatasync` calls on the log file.
    pub log_syncs: AtomicU64,
    /// Number of `fdatasync` calls on the head file.
    pub head_syncs: AtomicU64,
    pub failure: OnceLock<Failure>,
}

/// The writer thread's state. It owns the open files.
pub(crate) struct Writer {
    log: File,
    log_path: PathBuf,
    head: HeadFile,
    last_seq: u64,
    last_hash: String,
    shared: Arc<Shared>,
    buffer: String,
    /// When the head file was last synced, and the batches written since.
    head_synced_at: Instant,
    batches_since_head_sync: u32,
}

impl Writer {
    /// Creates a writer that appends to `log` after the entry `last_seq` with hash `last_hash`.
    pub fn new(
        log: File,
        log_path: &Path,
        head: HeadFile,
        last: Head,
        shared: Arc<Shared>,
    ) -> Writer {
        Writer {
            log,
            log_path: log_path.to_owned(),
            head,
            last_seq: last.seq,
            last_hash: last.hash,
            shared,
            buffer: String::new(),
            head_synced_at: Instant::now(),
            batches_since_head_sync: 0,
        }
    }

    /// Commits batches until [`Command::Close`] arrives or every sender is dropped.
    pub fn run(mut self, commands: Receiver<Command>) {
        let mut batch: Vec<(String, Option<AppendReply>)> = Vec::new();

        loop {
            let mut stop = false;
            match commands.recv() {
                Ok(Command::Append { entry_json, reply }) => batch.push((entry_json, reply)),
                Ok(Command::Close) | Err(_) => stop = true,
            }

            while !stop && batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(Command::Append { entry_json, reply }) => batch.push((entry_json, reply)),
                    Ok(Command::Close) | Err(TryRecvError::Disconnected) => stop = true,
                    Err(TryRecvError::Empty) => break,
                }
            }

            self.commit(&mut batch);
            self.sync_head_if_due();

            if stop {
                self.sync_head_at_stop();
                tracing::debug!(path = %self.log_path.display(), last_seq = self.last_seq, "audit writer stopped");
                return;
            }
        }
    }

    /// Writes and syncs `batch`, then replies to every caller in it.
    fn commit(&mut self, batch: &mut Vec<(String, Option<AppendReply>)>) {
        if batch.is_empty() {
            return;
        }
        if let Some(failure) = self.shared.failure.get() {
            for reply in batch.drain(..).filter_map(|(_, reply)| reply) {
                let _ = reply.send(Err(failure.to_error()));
            }
            return;
        }

        let mut seq = self.last_seq;
        let mut hash = std::mem::take(&mut self.last_hash);
        let mut replies = Vec::with_capacity(batch.len());
        for (entry_json, reply) in batch.drain(..) {
            seq += 1;
            let time = format_time(OffsetDateTime::now_utc());
            let line = format_line(seq, &time, &hash, &entry_json);
            self.buffer.push_str(&line.text);
            hash = line.hash;
            replies.push((seq, reply));
        }

        let result = self.write_batch(&Head {
            seq,
            hash: hash.clone(),
        });
        self.last_seq = seq;
        self.last_hash = hash;
        self.buffer.clear();
        if self.buffer.capacity() > KEEP_BUFFER_CAPACITY {
            self.buffer = String::new();
        }

        match result {
            Ok(()) => {
                for (seq, reply) in replies {
                    // A caller that stopped waiting still has its entry in the log.
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(seq));
                    }
                }
            }
            Err(error) => {
                tracing::error!(
                    path = %self.log_path.display(),
                    error = %error,
                    entries = replies.len(),
                    "audit log write failed; rejecting this batch and every later entry until restart"
                );
                let failure = self.shared.failure.get_or_init(|| Failure {
                    kind: error.kind(),
                    message: error.to_string(),
                });
                for (_, reply) in replies {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(failure.to_error()));
                    }
                }
            }
        }
    }

    /// Writes the buffer to the log, syncs it, then records `head` in the head file without
    /// syncing it.
    fn write_batch(&mut self, head: &Head) -> io::Result<()> {
        self.log
            .write_all(self.buffer.as_bytes())
            .map_err(|e| io_context("write", &self.log_path, e))?;

        self.shared.log_syncs.fetch_add(1, Ordering::Relaxed);
        self.log
            .sync_data()
            .map_err(|e| io_context("fdatasync", &self.log_path, e))?;

        self.head
            .write_unsynced(head)
            .map_err(|e| io_context("write", self.head.path(), e))?;

        self.batches_since_head_sync += 1;
        Ok(())
    }

    /// Syncs the head file if the last sync is old enough. Runs after the callers got their
    /// replies, since their entries are durable in the log already. A failure puts the log
    /// in its failed state, like a failed log write.
    fn sync_head_if_due(&mut self) {
        let due = self.batches_since_head_sync >= HEAD_SYNC_BATCHES
            || self.head_synced_at.elapsed() >= HEAD_SYNC_INTERVAL;
        if !due || self.shared.failure.get().is_some() {
            return;
        }

        if let Err(error) = self.sync_head() {
            tracing::error!(
                path = %self.head.path().display(),
                error = %error,
                "audit head file sync failed; rejecting every later entry until restart"
            );
            self.shared.failure.get_or_init(|| Failure {
                kind: error.kind(),
                message: error.to_string(),
            });
        }
    }

    fn sync_head(&mut self) -> io::Result<()> {
        self.shared.head_syncs.fetch_add(1, Ordering::Relaxed);
        self.head
            .sync()
            .map_err(|e| io_context("fdatasync", self.head.path(), e))?;

        self.head_synced_at = Instant::now();
        self.batches_since_head_sync = 0;
        Ok(())
    }

    /// Syncs the head file before the writer stops, unless nothing was written since the last
    /// sync or a failure already stopped the writes.
    fn sync_head_at_stop(&mut self) {
        if self.batches_since_head_sync == 0 || self.shared.failure.get().is_some() {
            return;
        }
        if let Err(error) = self.sync_head() {
            // Every entry is already synced to the log; a head left behind it is repaired at
            // the next open.
            tracing::warn!(path = %self.head.path().display(), %error, "audit head file sync failed at close");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::sync::mpsc;

    use super::*;
    use crate::line::ZERO_HASH;

    fn start_writer(dir: &Path) -> (Writer, Arc<Shared>) {
        let log_path = dir.join("audit.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("create log");
        let (head, _) = HeadFile::open(&dir.join("audit.log.head")).expect("create head");
        let shared = Arc::new(Shared::default());
        let last = Head {
            seq: 0,
            hash: ZERO_HASH.to_owned(),
        };

        let writer = Writer::new(log, &log_path, head, last, Arc::clone(&shared));
        (writer, shared)
    }

    fn queue_entries(
        sender: &mpsc::Sender<Command>,
        count: usize,
    ) -> Vec<oneshot::Receiver<Result<u64, AuditError>>> {
        (0..count)
            .map(|i| {
                let (reply, response) = oneshot::channel();
                let entry_json = format!(r#"{{"n":{i}}}"#);
                sender
                    .send(Command::Append {
                        entry_json,
                        reply: Some(reply),
                    })
                    .expect("writer is listening");
                response
            })
            .collect()
    }

    fn commit_one(writer: &mut Writer) -> Result<u64, AuditError> {
        let (reply, response) = oneshot::channel();
        let mut batch = vec![(r#"{"n":1}"#.to_owned(), Some(reply))];

        writer.commit(&mut batch);
        response.blocking_recv().expect("reply sent")
    }

    #[test]
    fn failed_write_keeps_log_failed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut writer, shared) = start_writer(dir.path());
        let log_path = dir.path().join("audit.log");
        writer.log = File::open(&log_path).expect("open log read-only");

        let first = commit_one(&mut writer);
        assert!(matches!(first, Err(AuditError::Io(_))), "{first:?}");
        assert!(shared.failure.get().is_some());

        // Even with a writable file again, the writer rejects entries without writing them.
        writer.log = OpenOptions::new()
            .append(true)
            .open(&log_path)
            .expect("open log for append");
        let second = commit_one(&mut writer);
        assert!(matches!(second, Err(AuditError::Io(_))), "{second:?}");
        assert_eq!(std::fs::metadata(&log_path).expect("metadata").len(), 0);
        assert_eq!(shared.log_syncs.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn queued_entries_share_one_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, shared) = start_writer(dir.path());
        let (sender, commands) = mpsc::channel();

        let responses = queue_entries(&sender, 50);
        sender.send(Command::Close).expect("writer is listening");
        writer.run(commands);

        let seqs: Vec<u64> = responses
            .into_iter()
            .map(|r| r.blocking_recv().expect("reply sent").expect("append ok"))
            .collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
        assert_eq!(shared.log_syncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn batch_stops_at_max_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, shared) = start_writer(dir.path());
        let (sender, commands) = mpsc::channel();

        let responses = queue_entries(&sender, MAX_BATCH + 1);
        sender.send(Command::Close).expect("writer is listening");
        writer.run(commands);

        for response in responses {
            response
                .blocking_recv()
                .expect("reply sent")
                .expect("append ok");
        }
        assert_eq!(shared.log_syncs.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn entry_without_reply_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, shared) = start_writer(dir.path());
        let (sender, commands) = mpsc::channel();

        sender
            .send(Command::Append {
                entry_json: r#"{"n":1}"#.to_owned(),
                reply: None,
            })
            .expect("writer is listening");
        let waited = queue_entries(&sender, 1);
        sender.send(Command::Close).expect("writer is listening");
        writer.run(commands);

        let seqs: Vec<u64> = waited
            .into_iter()
            .map(|r| r.blocking_recv().expect("reply sent").expect("append ok"))
            .collect();
        assert_eq!(seqs, vec![2]);
        let log = std::fs::read_to_string(dir.path().join("audit.log")).expect("read log");
        assert_eq!(log.lines().count(), 2);
        assert_eq!(shared.log_syncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn head_is_synced_every_few_batches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut writer, shared) = start_writer(dir.path());
        // Keep the time limit out of reach, so only the batch count decides.
        writer.head_synced_at = Instant::now() + Duration::from_secs(3600);

        for _ in 0..HEAD_SYNC_BATCHES - 1 {
            commit_one(&mut writer).expect("append ok");
            writer.sync_head_if_due();
        }
        assert_eq!(shared.head_syncs.load(Ordering::Relaxed), 0);
        let head = crate::head::read(&dir.path().join("audit.log.head")).expect("read head");
        assert_eq!(
            head.expect("head exists").expect("head parses").seq,
            u64::from(HEAD_SYNC_BATCHES - 1)
        );

        commit_one(&mut writer).expect("append ok");
        writer.sync_head_if_due();
        assert_eq!(shared.head_syncs.load(Ordering::Relaxed), 1);
        assert_eq!(
            shared.log_syncs.load(Ordering::Relaxed),
            u64::from(HEAD_SYNC_BATCHES)
        );
    }

    #[test]
    fn head_is_synced_when_writer_stops() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut writer, shared) = start_writer(dir.path());
        writer.head_synced_at = Instant::now() + Duration::from_secs(3600);
        let (sender, commands) = mpsc::channel();

        let responses = queue_entries(&sender, 3);
        sender.send(Command::Close).expect("writer is listening");
        writer.run(commands);

        for response in responses {
            response
                .blocking_recv()
                .expect("reply sent")
                .expect("append ok");
        }
        assert_eq!(shared.head_syncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn entries_after_close_are_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, _) = start_writer(dir.path());
        let (sender, commands) = mpsc::channel();

        let before = queue_entries(&sender, 1);
        sender.send(Command::Close).expect("writer is listening");
        let after = queue_entries(&sender, 1);
        writer.run(commands);
        drop(sender);

        for response in before {
            assert!(response.blocking_recv().expect("reply sent").is_ok());
        }
        for response in after {
            assert!(response.blocking_recv().is_err());
        }
    }
}
