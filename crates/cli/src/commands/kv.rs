//! `keyward kv put/get/list/delete/history`.

use std::io::Read;

use reqwest::Method;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use keyward_store::{FolderPath, SecretPath};

use super::{cell, print_json, print_table};
use crate::cli::{Format, KvCommand};
use crate::client::Client;
use crate::error::CliError;

/// Runs a `kv` subcommand.
pub async fn run(command: KvCommand) -> Result<(), CliError> {
    match command {
        KvCommand::Put {
            client,
            path,
            pairs,
            cas,
        } => {
            let data = parse_pairs(&pairs)?;
            let mut body = json!({ "data": data });
            if let Some(cas) = cas {
                body["options"] = json!({ "cas": cas });
            }
            let response = Client::new(&client)?
                .request(
                    Method::PUT,
                    &format!("secret/data/{}", secret_path(&path)?),
                    Some(&body),
                )
                .await
                .map_err(|e| hint_mount_prefix(e, &path))?;
            if let Some(rest) = path.strip_prefix(MOUNT_PREFIX) {
                eprintln!(
                    "note: wrote secret/{path}, because keyward kv paths omit the secret/ mount; \
                     if you meant secret/{rest}, use the path {rest}"
                );
            }
            print_metadata(client.format, &response["data"]);
        }
        KvCommand::Get {
            client,
            path,
            version,
            field,
        } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let response = Client::new(&client)?
                .request(
                    Method::GET,
                    &format!("secret/data/{}{query}", secret_path(&path)?),
                    None,
                )
                .await
                .map_err(|e| hint_mount_prefix(e, &path))?;
            let data = &response["data"]["data"];
            if let Some(field) = field {
                let value = data.get(&field).ok_or_else(|| {
                    CliError::NotFound(format!("field {field:?} not present in secret {path}"))
                })?;
                println!("{}", cell(value));
                return Ok(());
            }
            match client.format {
                Format::Json => print_json(&response["data"]),
                Format::Table => {
                    let rows: Vec<(String, String)> = data
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
                        .unwrap_or_default();
                    println!(
                        "== Version {} ==",
                        cell(&response["data"]["metadata"]["version"])
                    );
                    print_table(&rows);
                }
            }
        }
        KvCommand::List { client, path } => {
            let folder = folder_path(&path)?;
            let response = Client::new(&client)?
                .request(
                    Method::GET,
                    &format!("secret/metadata/{}?list=true", folder.as_prefix()),
                    None,
                )
                .await
                .map_err(|e| hint_mount_prefix(e, folder.as_prefix()))?;
            let keys = &response["data"]["keys"];
            match client.format {
                Format::Json => print_json(keys),
                Format::Table => {
                    for key in keys.as_array().into_iter().flatten() {
                        println!("{}", cell(key));
                    }
                }
            }
        }
        KvCommand::Delete {
            client,
            path,
            versions,
        } => {
            let api = Client::new(&client)?;
            let result = if versions.is_empty() {
                api.request(
                    Method::DELETE,
                    &format!("secret/data/{}", secret_path(&path)?),
                    None,
                )
                .await
            } else {
                let body = json!({ "versions": versions });
                api.request(
                    Method::POST,
                    &format!("secret/delete/{}", secret_path(&path)?),
                    Some(&body),
                )
                .await
            };
            result.map_err(|e| hint_mount_prefix(e, &path))?;
            if client.format == Format::Table {
                println!("Success! Data deleted (if it existed) at: {path}");
            }
        }
        KvCommand::History { client, path } => {
            let response = Client::new(&client)?
                .request(
                    Method::GET,
                    &format!("secret/metadata/{}", secret_path(&path)?),
                    None,
                )
                .await
                .map_err(|e| hint_mount_prefix(e, &path))?;
            print_history(client.format, &response["data"]);
        }
    }
    Ok(())
}

/// The KV mount's name as `bao kv` paths start with it; `keyward kv` paths leave it out.
const MOUNT_PREFIX: &str = "secret/";

/// Validates a secret path before it goes into a URL: an HTTP client would resolve `..` and
/// `%2e%2e` in the URL and so address a different secret than the one named.
fn secret_path(raw: &str) -> Result<SecretPath, CliError> {
    reject_leading_slash(raw)?;
    SecretPath::parse(raw).map_err(|e| CliError::Usage(format!("{e}: {raw:?}")))
}

/// Validates a folder to list; `/` alone names the root, like the empty string.
fn folder_path(raw: &str) -> Result<FolderPath, CliError> {
    if raw != "/" {
        reject_leading_slash(raw)?;
    }
    FolderPath::parse(raw).map_err(|e| CliError::Usage(format!("{e}: {raw:?}")))
}

/// Rejects `/app/db` with a message that names the problem, where the path parser would only
/// report an empty segment.
fn reject_leading_slash(raw: &str) -> Result<(), CliError> {
    if !raw.starts_with('/') {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "invalid secret path {raw:?}: secret paths have no leading slash (try {})",
        raw.trim_start_matches('/')
    )))
}

