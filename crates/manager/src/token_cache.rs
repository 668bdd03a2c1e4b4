//! A short-lived in-memory copy of token records, so most authentications skip the store.
//!
//! Records are keyed by the token's keyed hash, never by the token. A record is used for at
//! most [`TOKEN_CACHE_TTL`] after it was read from the store, and the cache contains at most
//! [`TOKEN_CACHE_CAPACITY`] records. Expiry is not cached away: the caller checks the record's
//! `expire_time` on every use. Revocations and renewals through this manager invalidate the
//! cache at once (a revocation clears all of it, because the store also revokes descendants
//! that only the store knows), and a lookup that started before an invalidation cannot put its
//! older record back.
//!
//! What it does not do: it does not see changes made to the store by anything but this
//! manager. So the manager uses it only with the embedded store, which no other process
//! writes; with a remote backend, where other nodes may revoke tokens, every authentication
//! asks the backend (the resilience layer keeps its own copy for outages, in
//! `resilience::tokens`). It caches no negative answers: an unknown token always reaches the
//! store, and the lockout bounds how often.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use keyward_store::TokenRecord;

/// How long a record read from the store may be used without reading it again.
pub(crate) const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Maximum number of records kept at once.
pub(crate) const TOKEN_CACHE_CAPACITY: usize = 10_000;

struct Cached {
    record: TokenRecord,
    /// When the store read that returned the record started.
    read_at: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Cached>,
    /// Bumped by every invalidation, so a lookup that started before one does not insert.
    generation: u64,
}

/// Token records by keyed hash, for at most [`TOKEN_CACHE_TTL`] each.
pub(crate) struct TokenCache {
    state: RwLock<State>,
    ttl: Duration,
    capacity: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.read().entries.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(TOKEN_CACHE_TTL, TOKEN_CACHE_CAPACITY)
    }
}

impl TokenCache {
    /// Creates an empty cache keeping up to `capacity` records for `ttl` each.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            state: RwLock::new(State::default()),
            ttl,
            capacity,
        }
    }

    /// Returns the record for `token_hash` if it was read from the store less than the TTL
    /// before `now`. The caller must still check its expiry.
    pub(crate) fn get(&self, token_hash: &str, now: Instant) -> Option<TokenRecord> {
        let state = self.read();
        let cached = state.entries.get(token_hash)?;
        let age = now.checked_duration_since(cached.read_at)?;
        (age < self.ttl).then(|| cached.record.clone())
    }

    /// Returns the current generation. Take it before reading a record from the store and
    /// pass it to [`insert`](TokenCache::insert).
    pub(crate) fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Keeps `record`, read from the store by a lookup that started at `read_at` in
    /// `generation`. Does nothing if the cache was invalidated since. A full cache first drops
    /// its stale records, then everything if that is not enough.
    pub(crate) fn insert(&self, record: &TokenRecord, generation: u64, read_at: Instant) {
        let mut state = self.write();
        if state.generation != generation {
            return;
        }

        if state.entries.len() >= self.capacity && !state.entries.contains_key(&record.token_hash) {
            let ttl = self.ttl;
            state
                .entries
                .retain(|_, cached| read_at.saturating_duration_since(cached.read_at) < ttl);
            if state.entries.len() >= self.capacity {
                state.entries.clear();
            }
        }

        let cached = Cached {
            record: record.clone(),
            read_at,
        };
        state.entries.insert(record.token_hash.clone(), cached);
    }

    /// Drops the record for `token_hash`, after its token changed.
    pub(crate) fn remove(&self, token_hash: &str) {
        let mut state = self.write();
        state.generation += 1;
        state.entries.remove(token_hash);
    }

    /// Drops every record, after a revocation.
    pub(crate) fn clear(&self) {
        let mut state = self.write();
        state.generation += 1;
        state.entries.clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::OffsetDateTime;

    use super::*;

    fn record(hash: &str) -> TokenRecord {
        TokenRecord {
            token_hash: hash.to_owned(),
            accessor: format!("accessor-{hash}"),
            policies: vec!["default".to_owned()],
            display_name: "token".to_owned(),
            created_time: OffsetDateTime::UNIX_EPOCH,
            expire_time: None,
            creation_ttl_secs: 0,
            renewable: false,
            parent_accessor: None,
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn record_is_served_within_ttl() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        let start = Instant::now();

        cache.insert(&record("a"), cache.generation(), start);

        let found = cache.get("a", start + Duration::from_secs(4));
        assert_eq!(found.map(|r| r.accessor), Some("accessor-a".to_owned()));
        assert!(cache.get("b", start).is_none());
    }

    #[test]
    fn record_past_ttl_is_not_served() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        let start = Instant::now();

        cache.insert(&record("a"), cache.generation(), start);

        assert!(cache.get("a", start + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn clear_drops_every_record() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        let start = Instant::now();
        cache.insert(&record("a"), cache.generation(), start);
        cache.insert(&record("b"), cache.generation(), start);

        cache.clear();

        assert!(cache.get("a", start).is_none());
        assert!(cache.get("b", start).is_none());
    }

    #[test]
    fn remove_drops_one_record() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        let start = Instant::now();
        cache.insert(&record("a"), cache.generation(), start);
        cache.insert(&record("b"), cache.generation(), start);

        cache.remove("a");

        assert!(cache.get("a", start).is_none());
        assert!(cache.get("b", start).is_some());
    }

    #[test]
    fn lookup_older_than_invalidation_is_not_kept() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        let start = Instant::now();
        let generation = cache.generation();

        // A revocation lands while the lookup waits for the store.
        cache.clear();
        cache.insert(&record("a"), generation, start);

        assert!(cache.get("a", start).is_none());
    }

    #[test]
    fn full_cache_stays_within_capacity() {
        let cache = TokenCache::new(Duration::from_secs(5), 3);
        let start = Instant::now();

        for hash in ["a", "b", "c", "d", "e"] {
            cache.insert(&record(hash), cache.generation(), start);
        }

        assert!(cache.read().entries.len() <= 3);
        assert!(cache.get("e", start).is_some());
    }

    #[test]
    fn full_cache_drops_stale_records_first() {
        let cache = TokenCache::new(Duration::from_secs(5), 2);
        let start = Instant::now();
        let later = start + Duration::from_secs(10);
        cache.insert(&record("old"), cache.generation(), start);
        cache.insert(&record("new"), cache.generation(), later);

        cache.insert(&record("third"), cache.generation(), later);

        assert!(cache.get("new", later).is_some());
        assert!(cache.get("third", later).is_some());
        assert_eq!(cache.read().entries.len(), 2);
    }
}
