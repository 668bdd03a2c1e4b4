//! The server's configuration file (`keyward.toml`).
//!
//! The file names where the root key comes from (an environment variable, a key file, a Vault
//! transit key), never the key or passphrase itself. Relative paths are resolved against the file's directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;
pub use crate::vault_config::StorageConfig;
use crate::vault_config::TransitRootKey;

/// The configuration file's contents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The data dir made by `keyward init`.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the root key comes from.
    pub root_key: RootKeySource,
    /// TLS certificate and key; default: the data dir's `tls/cert.pem` and `tls/key.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Where secrets are stored; default: the data dir's SQLite file.
    #[serde(default, skip_serializing_if = "StorageConfig::is_sqlite")]
    pub storage: StorageConfig,
    /// The rotation engine; on by default with the SQLite backend.
    #[serde(default, skip_serializing_if = "RotationSettings::is_default")]
    pub rotation: RotationSettings,
}

/// The `[rotation]` section: the engine that rotates secrets with a rotation policy. Its
/// state lives in the data dir's `rotation.db`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RotationSettings {
    /// Whether the server runs the engine and serves the rotation routes. It never runs on
    /// the Vault backend, which has no pending stage.
    pub enabled: bool,
    /// Seconds between two looks at the due-time index.
    pub tick_interval_secs: u64,
    /// Scheduled due times are spread over this many seconds, by path, so that secrets with
    /// the same schedule do not all rotate in the same second.
    pub jitter_window_secs: u64,
    /// Seconds one generator or provider call may take before the step fails; kept below
    /// `lease_secs`.
    pub step_timeout_secs: u64,
    /// Seconds a process holds a secret's rotation lease without renewing it. After a crash,
    /// another process (or the restarted one) resumes the rotation once it expires.
    pub lease_secs: u64,
    /// Rotation policies declared in the file, by secret path (`[rotation.policies."a/b"]`).
    /// The server applies each one at start when it differs from the stored policy, so a
    /// restart does not move a secret's due time.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, keyward_rotation::RotationPolicy>,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_interval_secs: 10,
            jitter_window_secs: 3600,
            step_timeout_secs: 120,
            lease_secs: 300,
            policies: BTreeMap::new(),
        }
    }
}

impl RotationSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where the root key comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum RootKeySource {
    /// A passphrase read from the named environment variable.
    PassphraseEnv {
        /// The variable's name.
        name: String,
    },
    /// A 32-byte key file.
    KeyFile {
        /// The file's path.
        path: PathBuf,
    },
    /// A 32-byte key, hex-encoded, in the named environment variable.
    KeyEnv {
        /// The variable's name.
        name: String,
    },
    /// A 32-byte key wrapped by a Vault or OpenBao transit key (auto-unseal).
    Transit(Box<TransitRootKey>),
}

/// Certificate and key files, and client certificate (mutual TLS) settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM file with the CAs that sign client certificates; when set, the server requests
    /// a certificate from each client. Reloaded with the certificate on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Whether a client without a certificate from `client_ca` fails the handshake; when
    /// false, such a client connects and its token decides. Needs `client_ca`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_client_cert: bool,
}

