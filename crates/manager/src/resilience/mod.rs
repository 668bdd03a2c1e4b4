//! Resilience around a remote backend: a read cache with a TTL per secret, stale-if-error
//! reads up to a maximum staleness, a circuit breaker, an environment-variable fallback and an
//! opt-in encrypted on-disk cache.
//!
//! The layer is active only when [`ManagerConfig::resilience`](crate::ManagerConfig) is set,
//! which is meant for remote backends (Vault/OpenBao); the embedded SQLite store runs without
//! it and pays nothing for it. Writes are never queued: while the backend fails or the breaker
//! is open they fail with `Unavailable` and change nothing. Only secret reads are answered
//! from the cache; listings and metadata reads are not. Token records and policies are kept
//! too, but only so callers can authenticate while the backend fails.

mod breaker;
mod cache;
mod clock;
mod codec;
mod config;
mod disk;
mod env;
mod guarded;
mod health;
pub mod metrics;
mod persist;
mod read;
mod tokens;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use keyward_store::{PolicyRecord, SecretStore};

pub use breaker::CircuitState;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{EnvFallbackEntry, ResilienceConfig, TtlOverride};
pub use disk::DiskCacheError;

use crate::events::EventBus;
use breaker::{BreakerSettings, CircuitBreaker};
use cache::ReadCache;
use disk::DiskCache;
use env::EnvFallback;
use guarded::GuardedStore;
use health::DegradedState;
use tokens::TokenCache;

/// The resilience layer's state, owned by the manager.
pub(crate) struct Resilience {
    config: ResilienceConfig,
    breaker: Arc<CircuitBreaker>,
    degraded: Arc<DegradedState>,
    cache: ReadCache,
    tokens: TokenCache,
    env: EnvFallback,
    disk: OnceLock<Arc<DiskCache>>,
    /// The policy records last read from the backend, for the disk cache.
    last_policies: Mutex<Option<Vec<PolicyRecord>>>,
    /// Set when the policies could not be read at start; the next authentication retries.
    pub(crate) policies_pending: AtomicBool,
}

impl std::fmt::Debug for Resilience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilience")
            .field("backend", &self.config.backend_name)
            .field("breaker", &self.breaker.state())
            .field("cache", &self.cache)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl Resilience {
    /// Builds the layer and wraps `store` in the breaker. Reads the fallback variables now.
    pub(crate) fn wrap(
        config: ResilienceConfig,
        store: Arc<dyn SecretStore>,
        events: EventBus,
    ) -> (Self, Arc<dyn SecretStore>) {
        let degraded = Arc::new(DegradedState::default());
        metrics::record_degraded(false);
        let breaker = Arc::new(CircuitBreaker::new(
            BreakerSettings {
                backend: config.backend_name.clone(),
                failure_threshold: config.failure_threshold,
                backoff_base: config.backoff_base,
                backoff_max: config.backoff_max,
            },
            config.clock.clone(),
            events,
            degraded.clone(),
        ));
        let guarded: Arc<dyn SecretStore> = Arc::new(GuardedStore::new(
            store,
            breaker.clone(),
            degraded.clone(),
            config.call_timeout,
            config.local_tokens_and_policies,
        ));
        let env = EnvFallback::from_process_env(&config.env_fallback, config.clock.wall());
        if !env.is_empty() {
            tracing::info!(backend = %config.backend_name, "environment fallback loaded");
        }

        let layer = Self {
            cache: ReadCache::new(config.max_cache_entries),
            tokens: TokenCache::default(),
            env,
            disk: OnceLock::new(),
            last_policies: Mutex::new(None),
            policies_pending: AtomicBool::new(false),
            breaker,
            degraded,
            config,
        };
        (layer, guarded)
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.is_degraded()
    }

    pub(crate) fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }
}

impl crate::SecretsManager {
    /// Reports the manager degraded before any backend call has failed, for a backend the
    /// caller found unreachable at start (its login failed). The next successful backend call
    /// clears it. Does nothing without the resilience layer.
    pub fn mark_backend_unavailable(&self) {
        if let Some(layer) = &self.resilience {
            layer.degraded.set_serving_stale(true);
        }
    }
}
