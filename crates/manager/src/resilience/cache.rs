//! The in-memory read cache: decrypted reads kept per secret and version, each with the time
//! of its last successful sync with the backend.
//!
//! An entry younger than its TTL is served without a backend call. An older one is served only
//! while the backend fails, up to the maximum staleness. Values stay in [`SecretData`], which
//! zeroizes on drop and redacts `Debug`. The cache neither talks to the backend nor writes
//! anything to disk: the read path and the disk cache do.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keyward_store::{SecretData, SecretPath, VersionMeta};
use time::OffsetDateTime;

/// One cached read.
#[derive(Clone)]
pub(crate) struct CachedRead {
    pub(crate) meta: VersionMeta,
    pub(crate) custom_metadata: BTreeMap<String, String>,
    pub(crate) data: Option<SecretData>,
    /// Monotonic time of the last successful sync.
    pub(crate) synced: Instant,
    /// Wall-clock time of the last successful sync, shown to clients and kept on disk.
    pub(crate) synced_wall: OffsetDateTime,
    /// End of the TTL: until then the entry is served without a backend call.
    pub(crate) fresh_until: Instant,
}

impl fmt::Debug for CachedRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRead")
            .field("version", &self.meta.version)
            .field("synced_wall", &self.synced_wall)
            .finish_non_exhaustive()
    }
}

/// Result of a cache lookup for a read the backend failed.
#[derive(Debug)]
pub(crate) enum StaleLookup {
    /// An entry within the maximum staleness.
    Usable(CachedRead),
    /// An entry past the maximum staleness, synced at this time.
    TooOld(OffsetDateTime),
    /// Nothing cached.
    Missing,
}

/// The entries of one secret, by requested version (`None` for "current").
type PathEntries = HashMap<Option<u64>, CachedRead>;

/// The read cache.
pub(crate) struct ReadCache {
    max_entries: usize,
    entries: Mutex<HashMap<String, PathEntries>>,
}

