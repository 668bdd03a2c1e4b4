//! The resilience layer over a store that can be switched to fail like a remote backend that
//! went down: stale-if-error reads, the circuit breaker, failing writes, the environment
//! fallback and the on-disk cache.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::Keyring;
use keyward_manager::{
    Caller, CircuitState, Clock, EnvFallbackEntry, Freshness, ManagerConfig, ManagerError,
    ManualClock, ResilienceConfig, SecretsManager, SecurityEvent,
};
use keyward_store::{
    FolderPath, KeyringHandle, MetadataUpdate, NewVersion, PolicyRecord, RewrapProgress,
    SecretMeta, SecretPath, SecretStore, SqliteStore, StoreError, TokenRecord, VersionMeta,
    VersionRead,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;

use crate::common::{ctx, data, path, read_json};

/// A store that delegates to SQLite, counts the calls that reach it, and can be switched to
/// fail every call with a backend error, or to hold `get` calls until released.
struct FlakyStore {
    inner: SqliteStore,
    failing: AtomicBool,
    calls: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
}

impl FlakyStore {
    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for FlakyStore {
    async fn put(
        &self,
        path: &SecretPath,
        version: NewVersion,
        default_max_versions: u32,
    ) -> Result<VersionMeta, StoreError> {
        self.enter()?;
        self.inner.put(path, version, default_max_versions).await
    }

    async fn get(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<VersionRead, StoreError> {
        if let Some(gate) = &self.gate {
            let permit = gate.acquire().await;
            drop(permit);
        }
        self.enter()?;
        self.inner.get(path, version).await
    }

    async fn delete_versions(&self, path: &SecretPath, versions: &[u64]) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.delete_versions(path, versions).await
    }

    async fn undelete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.undelete_versions(path, versions).await
    }

    async fn destroy_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.destroy_versions(path, versions).await
    }

    async fn read_metadata(&self, path: &SecretPath) -> Result<SecretMeta, StoreError> {
        self.enter()?;
        self.inner.read_metadata(path).await
    }

    async fn write_metadata(
        &self,
        path: &SecretPath,
        update: MetadataUpdate,
    ) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.write_metadata(path, update).await
    }

    async fn delete_metadata(&self, path: &SecretPath) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.delete_metadata(path).await
    }

    async fn list(&self, folder: &FolderPath) -> Result<Vec<String>, StoreError> {
        self.enter()?;
        self.inner.list(folder).await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.create_token(token).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<TokenRecord, StoreError> {
        self.enter()?;
        self.inner.token_by_hash(token_hash).await
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<TokenRecord, StoreError> {
        self.enter()?;
        self.inner.token_by_accessor(accessor).await
    }

    async fn set_token_expiry(
        &self,
        accessor: &str,
        expire_time: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.set_token_expiry(accessor, expire_time).await
    }

    async fn revoke_token(&self, accessor: &str) -> Result<u64, StoreError> {
        self.enter()?;
        self.inner.revoke_token(accessor).await
    }

    async fn put_policy(&self, policy: &PolicyRecord) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.put_policy(policy).await
    }

    async fn get_policy(&self, name: &str) -> Result<PolicyRecord, StoreError> {
        self.enter()?;
        self.inner.get_policy(name).await
    }

    async fn all_policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        self.enter()?;
        self.inner.all_policies().await
    }

    async fn delete_policy(&self, name: &str) -> Result<(), StoreError> {
        self.enter()?;
        self.inner.delete_policy(name).await
    }

    async fn count_by_key(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        self.enter()?;
        self.inner.count_by_key().await
    }

    async fn rewrap_batch(&self, limit: usize) -> Result<RewrapProgress, StoreError> {
        self.enter()?;
        self.inner.rewrap_batch(limit).await
    }
}

const TTL: Duration = Duration::from_secs(30);
const MAX_STALE: Duration = Duration::from_secs(600);
const THRESHOLD: u32 = 3;
const BACKOFF_MAX: Duration = Duration::from_secs(8);

