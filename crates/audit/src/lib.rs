//! Keyward's audit log: an append-only, hash-chained JSON-lines file with durable group
//! commit, and a verifier for it.
//!
//! Each line is one JSON object with its fields in a fixed order:
//!
//! ```text
//! {"seq":N,"time":"2026-01-02T03:04:05.123456789Z","prev":"<hex>","entry":{...},"hash":"<hex>"}
//! ```
//!
//! `seq` counts from 1 without gaps. `hash` is the hex SHA-256 of the line's bytes without the
//! `hash` field (that is, of `{"seq":N,"time":...,"prev":...,"entry":{...}}` exactly as
//! written), and `prev` is the previous line's `hash`, or 64 zeros for the first line. So
//! editing, removing or reordering a line breaks the chain at that line. Next to the log,
//! `<log>.head` records the seq and hash of the last durable entry, which exposes entries cut
//! from the end.
//!
//! [`AuditLog::append`] returns only once its entry is written and `fdatasync`ed. Concurrent
//! appends are batched by one writer thread, so one sync covers every entry queued while the
//! previous sync ran. [`AuditLog::enqueue`] queues an entry in the same order without waiting
//! for its sync. It is meant for an entry written after one that was already made durable,
//! such as an operation's `response` after its `request`. A crash may lose such an entry, but
//! not the durable entry before it.
//! The head file is rewritten after every batch and synced at most every 100 ms or 64 batches
//! and at close, always after the log, so it is never ahead of the log on disk; a head left
//! behind by a crash is moved up when the log is opened. The log fails closed: once a write
//! or sync fails, every later append and enqueue fails until the process restarts, and the
//! caller must reject the request it was recording. [`verify`] checks a log offline, without
//! the key.
//!
//! What this crate does not do: it does not decide what goes into an entry, and it does not
//! remove secrets from one. Callers must leave secret values out, and pass sensitive strings
//! that an operator may need to correlate through [`AuditLog::hmac`]. It does not rotate or
//! ship logs. The chain is unkeyed, so it proves integrity only relative to a head (or
//! `last_hash`) kept out of an attacker's reach. It runs on Unix only, because it uses
//! Unix file modes and positional writes.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! # runtime.block_on(async {
//! use keyward_audit::{AuditKey, AuditLog, verify};
//! use serde_json::{Map, Value};
//!
//! let path = dir.path().join("audit.log");
//! let log = AuditLog::open(&path, AuditKey::from_bytes([7; 32]))?;
//!
//! let mut entry = Map::new();
//! entry.insert("event".into(), Value::from("auth.failed"));
//! entry.insert("token".into(), Value::from(log.hmac("s.rejected-token")));
//! let seq = log.append(entry).await?;
//! log.close();
//!
//! let report = verify(&path)?;
//! assert_eq!(report.last_seq, seq);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

mod error;
mod head;
mod key;
mod line;
mod log;
mod recover;
mod verify;
mod writer;

pub use error::{AuditError, VerifyError};
pub use key::AuditKey;
pub use line::parse_line;
pub use log::AuditLog;
pub use verify::{VerifyReport, verify};
