//! Group commit of new versions: the writes that queue while one transaction commits share
//! the next transaction, and so its sync of the write-ahead log.
//!
//! A write is acknowledged only after the transaction that contains it has committed, so the
//! durability of each write is the same as with one transaction each. Each write runs inside
//! its own savepoint: one that fails (a check-and-set mismatch, for example) is rolled back
//! alone and the others in its transaction still commit. A failed commit fails every write in
//! it.
//!
//! Only [`put`](crate::SecretStore::put) goes through here, because it is the write that
//! clients repeat. Other changes take the writer connection directly and queue behind the
//! batch in progress.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::cache::ChangeGuard;
use super::convert::backend_error;
use super::versions::put_in;
use crate::handle::KeyringHandle;
use crate::model::{NewVersion, VersionMeta};
use crate::path::SecretPath;
use crate::store::StoreError;

/// Maximum number of writes per transaction.
const MAX_BATCH: usize = 64;

/// Writes waiting for the batch task. When the queue is full, writers wait to enqueue.
const QUEUE_CAPACITY: usize = 1024;

/// One queued write and where its result goes.
pub(super) struct PutJob {
    pub(super) path: SecretPath,
    pub(super) new: NewVersion,
    pub(super) default_max_versions: u32,
    /// Ended after the commit, whether or not the caller still waits for the reply.
    pub(super) change: ChangeGuard,
    pub(super) reply: oneshot::Sender<Result<VersionMeta, StoreError>>,
}

/// Starts the task that commits queued writes, and returns its queue. The task ends when
/// every sender is dropped.
pub(super) fn spawn(writer: SqlitePool, keyring: KeyringHandle) -> mpsc::Sender<PutJob> {
    let (sender, mut receiver) = mpsc::channel::<PutJob>(QUEUE_CAPACITY);
    tokio::spawn(async move {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // Each batch in a task of its own: a panic fails that batch's writes (their reply
            // senders are dropped), not every later write.
            let batch = std::mem::take(&mut jobs);
            let (writer, keyring) = (writer.clone(), keyring.clone());
            let run = tokio::spawn(async move { commit_batch(&writer, &keyring, batch).await });
            if let Err(error) = run.await {
                tracing::error!(%error, "a batch of secret writes failed");
            }
        }
    });
    sender
}

/// Runs `jobs` in one transaction and sends each its result once the transaction ended.
async fn commit_batch(writer: &SqlitePool, keyring: &KeyringHandle, jobs: Vec<PutJob>) {
    let mut writes = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        writes.push((job.path, job.new, job.default_max_versions));
        replies.push((job.change, job.reply));
    }

    let mut results = Vec::with_capacity(writes.len());
    let outcome = async {
        // `BEGIN IMMEDIATE` takes the write lock up front, so no statement below can fail
        // with SQLITE_BUSY half-way.
        let mut tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend_error)?;

        // Taken inside the write transaction: a key rotated in before this point is used,
        // and a rewrap batch, which also writes, cannot run before the commit.
        let keyring = keyring.load();
        for (path, new, default_max_versions) in writes {
            results.push(put_in(&mut tx, &keyring, &path, new, default_max_versions).await?);
        }

        tx.commit().await.map_err(backend_error)
    }
    .await;

    // A transaction that did not commit takes every write in it along, also those that
    // succeeded inside it, and those it did not reach. A write that failed on its own keeps
    // its own error.
    let mut results = results.into_iter();
    for (change, reply) in replies {
        let result = match (results.next(), &outcome) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(meta)), Ok(())) => Ok(meta),
            (_, Err(error)) => Err(StoreError::Backend(format!(
                "the transaction of this write failed: {error}"
            ))),
            (None, Ok(())) => Err(StoreError::Backend(
                "the write was not run because an earlier one failed".to_owned(),
            )),
        };
        change.finish();

        // The caller may have stopped waiting. The write is committed all the same.
        let _ = reply.send(result);
    }
}