fn resilience(clock: &Arc<ManualClock>) -> ResilienceConfig {
    ResilienceConfig {
        backend_name: "flaky".into(),
        cache_ttl: TTL,
        max_stale: MAX_STALE,
        failure_threshold: THRESHOLD,
        backoff_base: Duration::from_secs(1),
        backoff_max: BACKOFF_MAX,
        clock: clock.clone(),
        ..ResilienceConfig::default()
    }
}

struct Outage {
    manager: SecretsManager,
    store: Arc<FlakyStore>,
    clock: Arc<ManualClock>,
    root: Caller,
    root_token: String,
    keyring: Arc<Keyring>,
    dir: tempfile::TempDir,
}

impl Outage {
    async fn new() -> Self {
        Self::build(|config| config, None).await
    }

    async fn build(
        adjust: impl FnOnce(ResilienceConfig) -> ResilienceConfig,
        gate: Option<Arc<Semaphore>>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = Arc::new(Keyring::generate().expect("keyring"));
        let clock = Arc::new(ManualClock::new());
        let store = open_store(dir.path(), &keyring, gate).await;
        let config = adjust(resilience(&clock));
        let manager = start(&store, &dir.path().join("audit.log"), config).await;

        let issued = manager.create_root_token(&ctx()).await.expect("root token");
        let root_token = issued.token.expose().to_owned();
        let root = manager
            .authenticate(Some(&root_token), &ctx())
            .await
            .expect("root token authenticates");
        Self {
            manager,
            store,
            clock,
            root,
            root_token,
            keyring,
            dir,
        }
    }

    async fn write(&self, raw: &str, value: Value) -> Result<VersionMeta, ManagerError> {
        self.manager
            .kv_write(&self.root, &ctx(), &path(raw), data(value), None)
            .await
    }

    async fn read(&self, raw: &str) -> Result<keyward_manager::KvRead, ManagerError> {
        self.manager
            .kv_read(&self.root, &ctx(), &path(raw), None)
            .await
    }

    /// Writes straight to the backend, as another client of it would.
    async fn write_behind_keyward(&self, raw: &str, value: Value) {
        self.store
            .inner
            .put(
                &path(raw),
                NewVersion {
                    data: data(value),
                    cas: None,
                    created_by: "other-client".into(),
                },
                10,
            )
            .await
            .expect("direct write");
    }

    /// Fails reads of uncached paths until the breaker opens.
    async fn open_breaker(&self) {
        for attempt in 0..THRESHOLD {
            let result = self.read(&format!("never/written{attempt}")).await;
            assert!(
                matches!(result, Err(ManagerError::Unavailable(_))),
                "{result:?}"
            );
        }
        assert_eq!(self.manager.circuit_state(), Some(CircuitState::Open));
    }

    fn audit_entries(&self, file: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join(file)).expect("audit log");
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("JSON line")["entry"].clone())
            .collect()
    }
}

async fn open_store(
    dir: &Path,
    keyring: &Arc<Keyring>,
    gate: Option<Arc<Semaphore>>,
) -> Arc<FlakyStore> {
    let inner = SqliteStore::open(&dir.join("keyward.db"), keyring.clone())
        .await
        .expect("store opens");
    Arc::new(FlakyStore {
        inner,
        failing: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        gate,
    })
}

async fn start(
    store: &Arc<FlakyStore>,
    audit_path: &Path,
    resilience: ResilienceConfig,
) -> SecretsManager {
    let audit = AuditLog::open(audit_path, AuditKey::from_bytes([7; 32])).expect("audit opens");
    let config = ManagerConfig {
        resilience: Some(resilience),
        ..ManagerConfig::default()
    };
    SecretsManager::new(store.clone(), audit, [9; 32], config)
        .await
        .expect("manager starts")
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).expect("formats")
}

#[tokio::test]
async fn reads_stay_stale_until_max_stale() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    let fresh = h.read("app/db").await.expect("reads");
    assert_eq!(fresh.freshness, Freshness::Fresh);
    let synced_at = h.clock.wall();

    h.store.set_failing(true);
    h.clock.advance(TTL + Duration::from_secs(1));
    let stale = h.read("app/db").await.expect("stale read succeeds");
    assert_eq!(read_json(&stale), json!({"password": "p1"}));
    let Freshness::Stale { last_sync } = stale.freshness else {
        panic!("expected a stale read, got {:?}", stale.freshness);
    };
    assert_eq!(last_sync, synced_at);
    assert!(h.manager.health().degraded);

    h.clock.advance(MAX_STALE);
    let result = h.read("app/db").await;
    let Err(error @ ManagerError::StaleLimitExceeded { .. }) = result else {
        panic!("expected the staleness limit, got {result:?}");
    };
    let message = error.to_string();
    assert!(message.contains(&rfc3339(synced_at)), "{message}");
    assert!(!message.contains("p1"), "{message}");
}

