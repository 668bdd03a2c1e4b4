//! The engine's boundary implemented over the secrets manager: [`ManagerTarget`] writes,
//! promotes and revokes versions through `SecretsManager` (which audits each change and
//! publishes events), and [`ManagerEventSink`] turns the engine's events into audit entries and
//! security events.
//!
//! A rotated secret is stored as a JSON object whose `value` field ([`VALUE_FIELD`]) contains
//! the credential, and the rotator's attributes (such as `username`) are the other fields. A
//! secret written by hand with exactly one string field is read through that field too. This module
//! does not check policies: the server checks the `rotate` capability before any call
//! reaches the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use keyward_manager::{ManagerError, SecretsManager, SecurityEvent};
use keyward_store::{SecretData, SecretPath, Stage};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::events::{EventSink, RotationEvent, RotationEventKind};
use crate::secret::SecretValue;
use crate::target::{SecretSource, SecretTarget, TargetError, VersionStage};

/// The field of a rotated secret's data that contains the credential.
pub const VALUE_FIELD: &str = "value";

/// A [`SecretTarget`] and [`SecretSource`] that goes through the secrets manager.
#[derive(Clone, Debug)]
pub struct ManagerTarget {
    manager: Arc<SecretsManager>,
}

impl ManagerTarget {
    /// Wraps the manager.
    pub fn new(manager: Arc<SecretsManager>) -> Self {
        Self { manager }
    }

    async fn version_in_stage(&self, path: &str, stage: Stage) -> Result<Option<u64>, TargetError> {
        let secret = parse_path(path)?;
        match self.manager.rotation_versions(&secret).await {
            Ok(meta) => Ok(meta
                .versions
                .values()
                .filter(|version| version.stage == stage)
                .map(|version| version.version)
                .max()),
            Err(ManagerError::NotFound) => Ok(None),
            Err(error) => Err(target_error(path, 0, error)),
        }
    }

    /// Turns an `Invalid` stage change into [`TargetError::WrongStage`] with the stored stage.
    async fn stage_error(&self, path: &str, version: u64, error: ManagerError) -> TargetError {
        if !matches!(error, ManagerError::Invalid(_)) {
            return target_error(path, version, error);
        }
        let Ok(secret) = parse_path(path) else {
            return target_error(path, version, error);
        };
        match self.manager.rotation_versions(&secret).await {
            Ok(meta) => match meta.versions.get(&version) {
                Some(found) => TargetError::WrongStage {
                    path: path.to_owned(),
                    version,
                    stage: version_stage(found.stage),
                },
                None => TargetError::NotFound {
                    path: path.to_owned(),
                    version,
                },
            },
            Err(_) => target_error(path, version, error),
        }
    }
}

fn parse_path(path: &str) -> Result<SecretPath, TargetError> {
    SecretPath::parse(path)
        .map_err(|error| TargetError::Backend(format!("secret path {path:?} is invalid: {error}")))
}

fn version_stage(stage: Stage) -> VersionStage {
    match stage {
        Stage::Current => VersionStage::Current,
        Stage::Pending => VersionStage::Pending,
        Stage::Previous => VersionStage::Previous,
        Stage::Revoked => VersionStage::Revoked,
        Stage::Destroyed => VersionStage::Destroyed,
    }
}

fn target_error(path: &str, version: u64, error: ManagerError) -> TargetError {
    match error {
        ManagerError::NotFound => TargetError::NotFound {
            path: path.to_owned(),
            version,
        },
        ManagerError::PendingExists { version } => TargetError::PendingExists {
            path: path.to_owned(),
            version,
        },
        other => TargetError::Backend(other.to_string()),
    }
}

/// Takes the credential out of a secret's data: its `value` field, or its only string field.
fn credential_of(path: &str, version: u64, data: &SecretData) -> Result<SecretValue, TargetError> {
    let map = data.expose_map();
    if let Some(Value::String(value)) = map.get(VALUE_FIELD) {
        return Ok(SecretValue::new(value.clone()));
    }
    let mut strings = map.values().filter_map(Value::as_str);
    match (strings.next(), strings.next()) {
        (Some(only), None) => Ok(SecretValue::new(only.to_owned())),
        _ => Err(TargetError::Backend(format!(
            "secret {path:?} version {version} has no string field {VALUE_FIELD:?}; \
             write the credential under {VALUE_FIELD:?} to rotate it"
        ))),
    }
}

#[async_trait]
impl SecretTarget for ManagerTarget {
    async fn write_pending(
        &self,
        path: &str,
        value: &SecretValue,
        attributes: &BTreeMap<String, String>,
    ) -> Result<u64, TargetError> {
        let secret = parse_path(path)?;
        let mut map = Map::new();
        for (name, attribute) in attributes {
            map.insert(name.clone(), json!(attribute));
        }
        map.insert(VALUE_FIELD.to_owned(), json!(value.expose_secret()));
        let data = SecretData::from_map(&map);
        // NOTE: `map` contains a copy of the value in a plain serde_json string, which is not
        // zeroized when dropped here.
        drop(map);

        self.manager
            .rotation_write_pending(&secret, data)
            .await
            .map(|meta| meta.version)
            .map_err(|error| target_error(path, 0, error))
    }

    async fn pending_version(&self, path: &str) -> Result<Option<u64>, TargetError> {
        self.version_in_stage(path, Stage::Pending).await
    }

