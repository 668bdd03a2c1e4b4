//! A secret target and a rotator that fail, or hang like a killed process, at a chosen point.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use keyward_rotation::{
    Credential, MemoryTarget, Prepared, RollBack, Rotator, RotatorError, SecretTarget, SecretValue,
    TargetError, VersionRef,
};
use time::OffsetDateTime;

/// What happens at the faulty point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Return an error without acting.
    Fail,
    /// Never return, without acting: the process dies before the call took effect.
    HangBefore,
    /// Act, then never return: the process dies after the effect, before recording it.
    HangAfter,
}

/// Shared switch naming the operation that misbehaves.
#[derive(Clone, Default)]
pub(crate) struct Faults(Arc<Mutex<Option<(&'static str, Mode)>>>);

impl Faults {
    pub(crate) fn set(&self, operation: &'static str, mode: Mode) {
        *self.0.lock().expect("faults lock") = Some((operation, mode));
    }

    pub(crate) fn clear(&self) {
        *self.0.lock().expect("faults lock") = None;
    }

    fn mode(&self, operation: &str) -> Option<Mode> {
        match *self.0.lock().expect("faults lock") {
            Some((op, mode)) if op == operation => Some(mode),
            _ => None,
        }
    }

    /// Runs before an operation; returns whether to hang after acting.
    async fn before(&self, operation: &'static str) -> Result<bool, String> {
        match self.mode(operation) {
            Some(Mode::Fail) => Err(format!("injected failure in {operation}")),
            Some(Mode::HangBefore) => std::future::pending().await,
            Some(Mode::HangAfter) => Ok(true),
            None => Ok(false),
        }
    }
}

async fn hang_if(hang: bool) {
    if hang {
        std::future::pending::<()>().await;
    }
}

/// A [`MemoryTarget`] with faults on `write_pending` and `promote`.
pub(crate) struct FaultyTarget {
    pub(crate) inner: MemoryTarget,
    pub(crate) faults: Faults,
}

#[async_trait]
impl SecretTarget for FaultyTarget {
    async fn write_pending(
        &self,
        path: &str,
        value: &SecretValue,
        attributes: &BTreeMap<String, String>,
    ) -> Result<u64, TargetError> {
        let hang = self
            .faults
            .before("write_pending")
            .await
            .map_err(TargetError::Backend)?;
        let version = self.inner.write_pending(path, value, attributes).await?;
        hang_if(hang).await;
        Ok(version)
    }

    async fn pending_version(&self, path: &str) -> Result<Option<u64>, TargetError> {
        self.inner.pending_version(path).await
    }

    async fn current_version(&self, path: &str) -> Result<Option<u64>, TargetError> {
        self.inner.current_version(path).await
    }

    async fn read_version(&self, path: &str, version: u64) -> Result<SecretValue, TargetError> {
        self.inner.read_version(path, version).await
    }

    async fn discard_pending(&self, path: &str, version: u64) -> Result<(), TargetError> {
        self.inner.discard_pending(path, version).await
    }

    async fn promote(
        &self,
        path: &str,
        version: u64,
        grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, TargetError> {
        let hang = self
            .faults
            .before("promote")
            .await
            .map_err(TargetError::Backend)?;
        let previous = self.inner.promote(path, version, grace_deadline).await?;
        hang_if(hang).await;
        Ok(previous)
    }

    async fn revoke_version(&self, path: &str, version: u64) -> Result<(), TargetError> {
        self.inner.revoke_version(path, version).await
    }
}

/// A simulated provider with one credential per path, like a database role with one password:
/// `set` replaces it, `test` checks the value against it, `roll_back` restores the current one.
#[derive(Default)]
pub(crate) struct FakeProvider {
    pub(crate) installed: Mutex<HashMap<String, String>>,
    pub(crate) sets: Mutex<HashMap<String, u32>>,
    pub(crate) faults: Faults,
    /// When set, the next `prepare` waits for this signal, like a process paused mid-call.
    pub(crate) gate: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl FakeProvider {
    pub(crate) fn install(&self, path: &str, value: &str) {
        self.installed
            .lock()
            .expect("provider lock")
            .insert(path.to_owned(), value.to_owned());
    }

    pub(crate) fn installed(&self, path: &str) -> Option<String> {
        self.installed
            .lock()
            .expect("provider lock")
            .get(path)
            .cloned()
    }

    pub(crate) fn set_count(&self, path: &str) -> u32 {
        self.sets
            .lock()
            .expect("provider lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn provider_error(operation: &'static str, reason: String) -> RotatorError {
    RotatorError::new("fake", operation, reason)
}

#[async_trait]
impl Rotator for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn prepare(
        &self,
        _path: &str,
        _current: Option<&VersionRef>,
        generated: SecretValue,
    ) -> Result<Prepared, RotatorError> {
        let gate = self.gate.lock().expect("provider lock").take();
        if let Some(gate) = gate {
            gate.notified().await;
        }
        let hang = self
            .faults
            .before("prepare")
            .await
            .map_err(|e| provider_error("prepare", e))?;
        hang_if(hang).await;
        Ok(Prepared {
            value: generated,
            provider_ref: None,
            attributes: BTreeMap::new(),
        })
    }

    async fn set(&self, path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        let hang = self
            .faults
            .before("set")
            .await
            .map_err(|e| provider_error("set", e))?;
        self.install(path, new.value.expose_secret());
        *self
            .sets
            .lock()
            .expect("provider lock")
            .entry(path.to_owned())
            .or_default() += 1;
        hang_if(hang).await;
        Ok(())
    }

    async fn test(&self, path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        let hang = self
            .faults
            .before("test")
            .await
            .map_err(|e| provider_error("test", e))?;
        if self.installed(path).as_deref() != Some(new.value.expose_secret()) {
            return Err(provider_error(
                "test",
                "the provider rejects the credential".to_owned(),
            ));
        }
        hang_if(hang).await;
        Ok(())
    }

    async fn revoke(&self, _path: &str, _old: &VersionRef) -> Result<(), RotatorError> {
        let hang = self
            .faults
            .before("revoke")
            .await
            .map_err(|e| provider_error("revoke", e))?;
        hang_if(hang).await;
        Ok(())
    }

    async fn roll_back(&self, path: &str, undo: RollBack<'_>) -> Result<(), RotatorError> {
        if let (true, Some(current)) = (undo.set_attempted, undo.current) {
            self.install(path, current.value.expose_secret());
        }
        Ok(())
    }
}