impl fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl ReadCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the entry if it is within its TTL at `now`.
    pub(crate) fn fresh(
        &self,
        path: &SecretPath,
        version: Option<u64>,
        now: Instant,
    ) -> Option<CachedRead> {
        let entries = self.lock();
        let entry = entries.get(path.as_str())?.get(&version)?;
        (now < entry.fresh_until).then(|| entry.clone())
    }

    /// Looks up an entry for a read the backend failed.
    pub(crate) fn stale(
        &self,
        path: &SecretPath,
        version: Option<u64>,
        now: Instant,
        max_stale: Duration,
    ) -> StaleLookup {
        let entries = self.lock();
        let Some(entry) = entries.get(path.as_str()).and_then(|e| e.get(&version)) else {
            return StaleLookup::Missing;
        };
        if now.saturating_duration_since(entry.synced) <= max_stale {
            StaleLookup::Usable(entry.clone())
        } else {
            StaleLookup::TooOld(entry.synced_wall)
        }
    }

    /// Stores a read, replacing any entry for the same secret and requested version. When the
    /// cache is full, the entry synced longest ago makes room.
    pub(crate) fn insert(&self, path: &SecretPath, version: Option<u64>, entry: CachedRead) {
        let mut entries = self.lock();
        let present = entries
            .get(path.as_str())
            .is_some_and(|e| e.contains_key(&version));
        if !present && count(&entries) >= self.max_entries {
            evict_oldest(&mut entries);
        }
        entries
            .entry(path.as_str().to_owned())
            .or_default()
            .insert(version, entry);
    }

    /// Drops the entry for one requested version, e.g. after the backend reported it missing.
    pub(crate) fn remove(&self, path: &SecretPath, version: Option<u64>) {
        let mut entries = self.lock();
        if let Some(for_path) = entries.get_mut(path.as_str()) {
            for_path.remove(&version);
            if for_path.is_empty() {
                entries.remove(path.as_str());
            }
        }
    }

    /// Drops every entry of a secret, after Keyward changed it.
    pub(crate) fn remove_path(&self, path: &SecretPath) -> bool {
        self.lock().remove(path.as_str()).is_some()
    }

    /// Ends the TTL of every entry of a secret but keeps them for stale-if-error: used when a
    /// write's outcome is unknown because the backend failed.
    pub(crate) fn expire_path(&self, path: &SecretPath, now: Instant) {
        if let Some(for_path) = self.lock().get_mut(path.as_str()) {
            for entry in for_path.values_mut() {
                entry.fresh_until = entry.fresh_until.min(now);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        count(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PathEntries>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn count(entries: &HashMap<String, PathEntries>) -> usize {
    entries.values().map(HashMap::len).sum()
}

/// Removes the entry synced longest ago. A linear scan, run only when the cache is full.
fn evict_oldest(entries: &mut HashMap<String, PathEntries>) {
    let oldest = entries
        .iter()
        .flat_map(|(path, for_path)| {
            for_path
                .iter()
                .map(move |(version, entry)| (entry.synced, path.clone(), *version))
        })
        .min_by_key(|(synced, _, _)| *synced);
    if let Some((_, path, version)) = oldest
        && let Some(for_path) = entries.get_mut(&path)
    {
        for_path.remove(&version);
        if for_path.is_empty() {
            entries.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_store::Stage;
    use serde_json::json;

    fn path(raw: &str) -> SecretPath {
        SecretPath::parse(raw).expect("test path is valid")
    }

    fn entry(version: u64, synced: Instant, ttl: Duration) -> CachedRead {
        let data = json!({ "password": format!("p{version}") });
        CachedRead {
            meta: VersionMeta {
                version,
                created_time: OffsetDateTime::UNIX_EPOCH,
                deletion_time: None,
                destroyed: false,
                stage: Stage::Current,
                created_by: "acc".into(),
                grace_deadline: None,
            },
            custom_metadata: BTreeMap::new(),
            data: data.as_object().map(SecretData::from_map),
            synced,
            synced_wall: OffsetDateTime::UNIX_EPOCH,
            fresh_until: synced + ttl,
        }
    }

    #[test]
    fn entry_is_fresh_only_within_ttl() {
        let cache = ReadCache::new(10);
        let start = Instant::now();
        cache.insert(&path("a/b"), None, entry(1, start, Duration::from_secs(30)));

        assert!(cache.fresh(&path("a/b"), None, start).is_some());
        assert!(
            cache
                .fresh(&path("a/b"), None, start + Duration::from_secs(30))
                .is_none()
        );
        assert!(cache.fresh(&path("a/b"), Some(1), start).is_none());
    }

    #[test]
    fn stale_lookup_respects_max_stale() {
        let cache = ReadCache::new(10);
        let start = Instant::now();
        cache.insert(&path("a/b"), None, entry(1, start, Duration::from_secs(1)));
        let max_stale = Duration::from_secs(60);

        let within = cache.stale(&path("a/b"), None, start + max_stale, max_stale);
        assert!(matches!(within, StaleLookup::Usable(_)), "{within:?}");
        let past = cache.stale(
            &path("a/b"),
            None,
            start + max_stale + Duration::from_millis(1),
            max_stale,
        );
        assert!(matches!(past, StaleLookup::TooOld(_)), "{past:?}");
        let missing = cache.stale(&path("a/c"), None, start, max_stale);
        assert!(matches!(missing, StaleLookup::Missing), "{missing:?}");
    }

    #[test]
    fn remove_path_drops_every_version() {
        let cache = ReadCache::new(10);
        let start = Instant::now();
        let ttl = Duration::from_secs(30);
        cache.insert(&path("a/b"), None, entry(2, start, ttl));
        cache.insert(&path("a/b"), Some(1), entry(1, start, ttl));
        cache.insert(&path("a/c"), None, entry(1, start, ttl));

        assert!(cache.remove_path(&path("a/b")));

        assert!(cache.fresh(&path("a/b"), None, start).is_none());
        assert!(cache.fresh(&path("a/b"), Some(1), start).is_none());
        assert!(cache.fresh(&path("a/c"), None, start).is_some());
    }

    #[test]
    fn expire_path_keeps_entries_for_stale_reads() {
        let cache = ReadCache::new(10);
        let start = Instant::now();
        cache.insert(&path("a/b"), None, entry(1, start, Duration::from_secs(30)));

        cache.expire_path(&path("a/b"), start);

        assert!(cache.fresh(&path("a/b"), None, start).is_none());
        let stale = cache.stale(&path("a/b"), None, start, Duration::from_secs(60));
        assert!(matches!(stale, StaleLookup::Usable(_)), "{stale:?}");
    }

    #[test]
    fn full_cache_evicts_oldest_sync() {
        let cache = ReadCache::new(2);
        let start = Instant::now();
        let ttl = Duration::from_secs(30);
        cache.insert(&path("old"), None, entry(1, start, ttl));
        cache.insert(&path("mid"), None, entry(1, start + ttl / 3, ttl));

        cache.insert(&path("new"), None, entry(1, start + ttl / 2, ttl));

        assert_eq!(cache.len(), 2);
        assert!(cache.fresh(&path("old"), None, start).is_none());
        assert!(cache.fresh(&path("mid"), None, start).is_some());
        assert!(cache.fresh(&path("new"), None, start).is_some());
    }

    #[test]
    fn debug_output_hides_values() {
        let cache = ReadCache::new(2);
        cache.insert(
            &path("a"),
            None,
            entry(7, Instant::now(), Duration::from_secs(60)),
        );
        let entry = cache.fresh(&path("a"), None, Instant::now());
        let shown = format!("{cache:?} {entry:?}");
        assert!(!shown.contains("p7"), "{shown}");
    }
}
