//! The boundary between the rotation engine and the secrets manager.
//!
//! The engine never touches a secret store. It writes and promotes versions through
//! [`SecretTarget`], which the manager implements on top of its store (with audit and policy
//! checks). [`MemoryTarget`] is an in-memory implementation for tests and examples;
//! `ManagerTarget` is the one over the secrets manager.
//!
//! [`SecretSource`] is the narrower read-only view that rotators and notifiers use to fetch the
//! credentials they need themselves (an OpenAI admin key, a webhook signing key), which are
//! Keyward secrets too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::secret::SecretValue;

/// The stage of a version, mirroring the store's stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VersionStage {
    /// The version that unversioned reads return.
    Current,
    /// Written by a rotation that has not finished.
    Pending,
    /// Replaced; readable until its grace deadline.
    Previous,
    /// Refused on read.
    Revoked,
    /// Erased (also how a discarded pending version ends).
    Destroyed,
}

/// Errors of a [`SecretTarget`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The secret or version does not exist.
    #[error("secret {path:?} has no version {version}")]
    NotFound {
        /// The secret's path.
        path: String,
        /// The version asked for (0 when no version exists at all).
        version: u64,
    },
    /// The version exists but may not be read or changed in its stage.
    #[error("secret {path:?} version {version} is {stage:?} and cannot be used")]
    WrongStage {
        /// The secret's path.
        path: String,
        /// The version.
        version: u64,
        /// Its stage.
        stage: VersionStage,
    },
    /// Another pending version exists; the earlier rotation must be finished or discarded.
    #[error("secret {path:?} already has pending version {version}")]
    PendingExists {
        /// The secret's path.
        path: String,
        /// The pending version.
        version: u64,
    },
    /// The store or manager failed; the message names what failed but no value.
    #[error("secret store failed: {0}")]
    Backend(String),
}

/// Writes and promotes secret versions on behalf of the rotation engine.
///
/// Every method must be idempotent: after a crash the engine repeats the last step it recorded
/// as started, so a call may arrive for work that already happened.
#[async_trait]
pub trait SecretTarget: Send + Sync {
    /// Writes `value` as a new `pending` version of `path` and returns its number.
    /// `attributes` are non-secret fields stored beside the value (such as `username`).
    async fn write_pending(
        &self,
        path: &str,
        value: &SecretValue,
        attributes: &BTreeMap<String, String>,
    ) -> Result<u64, TargetError>;

    /// Returns the number of the `pending` version, if there is one.
    async fn pending_version(&self, path: &str) -> Result<Option<u64>, TargetError>;

    /// Returns the number of the `current` version, if there is one.
    async fn current_version(&self, path: &str) -> Result<Option<u64>, TargetError>;

    /// Reads a version's value. `current`, `pending` and `previous` versions are readable;
    /// `revoked` and `destroyed` ones are refused with [`TargetError::WrongStage`].
    async fn read_version(&self, path: &str, version: u64) -> Result<SecretValue, TargetError>;

    /// Marks a pending version destroyed. Succeeds if it is already gone.
    async fn discard_pending(&self, path: &str, version: u64) -> Result<(), TargetError>;

    /// Makes `version` current in one atomic change and marks the old current version
    /// `previous` with `grace_deadline`. Returns the old current version's number. Succeeds
    /// without change if `version` is already current.
    async fn promote(
        &self,
        path: &str,
        version: u64,
        grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, TargetError>;

    /// Marks a version revoked so that reads refuse it. Succeeds if it already is.
    async fn revoke_version(&self, path: &str, version: u64) -> Result<(), TargetError>;
}

/// Read access to the credentials that rotators and notifiers use (admin keys, signing keys).
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// Reads the current value of the secret at `path`.
    async fn read_current(&self, path: &str) -> Result<SecretValue, TargetError>;
}

/// Every [`SecretTarget`] can serve as a [`SecretSource`] through this wrapper.
#[derive(Clone)]
pub struct TargetSource(pub Arc<dyn SecretTarget>);

#[async_trait]
impl SecretSource for TargetSource {
    async fn read_current(&self, path: &str) -> Result<SecretValue, TargetError> {
        let version = self
            .0
            .current_version(path)
            .await?
            .ok_or_else(|| TargetError::NotFound {
                path: path.to_owned(),
                version: 0,
            })?;
        self.0.read_version(path, version).await
    }
}

/// One version held by [`MemoryTarget`].
#[derive(Clone, Debug)]
pub struct MemoryVersion {
    /// The value.
    pub value: SecretValue,
    /// The stage.
    pub stage: VersionStage,
    /// Non-secret fields written with the value.
    pub attributes: BTreeMap<String, String>,
    /// For a `previous` version, the end of its grace period.
    pub grace_deadline: Option<OffsetDateTime>,
}

