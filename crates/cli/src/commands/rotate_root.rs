//! `keyward keys rotate-root`: seal the server's keyring under a new root key, and optionally
//! point the configuration file at the new key's source.
//!
//! The new passphrase or key is read here and sent to the server over TLS; the server derives
//! the key and saves the keyring. The configuration is rewritten only after the server
//! succeeded, so a failed rotation leaves the file naming the key that still opens the
//! keyring. Comments in a rewritten configuration file are not kept.

use std::path::Path;

use keyward_crypto::{KdfParams, RootKey};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::print_json;
use crate::cli::{ClientArgs, Format, Kdf, NewRootKeyArgs};
use crate::client::Client;
use crate::config::RootKeySource;
use crate::datadir::{check_new_passphrase, read_root_key, write_new_private_file};
use crate::error::CliError;
use crate::keyring_file::replace_file;

/// Runs `keys rotate-root`.
pub async fn run(
    client: &ClientArgs,
    new_key: &NewRootKeyArgs,
    kdf: Option<Kdf>,
    config: Option<&Path>,
) -> Result<(), CliError> {
    let source = new_source(new_key)?;
    // Read before anything changes, so a bad file fails the command early.
    let config_table = config.map(read_config_table).transpose()?;
    let mut body = request_body(&source, kdf).await?;

    let result = Client::new(client)?
        .request(Method::POST, "sys/keys/rotate-root", Some(&body))
        .await;
    wipe_secret_fields(&mut body);
    let response = result?;
    let data = &response["data"];

    let config_updated = match (config, config_table) {
        (Some(path), Some(table)) => update_config(path, table, &source)?,
        _ => false,
    };
    let kind_changed = (data["kdf"] == "raw") != (data["previous_kdf"] == "raw");

    match client.format {
        Format::Json => print_json(&json!({
            "kdf": data["kdf"],
            "previous_kdf": data["previous_kdf"],
            "config_updated": config_updated,
        })),
        Format::Table => {
            println!(
                "Success! The keyring is sealed under the new root key (KDF: {}).",
                data["kdf"].as_str().unwrap_or("unknown")
            );
            println!("The previous passphrase or key file no longer opens it.");
            if config_updated {
                if let Some(path) = config {
                    println!("Updated [root_key] in {}.", path.display());
                }
            } else if kind_changed {
                eprintln!(
                    "warning: the root key changed between a passphrase and a raw key; update \
                     [root_key] in the configuration before the next restart (or pass --config)"
                );
            }
        }
    }
    Ok(())
}

fn new_source(args: &NewRootKeyArgs) -> Result<RootKeySource, CliError> {
    if let Some(name) = &args.new_passphrase_env {
        Ok(RootKeySource::PassphraseEnv { name: name.clone() })
    } else if let Some(path) = &args.new_key_file {
        Ok(RootKeySource::KeyFile {
            path: std::path::absolute(path).map_err(|e| {
                CliError::Usage(format!("invalid key file path {}: {e}", path.display()))
            })?,
        })
    } else if let Some(name) = &args.new_key_env {
        Ok(RootKeySource::KeyEnv { name: name.clone() })
    } else if let Some(path) = &args.new_transit {
        transit_source(path)
    } else {
        Err(CliError::Usage(
            "give --new-passphrase-env, --new-key-file, --new-key-env or --new-transit".into(),
        ))
    }
}

/// Reads the `[root_key]` section of a `--new-transit` file; relative paths in it resolve
/// against the file's directory.
fn transit_source(path: &Path) -> Result<RootKeySource, CliError> {
    let invalid = |detail: String| {
        CliError::Usage(format!(
            "invalid transit settings {}: {detail}",
            path.display()
        ))
    };
    let mut table = read_config_table(path)?;
    let section = table
        .remove("root_key")
        .ok_or_else(|| invalid("no [root_key] section".into()))?;
    let source: RootKeySource = section.try_into().map_err(|e| invalid(format!("{e}")))?;
    let RootKeySource::Transit(mut transit) = source else {
        return Err(invalid("[root_key] must have source = \"transit\"".into()));
    };

    let base = std::path::absolute(containing_dir(path)).map_err(|e| invalid(e.to_string()))?;
    transit.resolve_paths(&base);
    Ok(RootKeySource::Transit(transit))
}

/// Returns the directory a file's relative paths resolve against. A bare file name has an
/// empty parent, which `std::path::absolute` refuses: it means the current directory.
fn containing_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Builds the request body from the new key's source. A missing key file is created with a
/// fresh random key (mode 0600).
async fn request_body(source: &RootKeySource, kdf: Option<Kdf>) -> Result<Value, CliError> {
    match source {
        RootKeySource::PassphraseEnv { name } => {
            let passphrase = Zeroizing::new(std::env::var(name).map_err(|_| {
                CliError::Usage(format!(
                    "environment variable {name} is not set: it must hold the new passphrase"
                ))
            })?);
            check_new_passphrase(&passphrase)?;
            let kdf = match kdf {
                None | Some(Kdf::Pbkdf2) => "pbkdf2",
                Some(Kdf::Argon2id) => "argon2id",
            };
            Ok(json!({ "passphrase": passphrase.as_str(), "kdf": kdf }))
        }
        RootKeySource::KeyFile { path } => {
            if !path.exists() {
                let key = RootKey::generate().map_err(|e| CliError::Other(e.to_string()))?;
                write_new_private_file(path, key.expose_bytes())?;
            }
            let key = read_root_key(source, &KdfParams::Raw).await?;
            Ok(key_body(&key))
        }
        RootKeySource::KeyEnv { .. } => {
            let key = read_root_key(source, &KdfParams::Raw).await?;
            Ok(key_body(&key))
        }
        RootKeySource::Transit(transit) => {
            let key = transit.seal_new().await?;
            Ok(key_body(&key))
        }
    }
}

