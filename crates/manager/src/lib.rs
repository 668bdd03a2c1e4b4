//! Keyward's secrets manager: the one entry point for reading and writing secrets, tokens and
//! policies.
//!
//! Every call authenticates the caller's token, checks its policies (deny by default, Vault's
//! path-glob rules), writes hash-chained audit entries (fail closed), calls the store and
//! publishes a security event. This crate depends on neither HTTP nor TLS nor SQL: the server maps
//! requests onto it, and the store behind it is any [`keyward_store::SecretStore`].

mod admin;
mod error;
mod events;
mod keys;
mod kv;
mod lockout;
mod manager;
pub mod policy;
pub mod resilience;
mod rotation;
mod token;
mod token_cache;

pub use error::ManagerError;
pub use events::{EventBus, SecurityEvent};
pub use keys::{
    KeyManagement, KeyState, KeyStatus, KeyringSink, MAX_REWRAP_BATCH, RotatedKey, RotatedRoot,
    kdf_name,
};
pub use keyward_store::RewrapProgress;
pub use kv::{Freshness, KV_MOUNT, KvRead};
pub use lockout::LockoutConfig;
pub use manager::{
    Caller, DEFAULT_POLICY, DEFAULT_POLICY_TEXT, Health, ManagerConfig, RequestContext,
    SecretsManager,
};
pub use resilience::{
    CircuitState, Clock, DiskCacheError, EnvFallbackEntry, ManualClock, ResilienceConfig,
    SystemClock, TtlOverride,
};
pub use rotation::{ROTATION_ACCESSOR, rotation_context};
pub use token::{IssuedToken, MAX_TOKEN_LEN, TOKEN_PREFIX, TokenCreateRequest, TokenSecret};
