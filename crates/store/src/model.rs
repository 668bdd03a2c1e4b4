//! Records that cross the store boundary: secret data, version and secret metadata, tokens and
//! policies.
//!
//! Secret data lives in [`SecretData`], which zeroizes its buffer on drop and never prints its
//! contents. Everything else here is metadata and safe to log.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// The data of one secret version: a JSON object, kept serialised in a zeroizing buffer.
///
/// Vault's KV v2 stores a JSON object per version; most values are strings, but clients may send
/// numbers, booleans or nested objects, and they get back exactly what they wrote.
#[derive(Clone)]
pub struct SecretData(Zeroizing<Vec<u8>>);

/// Why bytes are not valid secret data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid secret data: expected a JSON object")]
pub struct InvalidSecretData;

impl SecretData {
    /// Wraps a JSON object.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        // Serialising a `Map` cannot fail: every key is a string and every value is JSON.
        let bytes = serde_json::to_vec(map).unwrap_or_default();
        Self(Zeroizing::new(bytes))
    }

    /// Validates that `bytes` are a serialised JSON object and wraps them.
    pub fn from_json_bytes(bytes: Vec<u8>) -> Result<Self, InvalidSecretData> {
        let bytes = Zeroizing::new(bytes);
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(_)) => Ok(Self(bytes)),
            _ => Err(InvalidSecretData),
        }
    }

    /// Returns the serialised JSON object. Callers must not log or persist it in plaintext.
    pub fn expose_json(&self) -> &[u8] {
        &self.0
    }

    /// Parses the data back into a JSON object. The result is not zeroized: keep it short-lived.
    pub fn expose_map(&self) -> Map<String, Value> {
        match serde_json::from_slice::<Value>(&self.0) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretData([REDACTED])")
    }
}

/// The stage of a version in its secret's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The version that reads without `?version=` return.
    Current,
    /// Written by a rotation that has not finished yet.
    Pending,
    /// Replaced by a newer version; readable until its grace deadline, if it has one.
    Previous,
    /// Refused on read; its data is kept until destroyed.
    Revoked,
    /// Its data has been erased.
    Destroyed,
}

impl Stage {
    /// Returns the stage's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Pending => "pending",
            Stage::Previous => "previous",
            Stage::Revoked => "revoked",
            Stage::Destroyed => "destroyed",
        }
    }

    /// Parses a stored stage name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "current" => Stage::Current,
            "pending" => Stage::Pending,
            "previous" => Stage::Previous,
            "revoked" => Stage::Revoked,
            "destroyed" => Stage::Destroyed,
            _ => return None,
        })
    }
}

/// Metadata of one secret version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionMeta {
    /// Version number, from 1.
    pub version: u64,
    /// When the version was written.
    pub created_time: OffsetDateTime,
    /// When the version was soft-deleted, if it is.
    pub deletion_time: Option<OffsetDateTime>,
    /// Whether the version's data has been erased.
    pub destroyed: bool,
    /// The version's stage.
    pub stage: Stage,
    /// Accessor of the token that wrote the version (never the token itself).
    pub created_by: String,
    /// For a `previous` version: the end of its grace period.
    pub grace_deadline: Option<OffsetDateTime>,
}

/// Metadata of a secret and all its versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMeta {
    /// When the first version was written (or the metadata, if written first).
    pub created_time: OffsetDateTime,
    /// When the secret or its metadata last changed.
    pub updated_time: OffsetDateTime,
    /// The highest version number written, 0 if none.
    pub current_version: u64,
    /// The lowest version number still kept once older ones were pruned; 0 while version 1 is
    /// still kept or no version exists, as in Vault.
    pub oldest_version: u64,
    /// How many versions to keep; 0 means the store default.
    pub max_versions: u32,
    /// Whether every write must carry a check-and-set version.
    pub cas_required: bool,
    /// Vault's `delete_version_after`, in seconds; 0 disables it.
    pub delete_version_after_secs: u64,
    /// Free-form, non-secret key/value pairs.
    pub custom_metadata: BTreeMap<String, String>,
    /// Every kept version, by number.
    pub versions: BTreeMap<u64, VersionMeta>,
}

/// A change to a secret's metadata; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// New `max_versions`.
    pub max_versions: Option<u32>,
    /// New `cas_required`.
    pub cas_required: Option<bool>,
    /// New `delete_version_after`, in seconds.
    pub delete_version_after_secs: Option<u64>,
    /// New custom metadata (replaces the old map whole).
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// A write of a new secret version.
#[derive(Debug)]
pub struct NewVersion {
    /// The data to store, encrypted before it reaches the database.
    pub data: SecretData,
    /// Check-and-set: 0 means "only if the secret has no version", N means "only if the
    /// current version is N".
    pub cas: Option<u64>,
    /// Accessor of the writing token.
    pub created_by: String,
}

/// A stored token. The token itself is never stored, only its keyed hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Keyed hash (HMAC-SHA256) of the token, hex.
    pub token_hash: String,
    /// Non-secret id, used in logs and audit entries.
    pub accessor: String,
    /// Names of the policies attached to the token.
    pub policies: Vec<String>,
    /// Human-readable name.
    pub display_name: String,
    /// When the token was created.
    pub created_time: OffsetDateTime,
    /// When it expires; `None` for a token without TTL (the root token).
    pub expire_time: Option<OffsetDateTime>,
    /// The TTL it was created with, in seconds (0 for none).
    pub creation_ttl_secs: u64,
    /// Whether `auth/token/renew-self` may extend it.
    pub renewable: bool,
    /// Accessor of the token that created this one; `None` for an orphan. Revoking the
    /// parent revokes this token too.
    pub parent_accessor: Option<String>,
    /// Free-form non-secret metadata.
    pub meta: BTreeMap<String, String>,
}

/// A named policy and its source text (HCL or JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRecord {
    /// The policy's name.
    pub name: String,
    /// The policy's source as the operator wrote it.
    pub text: String,
}
