//! The cached read path and cache invalidation, as methods of the manager.

use keyward_store::{SecretPath, StoreError, VersionRead};

use super::cache::{CachedRead, StaleLookup};
use super::codec;
use super::disk::{EntryKey, EntryKind};
use super::{Resilience, metrics};
use crate::kv::{Freshness, KvRead};
use crate::{ManagerError, SecretsManager};

impl SecretsManager {
    /// Reads a version through the cache. A fresh entry is served at once. Otherwise the
    /// backend is called, and if it fails, a cached entry within the maximum staleness is served
    /// (marked stale), else the environment fallback.
    pub(crate) async fn read_resilient(
        &self,
        layer: &Resilience,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<KvRead, ManagerError> {
        let clock = &layer.config.clock;
        if let Some(entry) = layer.cache.fresh(path, version, clock.now()) {
            return Ok(kv_read(entry, Freshness::Fresh));
        }

        match self.store.get(path, version).await {
            Ok(read) => {
                layer.remember_read(path, version, &read);
                Ok(KvRead {
                    meta: read.meta,
                    custom_metadata: read.custom_metadata,
                    data: read.data,
                    freshness: Freshness::Fresh,
                })
            }
            Err(StoreError::NotFound) => {
                layer.cache.remove(path, version);
                Err(ManagerError::NotFound)
            }
            Err(StoreError::Backend(detail)) => layer.read_degraded(path, version, detail),
            Err(other) => Err(other.into()),
        }
    }

    /// Drops every cached read of `path`, in memory and on disk, so the next read calls the
    /// backend. The `kv_*` write methods do this themselves; call it after changing a secret
    /// by another route, such as a rotation that writes to the backend directly.
    pub async fn invalidate_cache(&self, path: &SecretPath) {
        self.invalidate_after_write(path, &Ok::<(), ManagerError>(()))
            .await;
    }

    /// Drops every cached read of `path` after Keyward changed the secret, or only ends their
    /// TTL when the change failed in the backend and may or may not have happened.
    pub(crate) async fn invalidate_after_write<T>(
        &self,
        path: &SecretPath,
        result: &Result<T, ManagerError>,
    ) {
        let Some(layer) = &self.resilience else {
            return;
        };
        match result {
            Ok(_) => {
                layer.cache.remove_path(path);
                if let Some(disk) = layer.disk.get() {
                    let removed = disk.remove_where(|key| {
                        key.kind == EntryKind::Read && key.key == path.as_str()
                    });
                    // Written at once, so a restart cannot bring back a value Keyward replaced.
                    if removed && let Err(error) = disk.flush().await {
                        tracing::error!(%error, path = %path, "failed to write the cache file after an invalidation");
                    }
                }
            }
            Err(ManagerError::Unavailable(_)) => {
                layer.cache.expire_path(path, layer.config.clock.now());
            }
            Err(_) => {}
        }
    }
}

impl Resilience {
    /// Caches a read the backend just returned.
    fn remember_read(&self, path: &SecretPath, version: Option<u64>, read: &VersionRead) {
        let clock = &self.config.clock;
        let now = clock.now();
        let entry = CachedRead {
            meta: read.meta.clone(),
            custom_metadata: read.custom_metadata.clone(),
            data: read.data.clone(),
            synced: now,
            synced_wall: clock.wall(),
            fresh_until: now + self.config.ttl_for(path),
        };

        if let Some(disk) = self.disk.get() {
            let plaintext =
                codec::encode_read(&entry.meta, &entry.custom_metadata, entry.data.as_ref());
            let key = EntryKey {
                kind: EntryKind::Read,
                key: path.as_str().to_owned(),
                requested: version,
            };
            if let Err(error) = disk.put(key, entry.meta.version, entry.synced_wall, &plaintext) {
                tracing::warn!(%error, path = %path, "failed to seal a read for the cache file");
            }
        }
        self.cache.insert(path, version, entry);
    }

    /// Serves a read the backend failed: from the cache within the maximum staleness, else
    /// from the environment fallback, else an error that names the last sync if there was one.
    fn read_degraded(
        &self,
        path: &SecretPath,
        version: Option<u64>,
        detail: String,
    ) -> Result<KvRead, ManagerError> {
        let now = self.config.clock.now();
        let last_sync = match self.cache.stale(path, version, now, self.config.max_stale) {
            StaleLookup::Usable(entry) => {
                self.degraded.set_serving_stale(true);
                metrics::record_degraded_read(&self.config.backend_name, "stale_cache");
                let last_sync = entry.synced_wall;
                tracing::warn!(path = %path, backend = %self.config.backend_name, %detail, "backend failed; serving a stale cached read");
                return Ok(kv_read(entry, Freshness::Stale { last_sync }));
            }
            StaleLookup::TooOld(last_sync) => Some(last_sync),
            StaleLookup::Missing => None,
        };

        if version.is_none()
            && let Some((meta, data)) = self.env.get(path)
        {
            self.degraded.set_serving_stale(true);
            metrics::record_degraded_read(&self.config.backend_name, "env_fallback");
            tracing::warn!(path = %path, backend = %self.config.backend_name, %detail, "backend and cache failed; serving the environment fallback");
            return Ok(KvRead {
                meta,
                custom_metadata: Default::default(),
                data: Some(data),
                freshness: Freshness::EnvFallback,
            });
        }

        match last_sync {
            Some(last_sync) => {
                tracing::warn!(path = %path, backend = %self.config.backend_name, %detail, "backend failed and the cached read is past the maximum staleness");
                Err(ManagerError::StaleLimitExceeded {
                    path: path.to_string(),
                    last_sync,
                    max_stale_secs: self.config.max_stale.as_secs(),
                })
            }
            None => Err(ManagerError::Unavailable(detail)),
        }
    }
}

fn kv_read(entry: CachedRead, freshness: Freshness) -> KvRead {
    KvRead {
        meta: entry.meta,
        custom_metadata: entry.custom_metadata,
        data: entry.data,
        freshness,
    }
}
