//! The key lifecycle: data-key status, rotation, rewrap of stored versions onto the active key,
//! retirement of unused keys, root-key rotation, and the encryption budget that rotates the
//! data key by itself.
//!
//! The keyring sits in a [`KeyringHandle`] shared with the store. Every change builds the new
//! keyring (or its new wrapping) aside, saves it through the [`KeyringSink`], and only then
//! swaps it in. So a failed save changes nothing, and the store never writes under a key that
//! is not on disk. One async mutex serialises the changes and guards the root key.
//!
//! Encryption counts live in the keyring and reach the disk only when it is saved: every
//! [`ManagerConfig::keyring_save_every`](crate::ManagerConfig) encryptions, after each change,
//! and in [`SecretsManager::shutdown`]. A crash loses the counts since the last save, and a
//! change made while writes run may leave out the few encryptions made between its copy of
//! the keyring and the swap. The budget's margin covers both: by default the manager rotates
//! at 2^30 encryptions, the keyring refuses to encrypt at 2^31, and the random-nonce bound is
//! 2^32.
//!
//! This module does not read passphrases or key files, and does not write `keyring.json`:
//! the caller's sink does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keyward_crypto::{CryptoError, KdfParams, KeyId, Keyring, RootKey, WrappedKeyring};
use keyward_store::{KeyringHandle, RewrapProgress};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::events::SecurityEvent;
use crate::manager::{Caller, Operation, RequestContext};
use crate::policy::Capability;
use crate::{ManagerError, SecretsManager};

/// Largest batch [`SecretsManager::keys_rewrap`] accepts.
pub const MAX_REWRAP_BATCH: usize = 10_000;

/// Capabilities that allow key management on `sys/keys` paths.
const KEY_ADMIN: &[Capability] = &[Capability::Sudo, Capability::Admin];

/// Accessor recorded for changes the manager makes by itself.
const SYSTEM_ACCESSOR: &str = "system";

/// Stores the wrapped keyring, for example as `keyring.json` beside the database.
pub trait KeyringSink: Send + Sync + 'static {
    /// Replaces the stored keyring with `wrapped`, returning only once the new one would
    /// survive a crash. On error the previous keyring must still be in place.
    ///
    /// The error is a message for the log. It should not repeat `wrapped`, even though that
    /// contains no key in clear.
    fn save(&self, wrapped: &WrappedKeyring) -> Result<(), String>;
}

/// What the manager needs to change keys: the keyring the store uses, the root key that
/// wraps it, and where to save it.
pub struct KeyManagement {
    /// The store's keyring handle.
    pub keyring: KeyringHandle,
    /// The root key the keyring was opened with. The manager keeps it in memory, where it is
    /// zeroized on drop, to wrap the keyring after each change.
    pub root_key: RootKey,
    /// The destination of each new keyring, which is saved there before it is used.
    pub sink: Arc<dyn KeyringSink>,
}

impl fmt::Debug for KeyManagement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManagement")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// The role of a data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// New values are encrypted under it.
    Active,
    /// It only decrypts older values.
    DecryptOnly,
    /// Stored versions name it but the keyring lacks it: those versions cannot be read.
    Missing,
}

impl KeyState {
    /// Returns the state's name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::DecryptOnly => "decrypt-only",
            KeyState::Missing => "missing",
        }
    }
}

/// One data key as [`SecretsManager::keys_status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key id, as stored in each ciphertext header.
    pub id: KeyId,
    /// When the key was created; `None` for a missing key.
    pub created: Option<OffsetDateTime>,
    /// Its role.
    pub state: KeyState,
    /// Values it has encrypted, as counted in the keyring; `None` for a missing key.
    pub encryptions: Option<u64>,
    /// Stored (not destroyed) versions under it.
    pub records: u64,
}

/// The outcome of a data-key rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotatedKey {
    /// The new active key.
    pub key_id: KeyId,
    /// The key that was active before, now decrypt-only.
    pub previous_key_id: KeyId,
}

/// The outcome of a root-key rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotatedRoot {
    /// The new root key's KDF name.
    pub kdf: &'static str,
    /// The previous root key's KDF name.
    pub previous_kdf: &'static str,
}

/// Returns the name a KDF is recorded under in the wrapped keyring.
pub fn kdf_name(kdf: &KdfParams) -> &'static str {
    match kdf {
        KdfParams::Pbkdf2HmacSha256 { .. } => "pbkdf2-hmac-sha256",
        KdfParams::Argon2id { .. } => "argon2id",
        KdfParams::Raw => "raw",
    }
}