/// Adds a hint to a "not found" error for a path that starts with `secret/`: the request went
/// to `secret/data/secret/...`, which is valid but rarely meant.
fn hint_mount_prefix(error: CliError, path: &str) -> CliError {
    match (error, path.strip_prefix(MOUNT_PREFIX)) {
        (CliError::NotFound(message), Some(rest)) => {
            let instead = if rest.is_empty() {
                "list the root with `keyward kv list`".to_owned()
            } else {
                format!("try {rest}")
            };
            CliError::NotFound(format!(
                "{message} (keyward kv paths omit the secret/ mount; {instead})"
            ))
        }
        (error, _) => error,
    }
}

/// Parses `KEY=VALUE` pairs; a value of `-` is read from standard input.
fn parse_pairs(pairs: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut data = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CliError::Usage(format!(
                "invalid argument {:?}: expected KEY=VALUE",
                pair.split('=').next().unwrap_or_default()
            )));
        };
        if key.is_empty() {
            return Err(CliError::Usage(
                "invalid argument: empty key before '='".into(),
            ));
        }
        if data.contains_key(key) {
            return Err(CliError::Usage(format!("duplicate key {key}")));
        }
        let value = if value == "-" {
            let mut buffer = Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut buffer).map_err(|e| {
                CliError::Usage(format!("cannot read value of {key} from stdin: {e}"))
            })?;
            buffer.trim_end_matches('\n').to_owned()
        } else {
            value.to_owned()
        };
        data.insert(key.to_owned(), Value::String(value));
    }
    Ok(data)
}

fn print_metadata(format: Format, metadata: &Value) {
    match format {
        Format::Json => print_json(metadata),
        Format::Table => {
            let rows: Vec<(String, String)> =
                ["created_time", "deletion_time", "destroyed", "version"]
                    .iter()
                    .map(|k| ((*k).to_owned(), cell(&metadata[*k])))
                    .collect();
            print_table(&rows);
        }
    }
}

fn print_history(format: Format, metadata: &Value) {
    if format == Format::Json {
        print_json(metadata);
        return;
    }
    let current = metadata["current_version"].as_u64().unwrap_or(0);
    println!(
        "{:<8}  {:<32}  {:<32}  State",
        "Version", "Created", "Deleted"
    );
    let mut versions: Vec<(u64, &Value)> = metadata["versions"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| k.parse::<u64>().ok().map(|n| (n, v)))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    for (number, version) in versions {
        let state = if version["destroyed"].as_bool() == Some(true) {
            "destroyed"
        } else if version["deletion_time"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            "deleted"
        } else if number == current {
            "current"
        } else {
            "previous"
        };
        println!(
            "{:<8}  {:<32}  {:<32}  {state}",
            number,
            cell(&version["created_time"]),
            version["deletion_time"]
                .as_str()
                .filter(|t| !t.is_empty())
                .unwrap_or("-"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_into_string_map() {
        let data = parse_pairs(&["a=1".into(), "b=x=y".into()]).expect("valid pairs");
        assert_eq!(data.get("a"), Some(&json!("1")));
        assert_eq!(data.get("b"), Some(&json!("x=y")));
    }

    #[test]
    fn pair_without_equals_is_rejected_without_echoing_it() {
        let error = parse_pairs(&["password".into()]).expect_err("no '='");
        assert!(error.to_string().contains("KEY=VALUE"));
        let error = parse_pairs(&["=value".into()]).expect_err("empty key");
        assert!(!error.to_string().contains("value\""));
    }

    #[test]
    fn duplicate_key_is_rejected() {
        let error = parse_pairs(&["a=1".into(), "b=2".into(), "a=2".into()])
            .expect_err("key a given twice");
        assert!(matches!(error, CliError::Usage(_)), "{error}");
        assert_eq!(error.to_string(), "duplicate key a");
    }

    #[test]
    fn leading_slash_is_named() {
        let error = secret_path("/app/x").expect_err("leading slash");
        assert_eq!(
            error.to_string(),
            "invalid secret path \"/app/x\": secret paths have no leading slash (try app/x)"
        );
        let error = folder_path("/app").expect_err("leading slash");
        assert!(error.to_string().contains("no leading slash"), "{error}");
        assert!(folder_path("/").is_ok(), "'/' lists the root");
    }

    #[test]
    fn mount_prefix_hint_on_not_found() {
        let not_found = || CliError::NotFound("no value found at secret/data/secret/app/db".into());

        let hinted = hint_mount_prefix(not_found(), "secret/app/db");
        assert_eq!(
            hinted.to_string(),
            "no value found at secret/data/secret/app/db \
             (keyward kv paths omit the secret/ mount; try app/db)"
        );
        let plain = hint_mount_prefix(not_found(), "app/db");
        assert!(!plain.to_string().contains("omit"), "{plain}");
        let denied = hint_mount_prefix(CliError::Auth("permission denied".into()), "secret/app");
        assert_eq!(denied.to_string(), "permission denied");
    }
}
