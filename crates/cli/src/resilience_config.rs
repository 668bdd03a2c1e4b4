//! `[storage.resilience]` in `keyward.toml`: the read cache, stale-if-error limit, circuit
//! breaker, environment fallback and on-disk cache that the manager puts around the Vault
//! storage backend.
//!
//! Durations are Go duration strings (`"30s"`, `"1h30m"`) or plain seconds, in whole seconds.
//! The section is valid only with `backend = "vault"`: the SQLite backend is local and has
//! nothing to fail over from, so [`reject_without_remote_backend`] makes it a configuration
//! error there. This module only translates settings; the behaviour lives in the manager.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use keyward_manager::{EnvFallbackEntry, ResilienceConfig, TtlOverride};
use keyward_store::SecretPath;
use serde::{Deserialize, Serialize};

/// Name of the encrypted cache file in the data dir.
pub const DISK_CACHE_FILE: &str = "read-cache.bin";

/// Backend name in metric labels, security events and logs.
const BACKEND_NAME: &str = "vault";

/// The `[storage.resilience]` section; every key has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceSettings {
    /// How long a read is served from the cache without asking the backend.
    pub cache_ttl: String,
    /// Cache TTLs for secrets under path prefixes (`"team/app/" = "5m"`); the longest
    /// matching prefix wins over `cache_ttl`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_ttl_overrides: BTreeMap<String, String>,
    /// Maximum age of a cached read, since its last successful sync, served while the
    /// backend fails.
    pub max_stale: String,
    /// Maximum number of secrets kept in the cache.
    pub max_cache_entries: usize,
    /// Time allowed for one backend call before it counts as a failure.
    pub call_timeout: String,
    /// Consecutive backend failures that open the circuit breaker.
    pub failure_threshold: u32,
    /// First open period of the breaker; it doubles (with jitter) on each reopening.
    pub backoff_base: String,
    /// Maximum open period of the breaker.
    pub backoff_max: String,
    /// Whether the cache is also kept in an encrypted file in the data dir, so the server can
    /// start and serve reads while the backend is down.
    pub disk_cache: bool,
    /// Environment variables served as secret fields when both the backend and the cache
    /// fail: `VAR_NAME = "path/of/secret#field"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env_fallback: BTreeMap<String, String>,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        Self {
            cache_ttl: "30s".into(),
            cache_ttl_overrides: BTreeMap::new(),
            max_stale: "1h".into(),
            max_cache_entries: 10_000,
            call_timeout: "10s".into(),
            failure_threshold: 5,
            backoff_base: "1s".into(),
            backoff_max: "60s".into(),
            disk_cache: false,
            env_fallback: BTreeMap::new(),
        }
    }
}

impl ResilienceSettings {
    /// Validates the settings and builds the manager's configuration; the disk cache, if
    /// enabled, is [`DISK_CACHE_FILE`] in `data_dir`.
    ///
    /// Errors name the key and the invalid value, never a secret.
    pub fn to_manager_config(&self, data_dir: &Path) -> Result<ResilienceConfig, String> {
        let cache_ttl = duration("cache_ttl", &self.cache_ttl)?;
        let max_stale = duration("max_stale", &self.max_stale)?;
        let call_timeout = positive_duration("call_timeout", &self.call_timeout)?;
        let backoff_base = positive_duration("backoff_base", &self.backoff_base)?;
        let backoff_max = positive_duration("backoff_max", &self.backoff_max)?;
        if backoff_max < backoff_base {
            return Err(format!(
                "backoff_max = {:?} is shorter than backoff_base = {:?}: set it to at least backoff_base",
                self.backoff_max, self.backoff_base
            ));
        }
        if self.failure_threshold == 0 {
            return Err("failure_threshold = 0 is invalid: set it to at least 1".into());
        }
        if self.max_cache_entries == 0 {
            return Err("max_cache_entries = 0 is invalid: set it to at least 1".into());
        }

        let mut ttl_overrides = Vec::new();
        for (prefix, ttl) in &self.cache_ttl_overrides {
            let ttl = duration(&format!("cache_ttl_overrides.{prefix:?}"), ttl)?;
            ttl_overrides.push(TtlOverride {
                prefix: prefix.clone(),
                ttl,
            });
        }
        let mut env_fallback = Vec::new();
        for (var, target) in &self.env_fallback {
            env_fallback.push(env_entry(var, target)?);
        }

        Ok(ResilienceConfig {
            backend_name: BACKEND_NAME.to_owned(),
            cache_ttl,
            ttl_overrides,
            max_stale,
            max_cache_entries: self.max_cache_entries,
            call_timeout,
            failure_threshold: self.failure_threshold,
            backoff_base,
            backoff_max,
            env_fallback,
            disk_cache: self.disk_cache.then(|| data_dir.join(DISK_CACHE_FILE)),
            // The Vault store keeps tokens and policies in the data dir's SQLite file.
            local_tokens_and_policies: true,
            ..ResilienceConfig::default()
        })
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    keyward_server::parse_duration(text)
        .map(Duration::from_secs)
        .map_err(|e| format!("{key}: {e}"))
}

fn positive_duration(key: &str, text: &str) -> Result<Duration, String> {
    let value = duration(key, text)?;
    if value.is_zero() {
        return Err(format!(
            "{key} = {text:?} is invalid: set it to at least \"1s\""
        ));
    }
    Ok(value)
}

/// Parses one `VAR = "path#field"` entry of `env_fallback`.
fn env_entry(var: &str, target: &str) -> Result<EnvFallbackEntry, String> {
    let valid_name = var
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!(
            "env_fallback: {var:?} is not a valid environment variable name: use letters, digits and '_', not starting with a digit"
        ));
    }
    let Some((path, field)) = target.rsplit_once('#') else {
        return Err(format!(
            "env_fallback.{var} = {target:?} has no field: write \"path/of/secret#field\""
        ));
    };
    if field.is_empty() {
        return Err(format!(
            "env_fallback.{var} = {target:?} has an empty field name after '#'"
        ));
    }
    let path = SecretPath::parse(path)
        .map_err(|e| format!("env_fallback.{var} = {target:?}: invalid secret path: {e}"))?;
    Ok(EnvFallbackEntry {
        var: var.to_owned(),
        path,
        field: field.to_owned(),
    })
}

