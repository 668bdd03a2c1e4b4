//! The data dir: its layout, `keyward init`, and opening it to serve.
//!
//! Layout: `keyring.json` (the keyring wrapped by the root key, with its KDF parameters),
//! `keyward.db` (SQLite, ciphertext only), `audit/audit.log` and its head file, `tls/` (CA,
//! certificate, key) and `keyward.toml`. Every file is created mode 0600 and the dir 0700.
//! Opening unwraps the keyring before touching anything else, so a wrong passphrase changes
//! nothing on disk. The open manager keeps the root key and replaces `keyring.json`
//! atomically after each key change.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::{CryptoError, KdfParams, Keyring, RootKey, WrappedKeyring};
use keyward_manager::{IssuedToken, KeyManagement, ManagerConfig, RequestContext, SecretsManager};
use keyward_store::{SecretStore, SqliteStore, VaultStore, VaultStoreConfig};
use zeroize::Zeroizing;

use crate::cli::{Format, InitArgs, Kdf, RootKeyArgs};
use crate::config::{Config, RootKeySource, StorageConfig};
use crate::error::CliError;
use crate::keyring_file::KeyringFile;
use crate::shell;

/// Label of the subkey that keys token hashes.
const TOKEN_HASH_LABEL: &str = "keyward/token-hash/v1";

/// Label of the subkey that keys HMACs in audit entries.
const AUDIT_HMAC_LABEL: &str = "keyward/audit-hmac/v1";

/// Minimum length of a new passphrase, in characters. Existing keyrings open with any
/// passphrase.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Names the self-signed certificate from `init` and `server --dev` is valid for.
const DEV_CERT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Paths inside a data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the path set of a data dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Returns the path of the wrapped keyring.
    pub fn keyring(&self) -> PathBuf {
        self.root.join("keyring.json")
    }

    /// Returns the path of the SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("keyward.db")
    }

    /// Returns the path of the audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit").join("audit.log")
    }

    /// Returns the path of the TLS folder.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Returns the path of the configuration file that `init` writes.
    pub fn config(&self) -> PathBuf {
        self.root.join("keyward.toml")
    }
}

/// Everything an open data dir provides.
pub struct Opened {
    /// The manager, ready to serve.
    pub manager: Arc<SecretsManager>,
    /// The store, to close on shutdown.
    pub store: Arc<SqliteStore>,
    /// The audit log, to close on shutdown.
    pub audit: AuditLog,
    /// The Vault storage backend's token renewal, which stops when dropped.
    pub vault_renewal: Option<keyward_vault::RenewalTask>,
}

/// Reads the root key from its source. For a passphrase, `kdf` gives the salt and iterations
/// (from the wrapped keyring, or fresh ones at init).
pub async fn read_root_key(source: &RootKeySource, kdf: &KdfParams) -> Result<RootKey, CliError> {
    match source {
        RootKeySource::PassphraseEnv { name } => {
            let passphrase = Zeroizing::new(std::env::var(name).map_err(|_| {
                CliError::Usage(format!(
                    "environment variable {name} is not set: it must hold the passphrase"
                ))
            })?);
            if passphrase.is_empty() {
                return Err(CliError::Usage(format!(
                    "environment variable {name} is empty"
                )));
            }
            if !matches!(
                kdf,
                KdfParams::Pbkdf2HmacSha256 { .. } | KdfParams::Argon2id { .. }
            ) {
                return Err(CliError::Usage(
                    "the keyring was not sealed with a passphrase: use the key file or key variable it was made with".into(),
                ));
            }

            // PBKDF2 at 600,000 iterations and Argon2id take tens of milliseconds: keep them off
            // the async workers.
            let kdf = kdf.clone();
            tokio::task::spawn_blocking(move || {
                RootKey::from_passphrase(passphrase.as_bytes(), &kdf)
            })
            .await
            .map_err(|e| CliError::Other(format!("key derivation task failed: {e}")))?
            .map_err(|e| CliError::Other(format!("key derivation failed: {e}")))
        }
        RootKeySource::KeyFile { path } => {
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                CliError::Usage(format!("cannot read key file {}: {e}", path.display()))
            })?);
            parse_raw_key(&bytes, &format!("key file {}", path.display()))
        }
        RootKeySource::Transit(transit) => {
            if !matches!(kdf, KdfParams::Raw) {
                return Err(CliError::Usage(
                    "the keyring was sealed with a passphrase, not a transit-wrapped key: use the passphrase it was made with".into(),
                ));
            }
            transit.unseal().await
        }
        RootKeySource::KeyEnv { name } => {
            let value = Zeroizing::new(std::env::var(name).map_err(|_| {
                CliError::Usage(format!(
                    "environment variable {name} is not set: it must hold the root key as 64 hex characters"
                ))
            })?);
            parse_raw_key(value.as_bytes(), &format!("environment variable {name}"))
        }
    }
}

