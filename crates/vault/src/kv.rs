//! The KV v2 secrets engine: versioned reads and writes with check-and-set, listing, metadata,
//! and soft-delete, undelete and destroy of versions.
//!
//! Secret data crosses this module only as [`SecretJson`]: the response body is parsed without
//! building a `serde_json::Value` of the data, and the data's bytes are copied straight into a
//! zeroizing buffer. Metadata is not secret and uses ordinary types.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::client::{Authenticated, VaultClient, check_segments, check_status, decode_error};
use crate::error::VaultError;
use crate::secret::SecretJson;

/// Metadata of one version, as Vault returns it with a read or a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvVersionMetadata {
    /// Version number, from 1.
    pub version: u64,
    /// When the version was written.
    pub created_time: OffsetDateTime,
    /// When the version was (or will be, with `delete_version_after`) soft-deleted.
    pub deletion_time: Option<OffsetDateTime>,
    /// Whether the version's data has been erased.
    pub destroyed: bool,
    /// The secret's custom metadata (empty when it has none).
    pub custom_metadata: BTreeMap<String, String>,
}

/// One version read from KV v2.
#[derive(Clone, Debug)]
pub struct KvSecret {
    /// The version's metadata.
    pub metadata: KvVersionMetadata,
    /// The data, or `None` when the version is deleted or destroyed.
    pub data: Option<SecretJson>,
}

/// The state of one version in a secret's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvVersionState {
    /// When the version was written.
    pub created_time: OffsetDateTime,
    /// When the version was (or will be) soft-deleted.
    pub deletion_time: Option<OffsetDateTime>,
    /// Whether the version's data has been erased.
    pub destroyed: bool,
}

/// A secret's metadata and its kept versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvMetadata {
    /// When the secret was created.
    pub created_time: OffsetDateTime,
    /// When the secret or its metadata last changed.
    pub updated_time: OffsetDateTime,
    /// The highest version written.
    pub current_version: u64,
    /// The oldest kept version; 0 while version 1 is kept.
    pub oldest_version: u64,
    /// How many versions to keep; 0 means the mount's default.
    pub max_versions: u32,
    /// Whether writes must carry `cas`.
    pub cas_required: bool,
    /// `delete_version_after`, in seconds; 0 disables it.
    pub delete_version_after_secs: u64,
    /// Free-form, non-secret key/value pairs.
    pub custom_metadata: BTreeMap<String, String>,
    /// Every kept version, by number.
    pub versions: BTreeMap<u64, KvVersionState>,
}

/// A change to a secret's metadata; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMetadataUpdate {
    /// New `max_versions`.
    pub max_versions: Option<u32>,
    /// New `cas_required`.
    pub cas_required: Option<bool>,
    /// New `delete_version_after`, in seconds.
    pub delete_version_after_secs: Option<u64>,
    /// New custom metadata, replacing the old map whole.
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawVersionMetadata {
    version: u64,
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, String>>,
}

impl RawVersionMetadata {
    fn convert(self, operation: &str) -> Result<KvVersionMetadata, VaultError> {
        Ok(KvVersionMetadata {
            version: self.version,
            created_time: parse_time(&self.created_time, operation)?,
            deletion_time: parse_optional_time(&self.deletion_time, operation)?,
            destroyed: self.destroyed,
            custom_metadata: self.custom_metadata.unwrap_or_default(),
        })
    }
}