#[tokio::test]
async fn stale_read_is_audited_as_stale() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    h.read("app/db").await.expect("reads");
    let synced_at = h.clock.wall();

    h.store.set_failing(true);
    h.clock.advance(TTL);
    h.read("app/db").await.expect("stale read succeeds");

    let entries = h.audit_entries("audit.log");
    let last = entries.last().expect("an entry");
    assert_eq!(last["operation"], "kv.read");
    assert_eq!(last["freshness"], "stale");
    assert_eq!(last["last_sync"], rfc3339(synced_at));
    let fresh_reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["operation"] == "kv.read" && e.get("freshness").is_none())
        .collect();
    assert_eq!(fresh_reads.len(), 1);
}

#[tokio::test]
async fn writes_fail_and_change_nothing() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");

    h.store.set_failing(true);
    let write = h.write("app/db", json!({"password": "p2"})).await;
    assert!(
        matches!(write, Err(ManagerError::Unavailable(_))),
        "{write:?}"
    );
    let delete = h
        .manager
        .kv_delete(&h.root, &ctx(), &path("app/db"), &[])
        .await;
    assert!(
        matches!(delete, Err(ManagerError::Unavailable(_))),
        "{delete:?}"
    );
    h.open_breaker().await;
    let while_open = h.write("app/db", json!({"password": "p3"})).await;
    assert!(
        matches!(while_open, Err(ManagerError::Unavailable(_))),
        "{while_open:?}"
    );

    h.store.set_failing(false);
    let stored = h
        .store
        .inner
        .get(&path("app/db"), None)
        .await
        .expect("stored");
    assert_eq!(stored.meta.version, 1);
    assert!(stored.meta.deletion_time.is_none());
    let value = Value::Object(stored.data.expect("readable").expose_map());
    assert_eq!(value, json!({"password": "p1"}));
}

#[tokio::test]
async fn breaker_bounds_backend_calls_while_open() {
    let h = Outage::new().await;
    let mut events = h.manager.subscribe();
    h.store.set_failing(true);
    let before = h.store.calls();

    h.open_breaker().await;
    assert_eq!(h.store.calls() - before, THRESHOLD as usize);

    for attempt in 0..50 {
        let result = h.read(&format!("other/{attempt}")).await;
        assert!(
            matches!(result, Err(ManagerError::Unavailable(_))),
            "{result:?}"
        );
    }
    assert_eq!(h.store.calls() - before, THRESHOLD as usize);
    assert!(h.manager.health().degraded);

    let published: Vec<SecurityEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        published.iter().any(|e| matches!(
            e,
            SecurityEvent::CircuitOpened { backend, consecutive_failures: 3, .. } if backend == "flaky"
        )),
        "{published:?}"
    );
    assert!(
        published
            .iter()
            .any(|e| matches!(e, SecurityEvent::BackendUnavailable { .. })),
        "{published:?}"
    );
}

#[tokio::test]
async fn hung_backend_counts_as_failure() {
    let gate = Arc::new(Semaphore::new(0));
    let h = Outage::build(
        |config| ResilienceConfig {
            call_timeout: Duration::from_millis(50),
            ..config
        },
        Some(gate.clone()),
    )
    .await;

    for attempt in 0..THRESHOLD {
        let result = h.read(&format!("never/written{attempt}")).await;
        let Err(ManagerError::Unavailable(detail)) = result else {
            panic!("expected a timeout, got {result:?}");
        };
        assert!(detail.contains("did not respond"), "{detail}");
    }

    assert_eq!(h.manager.circuit_state(), Some(CircuitState::Open));
}

