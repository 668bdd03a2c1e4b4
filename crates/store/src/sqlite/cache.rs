//! The read cache: the row an unversioned read shows, per secret, kept in memory as
//! ciphertext.
//!
//! A cached read skips the hand-off to sqlx's SQLite thread and the statement run, which
//! dominate a read's cost. It still decrypts on every read and still decides from the clock
//! whether the version may be returned, so a deletion time or grace deadline that passes while
//! the row is cached takes effect at once. The plaintext is never cached.
//!
//! Every store call that changes a secret runs under a [`ChangeGuard`], which drops that
//! secret's row when the change ends (all rows for calls that touch many, such as rewrapping).
//! A read that loads a row from SQLite stores it only if no change ran at any time since the
//! read began, so a slow read never puts back a row older than a change it raced with. Writes
//! by other processes to the same file are not seen, and this backend does not support them.
//!
//! It holds at most [`MAX_ENTRIES`] rows, and a row with a ciphertext larger than
//! [`MAX_CIPHERTEXT_BYTES`] is never cached. When full, it empties itself instead of tracking
//! use, because the next reads refill it at the cost of one SQL read each.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::SqlitePool;

use crate::model::VersionMeta;
use crate::path::SecretPath;

/// Maximum number of secrets whose rows are cached.
pub(super) const MAX_ENTRIES: usize = 10_000;

/// Ciphertexts larger than this are read from SQLite every time.
pub(super) const MAX_CIPHERTEXT_BYTES: usize = 16 * 1024;

/// The row an unversioned read of one secret loaded from SQLite.
#[derive(Debug)]
pub(super) struct CachedRow {
    pub(super) meta: VersionMeta,
    pub(super) custom_metadata: BTreeMap<String, String>,
    /// The version's ciphertext, `None` once the version is destroyed.
    pub(super) ciphertext: Option<Vec<u8>>,
}

/// The cache of one store.
#[derive(Debug, Default)]
pub(super) struct ReadCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Number of changes begun or ended so far. A read compares it before and after loading a
    /// row.
    generation: u64,
    /// Changes that have begun and not ended. No row is stored while one runs.
    changes_in_flight: u64,
    rows: HashMap<String, Arc<CachedRow>>,
}

impl ReadCache {
    /// Returns the cached row of `path`, if any.
    pub(super) fn get(&self, path: &SecretPath) -> Option<Arc<CachedRow>> {
        self.lock().rows.get(path.as_str()).cloned()
    }

    /// Returns the generation to pass to [`ReadCache::insert`]. Take it before reading.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches `row` for `path` unless a change was committed after `generation` was taken.
    pub(super) fn insert(&self, path: &SecretPath, generation: u64, row: CachedRow) {
        let too_large = row
            .ciphertext
            .as_ref()
            .is_some_and(|ciphertext| ciphertext.len() > MAX_CIPHERTEXT_BYTES);
        if too_large {
            return;
        }

        let mut inner = self.lock();
        if inner.generation != generation || inner.changes_in_flight > 0 {
            return;
        }
        if inner.rows.len() >= MAX_ENTRIES && !inner.rows.contains_key(path.as_str()) {
            inner.rows.clear();
        }
        inner.rows.insert(path.as_str().to_owned(), Arc::new(row));
    }

    /// Drops the row of `path`, or every row when `path` is `None`.
    pub(super) fn invalidate(&self, path: Option<&str>) {
        let mut inner = self.lock();
        inner.generation += 1;
        match path {
            Some(path) => {
                inner.rows.remove(path);
            }
            None => inner.rows.clear(),
        }
    }

    fn begin_change(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.changes_in_flight += 1;
    }

