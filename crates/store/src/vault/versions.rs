//! Secret versions in Vault: writes with check-and-set, reads, and delete, undelete and
//! destroy. In `encrypt_values` mode this module seals and opens the values; the JSON
//! envelope it stores in Vault contains only ciphertext and the writer's accessor.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_crypto::Keyring;
use keyward_vault::{KvVersionMetadata, SecretJson, VaultError};
use serde::{Deserialize, Serialize};

use super::VaultStore;
use super::convert::{vault_error, version_meta};
use crate::aad::secret_aad;
use crate::model::{NewVersion, SecretData, VersionMeta};
use crate::path::SecretPath;
use crate::store::{StoreError, VersionRead};

/// How often a write without `cas` retries when another writer got in between the version
/// read and the write (encrypt mode binds the value to the next version number).
const WRITE_ATTEMPTS: usize = 5;

/// The data stored in Vault for one sealed version.
#[derive(Serialize, Deserialize)]
struct SealedValue {
    /// Keyward ciphertext of the version's JSON object, base64.
    keyward_ciphertext: String,
    /// Accessor of the token that wrote the version.
    #[serde(default)]
    keyward_created_by: String,
}

/// The three version changes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Change {
    Delete,
    Undelete,
    Destroy,
}

/// Writes a new version; see [`crate::SecretStore::put`].
pub(super) async fn put(
    store: &VaultStore,
    path: &SecretPath,
    new: NewVersion,
) -> Result<VersionMeta, StoreError> {
    let vault_path = store.vault_path(path);

    if !store.encrypt_values {
        let data = SecretJson::from_json_bytes(new.data.expose_json().to_vec())
            .ok_or_else(|| StoreError::Invalid("secret data must be a JSON object".into()))?;
        let written = store
            .client
            .kv_write(&store.mount, &vault_path, &data, new.cas)
            .await
            .map_err(|err| vault_error(path, err))?;
        return Ok(written_meta(written, new.created_by));
    }

    // The ciphertext is bound to the version it becomes, so the write must land on exactly
    // that version: it carries `cas` = the version read just before.
    for _ in 0..WRITE_ATTEMPTS {
        let meta = match store
            .client
            .kv_read_metadata(&store.mount, &vault_path)
            .await
        {
            Ok(meta) => Some(meta),
            Err(VaultError::NotFound { .. }) => None,
            Err(err) => return Err(vault_error(path, err)),
        };
        let current = meta.as_ref().map_or(0, |meta| meta.current_version);
        let cas_required = meta.as_ref().is_some_and(|meta| meta.cas_required);
        match new.cas {
            Some(expected) if expected != current => return Err(StoreError::CasMismatch),
            None if cas_required => return Err(StoreError::CasRequired),
            _ => {}
        }

        let version = current + 1;
        let data = seal(&store.keyring_handle().load(), path, version, &new)?;
        match store
            .client
            .kv_write(&store.mount, &vault_path, &data, Some(current))
            .await
        {
            Ok(written) if written.version == version => {
                return Ok(written_meta(written, new.created_by));
            }
            Ok(written) => {
                return Err(StoreError::Corrupt(format!(
                    "vault stored version {} of {path} where {version} was expected",
                    written.version
                )));
            }
            // Another writer got in first: without a caller's cas, read and seal again.
            Err(VaultError::CasMismatch { .. }) if new.cas.is_none() => continue,
            Err(err) => return Err(vault_error(path, err)),
        }
    }
    Err(StoreError::Backend(format!(
        "vault write of {path} kept conflicting with other writers after {WRITE_ATTEMPTS} \
         attempts; retry the request"
    )))
}

fn written_meta(written: KvVersionMetadata, created_by: String) -> VersionMeta {
    version_meta(
        written.version,
        written.created_time,
        written.deletion_time,
        written.destroyed,
        written.version,
        created_by,
    )
}

fn seal(
    keyring: &Keyring,
    path: &SecretPath,
    version: u64,
    new: &NewVersion,
) -> Result<SecretJson, StoreError> {
    let ciphertext = keyring.encrypt(new.data.expose_json(), &secret_aad(path, version))?;
    let sealed = SealedValue {
        keyward_ciphertext: BASE64.encode(ciphertext),
        keyward_created_by: new.created_by.clone(),
    };
    // The envelope holds only ciphertext and an accessor, so it need not be zeroized.
    let bytes = serde_json::to_vec(&sealed)
        .map_err(|err| StoreError::Invalid(format!("cannot encode sealed value: {err}")))?;
    SecretJson::from_json_bytes(bytes)
        .ok_or_else(|| StoreError::Invalid("sealed value is not a JSON object".into()))
}

