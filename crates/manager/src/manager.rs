//! The `SecretsManager` value, its configuration, authentication and the audit helpers that
//! every operation goes through.
//!
//! Each operation follows the same steps: check the caller's policies, write a `request` audit
//! entry before any change, call the store, then write a `response` audit entry and publish an
//! event. If an audit write fails, the operation fails too (fail closed): a change whose
//! request entry could not be written is never attempted, and data whose response entry could
//! not be written is never returned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use keyward_audit::AuditLog;
use keyward_crypto::Keyring;
use keyward_store::{SecretStore, StoreError, TokenRecord};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::ManagerError;
use crate::events::{EventBus, SecurityEvent};
use crate::keys::KeyLifecycle;
use crate::lockout::{Lockout, LockoutConfig};
use crate::policy::{Capability, Policy, PolicySet};
use crate::resilience::{CircuitState, Resilience, ResilienceConfig};
use crate::token::{self, MAX_TOKEN_LEN, TOKEN_PREFIX};
use crate::token_cache::TokenCache;

/// Name of the policy attached to every token unless asked otherwise.
pub const DEFAULT_POLICY: &str = "default";

/// The built-in `default` policy: a token may look itself up, renew and revoke itself.
pub const DEFAULT_POLICY_TEXT: &str = r#"# Allow tokens to look up, renew and revoke themselves.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/revoke-self" {
  capabilities = ["update"]
}
"#;

/// Manager settings.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Versions kept per secret when its metadata sets no `max_versions`.
    pub default_max_versions: u32,
    /// TTL of a new token when the request names none.
    pub default_token_ttl: Duration,
    /// Longest TTL a token may have, renewals included.
    pub max_token_ttl: Duration,
    /// Authentication failure lockout.
    pub lockout: LockoutConfig,
    /// Encryptions after which the manager rotates the active data key by itself. Values
    /// above [`Keyring::MAX_ENCRYPTIONS_PER_KEY`] are lowered to it and 0 is raised to 1.
    pub data_key_rotate_after: u64,
    /// Encryptions between two saves of the keyring, which persist its encryption counts.
    pub keyring_save_every: u64,
    /// Cache, stale-if-error, circuit breaker and fallbacks around a remote backend; `None`
    /// (the default, meant for the embedded SQLite store) calls the store directly.
    pub resilience: Option<ResilienceConfig>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            default_max_versions: 10,
            // Vault's default and maximum token TTL: 768 hours (32 days).
            default_token_ttl: Duration::from_secs(768 * 3600),
            max_token_ttl: Duration::from_secs(768 * 3600),
            lockout: LockoutConfig::default(),
            // Half of the hard limit, which is itself half of the 2^32 random-nonce bound.
            data_key_rotate_after: Keyring::ROTATE_AFTER_ENCRYPTIONS,
            keyring_save_every: 65_536,
            resilience: None,
        }
    }
}

/// The transport facts of one request: its id and the caller's address.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// A unique id for the request, echoed to the client and written to the audit log.
    pub request_id: String,
    /// The peer address of the connection.
    pub remote_addr: IpAddr,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The caller's token record (never the token itself).
    pub token: TokenRecord,
    pub(crate) policies: Arc<PolicySet>,
}

impl Caller {
    /// The caller's accessor.
    pub fn accessor(&self) -> &str {
        &self.token.accessor
    }
}

/// Health as reported by `sys/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Whether the data dir has been initialised.
    pub initialized: bool,
    /// Whether the keyring is closed.
    pub sealed: bool,
    /// The server version.
    pub version: String,
    /// Whether some backend is failing, so responses may be degraded.
    pub degraded: bool,
}

/// The single entry point for reading and writing secrets, tokens and policies.
pub struct SecretsManager {
    pub(crate) store: Arc<dyn SecretStore>,
    pub(crate) audit: AuditLog,
    pub(crate) events: EventBus,
    pub(crate) config: ManagerConfig,
    pub(crate) policies: RwLock<HashMap<String, Arc<Policy>>>,
    token_hash_key: Zeroizing<[u8; 32]>,
    lockout: Lockout,
    /// Data-key and root-key management; `None` until [`SecretsManager::with_key_management`].
    pub(crate) keys: Option<KeyLifecycle>,
    /// The resilience layer around a remote backend, if configured.
    pub(crate) resilience: Option<Resilience>,
    /// Recently read token records; `None` with a remote backend, which other nodes change.
    pub(crate) token_cache: Option<TokenCache>,
}