    fn end_change(&self, path: Option<&str>) {
        let mut inner = self.lock();
        inner.changes_in_flight -= 1;
        drop(inner);
        self.invalidate(path);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().rows.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Marks one change to the store from its start to its end.
///
/// Its end is [`ChangeGuard::finish`], or its drop when the change's future was dropped before
/// it finished. In that case SQLite may still commit the change afterwards, so the guard drops
/// every row at once and ends the change only once it holds the writer connection, which means
/// that every statement sent before has run.
pub(super) struct ChangeGuard {
    cache: Arc<ReadCache>,
    writer: SqlitePool,
    path: Option<String>,
    finished: bool,
}

impl ChangeGuard {
    /// Begins a change to the secret at `path`, or to any secret when `path` is `None`.
    pub(super) fn begin(
        cache: &Arc<ReadCache>,
        writer: &SqlitePool,
        path: Option<&SecretPath>,
    ) -> ChangeGuard {
        cache.begin_change();
        ChangeGuard {
            cache: Arc::clone(cache),
            writer: writer.clone(),
            path: path.map(|path| path.as_str().to_owned()),
            finished: false,
        }
    }

    /// Ends the change after its call returned, whether it succeeded or failed.
    pub(super) fn finish(mut self) {
        self.finished = true;
        self.cache.end_change(self.path.as_deref());
    }
}

impl Drop for ChangeGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.cache.invalidate(None);

        // Without a runtime the change never ends, which leaves the cache closed to new rows:
        // slower, never stale.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = Arc::clone(&self.cache);
        let writer = self.writer.clone();
        runtime.spawn(async move {
            // A closed pool runs no statement any more. Any other error is a timeout of the
            // wait for the connection, which is still busy.
            loop {
                match writer.acquire().await {
                    Ok(_) | Err(sqlx::Error::PoolClosed) => break,
                    Err(_) => continue,
                }
            }
            cache.end_change(None);
        });
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::model::Stage;

    fn row(version: u64, ciphertext_len: usize) -> CachedRow {
        CachedRow {
            meta: VersionMeta {
                version,
                created_time: OffsetDateTime::UNIX_EPOCH,
                deletion_time: None,
                destroyed: false,
                stage: Stage::Current,
                created_by: String::new(),
                grace_deadline: None,
            },
            custom_metadata: BTreeMap::new(),
            ciphertext: Some(vec![0; ciphertext_len]),
        }
    }

    fn path(text: &str) -> SecretPath {
        SecretPath::parse(text).expect("test path is valid")
    }

    #[test]
    fn inserted_row_is_returned() {
        let cache = ReadCache::default();
        let generation = cache.generation();
        cache.insert(&path("app/db"), generation, row(3, 10));

        let found = cache.get(&path("app/db")).expect("row is cached");

        assert_eq!(found.meta.version, 3);
        assert!(cache.get(&path("app/other")).is_none());
    }

    #[test]
    fn read_that_raced_a_change_is_not_cached() {
        let cache = ReadCache::default();
        let generation = cache.generation();

        cache.invalidate(Some("app/other"));
        cache.insert(&path("app/db"), generation, row(1, 10));

        assert!(cache.get(&path("app/db")).is_none());
    }

    #[test]
    fn invalidate_drops_only_that_path() {
        let cache = ReadCache::default();
        cache.insert(&path("app/a"), cache.generation(), row(1, 10));
        cache.insert(&path("app/b"), cache.generation(), row(1, 10));

        cache.invalidate(Some("app/a"));

        assert!(cache.get(&path("app/a")).is_none());
        assert!(cache.get(&path("app/b")).is_some());
    }

    #[test]
    fn invalidate_all_drops_every_path() {
        let cache = ReadCache::default();
        cache.insert(&path("app/a"), cache.generation(), row(1, 10));
        cache.insert(&path("app/b"), cache.generation(), row(1, 10));

        cache.invalidate(None);

        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn nothing_is_cached_while_a_change_runs() {
        let cache = ReadCache::default();
        cache.begin_change();

        cache.insert(&path("app/db"), cache.generation(), row(1, 10));
        assert!(cache.get(&path("app/db")).is_none());

        cache.end_change(Some("app/db"));
        cache.insert(&path("app/db"), cache.generation(), row(1, 10));
        assert!(cache.get(&path("app/db")).is_some());
    }

    #[tokio::test]
    async fn dropped_change_ends_once_writer_is_free() {
        let writer = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory database opens");
        let cache = Arc::new(ReadCache::default());
        let pause = std::time::Duration::from_millis(50);

        let guard = ChangeGuard::begin(&cache, &writer, Some(&path("app/db")));
        let busy = writer.acquire().await.expect("writer connection");
        drop(guard);
        tokio::time::sleep(pause).await;
        cache.insert(&path("app/db"), cache.generation(), row(1, 10));
        assert!(cache.get(&path("app/db")).is_none());

        drop(busy);
        tokio::time::sleep(pause).await;
        cache.insert(&path("app/db"), cache.generation(), row(1, 10));
        assert!(cache.get(&path("app/db")).is_some());
    }

    #[test]
    fn large_ciphertext_is_not_cached() {
        let cache = ReadCache::default();

        cache.insert(
            &path("app/big"),
            cache.generation(),
            row(1, MAX_CIPHERTEXT_BYTES + 1),
        );

        assert!(cache.get(&path("app/big")).is_none());
    }

    #[test]
    fn full_cache_empties_before_a_new_path() {
        let cache = ReadCache::default();
        for index in 0..MAX_ENTRIES {
            cache.insert(
                &path(&format!("app/{index}")),
                cache.generation(),
                row(1, 1),
            );
        }
        assert_eq!(cache.len(), MAX_ENTRIES);

        cache.insert(&path("app/new"), cache.generation(), row(1, 1));

        assert_eq!(cache.len(), 1);
        assert!(cache.get(&path("app/new")).is_some());
    }
}