/// Reads a version; see [`crate::SecretStore::get`].
pub(super) async fn get(
    store: &VaultStore,
    path: &SecretPath,
    version: Option<u64>,
) -> Result<VersionRead, StoreError> {
    let vault_path = store.vault_path(path);
    // Version 0 never exists; Vault would read it as the latest.
    if version == Some(0) {
        return Err(StoreError::NotFound);
    }
    let read = store
        .client
        .kv_read(&store.mount, &vault_path, version)
        .await
        .map_err(|err| vault_error(path, err))?;

    let current_version = match version {
        None => read.metadata.version,
        Some(_) => store.current_version(path).await?,
    };

    let (data, created_by) = match read.data {
        None => (None, String::new()),
        Some(json) if store.encrypt_values => {
            let (data, created_by) = open(
                &store.keyring_handle().load(),
                path,
                read.metadata.version,
                &json,
            )?;
            (Some(data), created_by)
        }
        Some(json) => {
            let data = SecretData::from_json_bytes(json.into_bytes().to_vec()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "version {} of {path} in vault is not a JSON object",
                    read.metadata.version
                ))
            })?;
            (Some(data), String::new())
        }
    };

    let meta = read.metadata;
    Ok(VersionRead {
        meta: version_meta(
            meta.version,
            meta.created_time,
            meta.deletion_time,
            meta.destroyed,
            current_version,
            created_by,
        ),
        custom_metadata: meta.custom_metadata,
        data,
    })
}

fn open(
    keyring: &Keyring,
    path: &SecretPath,
    version: u64,
    json: &SecretJson,
) -> Result<(SecretData, String), StoreError> {
    let sealed: SealedValue = serde_json::from_slice(json.expose_json()).map_err(|_| {
        StoreError::Corrupt(format!(
            "version {version} of {path} in vault is not a Keyward sealed value; values written \
             outside Keyward cannot be read while encrypt_values is on"
        ))
    })?;
    let ciphertext = BASE64.decode(&sealed.keyward_ciphertext).map_err(|_| {
        StoreError::Corrupt(format!(
            "version {version} of {path} in vault has a ciphertext that is not base64"
        ))
    })?;

    let mut plaintext = keyring.decrypt(&ciphertext, &secret_aad(path, version))?;
    let bytes = std::mem::take(&mut *plaintext);
    let data = SecretData::from_json_bytes(bytes).map_err(|_| {
        StoreError::Corrupt(format!("version {version} of {path} is not a JSON object"))
    })?;
    Ok((data, sealed.keyward_created_by))
}

/// Returns the data key id of a sealed version's ciphertext, or `None` when the data is not
/// a sealed value.
pub(super) fn sealed_key_id(json: &SecretJson) -> Option<u32> {
    let sealed: SealedValue = serde_json::from_slice(json.expose_json()).ok()?;
    let ciphertext = BASE64.decode(&sealed.keyward_ciphertext).ok()?;
    Keyring::key_id_of(&ciphertext).ok()
}

/// Applies a version change. An empty list deletes the latest version (as Vault's `DELETE` on
/// the data path does); undelete and destroy resolve an empty list before calling. Unknown
/// versions and a missing secret change nothing and are not errors.
pub(super) async fn apply_change(
    store: &VaultStore,
    path: &SecretPath,
    versions: &[u64],
    change: Change,
) -> Result<(), StoreError> {
    let vault_path = store.vault_path(path);
    let client = &store.client;
    let mount = &store.mount;

    let result = match change {
        Change::Delete if versions.is_empty() => client.kv_delete_latest(mount, &vault_path).await,
        Change::Delete => {
            client
                .kv_delete_versions(mount, &vault_path, versions)
                .await
        }
        Change::Undelete => {
            client
                .kv_undelete_versions(mount, &vault_path, versions)
                .await
        }
        Change::Destroy => {
            client
                .kv_destroy_versions(mount, &vault_path, versions)
                .await
        }
    };
    match result {
        Ok(()) | Err(VaultError::NotFound { .. }) => Ok(()),
        Err(err) => Err(vault_error(path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> SecretPath {
        SecretPath::parse(raw).expect("test path is valid")
    }

    fn new_version() -> NewVersion {
        let map = serde_json::json!({"password": "hunter2"});
        NewVersion {
            data: SecretData::from_map(map.as_object().expect("object literal")),
            cas: None,
            created_by: "accessor-1".into(),
        }
    }

    #[test]
    fn sealed_value_hides_plaintext() {
        let keyring = Keyring::generate().expect("keyring is generated");

        let sealed = seal(&keyring, &path("team/db"), 1, &new_version()).expect("seals");

        let text = String::from_utf8_lossy(sealed.expose_json()).into_owned();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("keyward_ciphertext"));
        assert_eq!(sealed_key_id(&sealed), Some(keyring.active_key_id()));
    }

    #[test]
    fn sealed_value_is_bound_to_path_and_version() {
        let keyring = Keyring::generate().expect("keyring is generated");
        let sealed = seal(&keyring, &path("team/db"), 2, &new_version()).expect("seals");

        let (data, created_by) = open(&keyring, &path("team/db"), 2, &sealed).expect("opens");
        let other_version = open(&keyring, &path("team/db"), 3, &sealed);
        let other_path = open(&keyring, &path("team/other"), 2, &sealed);

        assert_eq!(data.expose_map()["password"], "hunter2");
        assert_eq!(created_by, "accessor-1");
        assert!(matches!(other_version, Err(StoreError::Crypto(_))));
        assert!(matches!(other_path, Err(StoreError::Crypto(_))));
    }

    #[test]
    fn plain_value_is_not_opened_as_sealed() {
        let keyring = Keyring::generate().expect("keyring is generated");
        let plain = SecretJson::from_json_bytes(br#"{"password":"x"}"#.to_vec())
            .expect("object is accepted");

        let result = open(&keyring, &path("team/db"), 1, &plain);

        assert!(matches!(result, Err(StoreError::Corrupt(_))));
        assert_eq!(sealed_key_id(&plain), None);
    }
}