/// The manager's key state once key management is enabled.
pub(crate) struct KeyLifecycle {
    keyring: KeyringHandle,
    sink: Arc<dyn KeyringSink>,
    /// Serialises keyring changes and saves, and contains the root key that wraps the keyring.
    root: Mutex<RootKey>,
    /// The active key's encryption count at the last save.
    saved_encryptions: AtomicU64,
    /// [`ManagerConfig::data_key_rotate_after`](crate::ManagerConfig), clamped.
    rotate_after: u64,
    /// [`ManagerConfig::keyring_save_every`](crate::ManagerConfig), at least 1.
    save_every: u64,
}

impl KeyLifecycle {
    /// Wraps `keyring` under `root` and saves it through the sink, off the async workers
    /// because the sink syncs files.
    async fn save(&self, keyring: &Keyring, root: &RootKey) -> Result<(), ManagerError> {
        let wrapped = keyring.wrap(root).map_err(crypto_error)?;
        let sink = Arc::clone(&self.sink);
        tokio::task::spawn_blocking(move || sink.save(&wrapped))
            .await
            .map_err(|error| ManagerError::Internal(format!("keyring save task failed: {error}")))?
            .map_err(|error| ManagerError::Unavailable(format!("cannot save the keyring: {error}")))
    }

    /// Builds a new keyring with one more key, saves it, and swaps it in.
    async fn rotate(&self, root: &RootKey) -> Result<RotatedKey, ManagerError> {
        let current = self.keyring.load();
        let mut next = copy_keyring(&current, root)?;
        let key_id = next.rotate().map_err(crypto_error)?;

        self.save(&next, root).await?;
        self.keyring.replace(Arc::new(next));
        self.saved_encryptions.store(0, Ordering::Relaxed);

        Ok(RotatedKey {
            key_id,
            previous_key_id: current.active_key_id(),
        })
    }

    /// Saves the current keyring so its encryption counts survive a restart.
    async fn save_counts(&self, root: &RootKey) -> Result<(), ManagerError> {
        let keyring = self.keyring.load();
        let used = active_encryptions(&keyring);
        self.save(&keyring, root).await?;
        self.saved_encryptions.store(used, Ordering::Relaxed);
        Ok(())
    }
}

/// Copies a keyring (keys, counts and derivation secret) by wrapping and unwrapping it.
fn copy_keyring(keyring: &Keyring, root: &RootKey) -> Result<Keyring, ManagerError> {
    let wrapped = keyring.wrap(root).map_err(crypto_error)?;
    Keyring::unwrap(&wrapped, root).map_err(crypto_error)
}

fn active_encryptions(keyring: &Keyring) -> u64 {
    keyring.encryptions(keyring.active_key_id()).unwrap_or(0)
}

/// Crypto errors here mean a bug or a failing random number generator, never bad input;
/// their messages contain no key material.
fn crypto_error(error: CryptoError) -> ManagerError {
    ManagerError::Internal(format!("keyring operation failed: {error}"))
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Builds the status rows: every key in the keyring, then every key id that stored versions
/// use but the keyring lacks.
fn status_rows(keyring: &Keyring, counts: &BTreeMap<u32, u64>) -> Vec<KeyStatus> {
    let mut rows: Vec<KeyStatus> = keyring
        .key_ids()
        .into_iter()
        .map(|id| KeyStatus {
            id,
            created: keyring
                .created_at(id)
                .and_then(|secs| i64::try_from(secs).ok())
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok()),
            state: if id == keyring.active_key_id() {
                KeyState::Active
            } else {
                KeyState::DecryptOnly
            },
            encryptions: keyring.encryptions(id),
            records: counts.get(&id).copied().unwrap_or(0),
        })
        .collect();

    for (&id, &records) in counts {
        if keyring.created_at(id).is_none() {
            rows.push(KeyStatus {
                id,
                created: None,
                state: KeyState::Missing,
                encryptions: None,
                records,
            });
        }
    }
    rows.sort_by_key(|row| row.id);
    rows
}

impl SecretsManager {
    /// Enables key management: status, rotation, rewrap, retirement, root-key rotation and
    /// the automatic rotation and saves driven by [`crate::ManagerConfig`].
    pub fn with_key_management(mut self, keys: KeyManagement) -> Self {
        let keyring = keys.keyring.load();
        let rotate_after = self
            .config
            .data_key_rotate_after
            .clamp(1, Keyring::MAX_ENCRYPTIONS_PER_KEY);
        self.keys = Some(KeyLifecycle {
            saved_encryptions: AtomicU64::new(active_encryptions(&keyring)),
            keyring: keys.keyring,
            sink: keys.sink,
            root: Mutex::new(keys.root_key),
            rotate_after,
            save_every: self.config.keyring_save_every.max(1),
        });
        self
    }

