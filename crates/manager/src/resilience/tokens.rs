//! Token records seen at authentication, kept so callers can still authenticate while the
//! backend that stores tokens fails.
//!
//! A record is used only when the backend fails, never in place of asking it, so a token
//! revoked on another node stops working here as soon as the backend responds again. Expiry is
//! still checked on the cached record, and a renewal only moves expiry later, so an older copy
//! errs on the safe side. Revocations through this manager clear the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keyward_store::TokenRecord;
use time::OffsetDateTime;

#[derive(Clone)]
struct CachedToken {
    record: TokenRecord,
    synced: Instant,
    synced_wall: OffsetDateTime,
}

/// Token records by keyed hash.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, CachedToken>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.lock().len())
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn insert(
        &self,
        record: &TokenRecord,
        synced: Instant,
        synced_wall: OffsetDateTime,
    ) {
        let entry = CachedToken {
            record: record.clone(),
            synced,
            synced_wall,
        };
        self.lock().insert(record.token_hash.clone(), entry);
    }

    /// Returns the record for `token_hash` if it was synced at most `max_stale` before `now`,
    /// with its sync time.
    pub(crate) fn get(
        &self,
        token_hash: &str,
        now: Instant,
        max_stale: Duration,
    ) -> Option<(TokenRecord, OffsetDateTime)> {
        let entries = self.lock();
        let entry = entries.get(token_hash)?;
        (now.saturating_duration_since(entry.synced) <= max_stale)
            .then(|| (entry.record.clone(), entry.synced_wall))
    }

    pub(crate) fn remove(&self, token_hash: &str) {
        self.lock().remove(token_hash);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedToken>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(hash: &str) -> TokenRecord {
        TokenRecord {
            token_hash: hash.into(),
            accessor: "acc".into(),
            policies: vec![],
            display_name: "t".into(),
            created_time: OffsetDateTime::UNIX_EPOCH,
            expire_time: None,
            creation_ttl_secs: 0,
            renewable: false,
            parent_accessor: None,
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn record_expires_after_max_stale_and_clears() {
        let cache = TokenCache::default();
        let start = Instant::now();
        cache.insert(&record("h"), start, OffsetDateTime::UNIX_EPOCH);
        let max_stale = Duration::from_secs(10);

        assert!(cache.get("h", start + max_stale, max_stale).is_some());
        assert!(
            cache
                .get("h", start + max_stale + Duration::from_millis(1), max_stale)
                .is_none()
        );

        cache.clear();
        assert!(cache.get("h", start, max_stale).is_none());
    }
}
