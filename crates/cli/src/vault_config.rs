//! Vault and OpenBao settings in `keyward.toml`: how to reach the server and log in, the
//! transit key that wraps the root key (`[root_key] source = "transit"`), and the Vault
//! storage backend (`[storage] backend = "vault"`).
//!
//! The configuration names where a credential is (an environment variable or a file), never
//! the credential itself. The root key under transit is a random 32-byte key whose transit
//! ciphertext sits in `wrapped_key_file`; opening the keyring sends that ciphertext to Vault
//! to decrypt. This module does not create transit keys, mounts or AppRole roles.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_crypto::RootKey;
use keyward_vault::{Auth, SecretId, VaultClient, VaultConfig, VaultToken};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::datadir::write_new_private_file;
use crate::error::CliError;
use crate::resilience_config::ResilienceSettings;

/// How to reach a Vault or OpenBao server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VaultConnection {
    /// Base address, such as `https://vault.example:8200`.
    pub address: String,
    /// PEM file with the CAs that sign the server's certificate; default: the system store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Namespace sent as `X-Vault-Namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Time allowed for one request, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// How to log in.
    pub auth: VaultAuth,
}

fn default_request_timeout_secs() -> u64 {
    keyward_vault::DEFAULT_REQUEST_TIMEOUT.as_secs()
}

/// Login method for Vault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token read from the named environment variable.
    Token {
        /// The variable's name.
        token_env: String,
    },
    /// An AppRole login; each of `role_id` and `secret_id` comes from exactly one of an
    /// environment variable or a file.
    Approle {
        /// Mount path of the AppRole auth method.
        #[serde(default = "default_approle_mount")]
        mount: String,
        /// Environment variable holding the role ID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_id_env: Option<String>,
        /// File holding the role ID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_id_file: Option<PathBuf>,
        /// Environment variable holding the secret ID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_id_env: Option<String>,
        /// File holding the secret ID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_id_file: Option<PathBuf>,
    },
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

/// The transit key that wraps the root key, and where its ciphertext is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransitRootKey {
    /// Mount path of the transit engine.
    #[serde(default = "default_transit_mount")]
    pub mount: String,
    /// Name of the transit key.
    pub key_name: String,
    /// File with the transit ciphertext (`vault:v1:...`) of the root key.
    pub wrapped_key_file: PathBuf,
    /// The Vault server.
    pub vault: VaultConnection,
}

fn default_transit_mount() -> String {
    "transit".to_owned()
}

/// Storage backend for secrets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageConfig {
    /// The data dir's SQLite file.
    #[default]
    Sqlite,
    /// A Vault or OpenBao KV v2 mount; tokens and policies stay in the data dir's SQLite file.
    Vault {
        /// Path of the KV v2 mount.
        #[serde(default = "default_kv_mount")]
        mount: String,
        /// Folder in the mount for Keyward's secrets; empty for the mount's root.
        #[serde(default)]
        prefix: String,
        /// Whether values are sealed with Keyward's keyring before they reach Vault.
        #[serde(default)]
        encrypt_values: bool,
        /// The Vault server.
        vault: Box<VaultConnection>,
        /// Read cache, stale-if-error, circuit breaker and fallbacks for when Vault fails;
        /// without this section every Vault failure fails the request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resilience: Option<Box<ResilienceSettings>>,
    },
}

fn default_kv_mount() -> String {
    "secret".to_owned()
}

impl StorageConfig {
    /// Returns whether this is the default SQLite backend.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, StorageConfig::Sqlite)
    }
}