impl std::fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One operation in flight, for its audit entries.
pub(crate) struct Operation<'a> {
    pub(crate) ctx: &'a RequestContext,
    pub(crate) accessor: &'a str,
    pub(crate) name: &'static str,
    pub(crate) path: String,
}

impl SecretsManager {
    /// Creates a manager over `store`, writing to `audit`, and loads the stored policies.
    ///
    /// `token_hash_key` keys the HMAC under which tokens are stored; it must stay the same for
    /// the life of the data dir, so derive it from the keyring.
    ///
    /// With [`ManagerConfig::resilience`] set, every store call goes through the circuit
    /// breaker, and a backend that fails at start does not stop the manager: it starts with no
    /// policies but `root` (or those of the on-disk cache, see
    /// [`SecretsManager::open_disk_cache`]) and loads them once the backend responds.
    pub async fn new(
        store: Arc<dyn SecretStore>,
        audit: AuditLog,
        token_hash_key: [u8; 32],
        config: ManagerConfig,
    ) -> Result<Self, ManagerError> {
        let lockout = Lockout::new(config.lockout.clone());
        let events = EventBus::default();
        let (store, resilience) = match config.resilience.clone() {
            Some(settings) => {
                let (layer, guarded) = Resilience::wrap(settings, store, events.clone());
                (guarded, Some(layer))
            }
            None => (store, None),
        };
        let token_cache = resilience.is_none().then(TokenCache::default);
        let manager = Self {
            store,
            audit,
            events,
            config,
            policies: RwLock::new(HashMap::new()),
            token_hash_key: Zeroizing::new(token_hash_key),
            lockout,
            keys: None,
            resilience,
            token_cache,
        };

        match (manager.load_initial_policies().await, &manager.resilience) {
            (Ok(()), _) => {}
            (Err(ManagerError::Unavailable(detail)), Some(layer)) => {
                tracing::warn!(%detail, "storage backend unavailable at start; policies load once it responds");
                layer
                    .policies_pending
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            (Err(other), _) => return Err(other),
        }
        Ok(manager)
    }

    /// Creates the `default` policy if it is missing, then loads every policy.
    async fn load_initial_policies(&self) -> Result<(), ManagerError> {
        match self.store.get_policy(DEFAULT_POLICY).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                self.store
                    .put_policy(&keyward_store::PolicyRecord {
                        name: DEFAULT_POLICY.to_owned(),
                        text: DEFAULT_POLICY_TEXT.to_owned(),
                    })
                    .await?;
            }
            Err(other) => return Err(other.into()),
        }
        self.reload_policies().await
    }

    /// Re-reads every policy from the store.
    pub async fn reload_policies(&self) -> Result<(), ManagerError> {
        let records = self.store.all_policies().await?;
        self.remember_policies(&records);
        self.install_policies(records);
        if let Some(layer) = &self.resilience {
            layer
                .policies_pending
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Compiles policy records and makes them the policies in force.
    pub(crate) fn install_policies(&self, records: Vec<keyward_store::PolicyRecord>) {
        let mut compiled = HashMap::new();
        for record in records {
            match Policy::parse(&record.text) {
                Ok(policy) => {
                    compiled.insert(record.name, Arc::new(policy));
                }
                Err(error) => {
                    tracing::error!(policy = %record.name, %error, "stored policy does not parse; it grants nothing");
                }
            }
        }
        *self.policies.write().unwrap_or_else(|e| e.into_inner()) = compiled;
    }

    /// Returns a receiver of security events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SecurityEvent> {
        self.events.subscribe()
    }

    /// The event bus, for components that publish their own events.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Reports health for `sys/health`: degraded while the backend's circuit breaker is not
    /// closed or reads are being served without the backend.
    pub fn health(&self) -> Health {
        Health {
            initialized: true,
            sealed: false,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            degraded: self
                .resilience
                .as_ref()
                .is_some_and(Resilience::is_degraded),
        }
    }

    /// Returns the state of the backend's circuit breaker, or `None` without the resilience
    /// layer.
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.resilience.as_ref().map(Resilience::circuit_state)
    }

    /// Authenticates a request's token.
    ///
    /// Returns `LockedOut`, with the seconds until the lock ends, for an address (an IPv6 /64)
    /// with too many recent failures (checked before the token is looked at), and
    /// `PermissionDenied` for a missing, unknown or expired token. Each failure gets an audit
    /// entry and an event.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Caller, ManagerError> {
        let now = Instant::now();
        if let Some(remaining) = self.lockout.locked_for(ctx.remote_addr, now) {
            self.audit_auth_failure(ctx, "locked_out", token).await?;
            let rounded_up = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
            return Err(ManagerError::LockedOut {
                retry_after_secs: rounded_up.max(1),
            });
        }

        let Some(token) = token.filter(|t| !t.is_empty()) else {
            self.audit_auth_failure(ctx, "missing_token", None).await?;
            return Err(ManagerError::PermissionDenied);
        };

        self.retry_pending_policies().await;
        let record = if token.len() > MAX_TOKEN_LEN || !token.starts_with(TOKEN_PREFIX) {
            None
        } else {
            let hash = token::hash(&self.token_hash_key, token);
            self.look_up_token(&hash).await?
        };

        let reason = match &record {
            None => Some("unknown_token"),
            Some(r)
                if r.expire_time
                    .is_some_and(|t| t <= OffsetDateTime::now_utc()) =>
            {
                Some("expired_token")
            }
            Some(_) => None,
        };
        if let Some(reason) = reason {
            self.audit_auth_failure(ctx, reason, Some(token)).await?;
            if self.lockout.record_failure(ctx.remote_addr, now) {
                tracing::warn!(remote_addr = %ctx.remote_addr, "address locked out after repeated authentication failures");
                self.events.publish(SecurityEvent::LockedOut {
                    remote_addr: ctx.remote_addr,
                });
            }
            return Err(ManagerError::PermissionDenied);
        }

        let record = record.ok_or(ManagerError::PermissionDenied)?;
        let policies = self.policy_set(&record.policies);
        Ok(Caller {
            token: record,
            policies: Arc::new(policies),
        })
    }

    /// Finds a token record by hash, in the token cache first. While the backend fails, the
    /// resilience layer's copy is used instead.
    async fn look_up_token(&self, hash: &str) -> Result<Option<TokenRecord>, ManagerError> {
        let read_at = Instant::now();
        if let Some(record) = self.token_cache.as_ref().and_then(|c| c.get(hash, read_at)) {
            return Ok(Some(record));
        }

        let generation = self.token_cache.as_ref().map(TokenCache::generation);
        match self.store.token_by_hash(hash).await {
            Ok(record) => {
                if let (Some(cache), Some(generation)) = (&self.token_cache, generation) {
                    cache.insert(&record, generation, read_at);
                }
                self.remember_token(&record);
                Ok(Some(record))
            }
            Err(StoreError::NotFound) => {
                self.forget_token(hash);
                Ok(None)
            }
            Err(StoreError::Backend(detail)) => match self.cached_token(hash) {
                Some(record) => Ok(Some(record)),
                None => Err(ManagerError::Unavailable(detail)),
            },
            Err(other) => Err(other.into()),
        }
    }

    /// Loads the policies if the backend failed when the manager started.
    async fn retry_pending_policies(&self) {
        let pending = self.resilience.as_ref().is_some_and(|layer| {
            layer
                .policies_pending
                .load(std::sync::atomic::Ordering::SeqCst)
        });
        if pending && self.reload_policies().await.is_ok() {
            tracing::info!("policies loaded after the storage backend recovered");
        }
    }

    pub(crate) fn policy_set(&self, names: &[String]) -> PolicySet {
        let policies = self.policies.read().unwrap_or_else(|e| e.into_inner());
        PolicySet::merge(names, |name| policies.get(name).map(|p| p.as_ref()))
    }

    pub(crate) fn hash_token(&self, token: &str) -> String {
        token::hash(&self.token_hash_key, token)
    }

    /// Drops every cached token record, after a revocation through this manager.
    pub(crate) fn forget_cached_tokens(&self) {
        if let Some(cache) = &self.token_cache {
            cache.clear();
        }
    }

    /// Drops the cached record of one token, after its record changed.
    pub(crate) fn forget_cached_token(&self, token_hash: &str) {
        if let Some(cache) = &self.token_cache {
            cache.remove(token_hash);
        }
    }

    /// Checks that the caller has one of `wanted` on `api_path`. A denial is published as an
    /// event, and its audit entry is the operation's response entry.
    pub(crate) fn require(
        &self,
        caller: &Caller,
        api_path: &str,
        wanted: &[Capability],
    ) -> Result<(), ManagerError> {
        if caller.policies.allows_any(api_path, wanted) {
            return Ok(());
        }
        self.events.publish(SecurityEvent::PermissionDenied {
            accessor: caller.token.accessor.clone(),
            path: api_path.to_owned(),
        });
        Err(ManagerError::PermissionDenied)
    }

    /// Records a request turned away before it reached an operation.
    pub async fn record_rejected(
        &self,
        ctx: &RequestContext,
        method: &str,
        raw_path: &str,
        reason: &str,
        status: u16,
    ) -> Result<(), ManagerError> {
        // The raw path is attacker-controlled: bound its size in the log.
        let path: String = raw_path.chars().take(256).collect();
        let mut entry = base_entry("rejected", ctx);
        entry.insert(
            "method".into(),
            json!(method.chars().take(16).collect::<String>()),
        );
        entry.insert("path".into(), json!(path));
        entry.insert("reason".into(), json!(reason));
        entry.insert("status".into(), json!(status));
        self.append_audit(entry).await?;

        self.events.publish(SecurityEvent::RequestRejected {
            remote_addr: ctx.remote_addr,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    async fn audit_auth_failure(
        &self,
        ctx: &RequestContext,
        reason: &'static str,
        token: Option<&str>,
    ) -> Result<(), ManagerError> {
        let mut entry = base_entry("auth_failure", ctx);
        entry.insert("reason".into(), json!(reason));
        if let Some(token) = token {
            // Lets an operator match repeated attempts with the same token without storing it.
            entry.insert("token_hmac".into(), json!(self.audit.hmac(token)));
        }
        self.append_audit(entry).await?;

        self.events.publish(SecurityEvent::AuthFailure {
            remote_addr: ctx.remote_addr,
            reason,
        });
        Ok(())
    }

    /// Writes the `request` entry of a mutating operation, before the change.
    pub(crate) async fn audit_request(&self, op: &Operation<'_>) -> Result<(), ManagerError> {
        let mut entry = base_entry("request", op.ctx);
        entry.insert("accessor".into(), json!(op.accessor));
        entry.insert("operation".into(), json!(op.name));
        entry.insert("path".into(), json!(op.path));
        self.append_audit(entry).await
    }

    /// Writes the `response` entry of an operation, with its outcome and any extra fields.
    pub(crate) async fn audit_response<T>(
        &self,
        op: &Operation<'_>,
        result: &Result<T, ManagerError>,
        extra: Map<String, Value>,
    ) -> Result<(), ManagerError> {
        self.append_audit(response_entry(op, result, extra)).await
    }

    /// Queues the `response` entry of a change whose `request` entry is already durable and
    /// whose store commit returned, without waiting for the entry's sync: it is synced with
    /// the next batch. If that write fails, the audit log fails and refuses every later
    /// request. Fails at once if the log has already failed.
    pub(crate) fn queue_audit_response<T>(
        &self,
        op: &Operation<'_>,
        result: &Result<T, ManagerError>,
        extra: Map<String, Value>,
    ) -> Result<(), ManagerError> {
        self.audit
            .enqueue(response_entry(op, result, extra))
            .map_err(|error| self.audit_failed(&error))
    }

    pub(crate) async fn append_audit(&self, entry: Map<String, Value>) -> Result<(), ManagerError> {
        match self.audit.append(entry).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.audit_failed(&error)),
        }
    }

    fn audit_failed(&self, error: &keyward_audit::AuditError) -> ManagerError {
        tracing::error!(%error, "audit log write failed; refusing the request");
        self.events.publish(SecurityEvent::AuditFailure);
        ManagerError::AuditFailed
    }
}

fn response_entry<T>(
    op: &Operation<'_>,
    result: &Result<T, ManagerError>,
    extra: Map<String, Value>,
) -> Map<String, Value> {
    let mut entry = base_entry("response", op.ctx);
    entry.insert("accessor".into(), json!(op.accessor));
    entry.insert("operation".into(), json!(op.name));
    entry.insert("path".into(), json!(op.path));
    match result {
        Ok(_) => {
            entry.insert("outcome".into(), json!("ok"));
        }
        Err(error) => {
            entry.insert("outcome".into(), json!("error"));
            entry.insert("error".into(), json!(error.kind()));
        }
    }
    entry.extend(extra);
    entry
}

pub(crate) fn base_entry(kind: &str, ctx: &RequestContext) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("type".into(), json!(kind));
    entry.insert("request_id".into(), json!(ctx.request_id));
    entry.insert("remote_addr".into(), json!(ctx.remote_addr.to_string()));
    entry
}
