//! `keyward export --format dotenv|json PATH...`: prints the current versions of secrets as a
//! dotenv file or a JSON object, which `keyward import` reads back.
//!
//! Fields of all the secrets go into one flat set, so a field name that two secrets share is
//! an error. Dotenv values are always double-quoted with `\n`, `\r`, `\t`, `\"`, `\\`, `\$` and
//! `` \` `` escaped. Every character a POSIX shell treats specially inside double quotes (`$`,
//! `` ` ``, `"`, `\`) is escaped, so `set -a; . ./file.env` assigns the values without running
//! anything in them; a shell keeps `\n`, `\r` and `\t` as two characters, so only values
//! without those control characters come out of a shell unchanged. Double quotes (rather than
//! single quotes) are kept because they are the one form every dotenv reader, `keyward import`
//! included, reads back with newlines intact. Non-string values (numbers, booleans, objects)
//! are written as their JSON text, so they come back from an import as strings.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::Value;
use zeroize::Zeroizing;

use keyward_store::SecretPath;

use crate::cli::{ClientArgs, Format};
use crate::client::Client;
use crate::error::CliError;

/// Output format of `keyward export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `KEY="value"` lines.
    Dotenv,
    /// One JSON object.
    Json,
}

/// Options of `keyward export`. The connection options are spelled out instead of flattening
/// [`ClientArgs`], whose `--format` means table or JSON.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Server address, e.g. https://127.0.0.1:8200.
    #[arg(long, env = "KEYWARD_ADDR", default_value = "https://127.0.0.1:8200")]
    pub addr: String,
    /// Token to authenticate with (prefer the environment variable to keep it out of shell
    /// history).
    #[arg(long, env = "KEYWARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long, env = "KEYWARD_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value_t = ExportFormat::Dotenv)]
    pub export_format: ExportFormat,
    /// Secret paths to export.
    #[arg(required = true)]
    pub paths: Vec<String>,
}

/// Runs `keyward export`.
pub async fn run(args: ExportArgs) -> Result<(), CliError> {
    let client = Client::new(&ClientArgs {
        addr: args.addr.clone(),
        token: args.token.clone(),
        cacert: args.cacert.clone(),
        format: Format::Table,
    })?;
    let mut fields: BTreeMap<String, (String, Zeroizing<String>)> = BTreeMap::new();
    for raw in &args.paths {
        let path = SecretPath::parse(raw)
            .map_err(|e| CliError::Usage(format!("invalid secret path {raw:?}: {e}")))?;
        for (key, value) in read_fields(&client, &path).await? {
            if let Some((other, _)) = fields.get(&key) {
                return Err(CliError::Usage(format!(
                    "field {key:?} appears in both {other} and {path}; export them separately"
                )));
            }
            fields.insert(key, (path.to_string(), value));
        }
    }

    let text = match args.export_format {
        ExportFormat::Dotenv => {
            to_dotenv(fields.iter().map(|(k, (_, v))| (k.as_str(), v.as_str())))?
        }
        ExportFormat::Json => {
            let object: serde_json::Map<String, Value> = fields
                .iter()
                .map(|(k, (_, v))| (k.clone(), Value::String(v.to_string())))
                .collect();
            Zeroizing::new(format!("{}\n", Value::Object(object)))
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(format!("cannot write to standard output: {e}")))
}

/// Reads the current version of a secret as field names and string values.
pub async fn read_fields(
    client: &Client,
    path: &SecretPath,
) -> Result<Vec<(String, Zeroizing<String>)>, CliError> {
    let response = client
        .request(Method::GET, &format!("secret/data/{path}"), None)
        .await?;
    let Some(data) = response["data"]["data"].as_object() else {
        return Err(CliError::NotFound(format!(
            "secret {path} has no readable current version"
        )));
    };
    Ok(data
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), Zeroizing::new(text))
        })
        .collect())
}

/// Renders variables as dotenv lines; fails on a key `keyward import` would reject.
pub fn to_dotenv<'a>(
    variables: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Zeroizing<String>, CliError> {
    let mut out = Zeroizing::new(String::new());
    for (key, value) in variables {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(CliError::Usage(format!(
                "field {key:?} cannot be a dotenv key; use --format json"
            )));
        }
        out.push_str(key);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '$' => out.push_str("\\$"),
                '`' => out.push_str("\\`"),
                other => out.push(other),
            }
        }
        out.push_str("\"\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::import::parse_dotenv;

    #[test]
    fn dotenv_output_parses_back() {
        let values = [
            ("plain", "abc"),
            ("QUOTES", "say \"hi\" it's"),
            ("multi_line", "a\nb\r\nc\td"),
            ("dollar", "$HOME ${X} \\ # not a comment"),
            ("shell", "a\"b$HOME`id`$(id)\\x\\`"),
            ("empty", ""),
        ];
        let text = to_dotenv(values).expect("valid keys");
        let parsed = parse_dotenv(&text).expect("parses back");
        for (key, value) in values {
            assert_eq!(parsed[key].as_str(), value, "{key}");
        }
    }

    #[test]
    fn dotenv_output_escapes_every_shell_special_character() {
        let text = to_dotenv([("v", "`id` $(id) \" \\")]).expect("valid key");
        assert_eq!(text.as_str(), "v=\"\\`id\\` \\$(id) \\\" \\\\\"\n");
    }

    #[test]
    fn invalid_key_is_rejected() {
        assert!(to_dotenv([("has space", "x")]).is_err());
        assert!(to_dotenv([("9lives", "x")]).is_err());
    }
}
