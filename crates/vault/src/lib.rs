//! A typed Vault and OpenBao HTTP client for Keyward.
//!
//! It covers what Keyward needs and no more: the KV v2 engine (versions, check-and-set,
//! metadata, delete, undelete and destroy), the transit engine (encrypt, decrypt, rewrap, key
//! create and rotate), token and AppRole authentication with a renewal task, `sys/health`, and
//! the setup calls (mounts, policies, AppRole roles) tests and operators use.
//!
//! TLS is rustls with the aws-lc-rs provider, set explicitly. Tokens, AppRole secret IDs and
//! secret data are held in zeroizing types that redact `Debug`; no error message contains them.
//! Every request has a timeout. Errors tell a backend outage ([`VaultError::is_retryable`])
//! from a rejection of the request itself (denied, not found, check-and-set mismatch).
//!
//! Not covered: other secrets engines, leases of dynamic secrets, response wrapping, and
//! client certificates towards Vault.
//!
//! ```no_run
//! # async fn example() -> Result<(), keyward_vault::VaultError> {
//! use keyward_vault::{Auth, SecretId, VaultClient, VaultConfig};
//!
//! let auth = Auth::AppRole {
//!     mount: "approle".into(),
//!     role_id: "a1b2c3".into(),
//!     secret_id: SecretId::new(std::env::var("APPROLE_SECRET_ID").unwrap_or_default()),
//! };
//! let client = VaultClient::new(VaultConfig::new("https://vault.example:8200"), auth)?;
//! client.login().await?;
//! let _renewal = client.spawn_renewal();
//! let secret = client.kv_read("secret", "team/app/db", None).await?;
//! println!("version {}", secret.metadata.version);
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
mod error;
mod health;
mod kv;
mod secret;
mod sys;
mod transit;

pub use auth::{Auth, AuthStats, RenewalOutcome, RenewalTask};
pub use client::{DEFAULT_REQUEST_TIMEOUT, VaultClient, VaultConfig};
pub use error::VaultError;
pub use health::{Health, HealthState};
pub use kv::{KvMetadata, KvMetadataUpdate, KvSecret, KvVersionMetadata, KvVersionState};
pub use secret::{SecretId, SecretJson, VaultToken};
pub use sys::AppRoleSettings;
