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
//! A read that loads a row from SQLite stores it only if no change that may touch that secret
//! ran at any time since the read began. So a slow read never puts back a row older than a
//! change it raced with. Changes are counted per stripe of paths, so writes to other secrets
//! rarely keep a row out. Writes by other processes to the same file are not seen, and this
//! backend does not support them.
//!
//! It contains at most [`MAX_ENTRIES`] rows, and a row with a ciphertext larger than
//! [`MAX_CIPHERTEXT_BYTES`] is never cached. When full, it empties itself instead of tracking
//! use, because the next reads refill it at the cost of one SQL read each.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
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

/// Number of stripes that changes to single secrets are counted in. Secrets that share a
/// stripe only cost each other a cached row now and then, never a stale one.
const STRIPES: usize = 64;

/// The cache of one store.
#[derive(Debug)]
pub(super) struct ReadCache {
    inner: Mutex<Inner>,
    /// Picks a path's stripe, with a per-process key so paths cannot be chosen to collide.
    hasher: RandomState,
}

impl Default for ReadCache {
    fn default() -> Self {
        ReadCache {
            inner: Mutex::new(Inner {
                everything: Counter::default(),
                stripes: vec![Counter::default(); STRIPES],
                rows: HashMap::new(),
            }),
            hasher: RandomState::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Changes that may touch any secret (rewrapping, a change whose end is unknown).
    everything: Counter,
    /// Changes to single secrets, counted in the stripe of their path.
    stripes: Vec<Counter>,
    rows: HashMap<String, Arc<CachedRow>>,
}

/// Changes begun or ended so far, and those still running, in one scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counter {
    generation: u64,
    in_flight: u64,
}

/// The counters a read saw before it loaded a row, for [`ReadCache::insert`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Snapshot {
    everything: u64,
    stripe: u64,
}

impl ReadCache {
    /// Returns the cached row of `path`, if any.
    pub(super) fn get(&self, path: &SecretPath) -> Option<Arc<CachedRow>> {
        self.lock().rows.get(path.as_str()).cloned()
    }

    /// Returns what [`ReadCache::insert`] compares with. Take it before reading `path`.
    pub(super) fn snapshot(&self, path: &SecretPath) -> Snapshot {
        let stripe = self.stripe(path.as_str());
        let inner = self.lock();
        Snapshot {
            everything: inner.everything.generation,
            stripe: inner.stripes[stripe].generation,
        }
    }

    /// Caches `row` for `path` unless a change that may touch it began or ended after
    /// `snapshot` was taken, or is still running.
    pub(super) fn insert(&self, path: &SecretPath, snapshot: Snapshot, row: CachedRow) {
        let too_large = row
            .ciphertext
            .as_ref()
            .is_some_and(|ciphertext| ciphertext.len() > MAX_CIPHERTEXT_BYTES);
        if too_large {
            return;
        }

        let stripe = self.stripe(path.as_str());
        let mut inner = self.lock();
        let unchanged = Counter {
            generation: snapshot.everything,
            in_flight: 0,
        } == inner.everything
            && Counter {
                generation: snapshot.stripe,
                in_flight: 0,
            } == inner.stripes[stripe];
        if !unchanged {
            return;
        }
        if inner.rows.len() >= MAX_ENTRIES && !inner.rows.contains_key(path.as_str()) {
            inner.rows.clear();
        }
        inner.rows.insert(path.as_str().to_owned(), Arc::new(row));
    }

    /// Drops the row of `path`, or every row when `path` is `None`, and fails the inserts of
    /// the reads running now.
    pub(super) fn invalidate(&self, path: Option<&str>) {
        self.count(path, 0);
    }

    fn begin_change(&self, path: Option<&str>) {
        self.count(path, 1);
    }

    fn end_change(&self, path: Option<&str>) {
        self.count(path, -1);
    }

    /// Bumps the generation of `path`'s scope, moves its running changes by `delta` and drops
    /// the rows it covers.
    fn count(&self, path: Option<&str>, delta: i8) {
        let stripe = path.map(|path| self.stripe(path));
        let mut inner = self.lock();
        let counter = match stripe {
            Some(stripe) => &mut inner.stripes[stripe],
            None => &mut inner.everything,
        };
        counter.generation += 1;
        match delta {
            1 => counter.in_flight += 1,
            -1 => counter.in_flight -= 1,
            _ => {}
        }
        match path {
            Some(path) => {
                inner.rows.remove(path);
            }
            None => inner.rows.clear(),
        }
    }