/// Rejects a new passphrase shorter than [`MIN_PASSPHRASE_CHARS`] characters.
pub fn check_new_passphrase(passphrase: &str) -> Result<(), CliError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(CliError::Usage(format!(
            "passphrase too short: use at least {MIN_PASSPHRASE_CHARS} characters"
        )));
    }
    Ok(())
}

/// Accepts exactly 32 raw bytes, or 64 hex characters with optional surrounding whitespace.
fn parse_raw_key(bytes: &[u8], what: &str) -> Result<RootKey, CliError> {
    let invalid = || {
        CliError::Usage(format!(
            "{what} must hold exactly 32 bytes or 64 hex characters"
        ))
    };
    if bytes.len() == 32 {
        return RootKey::from_bytes(bytes).map_err(|_| invalid());
    }

    let text = std::str::from_utf8(bytes).map_err(|_| invalid())?.trim();
    if text.len() != 64 {
        return Err(invalid());
    }
    let decoded = Zeroizing::new(hex::decode(text).map_err(|_| invalid())?);
    RootKey::from_bytes(&decoded).map_err(|_| invalid())
}

fn source_from_args(args: &RootKeyArgs) -> RootKeySource {
    if let Some(name) = &args.passphrase_env {
        RootKeySource::PassphraseEnv { name: name.clone() }
    } else if let Some(path) = &args.key_file {
        RootKeySource::KeyFile { path: path.clone() }
    } else {
        RootKeySource::KeyEnv {
            name: args.key_env.clone().unwrap_or_default(),
        }
    }
}

/// Writes `bytes` to a new file with mode 0600, fsyncs it, and fails if it exists.
pub fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))
}

fn create_private_dir(path: &Path) -> Result<(), CliError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| CliError::Other(format!("cannot create directory {}: {e}", path.display())))
}

/// Opens a data dir: unwraps the keyring, opens the store and the audit log, builds the
/// manager.
pub async fn open(
    dir: &DataDir,
    source: &RootKeySource,
    storage: &StorageConfig,
    manager_config: ManagerConfig,
) -> Result<Opened, CliError> {
    let keyring_path = dir.keyring();
    let wrapped_json = std::fs::read_to_string(&keyring_path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read keyring {}: {e} (run `keyward init` first)",
            keyring_path.display()
        ))
    })?;
    let wrapped = WrappedKeyring::from_json(&wrapped_json).map_err(|e| {
        CliError::Other(format!(
            "keyring {} is invalid: {e}",
            keyring_path.display()
        ))
    })?;

    let root = read_root_key(source, &wrapped.kdf).await?;
    let keyring = Keyring::unwrap(&wrapped, &root).map_err(|e| match e {
        CryptoError::WrongRootKey => CliError::Auth(
            "cannot open the keyring: wrong passphrase or key file (nothing was changed)".into(),
        ),
        other => CliError::Other(format!("cannot open the keyring: {other}")),
    })?;

    open_with_keyring(dir, Arc::new(keyring), root, storage, manager_config).await
}