#[tokio::test]
async fn one_probe_closes_breaker_with_fresh_values() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    h.read("app/db").await.expect("reads");
    h.store.set_failing(true);
    h.open_breaker().await;
    let mut events = h.manager.subscribe();

    h.store.set_failing(false);
    h.write_behind_keyward("app/db", json!({"password": "p2"}))
        .await;
    h.clock.advance(TTL.max(BACKOFF_MAX));
    let before = h.store.calls();
    let read = h.read("app/db").await.expect("probe read succeeds");

    assert_eq!(h.store.calls() - before, 1);
    assert_eq!(read.freshness, Freshness::Fresh);
    assert_eq!(read_json(&read), json!({"password": "p2"}));
    assert_eq!(h.manager.circuit_state(), Some(CircuitState::Closed));
    assert!(!h.manager.health().degraded);
    let published: Vec<SecurityEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        matches!(
            published.as_slice(),
            [
                SecurityEvent::CircuitHalfOpen { .. },
                SecurityEvent::CircuitClosed { .. },
                ..
            ]
        ),
        "{published:?}"
    );
}

#[tokio::test]
async fn half_open_sends_only_one_probe() {
    let gate = Arc::new(Semaphore::new(0));
    let h = Outage::build(|config| config, Some(gate.clone())).await;
    gate.add_permits(1_000);
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    h.read("app/db").await.expect("reads");
    h.store.set_failing(true);
    h.open_breaker().await;

    // Hold the next backend read so the probe is in flight while the others arrive.
    let held = gate.acquire_many(gate.available_permits() as u32).await;
    held.expect("gate open").forget();
    h.store.set_failing(false);
    h.clock.advance(TTL.max(BACKOFF_MAX));
    let before = h.store.calls();

    let probe = h.read("app/db");
    let others = async {
        tokio::task::yield_now().await;
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(h.read("app/db").await);
        }
        gate.add_permits(1);
        answers
    };
    let (probe, others) = tokio::join!(probe, others);

    assert_eq!(probe.expect("probe succeeds").freshness, Freshness::Fresh);
    for answer in others {
        let read = answer.expect("served from the cache");
        assert!(
            matches!(read.freshness, Freshness::Stale { .. }),
            "{:?}",
            read.freshness
        );
    }
    assert_eq!(h.store.calls() - before, 1);
    assert_eq!(h.manager.circuit_state(), Some(CircuitState::Closed));
}

#[tokio::test]
async fn cache_answers_within_ttl() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    h.read("app/db").await.expect("reads");
    h.write_behind_keyward("app/db", json!({"password": "p2"}))
        .await;
    let before = h.store.calls();

    let cached = h.read("app/db").await.expect("reads");
    assert_eq!(read_json(&cached), json!({"password": "p1"}));
    assert_eq!(h.store.calls(), before);

    h.clock.advance(TTL);
    let refreshed = h.read("app/db").await.expect("reads");
    assert_eq!(read_json(&refreshed), json!({"password": "p2"}));
}

#[tokio::test]
async fn keyward_write_invalidates_cache_at_once() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    h.read("app/db").await.expect("reads");

    h.write("app/db", json!({"password": "p2"}))
        .await
        .expect("writes");
    let after_write = h.read("app/db").await.expect("reads");
    assert_eq!(read_json(&after_write), json!({"password": "p2"}));

    h.manager
        .kv_delete(&h.root, &ctx(), &path("app/db"), &[])
        .await
        .expect("deletes");
    let after_delete = h.read("app/db").await.expect("reads metadata");
    assert!(after_delete.data.is_none());

    h.manager
        .kv_delete_metadata(&h.root, &ctx(), &path("app/db"))
        .await
        .expect("deletes metadata");
    let after_purge = h.read("app/db").await;
    assert!(
        matches!(after_purge, Err(ManagerError::NotFound)),
        "{after_purge:?}"
    );
}

#[tokio::test]
async fn invalidate_cache_forces_backend_read() {
    let h = Outage::new().await;
    h.write("app/db", json!({"password": "p1"}))
        .await
        .expect("writes");
    h.read("app/db").await.expect("reads");
    h.write_behind_keyward("app/db", json!({"password": "p2"}))
        .await;

    h.manager.invalidate_cache(&path("app/db")).await;

    let read = h.read("app/db").await.expect("reads");
    assert_eq!(read_json(&read), json!({"password": "p2"}));
}

