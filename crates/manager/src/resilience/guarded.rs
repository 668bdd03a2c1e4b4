//! A [`SecretStore`] that passes every call to a remote backend through its circuit breaker.
//!
//! Calls the breaker turns away fail with [`StoreError::Backend`] without reaching the
//! backend, so writes fail and change nothing, exactly as when the backend itself is down.
//! This wrapper neither caches nor retries; the read path above it does the caching.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyward_store::{
    FolderPath, MetadataUpdate, NewVersion, PolicyRecord, RewrapProgress, SecretMeta, SecretPath,
    SecretStore, StoreError, TokenRecord, VersionMeta, VersionRead,
};
use time::OffsetDateTime;

use super::breaker::CircuitBreaker;
use super::health::DegradedState;

/// A store whose calls go through a circuit breaker.
pub(crate) struct GuardedStore {
    inner: Arc<dyn SecretStore>,
    breaker: Arc<CircuitBreaker>,
    degraded: Arc<DegradedState>,
    call_timeout: Duration,
    /// Token and policy calls go straight to the store; see
    /// [`ResilienceConfig::local_tokens_and_policies`](super::ResilienceConfig).
    local_tokens_and_policies: bool,
}

impl GuardedStore {
    pub(crate) fn new(
        inner: Arc<dyn SecretStore>,
        breaker: Arc<CircuitBreaker>,
        degraded: Arc<DegradedState>,
        call_timeout: Duration,
        local_tokens_and_policies: bool,
    ) -> Self {
        Self {
            inner,
            breaker,
            degraded,
            call_timeout,
            local_tokens_and_policies,
        }
    }

    /// Runs a token or policy call through the breaker, unless the store keeps them locally.
    async fn call_local<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        if self.local_tokens_and_policies {
            call.await
        } else {
            self.call(call).await
        }
    }

    async fn call<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(rejected) => {
                return Err(StoreError::Backend(format!(
                    "circuit breaker for backend {} is open: next attempt in {} ms",
                    self.breaker.backend(),
                    rejected.retry_after.as_millis()
                )));
            }
        };

        // NOTE: a write that times out may still complete in the backend; the caller gets
        // `Unavailable` and the read cache ends the secret's TTL, but the write is not undone.
        let result = match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Backend(format!(
                "backend {} did not respond within {} ms",
                self.breaker.backend(),
                self.call_timeout.as_millis()
            ))),
        };
        let failed = matches!(result, Err(StoreError::Backend(_)));
        permit.finish(failed);
        if !failed {
            self.degraded.set_serving_stale(false);
        }
        result
    }
}

#[async_trait]
impl SecretStore for GuardedStore {
    async fn put(
        &self,
        path: &SecretPath,
        version: NewVersion,
        default_max_versions: u32,
    ) -> Result<VersionMeta, StoreError> {
        self.call(self.inner.put(path, version, default_max_versions))
            .await
    }

    async fn get(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<VersionRead, StoreError> {
        self.call(self.inner.get(path, version)).await
    }

    async fn delete_versions(&self, path: &SecretPath, versions: &[u64]) -> Result<(), StoreError> {
        self.call(self.inner.delete_versions(path, versions)).await
    }

    async fn undelete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.call(self.inner.undelete_versions(path, versions))
            .await
    }

    async fn destroy_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.call(self.inner.destroy_versions(path, versions)).await
    }

    async fn read_metadata(&self, path: &SecretPath) -> Result<SecretMeta, StoreError> {
        self.call(self.inner.read_metadata(path)).await
    }

    async fn write_metadata(
        &self,
        path: &SecretPath,
        update: MetadataUpdate,
    ) -> Result<(), StoreError> {
        self.call(self.inner.write_metadata(path, update)).await
    }

    async fn delete_metadata(&self, path: &SecretPath) -> Result<(), StoreError> {
        self.call(self.inner.delete_metadata(path)).await
    }

    async fn list(&self, folder: &FolderPath) -> Result<Vec<String>, StoreError> {
        self.call(self.inner.list(folder)).await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.call_local(self.inner.create_token(token)).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<TokenRecord, StoreError> {
        self.call_local(self.inner.token_by_hash(token_hash)).await
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<TokenRecord, StoreError> {
        self.call_local(self.inner.token_by_accessor(accessor))
            .await
    }

    async fn set_token_expiry(
        &self,
        accessor: &str,
        expire_time: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        self.call_local(self.inner.set_token_expiry(accessor, expire_time))
            .await
    }

    async fn revoke_token(&self, accessor: &str) -> Result<u64, StoreError> {
        self.call_local(self.inner.revoke_token(accessor)).await
    }

    async fn put_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError> {
        self.call_local(self.inner.put_policy(policy)).await
    }

    async fn get_policy(&self, name: &str) -> Result<PolicyRecord, StoreError> {
        self.call_local(self.inner.get_policy(name)).await
    }

    async fn all_policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        self.call_local(self.inner.all_policies()).await
    }

    async fn delete_policy(&self, name: &str) -> Result<(), StoreError> {
        self.call_local(self.inner.delete_policy(name)).await
    }

    async fn count_by_key(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        self.call(self.inner.count_by_key()).await
    }

    async fn rewrap_batch(&self, limit: usize) -> Result<RewrapProgress, StoreError> {
        self.call(self.inner.rewrap_batch(limit)).await
    }
}