    async fn current_version(&self, path: &str) -> Result<Option<u64>, TargetError> {
        self.version_in_stage(path, Stage::Current).await
    }

    async fn read_version(&self, path: &str, version: u64) -> Result<SecretValue, TargetError> {
        let secret = parse_path(path)?;
        let read = self
            .manager
            .rotation_read(&secret, Some(version))
            .await
            .map_err(|error| target_error(path, version, error))?;
        match read.data {
            Some(data) => credential_of(path, version, &data),
            None => Err(TargetError::WrongStage {
                path: path.to_owned(),
                version,
                stage: version_stage(read.meta.stage),
            }),
        }
    }

    async fn discard_pending(&self, path: &str, version: u64) -> Result<(), TargetError> {
        let secret = parse_path(path)?;
        match self.manager.rotation_discard(&secret, version).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.stage_error(path, version, error).await),
        }
    }

    async fn promote(
        &self,
        path: &str,
        version: u64,
        grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, TargetError> {
        let secret = parse_path(path)?;
        match self
            .manager
            .rotation_promote(&secret, version, grace_deadline)
            .await
        {
            Ok(replaced) => Ok(replaced),
            Err(error) => Err(self.stage_error(path, version, error).await),
        }
    }

    async fn revoke_version(&self, path: &str, version: u64) -> Result<(), TargetError> {
        let secret = parse_path(path)?;
        match self.manager.rotation_revoke(&secret, version).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.stage_error(path, version, error).await),
        }
    }
}

#[async_trait]
impl SecretSource for ManagerTarget {
    async fn read_current(&self, path: &str) -> Result<SecretValue, TargetError> {
        let secret = parse_path(path)?;
        let read = self
            .manager
            .rotation_read(&secret, None)
            .await
            .map_err(|error| target_error(path, 0, error))?;
        let version = read.meta.version;
        match read.data {
            Some(data) => credential_of(path, version, &data),
            None => Err(TargetError::WrongStage {
                path: path.to_owned(),
                version,
                stage: version_stage(read.meta.stage),
            }),
        }
    }
}

/// An [`EventSink`] that writes every rotation event to the manager's audit log (entries of
/// type `rotation`) and publishes the matching security event on the manager's bus.
///
/// [`EventSink::publish`] is synchronous, so events go through a queue to one task that writes
/// them in order. The task ends when every clone of the sink is dropped.
#[derive(Clone, Debug)]
pub struct ManagerEventSink {
    queue: mpsc::UnboundedSender<RotationEvent>,
}

impl ManagerEventSink {
    /// Starts the task that writes events through `manager`. Call it inside a tokio runtime.
    pub fn spawn(manager: Arc<SecretsManager>) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, mut events) = mpsc::unbounded_channel::<RotationEvent>();
        let task = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let fields = audit_fields(&event);
                let security_event = security_event(&event);
                if let Err(error) = manager.record_rotation_step(fields, security_event).await {
                    tracing::error!(path = %event.path, %error, "rotation event not audited");
                }
            }
        });
        (Self { queue }, task)
    }
}

impl EventSink for ManagerEventSink {
    fn publish(&self, event: &RotationEvent) {
        if self.queue.send(event.clone()).is_err() {
            tracing::error!(path = %event.path, "rotation event dropped: the audit task has stopped");
        }
    }
}

/// Returns the audit fields of an event: its serialised form, which contains paths, versions,
/// times and error messages but never a value.
fn audit_fields(event: &RotationEvent) -> Map<String, Value> {
    let mut fields = match serde_json::to_value(event) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    // The audit entry's own `type` is `rotation`; the event's name goes under `event`, and
    // `path` names the secret's data path like every other entry.
    if let Some(Value::String(path)) = fields.remove("path") {
        fields.insert(
            "path".into(),
            json!(format!("{}/data/{path}", keyward_manager::KV_MOUNT)),
        );
    }
    fields
}

/// Maps an engine event onto the manager's security event, if it has one. Revocations are
/// published by the manager when the version is revoked, so they map to none here.
fn security_event(event: &RotationEvent) -> Option<SecurityEvent> {
    let path = event.path.clone();
    match &event.kind {
        RotationEventKind::Started => Some(SecurityEvent::RotationStarted {
            path,
            emergency: event.emergency,
        }),
        RotationEventKind::Finished {
            version, previous, ..
        } => Some(SecurityEvent::RotationFinished {
            path,
            version: *version,
            replaced: *previous,
        }),
        RotationEventKind::Failed {
            step,
            attempts,
            error,
        } => Some(SecurityEvent::RotationFailed {
            path,
            reason: format!(
                "step {} failed after {attempts} attempts: {error}",
                step.as_str()
            ),
        }),
        RotationEventKind::RolledBack { step, reason } => Some(SecurityEvent::RotationFailed {
            path,
            reason: format!("rolled back at step {}: {reason}", step.as_str()),
        }),
        RotationEventKind::RevokeFailed {
            version,
            attempts,
            error,
        } => Some(SecurityEvent::RotationFailed {
            path,
            reason: format!("revoking version {version} failed after {attempts} attempts: {error}"),
        }),
        RotationEventKind::PendingCreated { .. }
        | RotationEventKind::Installed { .. }
        | RotationEventKind::Tested { .. }
        | RotationEventKind::Retrying { .. }
        | RotationEventKind::Revoked { .. } => None,
    }
}