/// Opens the store and the audit log with an unwrapped keyring and builds the manager. The
/// manager keeps `root` to seal the keyring again after each key change.
async fn open_with_keyring(
    dir: &DataDir,
    keyring: Arc<Keyring>,
    root: RootKey,
    storage: &StorageConfig,
    manager_config: ManagerConfig,
) -> Result<Opened, CliError> {
    let token_key = keyring.derive_subkey(TOKEN_HASH_LABEL);
    let audit_key = AuditKey::from_bytes(keyring.derive_subkey(AUDIT_HMAC_LABEL));

    let store = SqliteStore::open(&dir.database(), keyring)
        .await
        .map_err(|e| CliError::Other(format!("cannot open the database: {e}")))?;
    let store = Arc::new(store);

    let audit_path = dir.audit_log();
    if let Some(parent) = audit_path.parent() {
        create_private_dir(parent)?;
    }
    let audit = AuditLog::open(&audit_path, audit_key)
        .map_err(|e| CliError::Other(format!("cannot open the audit log: {e}")))?;

    let (backend, vault_renewal, backend_down) = storage_backend(storage, &store).await?;
    let manager = SecretsManager::new(backend, audit.clone(), token_key, manager_config)
        .await
        .map_err(|e| CliError::Other(format!("cannot start the manager: {e}")))?
        .with_key_management(KeyManagement {
            keyring: store.keyring_handle(),
            root_key: root,
            sink: Arc::new(KeyringFile::new(dir.keyring())),
        });
    if backend_down {
        manager.mark_backend_unavailable();
    }
    Ok(Opened {
        manager: Arc::new(manager),
        store,
        audit,
        vault_renewal,
    })
}

/// Returns the store the manager uses: the SQLite store itself, or a Vault store that keeps
/// tokens and policies in it, with the Vault client's token renewal task and whether Vault
/// was unreachable at start (possible only with `[storage.resilience]`).
async fn storage_backend(
    storage: &StorageConfig,
    local: &Arc<SqliteStore>,
) -> Result<
    (
        Arc<dyn SecretStore>,
        Option<keyward_vault::RenewalTask>,
        bool,
    ),
    CliError,
> {
    let StorageConfig::Vault {
        mount,
        prefix,
        encrypt_values,
        vault,
        resilience,
    } = storage
    else {
        return Ok((local.clone(), None, false));
    };

    // With the resilience layer the server starts while Vault is down and serves its cache.
    let (client, reachable) = if resilience.is_some() {
        vault.connect_or_defer().await?
    } else {
        (vault.connect().await?, true)
    };
    let renewal = client.spawn_renewal();
    let config = VaultStoreConfig {
        mount: mount.clone(),
        prefix: prefix.clone(),
        encrypt_values: *encrypt_values,
    };
    let store = VaultStore::new(client, config, Arc::clone(local))
        .map_err(|e| CliError::Usage(format!("invalid [storage] settings: {e}")))?;
    tracing::info!(
        address = %vault.address,
        mount = %mount,
        prefix = %prefix,
        encrypt_values,
        "secrets are stored in vault"
    );
    Ok((Arc::new(store), Some(renewal), !reachable))
}

/// The results of `init`.
pub struct Initialised {
    /// The open data dir.
    pub opened: Opened,
    /// The root token, shown once.
    pub root_token: IssuedToken,
    /// The CA that signed the server certificate.
    pub ca_file: PathBuf,
}

/// Creates a data dir with a fresh keyring sealed by `root`, a self-signed certificate and a
/// root token. Fails without changing anything if the dir already contains a keyring.
pub async fn initialise(
    dir: &DataDir,
    root: RootKey,
    manager_config: ManagerConfig,
) -> Result<Initialised, CliError> {
    if dir.keyring().exists() {
        return Err(CliError::Usage(format!(
            "{} already holds a keyring: refusing to overwrite it",
            dir.root.display()
        )));
    }
    create_private_dir(&dir.root)?;

    let keyring = Keyring::generate()
        .map_err(|e| CliError::Other(format!("cannot generate keyring: {e}")))?;
    let wrapped = keyring
        .wrap(&root)
        .map_err(|e| CliError::Other(format!("cannot seal keyring: {e}")))?;

    create_private_dir(&dir.tls())?;
    let certificate = keyward_server::generate_dev_certificate(&dir.tls(), &DEV_CERT_HOSTS)
        .map_err(|e| CliError::Other(format!("cannot create TLS certificate: {e}")))?;

    // The keyring is written last among the key files: its presence marks an initialised dir.
    write_new_private_file(&dir.keyring(), wrapped.to_json().as_bytes())?;

    let opened = open_with_keyring(
        dir,
        Arc::new(keyring),
        root,
        &StorageConfig::Sqlite,
        manager_config,
    )
    .await?;
    let ctx = RequestContext {
        request_id: "init".to_owned(),
        remote_addr: Ipv4Addr::LOCALHOST.into(),
    };
    let root_token = opened
        .manager
        .create_root_token(&ctx)
        .await
        .map_err(|e| CliError::Other(format!("cannot create the root token: {e}")))?;

    Ok(Initialised {
        opened,
        root_token,
        ca_file: certificate.ca_path,
    })
}