impl VaultClient {
    /// Reads version `version` of the secret at `path` in the KV v2 mount `mount`, or the
    /// latest version when `None`.
    ///
    /// A deleted or destroyed version returns its metadata with `data: None`. A missing secret
    /// or version is [`VaultError::NotFound`].
    pub async fn kv_read(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<KvSecret, VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("read {mount}/data/{path}");
        let version_text = version.map(|v| v.to_string());
        let query: Vec<(&str, &str)> = version_text
            .as_deref()
            .map(|v| vec![("version", v)])
            .unwrap_or_default();

        let response = self
            .send(
                Method::GET,
                &format!("{mount}/data/{path}"),
                &query,
                None,
                Authenticated::Yes,
                &operation,
            )
            .await?;

        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            data: Option<ReadData<'a>>,
        }
        #[derive(Deserialize)]
        struct ReadData<'a> {
            #[serde(borrow)]
            data: Option<&'a RawValue>,
            metadata: Option<RawVersionMetadata>,
        }

        // Vault responds to a deleted or destroyed version with 404 and the version's metadata.
        let parsed: Option<Envelope<'_>> = serde_json::from_slice(&response.body).ok();
        let read = parsed.and_then(|envelope| envelope.data);
        let Some(ReadData {
            data,
            metadata: Some(metadata),
        }) = read
        else {
            check_status(&response, &operation)?;
            return Err(decode_error(
                &operation,
                "the response has no version metadata",
            ));
        };
        if !(response.status.is_success() || response.status.as_u16() == 404) {
            check_status(&response, &operation)?;
        }

        let metadata = metadata.convert(&operation)?;
        let data = match data {
            Some(raw) if raw.get() != "null" => Some(
                SecretJson::from_json_bytes(raw.get().as_bytes().to_vec())
                    .ok_or_else(|| decode_error(&operation, "the data is not a JSON object"))?,
            ),
            _ => None,
        };
        Ok(KvSecret { metadata, data })
    }

    /// Writes a new version of the secret at `path` and returns its metadata.
    ///
    /// `cas` is Vault's check-and-set: `Some(0)` writes only a secret with no version,
    /// `Some(n)` only when `n` is the current version. Fails with [`VaultError::CasMismatch`]
    /// or [`VaultError::CasRequired`].
    pub async fn kv_write(
        &self,
        mount: &str,
        path: &str,
        data: &SecretJson,
        cas: Option<u64>,
    ) -> Result<KvVersionMetadata, VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("write {mount}/data/{path}");

        // The body is assembled around the data's bytes, so the data is never parsed into an
        // unzeroized value.
        let options = match cas {
            Some(cas) => format!(r#"{{"options":{{"cas":{cas}}},"data":"#),
            None => r#"{"data":"#.to_owned(),
        };
        let mut body = Zeroizing::new(Vec::with_capacity(
            options.len() + data.expose_json().len() + 1,
        ));
        body.extend_from_slice(options.as_bytes());
        body.extend_from_slice(data.expose_json());
        body.push(b'}');

        let response = self
            .call(
                Method::POST,
                &format!("{mount}/data/{path}"),
                &[],
                Some(body),
                Authenticated::Yes,
                &operation,
            )
            .await?;

        #[derive(Deserialize)]
        struct Envelope {
            data: RawVersionMetadata,
        }
        let envelope: Envelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        envelope.data.convert(&operation)
    }

    /// Lists the names directly under `folder` (empty for the mount's root), sorted;
    /// sub-folders end with `/`. A folder with nothing under it gives an empty list.
    pub async fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>, VaultError> {
        check_segments("mount", mount, false)?;
        let folder = folder.trim_end_matches('/');
        check_segments("folder", folder, true)?;
        let operation = format!("list {mount}/metadata/{folder}");

        let response = self
            .send(
                Method::GET,
                &format!("{mount}/metadata/{folder}"),
                &[("list", "true")],
                None,
                Authenticated::Yes,
                &operation,
            )
            .await?;
        if response.status.as_u16() == 404 {
            return Ok(Vec::new());
        }
        check_status(&response, &operation)?;

        #[derive(Deserialize)]
        struct Envelope {
            data: Keys,
        }
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        let envelope: Envelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        let mut keys = envelope.data.keys;
        keys.sort();
        Ok(keys)
    }

    /// Reads a secret's metadata and version list. A missing secret is
    /// [`VaultError::NotFound`].
    pub async fn kv_read_metadata(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<KvMetadata, VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("read {mount}/metadata/{path}");
        let response = self
            .call(
                Method::GET,
                &format!("{mount}/metadata/{path}"),
                &[],
                None,
                Authenticated::Yes,
                &operation,
            )
            .await?;

        #[derive(Deserialize)]
        struct Envelope {
            data: RawMetadata,
        }
        #[derive(Deserialize)]
        struct RawMetadata {
            created_time: String,
            updated_time: String,
            current_version: u64,
            #[serde(default)]
            oldest_version: u64,
            #[serde(default)]
            max_versions: u32,
            #[serde(default)]
            cas_required: bool,
            #[serde(default)]
            delete_version_after: String,
            #[serde(default)]
            custom_metadata: Option<BTreeMap<String, String>>,
            #[serde(default)]
            versions: BTreeMap<String, RawVersionState>,
        }
        #[derive(Deserialize)]
        struct RawVersionState {
            created_time: String,
            #[serde(default)]
            deletion_time: String,
            #[serde(default)]
            destroyed: bool,
        }

        let raw: Envelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        let raw = raw.data;

        let mut versions = BTreeMap::new();
        for (number, state) in raw.versions {
            let number: u64 = number
                .parse()
                .map_err(|_| decode_error(&operation, format!("version key {number:?}")))?;
            versions.insert(
                number,
                KvVersionState {
                    created_time: parse_time(&state.created_time, &operation)?,
                    deletion_time: parse_optional_time(&state.deletion_time, &operation)?,
                    destroyed: state.destroyed,
                },
            );
        }

        Ok(KvMetadata {
            created_time: parse_time(&raw.created_time, &operation)?,
            updated_time: parse_time(&raw.updated_time, &operation)?,
            current_version: raw.current_version,
            oldest_version: raw.oldest_version,
            max_versions: raw.max_versions,
            cas_required: raw.cas_required,
            delete_version_after_secs: parse_go_duration(&raw.delete_version_after).ok_or_else(
                || {
                    decode_error(
                        &operation,
                        format!("delete_version_after {:?}", raw.delete_version_after),
                    )
                },
            )?,
            custom_metadata: raw.custom_metadata.unwrap_or_default(),
            versions,
        })
    }

    /// Creates or changes a secret's metadata.
    pub async fn kv_write_metadata(
        &self,
        mount: &str,
        path: &str,
        update: &KvMetadataUpdate,
    ) -> Result<(), VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("write {mount}/metadata/{path}");

        let mut body = serde_json::Map::new();
        if let Some(max_versions) = update.max_versions {
            body.insert("max_versions".into(), max_versions.into());
        }
        if let Some(cas_required) = update.cas_required {
            body.insert("cas_required".into(), cas_required.into());
        }
        if let Some(secs) = update.delete_version_after_secs {
            body.insert("delete_version_after".into(), format!("{secs}s").into());
        }
        if let Some(custom) = &update.custom_metadata {
            let custom: serde_json::Map<String, serde_json::Value> = custom
                .iter()
                .map(|(key, value)| (key.clone(), value.clone().into()))
                .collect();
            body.insert("custom_metadata".into(), custom.into());
        }
        let body = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());

        self.call(
            Method::POST,
            &format!("{mount}/metadata/{path}"),
            &[],
            Some(body),
            Authenticated::Yes,
            &operation,
        )
        .await?;
        Ok(())
    }

    /// Soft-deletes the latest version of the secret at `path`.
    pub async fn kv_delete_latest(&self, mount: &str, path: &str) -> Result<(), VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("delete {mount}/data/{path}");
        self.call(
            Method::DELETE,
            &format!("{mount}/data/{path}"),
            &[],
            None,
            Authenticated::Yes,
            &operation,
        )
        .await?;
        Ok(())
    }

    /// Soft-deletes the given versions. Unknown versions are ignored.
    pub async fn kv_delete_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), VaultError> {
        self.kv_version_change(mount, "delete", path, versions)
            .await
    }

    /// Clears the deletion time of soft-deleted versions.
    pub async fn kv_undelete_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), VaultError> {
        self.kv_version_change(mount, "undelete", path, versions)
            .await
    }

    /// Erases the data of the given versions for good.
    pub async fn kv_destroy_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), VaultError> {
        self.kv_version_change(mount, "destroy", path, versions)
            .await
    }

    async fn kv_version_change(
        &self,
        mount: &str,
        action: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("{action} {mount}/{action}/{path}");
        if versions.is_empty() {
            return Err(VaultError::Config(format!(
                "{operation} needs at least one version"
            )));
        }
        let body = serde_json::json!({ "versions": versions });
        let body = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        self.call(
            Method::POST,
            &format!("{mount}/{action}/{path}"),
            &[],
            Some(body),
            Authenticated::Yes,
            &operation,
        )
        .await?;
        Ok(())
    }

    /// Removes a secret: its metadata and every version. A missing secret is not an error.
    pub async fn kv_delete_metadata(&self, mount: &str, path: &str) -> Result<(), VaultError> {
        check_segments("mount", mount, false)?;
        check_segments("path", path, false)?;
        let operation = format!("delete {mount}/metadata/{path}");
        self.call(
            Method::DELETE,
            &format!("{mount}/metadata/{path}"),
            &[],
            None,
            Authenticated::Yes,
            &operation,
        )
        .await?;
        Ok(())
    }
}

