//! Rotators change a credential at its provider: install a new value, prove it works, and
//! revoke an old one after its grace period.
//!
//! Built-in rotators: [`WebhookRotator`], [`PostgresRotator`] (one role, or two roles that take
//! turns) and [`OpenAiRotator`]. An embedding program adds its own with [`Rotators::register`].
//! Rotators never log or return credential values in errors.

mod openai;
mod postgres;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

pub use openai::OpenAiRotator;
pub use postgres::PostgresRotator;
pub use webhook::WebhookRotator;

use crate::policy::RotatorSpec;
use crate::secret::SecretValue;
use crate::target::{SecretSource, TargetError};

/// A version's number and the provider's id for its credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRef {
    /// The version number.
    pub version: u64,
    /// The provider's id for the credential (an OpenAI key id, a PostgreSQL role), if any.
    pub provider_ref: Option<String>,
}

/// A credential with its value.
#[derive(Clone, Copy, Debug)]
pub struct Credential<'a> {
    /// The version number.
    pub version: u64,
    /// The value.
    pub value: &'a SecretValue,
    /// The provider's id for the credential, if any.
    pub provider_ref: Option<&'a str>,
}

/// The value and metadata of a new version, as decided by [`Rotator::prepare`].
#[derive(Debug)]
pub struct Prepared {
    /// The value to store.
    pub value: SecretValue,
    /// The provider's id for the new credential.
    pub provider_ref: Option<String>,
    /// Non-secret fields stored beside the value (e.g. `username`).
    pub attributes: BTreeMap<String, String>,
}

/// The state a rollback must undo.
#[derive(Clone, Copy, Debug)]
pub struct RollBack<'a> {
    /// The provider's id for the abandoned credential, if `prepare` made one.
    pub pending_ref: Option<&'a str>,
    /// The current credential, to reinstall where `set` may have replaced it.
    pub current: Option<Credential<'a>>,
    /// Whether `set` may have run (it was started, whether or not it finished).
    pub set_attempted: bool,
}

/// Error of a provider operation. Messages name the provider, operation and status, never a
/// credential.
#[derive(Debug, thiserror::Error)]
#[error("{rotator} rotator failed to {operation}: {reason}")]
pub struct RotatorError {
    /// Which rotator.
    pub rotator: &'static str,
    /// The operation, e.g. `install the new password`.
    pub operation: &'static str,
    /// The cause.
    pub reason: String,
}

impl RotatorError {
    /// Creates an error.
    pub fn new(rotator: &'static str, operation: &'static str, reason: impl Into<String>) -> Self {
        Self {
            rotator,
            operation,
            reason: reason.into(),
        }
    }
}

/// Changes credentials at a provider. Every method must be idempotent, because after a crash
/// the engine repeats the step that was in progress.
#[async_trait]
pub trait Rotator: Send + Sync {
    /// Returns a short name for logs, such as `postgres`.
    fn name(&self) -> &'static str;

    /// Decides the new version's value and metadata. The default keeps the generated value.
    /// Providers that issue credentials themselves (OpenAI) create one here and return it.
    async fn prepare(
        &self,
        _path: &str,
        _current: Option<&VersionRef>,
        generated: SecretValue,
    ) -> Result<Prepared, RotatorError> {
        Ok(Prepared {
            value: generated,
            provider_ref: None,
            attributes: BTreeMap::new(),
        })
    }

    /// Installs the new credential at the provider.
    async fn set(&self, path: &str, new: Credential<'_>) -> Result<(), RotatorError>;

    /// Proves the new credential works at the provider.
    async fn test(&self, path: &str, new: Credential<'_>) -> Result<(), RotatorError>;

    /// Revokes an old credential at the provider.
    async fn revoke(&self, path: &str, old: &VersionRef) -> Result<(), RotatorError>;

    /// Undoes a rotation abandoned before `set` finished, so the current credential works and
    /// the abandoned one does not.
    async fn roll_back(&self, path: &str, undo: RollBack<'_>) -> Result<(), RotatorError>;
}

/// Builds rotators from policy specs, including the ones the embedding program registered.
#[derive(Clone)]
pub struct Rotators {
    source: Arc<dyn SecretSource>,
    http: reqwest::Client,
    custom: HashMap<String, Arc<dyn Rotator>>,
}

impl Rotators {
    /// Creates a registry whose rotators read their own credentials from `source`.
    pub fn new(source: Arc<dyn SecretSource>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            source,
            http,
            custom: HashMap::new(),
        }
    }

    /// Registers a rotator that policies select with `type = "custom"` and `name`.
    pub fn register(&mut self, name: impl Into<String>, rotator: Arc<dyn Rotator>) {
        self.custom.insert(name.into(), rotator);
    }

    /// Returns the rotator that a policy's spec selects.
    pub fn build(&self, spec: &RotatorSpec) -> Result<Arc<dyn Rotator>, RotatorError> {
        Ok(match spec {
            RotatorSpec::Webhook {
                url,
                verify_url,
                revoke_url,
                signing_key_secret,
            } => Arc::new(WebhookRotator::new(
                self.http.clone(),
                self.source.clone(),
                url.clone(),
                verify_url.clone(),
                revoke_url.clone(),
                signing_key_secret.clone(),
            )),
            RotatorSpec::Postgres {
                admin_url_secret,
                role,
                alternate_role,
            } => Arc::new(PostgresRotator::new(
                self.source.clone(),
                admin_url_secret.clone(),
                role.clone(),
                alternate_role.clone(),
            )),
            RotatorSpec::Openai {
                base_url,
                project_id,
                service_account_id,
                admin_key_secret,
            } => Arc::new(OpenAiRotator::new(
                self.http.clone(),
                self.source.clone(),
                base_url.clone(),
                project_id.clone(),
                service_account_id.clone(),
                admin_key_secret.clone(),
            )),
            RotatorSpec::Custom { name } => self.custom.get(name).cloned().ok_or_else(|| {
                RotatorError::new(
                    "custom",
                    "start",
                    format!("no rotator named {name:?} is registered"),
                )
            })?,
        })
    }
}

/// Reads a credential the rotator itself needs, turning a store error into a rotator error.
async fn read_own_secret(
    source: &dyn SecretSource,
    rotator: &'static str,
    path: &str,
) -> Result<SecretValue, RotatorError> {
    source
        .read_current(path)
        .await
        .map_err(|error: TargetError| {
            RotatorError::new(rotator, "read its own credential", error.to_string())
        })
}
