//! Counting sealed versions in Vault per data key, so a key that still protects a value there
//! is never retired.
//!
//! The count walks every secret under the prefix and reads each kept, not destroyed version:
//! one request per secret and per version, so it is slow on large mounts. Vault does not
//! return the data of a soft-deleted version, so its key is unknown: such a version is counted
//! under every key except the active one, which blocks retiring any older key until it is
//! undeleted or destroyed.

use std::collections::BTreeMap;

use super::VaultStore;
use super::convert::{vault_error, vault_error_at};
use super::versions::sealed_key_id;
use crate::path::SecretPath;
use crate::store::StoreError;

/// Counts sealed versions in Vault by data key id.
pub(super) async fn count_in_vault(store: &VaultStore) -> Result<BTreeMap<u32, u64>, StoreError> {
    let keyring = store.keyring_handle().load();
    let older_keys: Vec<u32> = keyring
        .key_ids()
        .into_iter()
        .filter(|&id| id != keyring.active_key_id())
        .collect();

    let mut counts = BTreeMap::new();
    let mut folders = vec![String::new()];
    while let Some(folder) = folders.pop() {
        let listing_path = match (store.prefix.is_empty(), folder.is_empty()) {
            (true, _) => folder.clone(),
            (false, true) => store.prefix.clone(),
            (false, false) => format!("{}/{folder}", store.prefix),
        };
        let entries = store
            .client
            .kv_list(&store.mount, &listing_path)
            .await
            .map_err(|err| vault_error_at(&format!("folder {listing_path:?}"), err))?;

        for entry in entries {
            let relative = format!("{folder}{entry}");
            if entry.ends_with('/') {
                folders.push(relative);
                continue;
            }
            // A name Keyward cannot address was written outside it and contains no sealed value.
            let Ok(path) = SecretPath::parse(&relative) else {
                continue;
            };
            count_secret(store, &path, &older_keys, &mut counts).await?;
        }
    }
    Ok(counts)
}

async fn count_secret(
    store: &VaultStore,
    path: &SecretPath,
    older_keys: &[u32],
    counts: &mut BTreeMap<u32, u64>,
) -> Result<(), StoreError> {
    let vault_path = store.vault_path(path);
    let meta = match store
        .client
        .kv_read_metadata(&store.mount, &vault_path)
        .await
    {
        Ok(meta) => meta,
        // Deleted between the listing and this read.
        Err(keyward_vault::VaultError::NotFound { .. }) => return Ok(()),
        Err(err) => return Err(vault_error(path, err)),
    };

    for (&number, state) in meta.versions.iter().filter(|(_, state)| !state.destroyed) {
        let read = match store
            .client
            .kv_read(&store.mount, &vault_path, Some(number))
            .await
        {
            Ok(read) => read,
            Err(keyward_vault::VaultError::NotFound { .. }) => continue,
            Err(err) => return Err(vault_error(path, err)),
        };
        match read.data {
            Some(json) => {
                if let Some(key_id) = sealed_key_id(&json) {
                    *counts.entry(key_id).or_insert(0) += 1;
                }
            }
            None if state.deletion_time.is_some() => {
                for &key_id in older_keys {
                    *counts.entry(key_id).or_insert(0) += 1;
                }
            }
            None => {}
        }
    }
    Ok(())
}