/// Rejects a `[storage.resilience]` section when the storage backend is SQLite, since the
/// SQLite backend would otherwise ignore it silently. `text` is the whole configuration file.
pub fn reject_without_remote_backend(text: &str) -> Result<(), String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        // The typed parse reports syntax errors with better context.
        return Ok(());
    };
    let Some(storage) = table.get("storage").and_then(toml::Value::as_table) else {
        return Ok(());
    };
    let backend = storage
        .get("backend")
        .and_then(toml::Value::as_str)
        .unwrap_or("sqlite");
    if backend != "vault" && storage.contains_key("resilience") {
        return Err(format!(
            "[storage.resilience] applies only to backend = \"vault\", but the backend is {backend:?}: remove the section or switch the backend"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_build_manager_config() {
        let text = "cache_ttl = \"1s\"\nmax_stale = \"6s\"\nfailure_threshold = 3\n\
                    backoff_base = \"1s\"\nbackoff_max = \"2s\"\ncall_timeout = \"2s\"\n\
                    disk_cache = true\n\
                    [cache_ttl_overrides]\n\"team/\" = \"5m\"\n\
                    [env_fallback]\nDB_PASSWORD = \"app/db#password\"\n";
        let settings: ResilienceSettings = toml::from_str(text).expect("parses");

        let config = settings
            .to_manager_config(Path::new("/var/lib/keyward"))
            .expect("valid");

        assert_eq!(config.cache_ttl, Duration::from_secs(1));
        assert_eq!(config.max_stale, Duration::from_secs(6));
        assert_eq!(config.failure_threshold, 3);
        assert_eq!(config.backoff_max, Duration::from_secs(2));
        assert_eq!(config.call_timeout, Duration::from_secs(2));
        assert_eq!(
            config.disk_cache,
            Some(Path::new("/var/lib/keyward").join(DISK_CACHE_FILE))
        );
        assert_eq!(config.ttl_overrides[0].ttl, Duration::from_secs(300));
        assert_eq!(config.env_fallback[0].var, "DB_PASSWORD");
        assert_eq!(config.env_fallback[0].path.as_str(), "app/db");
        assert_eq!(config.env_fallback[0].field, "password");
    }

    #[test]
    fn defaults_keep_disk_cache_off() {
        let config = ResilienceSettings::default()
            .to_manager_config(Path::new("d"))
            .expect("defaults are valid");
        assert_eq!(config.disk_cache, None);
        assert_eq!(config.max_stale, Duration::from_secs(3600));
    }

    #[test]
    fn invalid_settings_name_the_key() {
        let cases: [(&str, &str); 7] = [
            ("max_stale = \"soon\"", "max_stale"),
            ("call_timeout = \"0s\"", "call_timeout"),
            (
                "backoff_base = \"10s\"\nbackoff_max = \"5s\"",
                "backoff_max",
            ),
            ("failure_threshold = 0", "failure_threshold"),
            ("[env_fallback]\nDB = \"app/db\"", "has no field"),
            (
                "[env_fallback]\n\"1DB\" = \"app/db#password\"",
                "not a valid environment variable",
            ),
            (
                "[env_fallback]\nDB = \"../db#password\"",
                "invalid secret path",
            ),
        ];
        for (text, expected) in cases {
            let settings: ResilienceSettings = toml::from_str(text).expect(text);
            let error = settings.to_manager_config(Path::new("d")).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn resilience_with_sqlite_is_rejected() {
        let sqlite = "[storage]\nbackend = \"sqlite\"\n[storage.resilience]\ncache_ttl = \"1s\"\n";
        let implicit = "[storage.resilience]\ncache_ttl = \"1s\"\n";
        let vault = "[storage]\nbackend = \"vault\"\n[storage.resilience]\ncache_ttl = \"1s\"\n";

        assert!(reject_without_remote_backend(sqlite).is_err());
        assert!(reject_without_remote_backend(implicit).is_err());
        assert!(reject_without_remote_backend(vault).is_ok());
    }

    #[test]
    fn config_load_checks_resilience_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        let head = "data_dir = \"data\"\nlisten = \"127.0.0.1:1\"\n[root_key]\nsource = \"key_env\"\nname = \"K\"\n";
        let vault = "[storage]\nbackend = \"vault\"\n[storage.vault]\naddress = \"http://127.0.0.1:1\"\n\
                     [storage.vault.auth]\nmethod = \"token\"\ntoken_env = \"T\"\n";
        let load = |text: String| {
            std::fs::write(&path, text).expect("write config");
            crate::config::Config::load(&path)
        };

        let with_sqlite = load(format!("{head}[storage.resilience]\ndisk_cache = true\n"));
        let invalid = load(format!(
            "{head}{vault}[storage.resilience]\nmax_stale = \"x\"\n"
        ));
        let valid = load(format!(
            "{head}{vault}[storage.resilience]\nmax_stale = \"2h\"\n"
        ));

        let error = with_sqlite.expect_err("sqlite backend").to_string();
        assert!(
            error.contains("[storage.resilience] applies only"),
            "{error}"
        );
        let error = invalid.expect_err("invalid duration").to_string();
        assert!(error.contains("max_stale"), "{error}");
        assert!(valid.is_ok(), "{valid:?}");
    }
}