    fn stripe(&self, path: &str) -> usize {
        // The modulo keeps the value below STRIPES, so the cast loses nothing.
        (self.hasher.hash_one(path) % STRIPES as u64) as usize
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
        cache.begin_change(path.map(SecretPath::as_str));
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

        // From here the change counts as one to every secret until the writer is free.
        self.cache.begin_change(None);
        self.cache.end_change(self.path.as_deref());

        // Without a runtime the change never ends, which leaves the cache closed to new rows:
        // slower, never stale.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = Arc::clone(&self.cache);
        let writer = self.writer.clone();
        runtime.spawn(async move {
            // A closed pool runs no statement any more. Any other error (the wait timed out,
            // or a new connection failed) is retried after a pause.
            loop {
                match writer.acquire().await {
                    Ok(_) | Err(sqlx::Error::PoolClosed) => break,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
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

    /// Loads `name` the way a read does, with nothing in between.
    fn fill(cache: &ReadCache, name: &str, ciphertext_len: usize) {
        let snapshot = cache.snapshot(&path(name));
        cache.insert(&path(name), snapshot, row(1, ciphertext_len));
    }

    #[test]
    fn inserted_row_is_returned() {
        let cache = ReadCache::default();
        let snapshot = cache.snapshot(&path("app/db"));
        cache.insert(&path("app/db"), snapshot, row(3, 10));

        let found = cache.get(&path("app/db")).expect("row is cached");

        assert_eq!(found.meta.version, 3);
        assert!(cache.get(&path("app/other")).is_none());
    }

    #[test]
    fn read_that_raced_a_change_is_not_cached() {
        let cache = ReadCache::default();
        let snapshot = cache.snapshot(&path("app/db"));

        cache.begin_change(Some("app/db"));
        cache.end_change(Some("app/db"));
        cache.insert(&path("app/db"), snapshot, row(1, 10));

        assert!(cache.get(&path("app/db")).is_none());
    }

    #[test]
    fn change_to_everything_fails_every_racing_read() {
        let cache = ReadCache::default();
        let snapshot = cache.snapshot(&path("app/db"));

        cache.invalidate(None);
        cache.insert(&path("app/db"), snapshot, row(1, 10));

        assert!(cache.get(&path("app/db")).is_none());
    }

    #[test]
    fn invalidate_drops_only_that_path() {
        let cache = ReadCache::default();
        fill(&cache, "app/a", 10);
        fill(&cache, "app/b", 10);

        cache.invalidate(Some("app/a"));

        assert!(cache.get(&path("app/a")).is_none());
        assert!(cache.get(&path("app/b")).is_some());
    }

    #[test]
    fn invalidate_all_drops_every_path() {
        let cache = ReadCache::default();
        fill(&cache, "app/a", 10);
        fill(&cache, "app/b", 10);

        cache.invalidate(None);

        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn changing_secret_is_not_cached() {
        let cache = ReadCache::default();
        cache.begin_change(Some("app/db"));

        fill(&cache, "app/db", 10);
        assert!(cache.get(&path("app/db")).is_none());

        cache.end_change(Some("app/db"));
        fill(&cache, "app/db", 10);
        assert!(cache.get(&path("app/db")).is_some());
    }

    #[test]
    fn other_secrets_are_cached_while_one_changes() {
        let cache = ReadCache::default();
        let stripe = cache.stripe("app/db");
        let other = (0..1000)
            .map(|index| format!("app/other-{index}"))
            .find(|name| cache.stripe(name) != stripe)
            .expect("some path falls in another stripe");
        cache.begin_change(Some("app/db"));

        fill(&cache, &other, 10);

        assert!(cache.get(&path(&other)).is_some());
    }

    #[test]
    fn nothing_is_cached_while_everything_changes() {
        let cache = ReadCache::default();
        cache.begin_change(None);

        fill(&cache, "app/db", 10);
        assert!(cache.get(&path("app/db")).is_none());

        cache.end_change(None);
        fill(&cache, "app/db", 10);
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
        fill(&cache, "app/other", 10);
        assert!(cache.get(&path("app/other")).is_none());

        drop(busy);
        tokio::time::sleep(pause).await;
        fill(&cache, "app/other", 10);
        assert!(cache.get(&path("app/other")).is_some());
    }

    #[test]
    fn large_ciphertext_is_not_cached() {
        let cache = ReadCache::default();

        fill(&cache, "app/big", MAX_CIPHERTEXT_BYTES + 1);

        assert!(cache.get(&path("app/big")).is_none());
    }

    #[test]
    fn full_cache_empties_before_a_new_path() {
        let cache = ReadCache::default();
        for index in 0..MAX_ENTRIES {
            fill(&cache, &format!("app/{index}"), 1);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);

        fill(&cache, "app/new", 1);

        assert_eq!(cache.len(), 1);
        assert!(cache.get(&path("app/new")).is_some());
    }
}