fn key_body(key: &RootKey) -> Value {
    let key_hex = Zeroizing::new(hex::encode(key.expose_bytes()));
    json!({ "key_hex": key_hex.as_str() })
}

/// Overwrites the passphrase or key in a request body once it has been sent. Copies made
/// while serializing the request are outside this program's reach.
fn wipe_secret_fields(body: &mut Value) {
    for field in ["passphrase", "key_hex"] {
        if let Some(Value::String(secret)) = body.get_mut(field) {
            secret.zeroize();
        }
    }
}

fn read_config_table(path: &Path) -> Result<toml::Table, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!("cannot read configuration {}: {e}", path.display()))
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| CliError::Usage(format!("invalid configuration {}: {e}", path.display())))?;
    if !table.contains_key("root_key") {
        return Err(CliError::Usage(format!(
            "configuration {} has no [root_key] section",
            path.display()
        )));
    }
    Ok(table)
}

/// Points `[root_key]` at `source` when it names another source; returns whether the file
/// changed.
fn update_config(
    path: &Path,
    mut table: toml::Table,
    source: &RootKeySource,
) -> Result<bool, CliError> {
    let rotated_but = |detail: String| {
        CliError::Other(format!(
            "the root key was rotated, but updating {} failed: {detail}; set its [root_key] \
             section by hand before the next restart",
            path.display()
        ))
    };
    let wanted = toml::Value::try_from(source).map_err(|e| rotated_but(e.to_string()))?;
    let current = table.get("root_key").cloned();
    if current.as_ref() == Some(&wanted) || same_key_file(path, current.as_ref(), source) {
        return Ok(false);
    }

    table.insert("root_key".to_owned(), wanted);
    let text = toml::to_string_pretty(&table).map_err(|e| rotated_but(e.to_string()))?;
    replace_file(path, text.as_bytes()).map_err(|e| rotated_but(e.to_string()))?;
    Ok(true)
}

/// Returns whether the configured key file, resolved against the configuration's directory as
/// `Config::load` does, is the new key file.
fn same_key_file(config: &Path, current: Option<&toml::Value>, source: &RootKeySource) -> bool {
    let RootKeySource::KeyFile { path: new_path } = source else {
        return false;
    };
    let Some(Ok(RootKeySource::KeyFile { path })) =
        current.cloned().map(toml::Value::try_into::<RootKeySource>)
    else {
        return false;
    };
    let base = config.parent().unwrap_or(Path::new("."));
    std::path::absolute(base.join(path)).is_ok_and(|configured| &configured == new_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_file_name_resolves_in_current_dir() {
        assert_eq!(containing_dir(Path::new("transit.toml")), Path::new("."));
        assert_eq!(
            containing_dir(Path::new("conf/transit.toml")),
            Path::new("conf")
        );
        assert!(std::path::absolute(containing_dir(Path::new("transit.toml"))).is_ok());
    }

    const CONFIG: &str = "data_dir = \".\"\nlisten = \"127.0.0.1:8200\"\n\n[root_key]\nsource = \"passphrase_env\"\nname = \"KEYWARD_PASSPHRASE\"\n\n[limits]\nmax_body_bytes = 4096\n";

    fn write_config(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("keyward.toml");
        std::fs::write(&path, CONFIG).expect("write config");
        path
    }

    #[test]
    fn config_points_at_new_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path());
        let key_file = dir.path().join("root.key");
        let source = RootKeySource::KeyFile {
            path: key_file.clone(),
        };

        let table = read_config_table(&path).expect("reads");
        assert!(update_config(&path, table, &source).expect("updates"));

        let config = crate::config::Config::load(&path).expect("still a valid config");
        assert_eq!(config.root_key, source);
        assert_eq!(config.limits.max_body_bytes, 4096, "other settings kept");
        assert_eq!(config.data_dir, dir.path().join("."));
    }

    #[test]
    fn same_source_leaves_config_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path());
        let source = RootKeySource::PassphraseEnv {
            name: "KEYWARD_PASSPHRASE".into(),
        };

        let table = read_config_table(&path).expect("reads");
        assert!(!update_config(&path, table, &source).expect("checks"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), CONFIG);
    }

    #[test]
    fn relative_key_file_in_config_matches_absolute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyward.toml");
        let text = CONFIG.replace(
            "source = \"passphrase_env\"\nname = \"KEYWARD_PASSPHRASE\"",
            "source = \"key_file\"\npath = \"root.key\"",
        );
        std::fs::write(&path, &text).expect("write config");
        let source = RootKeySource::KeyFile {
            path: dir.path().join("root.key"),
        };

        let table = read_config_table(&path).expect("reads");
        assert!(!update_config(&path, table, &source).expect("checks"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn sent_secrets_are_wiped_from_body() {
        let mut body = json!({ "passphrase": "hunter2", "kdf": "pbkdf2" });
        wipe_secret_fields(&mut body);
        assert_eq!(body["passphrase"], "");
        assert_eq!(body["kdf"], "pbkdf2");
    }
}