impl VaultConnection {
    /// Resolves relative file paths against `base`, the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(ca_cert) = &mut self.ca_cert {
            *ca_cert = base.join(&*ca_cert);
        }
        if let VaultAuth::Approle {
            role_id_file,
            secret_id_file,
            ..
        } = &mut self.auth
        {
            for file in [role_id_file, secret_id_file].into_iter().flatten() {
                *file = base.join(&*file);
            }
        }
    }

    /// Builds a client and logs in. Fails with a usage error that names the variable or file
    /// when a credential is missing, and with a connection error when Vault rejects the login
    /// or cannot be reached.
    pub async fn connect(&self) -> Result<VaultClient, CliError> {
        let client = self.client()?;
        client.login().await.map_err(|e| {
            CliError::Connection(format!("cannot log in to vault at {}: {e}", self.address))
        })?;
        Ok(client)
    }

    /// Builds a client and logs in like [`VaultConnection::connect`], except that a Vault
    /// that is down (unreachable, timed out, 5xx) is logged and tolerated: the client logs in
    /// at its first request or token renewal once Vault responds. A rejected login still
    /// fails. Returns the client and whether Vault responded.
    pub async fn connect_or_defer(&self) -> Result<(VaultClient, bool), CliError> {
        let client = self.client()?;
        match client.login().await {
            Ok(()) => Ok((client, true)),
            Err(error) if error.is_retryable() => {
                tracing::warn!(address = %self.address, %error, "vault is unavailable at start; starting degraded and logging in once it responds");
                Ok((client, false))
            }
            Err(error) => Err(CliError::Connection(format!(
                "cannot log in to vault at {}: {error}",
                self.address
            ))),
        }
    }

    fn client(&self) -> Result<VaultClient, CliError> {
        let auth = match &self.auth {
            VaultAuth::Token { token_env } => Auth::Token(VaultToken::new(
                read_env(token_env, "the vault token")?.as_str(),
            )),
            VaultAuth::Approle {
                mount,
                role_id_env,
                role_id_file,
                secret_id_env,
                secret_id_file,
            } => {
                let role_id = read_credential(role_id_env, role_id_file, "role_id")?;
                let secret_id = read_credential(secret_id_env, secret_id_file, "secret_id")?;
                Auth::AppRole {
                    mount: mount.clone(),
                    role_id: role_id.as_str().to_owned(),
                    secret_id: SecretId::new(secret_id.as_str()),
                }
            }
        };
        let config = VaultConfig {
            address: self.address.clone(),
            ca_cert: self.ca_cert.clone(),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            namespace: self.namespace.clone(),
        };
        VaultClient::new(config, auth)
            .map_err(|e| CliError::Usage(format!("invalid vault settings: {e}")))
    }
}

fn read_env(name: &str, what: &str) -> Result<Zeroizing<String>, CliError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(Zeroizing::new(value.trim().to_owned())),
        _ => Err(CliError::Usage(format!(
            "environment variable {name} is not set or empty: it must hold {what}"
        ))),
    }
}

fn read_credential(
    env: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Zeroizing<String>, CliError> {
    match (env, file) {
        (Some(name), None) => read_env(name, &format!("the approle {what}")),
        (None, Some(path)) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!(
                    "cannot read approle {what} file {}: {e}",
                    path.display()
                ))
            })?);
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return Err(CliError::Usage(format!(
                    "approle {what} file {} is empty",
                    path.display()
                )));
            }
            Ok(Zeroizing::new(trimmed.to_owned()))
        }
        _ => Err(CliError::Usage(format!(
            "set exactly one of {what}_env and {what}_file in the vault auth settings"
        ))),
    }
}