fn parse_time(raw: &str, operation: &str) -> Result<OffsetDateTime, VaultError> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|err| decode_error(operation, format!("time {raw:?}: {err}")))
}

/// Parses a time that Vault sends as `""` when unset.
fn parse_optional_time(raw: &str, operation: &str) -> Result<Option<OffsetDateTime>, VaultError> {
    if raw.is_empty() {
        return Ok(None);
    }
    parse_time(raw, operation).map(Some)
}

/// Parses a Go duration as Vault prints it (`0s`, `3h0m0s`, `1m30.5s`) into whole seconds,
/// rounding fractions down. The empty string is 0.
fn parse_go_duration(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw == "0" {
        return Some(0);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = whole.parse().ok()?;
        let mut nanos = whole.checked_mul(unit_nanos)?;
        if !fraction.is_empty() {
            let digits = fraction.len().min(18) as u32;
            let fraction: u128 = fraction[..digits as usize].parse().ok()?;
            nanos = nanos.checked_add(fraction * unit_nanos / 10u128.pow(digits))?;
        }
        total_nanos = total_nanos.checked_add(nanos)?;
        rest = tail;
    }
    u64::try_from(total_nanos / 1_000_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_to_seconds() {
        assert_eq!(parse_go_duration(""), Some(0));
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("3h0m0s"), Some(10_800));
        assert_eq!(parse_go_duration("1m30.5s"), Some(90));
        assert_eq!(parse_go_duration("1500ms"), Some(1));
        assert_eq!(parse_go_duration("5d"), None);
        assert_eq!(parse_go_duration("abc"), None);
    }

    #[test]
    fn empty_deletion_time_is_none() {
        assert_eq!(parse_optional_time("", "op").expect("empty parses"), None);
        assert!(
            parse_optional_time("2026-12-04T22:37:46.68647413Z", "op")
                .expect("rfc 3339 parses")
                .is_some()
        );
        assert!(parse_optional_time("yesterday", "op").is_err());
    }
}