/// Request limits; every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Time allowed for a whole request, in seconds.
    pub request_timeout_secs: u64,
    /// Requests per second allowed per token.
    pub per_token_per_second: u32,
    /// Requests per second allowed per client address.
    pub per_address_per_second: u32,
    /// Failed authentications within a minute that lock an address out for five minutes.
    pub lockout_threshold: u32,
    /// Encryptions under one data key after which the server rotates it by itself; at most
    /// 2^31, since random 96-bit nonces allow 2^32 per key.
    pub data_key_rotate_after: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            per_token_per_second: 1000,
            per_address_per_second: 2000,
            lockout_threshold: 20,
            data_key_rotate_after: keyward_crypto::Keyring::ROTATE_AFTER_ENCRYPTIONS,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file; relative paths become relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read configuration {}: {e}", path.display()))
        })?;
        // Before the typed parse, whose error for this case does not name the backend.
        crate::resilience_config::reject_without_remote_backend(&text).map_err(|e| {
            CliError::Usage(format!("invalid configuration {}: {e}", path.display()))
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            CliError::Usage(format!("invalid configuration {}: {e}", path.display()))
        })?;

        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        match &mut config.root_key {
            RootKeySource::KeyFile { path } => *path = base.join(&*path),
            RootKeySource::Transit(transit) => transit.resolve_paths(base),
            _ => {}
        }
        if let StorageConfig::Vault {
            vault, resilience, ..
        } = &mut config.storage
        {
            vault.resolve_paths(base);
            if let Some(settings) = resilience {
                settings.to_manager_config(&config.data_dir).map_err(|e| {
                    CliError::Usage(format!(
                        "invalid [storage.resilience] in {}: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        for (secret, policy) in &config.rotation.policies {
            let invalid = |detail: String| {
                CliError::Usage(format!(
                    "invalid [rotation.policies.\"{secret}\"] in {}: {detail}",
                    path.display()
                ))
            };
            keyward_store::SecretPath::parse(secret).map_err(|e| invalid(e.to_string()))?;
            policy.validate().map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(tls) = &mut config.tls {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
            if let Some(client_ca) = &mut tls.client_ca {
                *client_ca = base.join(&*client_ca);
            } else if tls.require_client_cert {
                return Err(CliError::Usage(format!(
                    "invalid configuration {}: [tls] require_client_cert = true needs \
                     client_ca = \"FILE\" naming the CA that signs client certificates",
                    path.display()
                )));
            }
        }
        Ok(config)
    }

    /// Serialises the configuration as TOML.
    pub fn to_toml(&self) -> Result<String, CliError> {
        toml::to_string_pretty(self)
            .map_err(|e| CliError::Other(format!("cannot serialise configuration: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let config = Config {
            data_dir: "data".into(),
            listen: "127.0.0.1:8200".parse().expect("valid address"),
            root_key: RootKeySource::PassphraseEnv {
                name: "KEYWARD_PASSPHRASE".into(),
            },
            tls: None,
            limits: Limits::default(),
            storage: StorageConfig::default(),
            rotation: RotationSettings::default(),
        };
        let text = config.to_toml().expect("serialises");
        assert_eq!(toml::from_str::<Config>(&text).ok(), Some(config));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text = "data_dir = \"d\"\nlisten = \"127.0.0.1:1\"\npassword = \"x\"\n[root_key]\nsource = \"key_env\"\nname = \"K\"\n";
        assert!(toml::from_str::<Config>(text).is_err());
    }

    #[test]
    fn client_ca_resolves_against_config_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        std::fs::write(
            &path,
            "data_dir = \"data\"\nlisten = \"127.0.0.1:1\"\n[root_key]\nsource = \"key_env\"\nname = \"K\"\n\
             [tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca = \"clients.pem\"\nrequire_client_cert = true\n",
        )
        .expect("write config");
        let config = Config::load(&path).expect("loads");
        let tls = config.tls.expect("tls table");
        assert_eq!(tls.client_ca, Some(dir.path().join("clients.pem")));
        assert!(tls.require_client_cert);
    }

    const ROTATION_POLICY: &str = "[rotation.policies.\"app/openai\"]\nschedule = \"monthly\"\n\
         grace = \"7d\"\n[rotation.policies.\"app/openai\".generator]\ntype = \"random\"\n\
         length = 48\nprefix = \"sk-\"\n";

    #[test]
    fn rotation_policies_load_from_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        let text = format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:1\"\n[root_key]\nsource = \"key_env\"\nname = \"K\"\n{ROTATION_POLICY}"
        );
        std::fs::write(&path, text).expect("write config");
        let config = Config::load(&path).expect("loads");
        let policy = &config.rotation.policies["app/openai"];
        assert_eq!(policy.grace, time::Duration::days(7));
        assert_eq!(
            toml::from_str::<Config>(&config.to_toml().expect("serialises"))
                .expect("parses")
                .rotation
                .policies,
            config.rotation.policies
        );
    }

    #[test]
    fn invalid_rotation_policy_names_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        let bad_length = ROTATION_POLICY.replace("length = 48", "length = 4");
        let bad_path = ROTATION_POLICY.replace("app/openai", "app/../openai");
        for (case, policy) in [("length", bad_length), ("path", bad_path)] {
            let text = format!(
                "data_dir = \"data\"\nlisten = \"127.0.0.1:1\"\n[root_key]\nsource = \"key_env\"\nname = \"K\"\n{policy}"
            );
            std::fs::write(&path, text).expect("write config");
            let error = Config::load(&path).expect_err(case);
            assert!(
                error.to_string().contains("[rotation.policies."),
                "{case}: {error}"
            );
        }
    }

    #[test]
    fn required_client_cert_needs_client_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        std::fs::write(
            &path,
            "data_dir = \"data\"\nlisten = \"127.0.0.1:1\"\n[root_key]\nsource = \"key_env\"\nname = \"K\"\n\
             [tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nrequire_client_cert = true\n",
        )
        .expect("write config");
        let error = Config::load(&path).expect_err("client_ca is missing");
        assert!(error.to_string().contains("client_ca"), "{error}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        std::fs::write(
            &path,
            "data_dir = \"data\"\nlisten = \"127.0.0.1:1\"\n[root_key]\nsource = \"key_file\"\npath = \"root.key\"\n",
        )
        .expect("write config");
        let config = Config::load(&path).expect("loads");
        assert_eq!(config.data_dir, dir.path().join("data"));
        assert_eq!(
            config.root_key,
            RootKeySource::KeyFile {
                path: dir.path().join("root.key")
            }
        );
    }
}