    fn key_lifecycle(&self) -> Result<&KeyLifecycle, ManagerError> {
        self.keys.as_ref().ok_or_else(|| {
            ManagerError::Invalid("key management is not enabled on this server".into())
        })
    }

    /// Checks the caller and key management for a key operation; a failure gets its audit
    /// response entry here.
    async fn key_preflight(
        &self,
        caller: &Caller,
        op: &Operation<'_>,
    ) -> Result<&KeyLifecycle, ManagerError> {
        let checked = self
            .require(caller, &op.path, KEY_ADMIN)
            .and_then(|()| self.key_lifecycle());
        if checked.is_err() {
            self.audit_response(op, &checked, Map::new()).await?;
        }
        checked
    }

    /// Lists the data keys with their state, encryption counts and how many stored versions
    /// each protects. Needs `sudo` on `sys/keys`.
    pub async fn keys_status(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Result<Vec<KeyStatus>, ManagerError> {
        let op = self.operation(caller, ctx, "keys.status", "sys/keys".to_owned());
        let keys = self.key_preflight(caller, &op).await?;

        let result = async {
            let counts = self.store.count_by_key().await?;
            let rows = status_rows(&keys.keyring.load(), &counts);
            for row in rows.iter().filter(|row| row.state == KeyState::Missing) {
                tracing::error!(
                    key_id = row.id,
                    records = row.records,
                    "stored versions use a key the keyring lacks; they cannot be read"
                );
            }
            Ok(rows)
        }
        .await;
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Makes a new data key active. New writes use it at once; values under older keys keep
    /// decrypting until [`SecretsManager::keys_rewrap`] moves them. Needs `sudo` on
    /// `sys/keys/rotate`.
    pub async fn keys_rotate(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Result<RotatedKey, ManagerError> {
        let op = self.operation(caller, ctx, "keys.rotate", "sys/keys/rotate".to_owned());
        let keys = self.key_preflight(caller, &op).await?;
        self.audit_request(&op).await?;

        let result = {
            let root = keys.root.lock().await;
            keys.rotate(&root).await
        };
        self.audit_response(&op, &result, rotation_extra(&result, "requested"))
            .await?;

        let rotated = result?;
        tracing::info!(
            key_id = rotated.key_id,
            previous_key_id = rotated.previous_key_id,
            "data key rotated"
        );
        self.events.publish(SecurityEvent::DataKeyRotated {
            key_id: rotated.key_id,
            reason: "requested".to_owned(),
        });
        Ok(rotated)
    }

    /// Re-encrypts up to `batch_size` stored versions under older keys onto the active key.
    /// Needs `sudo` on `sys/keys/rewrap`.
    ///
    /// Each batch is one transaction, so an interrupted rewrap loses nothing and the next call
    /// resumes. `batch_size` must be from 1 to [`MAX_REWRAP_BATCH`].
    pub async fn keys_rewrap(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        batch_size: usize,
    ) -> Result<RewrapProgress, ManagerError> {
        let op = self.operation(caller, ctx, "keys.rewrap", "sys/keys/rewrap".to_owned());
        let keys = self.key_preflight(caller, &op).await?;
        if !(1..=MAX_REWRAP_BATCH).contains(&batch_size) {
            let failed = Err(ManagerError::Invalid(format!(
                "batch_size {batch_size} is out of range: use 1 to {MAX_REWRAP_BATCH}"
            )));
            self.audit_response(&op, &failed, Map::new()).await?;
            return failed;
        }
        self.audit_request(&op).await?;

        let result = self
            .store
            .rewrap_batch(batch_size)
            .await
            .map_err(ManagerError::from);
        let mut extra = Map::new();
        extra.insert("batch_size".into(), json!(batch_size));
        if let Ok(progress) = &result {
            extra.insert("rewrapped".into(), json!(progress.rewrapped));
            extra.insert("remaining".into(), json!(progress.remaining));
        }
        self.audit_response(&op, &result, extra).await?;

        let progress = result?;
        if progress.rewrapped > 0 && progress.remaining == 0 {
            let key_id = keys.keyring.load().active_key_id();
            tracing::info!(
                key_id,
                "rewrap finished: every stored version is under the active key"
            );
            self.events
                .publish(SecurityEvent::RewrapFinished { key_id });
        }
        self.check_encryption_budget(ctx).await;
        Ok(progress)
    }

    /// Removes a decrypt-only data key that no stored version uses any more. Needs `sudo` on
    /// `sys/keys/<id>`.
    ///
    /// Rejected with [`ManagerError::Invalid`] for the active key, an unknown key, or a key
    /// that still protects stored versions (the message gives their count).
    pub async fn keys_retire(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key_id: KeyId,
    ) -> Result<(), ManagerError> {
        let op = self.operation(caller, ctx, "keys.retire", format!("sys/keys/{key_id}"));
        let keys = self.key_preflight(caller, &op).await?;
        self.audit_request(&op).await?;

        let result = async {
            let root = keys.root.lock().await;
            let current = keys.keyring.load();
            if key_id == current.active_key_id() {
                return Err(ManagerError::Invalid(format!(
                    "key {key_id} is the active key: run `keyward keys rotate` first"
                )));
            }
            if current.created_at(key_id).is_none() {
                return Err(ManagerError::Invalid(format!(
                    "key {key_id} is not in the keyring: `keyward keys status` lists the keys"
                )));
            }

            // The store counts after every write in progress has committed, and later writes
            // use the active key, so a count of 0 here stays 0.
            let records = self
                .store
                .count_by_key()
                .await?
                .get(&key_id)
                .copied()
                .unwrap_or(0);
            if records > 0 {
                return Err(ManagerError::Invalid(format!(
                    "key {key_id} still protects {}: run `keyward keys rewrap` first",
                    plural(records, "record")
                )));
            }

            let mut next = copy_keyring(&current, &root)?;
            next.retire(key_id).map_err(crypto_error)?;
            keys.save(&next, &root).await?;
            keys.keyring.replace(Arc::new(next));
            Ok(())
        }
        .await;
        let mut extra = Map::new();
        extra.insert("key_id".into(), json!(key_id));
        self.audit_response(&op, &result, extra).await?;

        result?;
        tracing::info!(key_id, "data key retired");
        self.events.publish(SecurityEvent::KeyRetired { key_id });
        Ok(())
    }

    /// Checks that the caller may rotate the root key, before it spends a key derivation on
    /// it; a refusal is audited as a failed `keys.rotate_root`.
    pub async fn keys_rotate_root_allowed(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Result<(), ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "keys.rotate_root",
            "sys/keys/rotate-root".to_owned(),
        );
        self.key_preflight(caller, &op).await.map(|_| ())
    }

    /// Seals the keyring under `new_root` and saves it; from then on only `new_root` opens
    /// the keyring. Data keys are unchanged, so no stored version changes. Needs `sudo` on
    /// `sys/keys/rotate-root`.
    pub async fn keys_rotate_root(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        new_root: RootKey,
    ) -> Result<RotatedRoot, ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "keys.rotate_root",
            "sys/keys/rotate-root".to_owned(),
        );
        let keys = self.key_preflight(caller, &op).await?;
        self.audit_request(&op).await?;

        let result = async {
            let mut root = keys.root.lock().await;
            let keyring = keys.keyring.load();
            let used = active_encryptions(&keyring);
            keys.save(&keyring, &new_root).await?;

            let rotated = RotatedRoot {
                kdf: kdf_name(new_root.kdf()),
                previous_kdf: kdf_name(root.kdf()),
            };
            *root = new_root;
            keys.saved_encryptions.store(used, Ordering::Relaxed);
            Ok(rotated)
        }
        .await;
        let mut extra = Map::new();
        if let Ok(rotated) = &result {
            extra.insert("kdf".into(), json!(rotated.kdf));
            extra.insert("previous_kdf".into(), json!(rotated.previous_kdf));
        }
        self.audit_response(&op, &result, extra).await?;

        let rotated = result?;
        tracing::info!(
            kdf = rotated.kdf,
            previous_kdf = rotated.previous_kdf,
            "root key rotated; the previous root key no longer opens the keyring"
        );
        self.events.publish(SecurityEvent::RootKeyRotated {
            kdf: rotated.kdf.to_owned(),
        });
        Ok(rotated)
    }