impl TransitRootKey {
    /// Resolves relative file paths against `base`, the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.wrapped_key_file = base.join(&self.wrapped_key_file);
        self.vault.resolve_paths(base);
    }

    /// Reads the wrapped root key and has Vault decrypt it.
    pub async fn unseal(&self) -> Result<RootKey, CliError> {
        let path = &self.wrapped_key_file;
        let ciphertext = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "cannot read wrapped root key {}: {e}",
                path.display()
            ))
        })?;

        let client = self.vault.connect().await?;
        let plaintext = client
            .transit_decrypt(&self.mount, &self.key_name, ciphertext.trim())
            .await
            .map_err(|e| {
                CliError::Auth(format!(
                    "vault transit key {}/{} did not decrypt the root key in {}: {e}",
                    self.mount,
                    self.key_name,
                    path.display()
                ))
            })?;
        RootKey::from_bytes(&plaintext).map_err(|_| {
            CliError::Other(format!(
                "the root key decrypted from {} is not 32 bytes",
                path.display()
            ))
        })
    }

    /// Generates a root key, has Vault encrypt it, and writes the ciphertext to
    /// `wrapped_key_file`, which must not exist yet (so the key that opens the keyring now is
    /// never overwritten).
    pub async fn seal_new(&self) -> Result<RootKey, CliError> {
        let path = &self.wrapped_key_file;
        if path.exists() {
            return Err(CliError::Usage(format!(
                "{} already exists: name a new wrapped_key_file, so the current root key stays \
                 usable until the rotation succeeds",
                path.display()
            )));
        }

        let key = RootKey::generate().map_err(|e| CliError::Other(e.to_string()))?;
        let client = self.vault.connect().await?;
        let ciphertext = client
            .transit_encrypt(&self.mount, &self.key_name, key.expose_bytes())
            .await
            .map_err(|e| {
                CliError::Connection(format!(
                    "vault transit key {}/{} did not encrypt the new root key: {e}",
                    self.mount, self.key_name
                ))
            })?;
        write_new_private_file(path, ciphertext.as_bytes())?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_defaults_to_sqlite() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(default)]
            storage: StorageConfig,
        }
        let holder: Holder = toml::from_str("").expect("empty table parses");
        assert!(holder.storage.is_sqlite());
    }

    #[test]
    fn vault_storage_parses_with_approle_files() {
        let text = "backend = \"vault\"\nmount = \"kv\"\nprefix = \"keyward\"\nencrypt_values = true\n\
                    [vault]\naddress = \"http://127.0.0.1:8200\"\n\
                    [vault.auth]\nmethod = \"approle\"\nrole_id_file = \"role-id\"\nsecret_id_env = \"SECRET_ID\"\n";
        let mut storage: StorageConfig = toml::from_str(text).expect("parses");
        let StorageConfig::Vault { vault, .. } = &mut storage else {
            panic!("expected vault storage");
        };
        vault.resolve_paths(Path::new("/etc/keyward"));

        let StorageConfig::Vault {
            mount,
            encrypt_values,
            vault,
            ..
        } = storage
        else {
            panic!("expected vault storage");
        };
        assert_eq!(mount, "kv");
        assert!(encrypt_values);
        let VaultAuth::Approle { role_id_file, .. } = vault.auth else {
            panic!("expected approle auth");
        };
        assert_eq!(role_id_file, Some(PathBuf::from("/etc/keyward/role-id")));
    }

    #[test]
    fn transit_root_key_paths_resolve_against_base() {
        let text = "key_name = \"root\"\nwrapped_key_file = \"root-key.transit\"\n\
                    [vault]\naddress = \"http://127.0.0.1:8200\"\nca_cert = \"ca.pem\"\n\
                    [vault.auth]\nmethod = \"token\"\ntoken_env = \"VAULT_TOKEN\"\n";
        let mut transit: TransitRootKey = toml::from_str(text).expect("parses");

        transit.resolve_paths(Path::new("/etc/keyward"));

        assert_eq!(transit.mount, "transit");
        assert_eq!(
            transit.wrapped_key_file,
            PathBuf::from("/etc/keyward/root-key.transit")
        );
        assert_eq!(
            transit.vault.ca_cert,
            Some(PathBuf::from("/etc/keyward/ca.pem"))
        );
    }

    #[test]
    fn inline_token_is_rejected() {
        let text =
            "address = \"http://127.0.0.1:8200\"\n[auth]\nmethod = \"token\"\ntoken = \"s.abc\"\n";
        assert!(toml::from_str::<VaultConnection>(text).is_err());
    }

    #[test]
    fn approle_needs_one_source_per_credential() {
        let both = read_credential(&Some("A".into()), &Some(PathBuf::from("f")), "secret_id");
        let neither = read_credential(&None, &None, "secret_id");
        assert!(matches!(both, Err(CliError::Usage(_))));
        assert!(matches!(neither, Err(CliError::Usage(_))));
    }
}