/// An in-memory [`SecretTarget`] for tests, examples and benchmarks. Nothing is persisted.
#[derive(Clone, Debug, Default)]
pub struct MemoryTarget {
    secrets: Arc<Mutex<HashMap<String, Vec<MemoryVersion>>>>,
}

impl MemoryTarget {
    /// Creates an empty target.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` as a new current version, as an operator would before the first
    /// rotation; the old current version becomes `previous` without a deadline.
    pub fn put_current(&self, path: &str, value: SecretValue) -> u64 {
        let mut secrets = self.lock();
        let versions = secrets.entry(path.to_owned()).or_default();
        for version in versions.iter_mut() {
            if version.stage == VersionStage::Current {
                version.stage = VersionStage::Previous;
            }
        }
        versions.push(MemoryVersion {
            value,
            stage: VersionStage::Current,
            attributes: BTreeMap::new(),
            grace_deadline: None,
        });
        versions.len() as u64
    }

    /// Returns every version of `path`, oldest first (version 1 at index 0).
    pub fn versions(&self, path: &str) -> Vec<MemoryVersion> {
        self.lock().get(path).cloned().unwrap_or_default()
    }

    /// Returns the stage of every version of `path`, oldest first.
    pub fn stages(&self, path: &str) -> Vec<VersionStage> {
        self.versions(path)
            .into_iter()
            .map(|version| version.stage)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<MemoryVersion>>> {
        // Every mutation below completes before the guard drops, so a poisoned map is whole.
        self.secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn find_stage(versions: &[MemoryVersion], stage: VersionStage) -> Option<u64> {
    versions
        .iter()
        .position(|version| version.stage == stage)
        .map(|index| index as u64 + 1)
}

fn version_mut<'a>(
    versions: &'a mut [MemoryVersion],
    path: &str,
    version: u64,
) -> Result<&'a mut MemoryVersion, TargetError> {
    let index = usize::try_from(version)
        .ok()
        .and_then(|version| version.checked_sub(1));
    index
        .and_then(|index| versions.get_mut(index))
        .ok_or_else(|| TargetError::NotFound {
            path: path.to_owned(),
            version,
        })
}

#[async_trait]
impl SecretTarget for MemoryTarget {
    async fn write_pending(
        &self,
        path: &str,
        value: &SecretValue,
        attributes: &BTreeMap<String, String>,
    ) -> Result<u64, TargetError> {
        let mut secrets = self.lock();
        let versions = secrets.entry(path.to_owned()).or_default();
        if let Some(version) = find_stage(versions, VersionStage::Pending) {
            return Err(TargetError::PendingExists {
                path: path.to_owned(),
                version,
            });
        }
        versions.push(MemoryVersion {
            value: value.clone(),
            stage: VersionStage::Pending,
            attributes: attributes.clone(),
            grace_deadline: None,
        });
        Ok(versions.len() as u64)
    }

    async fn pending_version(&self, path: &str) -> Result<Option<u64>, TargetError> {
        Ok(self
            .lock()
            .get(path)
            .and_then(|versions| find_stage(versions, VersionStage::Pending)))
    }

    async fn current_version(&self, path: &str) -> Result<Option<u64>, TargetError> {
        Ok(self
            .lock()
            .get(path)
            .and_then(|versions| find_stage(versions, VersionStage::Current)))
    }

    async fn read_version(&self, path: &str, version: u64) -> Result<SecretValue, TargetError> {
        let mut secrets = self.lock();
        let versions = secrets.get_mut(path).ok_or_else(|| TargetError::NotFound {
            path: path.to_owned(),
            version,
        })?;
        let entry = version_mut(versions, path, version)?;
        match entry.stage {
            VersionStage::Current | VersionStage::Pending | VersionStage::Previous => {
                Ok(entry.value.clone())
            }
            stage => Err(TargetError::WrongStage {
                path: path.to_owned(),
                version,
                stage,
            }),
        }
    }

    async fn discard_pending(&self, path: &str, version: u64) -> Result<(), TargetError> {
        let mut secrets = self.lock();
        let Some(versions) = secrets.get_mut(path) else {
            return Ok(());
        };
        let entry = version_mut(versions, path, version)?;
        match entry.stage {
            VersionStage::Pending => {
                entry.stage = VersionStage::Destroyed;
                entry.value = SecretValue::new(String::new());
                Ok(())
            }
            VersionStage::Destroyed => Ok(()),
            stage => Err(TargetError::WrongStage {
                path: path.to_owned(),
                version,
                stage,
            }),
        }
    }