    /// Saves the keyring with its current encryption counts. Call it once when stopping, after
    /// the last request; without key management it does nothing.
    pub async fn shutdown(&self) -> Result<(), ManagerError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let root = keys.root.lock().await;
        keys.save_counts(&root).await?;
        tracing::info!("keyring saved with its encryption counts");
        Ok(())
    }

    /// Runs after each encryption: rotates the data key once the active key reaches the
    /// rotation threshold, and otherwise saves the keyring every `keyring_save_every`
    /// encryptions.
    ///
    /// Never fails the request that called it. When another key change holds the lock, it
    /// returns at once, and the next write checks again.
    pub(crate) async fn check_encryption_budget(&self, ctx: &RequestContext) {
        let Some(keys) = &self.keys else {
            return;
        };
        let used = active_encryptions(&keys.keyring.load());
        let unsaved = used.saturating_sub(keys.saved_encryptions.load(Ordering::Relaxed));
        if used < keys.rotate_after && unsaved < keys.save_every {
            return;
        }
        let Ok(root) = keys.root.try_lock() else {
            return;
        };

        // Checked again under the lock: another request may have rotated or saved meanwhile.
        let keyring = keys.keyring.load();
        let used = active_encryptions(&keyring);
        if used >= keys.rotate_after {
            self.rotate_for_budget(keys, &root, ctx, used).await;
        } else if used.saturating_sub(keys.saved_encryptions.load(Ordering::Relaxed))
            >= keys.save_every
            && let Err(error) = keys.save_counts(&root).await
        {
            tracing::error!(%error, "saving the keyring's encryption counts failed; will retry");
        }
    }

    async fn rotate_for_budget(
        &self,
        keys: &KeyLifecycle,
        root: &RootKey,
        ctx: &RequestContext,
        used: u64,
    ) {
        let op = Operation {
            ctx,
            accessor: SYSTEM_ACCESSOR,
            name: "keys.rotate",
            path: "sys/keys/rotate".to_owned(),
        };
        // Fail closed: without its request entry the rotation does not happen. The audit
        // failure is logged and published already; the next write tries again.
        if self.audit_request(&op).await.is_err() {
            return;
        }

        let result = keys.rotate(root).await;
        let _ = self
            .audit_response(&op, &result, rotation_extra(&result, "encryption limit"))
            .await;
        match result {
            Ok(rotated) => {
                tracing::warn!(
                    key_id = rotated.key_id,
                    previous_key_id = rotated.previous_key_id,
                    encryptions = used,
                    "active data key reached its encryption limit; rotated to a new key"
                );
                self.events.publish(SecurityEvent::DataKeyRotated {
                    key_id: rotated.key_id,
                    reason: "encryption limit".to_owned(),
                });
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    encryptions = used,
                    "automatic data key rotation failed; will retry after the next write"
                );
            }
        }
    }
}