#[tokio::test]
async fn env_fallback_only_when_backend_and_cache_fail() {
    // Cargo sets CARGO_PKG_NAME for the test process it runs.
    let expected = env!("CARGO_PKG_NAME");
    let h = Outage::build(
        |config| ResilienceConfig {
            env_fallback: vec![EnvFallbackEntry {
                var: "CARGO_PKG_NAME".into(),
                path: path("env/app"),
                field: "name".into(),
            }],
            ..config
        },
        None,
    )
    .await;
    h.write("env/app", json!({"name": "from-store"}))
        .await
        .expect("writes");

    let fresh = h.read("env/app").await.expect("reads");
    assert_eq!(read_json(&fresh), json!({"name": "from-store"}));

    h.store.set_failing(true);
    h.clock.advance(TTL);
    let stale = h.read("env/app").await.expect("stale read");
    assert_eq!(read_json(&stale), json!({"name": "from-store"}));

    h.clock.advance(MAX_STALE);
    let fallback = h.read("env/app").await.expect("fallback read");
    assert_eq!(fallback.freshness, Freshness::EnvFallback);
    assert_eq!(read_json(&fallback), json!({"name": expected}));

    let unmapped = h.read("env/other").await;
    assert!(
        matches!(unmapped, Err(ManagerError::Unavailable(_))),
        "{unmapped:?}"
    );
    let entries = h.audit_entries("audit.log");
    let audited = entries
        .iter()
        .filter(|e| e["operation"] == "kv.read" && e["freshness"] == "env_fallback")
        .count();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn disk_cache_survives_restart_with_backend_down() {
    let cache_file = |dir: &Path| dir.join("read-cache.json");
    let h = Outage::build(|config| config, None).await;
    let with_disk = |config: ResilienceConfig| ResilienceConfig {
        disk_cache: Some(cache_file(h.dir.path())),
        ..config
    };
    let first = start(
        &h.store,
        &h.dir.path().join("audit-1.log"),
        with_disk(resilience(&h.clock)),
    )
    .await;
    let handle = KeyringHandle::new(h.keyring.clone());
    assert_eq!(
        first.open_disk_cache(handle.clone()).await.expect("opens"),
        0
    );
    let root = first
        .authenticate(Some(&h.root_token), &ctx())
        .await
        .expect("authenticates");
    first
        .kv_write(
            &root,
            &ctx(),
            &path("app/db"),
            data(json!({"password": "hunter2-on-disk"})),
            None,
        )
        .await
        .expect("writes");
    first
        .kv_read(&root, &ctx(), &path("app/db"), None)
        .await
        .expect("reads");
    first.flush_disk_cache().await.expect("flushes");
    let file = std::fs::read_to_string(cache_file(h.dir.path())).expect("cache file");
    assert!(!file.contains("hunter2"), "{file}");
    drop(first);

    h.store.set_failing(true);
    let second = start(
        &h.store,
        &h.dir.path().join("audit-2.log"),
        with_disk(resilience(&h.clock)),
    )
    .await;
    assert!(second.open_disk_cache(handle).await.expect("opens") >= 2);
    let root = second
        .authenticate(Some(&h.root_token), &ctx())
        .await
        .expect("authenticates from the cached token record");
    let read = second
        .kv_read(&root, &ctx(), &path("app/db"), None)
        .await
        .expect("served from the disk cache");

    assert_eq!(read_json(&read), json!({"password": "hunter2-on-disk"}));
    assert!(
        matches!(read.freshness, Freshness::Stale { .. }),
        "{:?}",
        read.freshness
    );
    assert!(second.health().degraded);
    let unknown = second
        .kv_read(&root, &ctx(), &path("app/never"), None)
        .await;
    assert!(
        matches!(unknown, Err(ManagerError::Unavailable(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn sqlite_manager_has_no_breaker() {
    let h = crate::common::Harness::new().await;
    assert_eq!(h.manager.circuit_state(), None);
    h.write("app/db", json!({"password": "p1"})).await;
    let read = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/db"), None)
        .await
        .expect("reads");
    assert_eq!(read.freshness, Freshness::Fresh);
}
