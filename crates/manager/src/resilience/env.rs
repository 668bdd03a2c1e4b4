//! The environment-variable fallback: secrets taken from an explicit map of variables, served
//! only when both the backend and the cache fail.
//!
//! The variables are read once, when the manager starts. A process's environment changes only
//! through its own code (and `std::env::set_var` is `unsafe` since Rust 2024), so reading it
//! again on each read would return the same values at a higher cost. Reading it up front also
//! lets the manager log a missing variable at start instead of in the middle of an outage.
//! Only the mapped variables are read; nothing else in the environment is ever served.

use std::collections::BTreeMap;

use keyward_store::{SecretData, SecretPath, Stage, VersionMeta};
use time::OffsetDateTime;

use super::config::EnvFallbackEntry;

/// Accessor recorded as the writer of a read built from the environment.
pub(crate) const ENV_WRITER: &str = "env-fallback";

/// The fallback secrets, built from the environment at start.
pub(crate) struct EnvFallback {
    secrets: BTreeMap<String, SecretData>,
    loaded_at: OffsetDateTime,
}

impl std::fmt::Debug for EnvFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFallback")
            .field("paths", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl EnvFallback {
    /// Reads the mapped variables from the process environment.
    pub(crate) fn from_process_env(entries: &[EnvFallbackEntry], now: OffsetDateTime) -> Self {
        Self::from_lookup(entries, now, |name| std::env::var(name).ok())
    }

    /// Reads the mapped variables through `lookup`. Entries mapped to one path become the
    /// fields of one secret; a variable that is unset or not UTF-8 is skipped with a warning.
    pub(crate) fn from_lookup(
        entries: &[EnvFallbackEntry],
        now: OffsetDateTime,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut fields: BTreeMap<&str, BTreeMap<&str, zeroize::Zeroizing<String>>> =
            BTreeMap::new();
        for entry in entries {
            let Some(value) = lookup(&entry.var) else {
                tracing::warn!(var = %entry.var, path = %entry.path, "environment fallback variable is not set; it will not be served");
                continue;
            };
            fields
                .entry(entry.path.as_str())
                .or_default()
                .insert(entry.field.as_str(), zeroize::Zeroizing::new(value));
        }

        let mut secrets = BTreeMap::new();
        for (path, values) in fields {
            let borrowed: BTreeMap<&str, &str> =
                values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            // Serialising a map of strings cannot fail; an empty buffer would fail the parse.
            let bytes = serde_json::to_vec(&borrowed).unwrap_or_default();
            if let Ok(data) = SecretData::from_json_bytes(bytes) {
                secrets.insert(path.to_owned(), data);
            }
        }
        Self {
            secrets,
            loaded_at: now,
        }
    }

    /// Returns the fallback data and metadata for `path`, if the map covers it. The metadata
    /// names version 0, which no stored version has, and the time the environment was read.
    pub(crate) fn get(&self, path: &SecretPath) -> Option<(VersionMeta, SecretData)> {
        let data = self.secrets.get(path.as_str())?.clone();
        let meta = VersionMeta {
            version: 0,
            created_time: self.loaded_at,
            deletion_time: None,
            destroyed: false,
            stage: Stage::Current,
            created_by: ENV_WRITER.to_owned(),
            grace_deadline: None,
        };
        Some((meta, data))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(var: &str, path: &str, field: &str) -> EnvFallbackEntry {
        EnvFallbackEntry {
            var: var.into(),
            path: SecretPath::parse(path).expect("test path is valid"),
            field: field.into(),
        }
    }

    #[test]
    fn entries_for_one_path_merge_into_fields() {
        let entries = [
            entry("DB_USER", "app/db", "username"),
            entry("DB_PASS", "app/db", "password"),
            entry("MISSING", "app/other", "key"),
        ];
        let fallback =
            EnvFallback::from_lookup(&entries, OffsetDateTime::UNIX_EPOCH, |name| match name {
                "DB_USER" => Some("svc".into()),
                "DB_PASS" => Some("hunter2".into()),
                _ => None,
            });

        let (meta, data) = fallback
            .get(&SecretPath::parse("app/db").expect("valid"))
            .expect("mapped path is served");
        assert_eq!(meta.version, 0);
        assert_eq!(
            serde_json::Value::Object(data.expose_map()),
            json!({ "username": "svc", "password": "hunter2" })
        );
        assert!(
            fallback
                .get(&SecretPath::parse("app/other").expect("valid"))
                .is_none()
        );
    }

    #[test]
    fn debug_output_hides_values() {
        let entries = [entry("DB_PASS", "app/db", "password")];
        let fallback = EnvFallback::from_lookup(&entries, OffsetDateTime::UNIX_EPOCH, |_| {
            Some("hunter2".into())
        });
        let shown = format!("{fallback:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
