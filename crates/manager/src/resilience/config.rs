//! Settings of the resilience layer: read cache, stale-if-error, circuit breaker, environment
//! fallback and on-disk cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyward_store::SecretPath;

use super::clock::{Clock, SystemClock};

/// Settings of the resilience layer that the manager puts around a remote backend.
///
/// Set [`ManagerConfig::resilience`](crate::ManagerConfig) to enable it; the embedded SQLite
/// store runs without it.
#[derive(Clone, Debug)]
pub struct ResilienceConfig {
    /// The backend's name in events, metric labels and logs, e.g. `openbao`.
    pub backend_name: String,
    /// How long a cached read is served without a backend call.
    pub cache_ttl: Duration,
    /// TTLs for secrets under some path prefixes; the longest matching prefix wins over
    /// [`ResilienceConfig::cache_ttl`].
    pub ttl_overrides: Vec<TtlOverride>,
    /// Maximum age of a cached read, counted from its last successful sync with the backend,
    /// that may still be served while the backend fails.
    pub max_stale: Duration,
    /// Maximum number of reads kept in the cache; the entry synced longest ago goes first.
    pub max_cache_entries: usize,
    /// Longest a backend call may take before it is abandoned and counted as a failure, so a
    /// backend that hangs opens the breaker like one that refuses connections.
    pub call_timeout: Duration,
    /// Consecutive backend failures that open the circuit breaker (at least 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open the first time; each further open without a close in
    /// between doubles it, with jitter.
    pub backoff_base: Duration,
    /// Upper bound of the open period.
    pub backoff_max: Duration,
    /// Environment variables served as secrets when both the backend and the cache fail.
    pub env_fallback: Vec<EnvFallbackEntry>,
    /// File for the encrypted on-disk copy of the cache, so the manager can serve reads after
    /// a restart with the backend down. `None` (the default) keeps the cache in memory only.
    /// The file is encrypted with the keyring passed to `SecretsManager::open_disk_cache`.
    pub disk_cache: Option<PathBuf>,
    /// Whether the store keeps token records and policies locally (as the Vault store does,
    /// in its SQLite file) while only secrets are remote. Those calls then bypass the circuit
    /// breaker, because their success shows nothing about the remote backend: counted as
    /// successes they would reset the failure count, close the breaker as a probe and clear
    /// the degraded state on every authenticated request.
    pub local_tokens_and_policies: bool,
    /// The time source; tests substitute a [`ManualClock`](super::ManualClock).
    pub clock: Arc<dyn Clock>,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            backend_name: "remote".to_owned(),
            cache_ttl: Duration::from_secs(30),
            ttl_overrides: Vec::new(),
            max_stale: Duration::from_secs(3600),
            max_cache_entries: 10_000,
            call_timeout: Duration::from_secs(10),
            failure_threshold: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            env_fallback: Vec::new(),
            disk_cache: None,
            local_tokens_and_policies: false,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ResilienceConfig {
    /// Returns the cache TTL for `path`: that of the longest matching override, else
    /// [`ResilienceConfig::cache_ttl`].
    pub fn ttl_for(&self, path: &SecretPath) -> Duration {
        self.ttl_overrides
            .iter()
            .filter(|o| path.as_str().starts_with(o.prefix.as_str()))
            .max_by_key(|o| o.prefix.len())
            .map_or(self.cache_ttl, |o| o.ttl)
    }
}

/// A cache TTL for the secrets whose path starts with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlOverride {
    /// A path prefix such as `team/app/`; it is compared as a plain string.
    pub prefix: String,
    /// The TTL of reads under it.
    pub ttl: Duration,
}

/// One environment variable offered as a secret's field when the backend and the cache fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFallbackEntry {
    /// The environment variable's name.
    pub var: String,
    /// The secret it replaces.
    pub path: SecretPath,
    /// The field of the secret's data that receives the variable's value.
    pub field: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> SecretPath {
        SecretPath::parse(raw).expect("test path is valid")
    }

    #[test]
    fn longest_ttl_override_wins() {
        let config = ResilienceConfig {
            ttl_overrides: vec![
                TtlOverride {
                    prefix: "team/".into(),
                    ttl: Duration::from_secs(5),
                },
                TtlOverride {
                    prefix: "team/app/".into(),
                    ttl: Duration::from_secs(300),
                },
            ],
            ..ResilienceConfig::default()
        };

        assert_eq!(
            config.ttl_for(&path("team/app/db")),
            Duration::from_secs(300)
        );
        assert_eq!(config.ttl_for(&path("team/other")), Duration::from_secs(5));
        assert_eq!(config.ttl_for(&path("solo")), Duration::from_secs(30));
    }
}