    async fn promote(
        &self,
        path: &str,
        version: u64,
        grace_deadline: OffsetDateTime,
    ) -> Result<Option<u64>, TargetError> {
        let mut secrets = self.lock();
        let versions = secrets.get_mut(path).ok_or_else(|| TargetError::NotFound {
            path: path.to_owned(),
            version,
        })?;
        let stage = version_mut(versions, path, version)?.stage;
        match stage {
            VersionStage::Current => {
                // Already promoted by an earlier attempt: report the version it replaced.
                let previous = versions
                    .iter()
                    .enumerate()
                    .take(usize::try_from(version).unwrap_or(0).saturating_sub(1))
                    .rev()
                    .find(|(_, v)| {
                        matches!(v.stage, VersionStage::Previous | VersionStage::Revoked)
                    })
                    .map(|(index, _)| index as u64 + 1);
                return Ok(previous);
            }
            VersionStage::Pending => {}
            stage => {
                return Err(TargetError::WrongStage {
                    path: path.to_owned(),
                    version,
                    stage,
                });
            }
        }

        let old = find_stage(versions, VersionStage::Current);
        if let Some(old) = old {
            let entry = version_mut(versions, path, old)?;
            entry.stage = VersionStage::Previous;
            entry.grace_deadline = Some(grace_deadline);
        }
        version_mut(versions, path, version)?.stage = VersionStage::Current;
        Ok(old)
    }

    async fn revoke_version(&self, path: &str, version: u64) -> Result<(), TargetError> {
        let mut secrets = self.lock();
        let versions = secrets.get_mut(path).ok_or_else(|| TargetError::NotFound {
            path: path.to_owned(),
            version,
        })?;
        let entry = version_mut(versions, path, version)?;
        match entry.stage {
            VersionStage::Previous | VersionStage::Revoked => {
                entry.stage = VersionStage::Revoked;
                Ok(())
            }
            stage => Err(TargetError::WrongStage {
                path: path.to_owned(),
                version,
                stage,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn value(text: &str) -> SecretValue {
        SecretValue::new(text.to_owned())
    }

    #[tokio::test]
    async fn promote_moves_current_to_previous() {
        let target = MemoryTarget::new();
        target.put_current("a/b", value("one"));
        let pending = target
            .write_pending("a/b", &value("two"), &BTreeMap::new())
            .await
            .expect("write");
        assert_eq!(pending, 2);

        let deadline = datetime!(2028-01-02 00:00 UTC);
        let old = target.promote("a/b", 2, deadline).await.expect("promote");
        assert_eq!(old, Some(1));
        assert_eq!(
            target.stages("a/b"),
            [VersionStage::Previous, VersionStage::Current]
        );
        assert_eq!(target.versions("a/b")[0].grace_deadline, Some(deadline));

        // Repeating the promotion changes nothing and reports the same old version.
        let again = target
            .promote("a/b", 2, deadline)
            .await
            .expect("promote again");
        assert_eq!(again, Some(1));
    }

    #[tokio::test]
    async fn second_pending_version_is_rejected() {
        let target = MemoryTarget::new();
        target
            .write_pending("a/b", &value("x"), &BTreeMap::new())
            .await
            .expect("write");
        let error = target
            .write_pending("a/b", &value("y"), &BTreeMap::new())
            .await
            .expect_err("second pending");
        assert!(matches!(
            error,
            TargetError::PendingExists { version: 1, .. }
        ));
    }

    #[tokio::test]
    async fn revoked_version_is_not_readable() {
        let target = MemoryTarget::new();
        target.put_current("a/b", value("one"));
        target.put_current("a/b", value("two"));
        target.revoke_version("a/b", 1).await.expect("revoke");
        let error = target.read_version("a/b", 1).await.expect_err("revoked");
        assert!(matches!(error, TargetError::WrongStage { .. }));
        assert!(target.revoke_version("a/b", 2).await.is_err());
    }

    #[tokio::test]
    async fn discarded_pending_is_destroyed() {
        let target = MemoryTarget::new();
        let version = target
            .write_pending("a/b", &value("x"), &BTreeMap::new())
            .await
            .expect("write");
        target
            .discard_pending("a/b", version)
            .await
            .expect("discard");
        target
            .discard_pending("a/b", version)
            .await
            .expect("discard again");
        assert_eq!(target.pending_version("a/b").await.expect("query"), None);
        assert!(target.read_version("a/b", version).await.is_err());
    }

    #[tokio::test]
    async fn target_source_reads_current() {
        let target = MemoryTarget::new();
        target.put_current("ops/key", value("admin"));
        let source = TargetSource(Arc::new(target));
        let read = source.read_current("ops/key").await.expect("read");
        assert_eq!(read.expose_secret(), "admin");
        assert!(source.read_current("ops/missing").await.is_err());
    }
}