fn rotation_extra(result: &Result<RotatedKey, ManagerError>, reason: &str) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("reason".into(), json!(reason));
    if let Ok(rotated) = result {
        extra.insert("key_id".into(), json!(rotated.key_id));
        extra.insert("previous_key_id".into(), json!(rotated.previous_key_id));
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_active_decrypt_only_and_missing() {
        let mut keyring = Keyring::generate().expect("keyring");
        keyring.rotate().expect("rotate");
        keyring.rotate().expect("rotate");
        keyring.retire(1).expect("retire");
        let counts = BTreeMap::from([(1, 4), (3, 2)]);

        let rows = status_rows(&keyring, &counts);

        let summary: Vec<(KeyId, KeyState, u64)> = rows
            .iter()
            .map(|row| (row.id, row.state, row.records))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, KeyState::Missing, 4),
                (2, KeyState::DecryptOnly, 0),
                (3, KeyState::Active, 2),
            ]
        );
        assert!(rows[0].created.is_none());
        assert!(rows[1].created.is_some());
    }

    #[test]
    fn record_counts_read_naturally() {
        assert_eq!(plural(1, "record"), "1 record");
        assert_eq!(plural(42, "record"), "42 records");
    }

    #[test]
    fn kdf_names_match_keyring_file() {
        let pbkdf2 = KdfParams::new_pbkdf2().expect("rng");
        let json = serde_json::to_value(&pbkdf2).expect("serialize");
        assert_eq!(json["algorithm"], kdf_name(&pbkdf2));
        let argon2 = KdfParams::new_argon2id().expect("rng");
        let json = serde_json::to_value(&argon2).expect("serialize");
        assert_eq!(json["algorithm"], kdf_name(&argon2));
        assert_eq!(kdf_name(&KdfParams::Raw), "raw");
    }
}