/// `keyward init`.
pub async fn init_command(args: InitArgs) -> Result<(), CliError> {
    let dir = DataDir::new(&args.data_dir);
    let source = source_from_args(&args.root_key);

    let root = match &source {
        RootKeySource::PassphraseEnv { name } => {
            // An unset variable is reported by `read_root_key` below.
            if let Ok(passphrase) = std::env::var(name).map(Zeroizing::new) {
                check_new_passphrase(&passphrase)?;
            }
            let kdf = match args.kdf {
                Kdf::Pbkdf2 => KdfParams::new_pbkdf2(),
                Kdf::Argon2id => KdfParams::new_argon2id(),
            }
            .map_err(|e| CliError::Other(e.to_string()))?;
            read_root_key(&source, &kdf).await?
        }
        RootKeySource::KeyFile { path } if !path.exists() => {
            let key = RootKey::generate().map_err(|e| CliError::Other(e.to_string()))?;
            write_new_private_file(path, key.expose_bytes())?;
            key
        }
        _ => read_root_key(&source, &KdfParams::Raw).await?,
    };

    let initialised = initialise(&dir, root, ManagerConfig::default()).await?;
    let config = Config {
        data_dir: ".".into(),
        listen: args.listen,
        root_key: match source {
            RootKeySource::KeyFile { path } => RootKeySource::KeyFile {
                path: std::path::absolute(&path).unwrap_or(path),
            },
            other => other,
        },
        tls: None,
        limits: Default::default(),
        storage: StorageConfig::Sqlite,
        rotation: Default::default(),
    };
    write_new_private_file(&dir.config(), config.to_toml()?.as_bytes())?;
    initialised.opened.audit.close();
    initialised.opened.store.close().await;

    let token = initialised.root_token.token.expose();
    let addr = shell::client_addr(args.listen);
    match args.format {
        Format::Json => {
            let out = serde_json::json!({
                "data_dir": args.data_dir,
                "config": dir.config(),
                "addr": addr,
                "ca_file": initialised.ca_file,
                "root_token": token,
                "root_accessor": initialised.root_token.record.accessor,
            });
            println!("{out}");
        }
        Format::Table => print_init_summary(&dir, &addr, &initialised.ca_file, token),
    }
    Ok(())
}

/// Prints what `init` made, how to start the server and how to point clients at it.
fn print_init_summary(dir: &DataDir, addr: &str, ca_file: &Path, token: &str) {
    let config = dir.config();
    println!("Initialised {}", dir.root.display());
    println!("Configuration: {}", config.display());
    println!("Address:       {addr}");
    println!("CA file:       {}", ca_file.display());
    println!("Root token:    {token}");
    println!();
    println!("The root token is shown once. Store it safely, create narrower tokens for");
    println!(
        "applications, and start the server with: keyward server --config {}",
        config.display()
    );
    println!();
    println!("Then, to use it from a shell with keyward, bao or vault:");
    println!();
    print!("{}", shell::export_lines(addr, ca_file, token));
    println!();
    println!(
        "The TLS certificate is a self-signed development certificate for {} only.",
        DEV_CERT_HOSTS.join(", ")
    );
    println!(
        "Replace cert.pem and key.pem in {} with your own for anything but local use.",
        dir.tls().display()
    );
}

/// Resolves the TLS files of a configuration.
pub fn tls_files(config: &Config) -> (PathBuf, PathBuf) {
    match &config.tls {
        Some(tls) => (tls.cert_file.clone(), tls.key_file.clone()),
        None => {
            let dir = DataDir::new(&config.data_dir).tls();
            (dir.join("cert.pem"), dir.join("key.pem"))
        }
    }
}

/// Returns the default listen address of `keyward server --dev`.
pub fn dev_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_new_passphrase_is_rejected() {
        for passphrase in ["", "hunter2", "eleven char"] {
            let error = check_new_passphrase(passphrase).expect_err(passphrase);
            assert!(matches!(error, CliError::Usage(_)), "{error}");
            assert_eq!(
                error.to_string(),
                "passphrase too short: use at least 12 characters"
            );
        }
        assert!(check_new_passphrase("twelve chars").is_ok());
        // Characters are counted, not bytes: six two-byte characters are too few.
        assert!(check_new_passphrase("éééééé").is_err());
    }
}
