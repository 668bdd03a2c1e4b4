//! Opening and writing the on-disk cache, and keeping token records and policies for
//! authentication while the backend fails, as methods of the manager.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keyward_store::{KeyringHandle, PolicyRecord, SecretPath, TokenRecord};

use super::Resilience;
use super::cache::CachedRead;
use super::codec;
use super::disk::{DiskCache, DiskCacheError, EntryKey, EntryKind, LoadedEntry};
use crate::SecretsManager;

/// How often the background task writes changed entries to the cache file.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

impl SecretsManager {
    /// Opens the encrypted on-disk cache named by
    /// [`ResilienceConfig::disk_cache`](crate::ResilienceConfig::disk_cache), loads the entries still within the maximum staleness,
    /// and from then on keeps the file up to date (a background task writes changes every few
    /// seconds). Returns how many entries were loaded.
    ///
    /// Does nothing and returns 0 when the resilience layer or the disk cache is not
    /// configured. Entries are encrypted with `keyring`, which must be the keyring the store
    /// uses. Call it once, right after [`SecretsManager::new`]; later calls return 0.
    ///
    /// # Errors
    ///
    /// [`DiskCacheError::Io`] if the file exists but cannot be read. A malformed file is
    /// logged and replaced at the next write, and entries that do not decrypt are skipped.
    pub async fn open_disk_cache(&self, keyring: KeyringHandle) -> Result<usize, DiskCacheError> {
        let Some(layer) = &self.resilience else {
            return Ok(0);
        };
        let Some(file) = layer.config.disk_cache.clone() else {
            return Ok(0);
        };
        let disk = Arc::new(DiskCache::new(file, keyring));
        if layer.disk.set(disk.clone()).is_err() {
            return Ok(0);
        }

        let loaded = match disk.load().await {
            Ok(loaded) => loaded,
            Err(error @ DiskCacheError::Malformed { .. }) => {
                tracing::warn!(%error, "ignoring the cache file; it will be rewritten");
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        let mut used = 0;
        for entry in loaded {
            if self.restore(layer, entry) {
                used += 1;
            }
        }
        tracing::info!(file = %disk.file().display(), entries = used, "opened the cache file");

        if let Some(records) = layer.lock_policies().clone() {
            layer.seal_policies(&records);
        }
        spawn_flusher(Arc::downgrade(&disk));
        Ok(used)
    }

    /// Writes changed entries of the on-disk cache now, e.g. before a planned shutdown.
    ///
    /// # Errors
    ///
    /// [`DiskCacheError::Io`] if the file cannot be written; the changes stay pending.
    pub async fn flush_disk_cache(&self) -> Result<(), DiskCacheError> {
        match self.resilience.as_ref().and_then(|layer| layer.disk.get()) {
            Some(disk) => disk.flush().await,
            None => Ok(()),
        }
    }

    /// Puts one loaded entry back into memory; returns whether it was used.
    fn restore(&self, layer: &Resilience, entry: LoadedEntry) -> bool {
        let config = &layer.config;
        let now = config.clock.now();
        let age = (config.clock.wall() - entry.synced_at).max(time::Duration::ZERO);
        let Ok(age) = Duration::try_from(age) else {
            return false;
        };
        // Entries past the staleness limit could never be served. An age the monotonic clock
        // cannot represent is treated the same way rather than as a fresh sync.
        let Some(synced) = now.checked_sub(age).filter(|_| age <= config.max_stale) else {
            return false;
        };

        match entry.key.kind {
            EntryKind::Read => {
                let (Ok(path), Ok(parts)) = (
                    SecretPath::parse(&entry.key.key),
                    codec::decode_read(&entry.plaintext),
                ) else {
                    return false;
                };
                let cached = CachedRead {
                    meta: parts.meta,
                    custom_metadata: parts.custom_metadata,
                    data: parts.data,
                    synced,
                    synced_wall: entry.synced_at,
                    // After a restart the backend is always asked first.
                    fresh_until: now,
                };
                layer.cache.insert(&path, entry.key.requested, cached);
                true
            }
            EntryKind::Token => match codec::decode_token(&entry.plaintext) {
                Ok(record) => {
                    layer.tokens.insert(&record, synced, entry.synced_at);
                    true
                }
                Err(_) => false,
            },
            EntryKind::Policies => match codec::decode_policies(&entry.plaintext) {
                Ok(records) => {
                    if layer.policies_pending.load(Ordering::SeqCst) {
                        tracing::warn!(
                            policies = records.len(),
                            "using policies from the cache file until the backend answers"
                        );
                        self.install_policies(records.clone());
                    }
                    *layer.lock_policies() = Some(records);
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// Keeps a token record the backend just returned.
    pub(crate) fn remember_token(&self, record: &TokenRecord) {
        let Some(layer) = &self.resilience else {
            return;
        };
        let clock = &layer.config.clock;
        let synced_wall = clock.wall();
        layer.tokens.insert(record, clock.now(), synced_wall);
        if let Some(disk) = layer.disk.get() {
            let key = EntryKey {
                kind: EntryKind::Token,
                key: record.token_hash.clone(),
                requested: None,
            };
            let plaintext = codec::encode_token(record);
            if let Err(error) = disk.put(key, 0, synced_wall, &plaintext) {
                tracing::warn!(%error, accessor = %record.accessor, "failed to seal a token record for the cache file");
            }
        }
    }

    /// Returns the kept record of a token while the backend fails.
    pub(crate) fn cached_token(&self, token_hash: &str) -> Option<TokenRecord> {
        let layer = self.resilience.as_ref()?;
        let (record, synced) =
            layer
                .tokens
                .get(token_hash, layer.config.clock.now(), layer.config.max_stale)?;
        tracing::warn!(accessor = %record.accessor, last_sync = %codec::format_time(synced), "backend failed; authenticating with a cached token record");
        Some(record)
    }

    /// Drops every kept token record, after a revocation through this manager: the store
    /// revokes descendants too, and which ones is known only to the store.
    pub(crate) async fn forget_tokens(&self) {
        let Some(layer) = &self.resilience else {
            return;
        };
        layer.tokens.clear();
        if let Some(disk) = layer.disk.get()
            && disk.remove_where(|key| key.kind == EntryKind::Token)
            && let Err(error) = disk.flush().await
        {
            tracing::error!(%error, "failed to write the cache file after a token revocation");
        }
    }

    /// Drops the kept record of a token the backend reported as not found.
    pub(crate) fn forget_token(&self, token_hash: &str) {
        if let Some(layer) = &self.resilience {
            layer.tokens.remove(token_hash);
            if let Some(disk) = layer.disk.get() {
                disk.remove_where(|key| key.kind == EntryKind::Token && key.key == token_hash);
            }
        }
    }

    /// Re-reads the policies for the disk cache after a policy changed, if the cache is on.
    pub(crate) async fn refresh_remembered_policies(&self) {
        let disk_open = self
            .resilience
            .as_ref()
            .is_some_and(|layer| layer.disk.get().is_some());
        if !disk_open {
            return;
        }
        match self.store.all_policies().await {
            Ok(records) => self.remember_policies(&records),
            Err(error) => {
                tracing::warn!(%error, "failed to re-read the policies for the cache file");
            }
        }
    }

    /// Keeps the policy records last read from the backend.
    pub(crate) fn remember_policies(&self, records: &[PolicyRecord]) {
        if let Some(layer) = &self.resilience {
            *layer.lock_policies() = Some(records.to_vec());
            layer.seal_policies(records);
        }
    }
}

impl Resilience {
    fn seal_policies(&self, records: &[PolicyRecord]) {
        let Some(disk) = self.disk.get() else {
            return;
        };
        let key = EntryKey {
            kind: EntryKind::Policies,
            key: String::new(),
            requested: None,
        };
        let plaintext = codec::encode_policies(records);
        if let Err(error) = disk.put(key, 0, self.config.clock.wall(), &plaintext) {
            tracing::warn!(%error, "failed to seal the policies for the cache file");
        }
    }

    fn lock_policies(&self) -> std::sync::MutexGuard<'_, Option<Vec<PolicyRecord>>> {
        self.last_policies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes changes every [`FLUSH_INTERVAL`] until the manager, and with it the cache, is gone.
fn spawn_flusher(disk: std::sync::Weak<DiskCache>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            let Some(disk) = disk.upgrade() else {
                return;
            };
            if let Err(error) = disk.flush().await {
                tracing::error!(%error, "failed to write the cache file; retrying");
            }
        }
    });
}
