//! `keyward rotation set|show|status|remove` and `keyward rotate`: rotation policies and
//! on-demand rotation on a running server.
//!
//! `set` builds the policy from its options (or reads it whole from `--policy-file`), checks
//! it with the same parser the server uses, and sends it as JSON to
//! `sys/rotation/policy/<path>`. The server runs the rotations, and this command only sends the request.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::{cell, print_json, print_table};
use crate::cli::{ClientArgs, Format, RotateArgs, RotationCommand, RotationSetArgs};
use crate::client::Client;
use crate::error::CliError;

/// Runs a `rotation` subcommand.
pub async fn run(command: RotationCommand) -> Result<(), CliError> {
    match command {
        RotationCommand::Set(args) => set(&args).await,
        RotationCommand::Show { client, path } => show(&client, &path).await,
        RotationCommand::Status { client, path } => status(&client, &path).await,
        RotationCommand::Remove { client, path } => remove(&client, &path).await,
    }
}

/// Runs `keyward rotate`.
pub async fn rotate(args: RotateArgs) -> Result<(), CliError> {
    let path = secret_path(&args.path)?;
    let body = json!({ "emergency": args.emergency });
    let response = Client::new(&args.client)?
        .request(Method::POST, &format!("sys/rotate/{path}"), Some(&body))
        .await?;
    let data = &response["data"];
    match args.client.format {
        Format::Json => print_json(data),
        Format::Table => print_table(&rows(data)),
    }
    if data["result"] != "finished" {
        return Err(CliError::Other(format!(
            "rotation of {path} did not finish: {}; see `keyward rotation status {path}`",
            cell(&data["result"])
        )));
    }
    Ok(())
}

/// Checks a secret path the way the server does and returns it without slashes at its ends.
fn secret_path(raw: &str) -> Result<String, CliError> {
    let trimmed = raw.trim_matches('/');
    keyward_store::SecretPath::parse(trimmed)
        .map_err(|error| CliError::Usage(format!("invalid secret path {raw:?}: {error}")))?;
    Ok(trimmed.to_owned())
}

fn read_file(path: &Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|error| CliError::Usage(format!("cannot read {what} {}: {error}", path.display())))
}

/// Builds the policy from the options of `rotation set`.
fn policy_from_args(args: &RotationSetArgs) -> Result<keyward_rotation::RotationPolicy, CliError> {
    let invalid = |error: keyward_rotation::PolicyError| CliError::Usage(error.to_string());

    if let Some(file) = &args.policy_file {
        let text = read_file(file, "policy file")?;
        let is_json = file
            .extension()
            .is_some_and(|extension| extension == "json");
        let policy = if is_json {
            keyward_rotation::RotationPolicy::from_json(&text)
        } else {
            keyward_rotation::RotationPolicy::from_toml(&text)
        };
        return policy.map_err(invalid);
    }

    let (Some(schedule), Some(grace)) = (&args.schedule, &args.grace) else {
        return Err(CliError::Usage(
            "rotation set needs --schedule and --grace, or --policy-file".into(),
        ));
    };
    let mut table = toml::Table::new();
    table.insert("schedule".into(), toml::Value::String(schedule.clone()));
    table.insert("grace".into(), toml::Value::String(grace.clone()));

    let mut generator = toml::Table::new();
    generator.insert("type".into(), toml::Value::String(args.generator.clone()));
    if let Some(length) = args.length {
        generator.insert("length".into(), toml::Value::Integer(i64::from(length)));
    }
    if let Some(prefix) = &args.prefix {
        generator.insert("prefix".into(), toml::Value::String(prefix.clone()));
    }
    if let Some(charset) = &args.charset {
        generator.insert("charset".into(), toml::Value::String(charset.clone()));
    }
    if let Some(exclude) = &args.exclude {
        generator.insert("exclude".into(), toml::Value::String(exclude.clone()));
    }
    table.insert("generator".into(), toml::Value::Table(generator));

    if let Some(file) = &args.rotator_file {
        let text = read_file(file, "rotator file")?;
        let rotator: toml::Table = toml::from_str(&text).map_err(|error| {
            CliError::Usage(format!("invalid rotator file {}: {error}", file.display()))
        })?;
        table.insert("rotator".into(), toml::Value::Table(rotator));
    }

    let text = toml::to_string(&table)
        .map_err(|error| CliError::Other(format!("cannot encode the policy: {error}")))?;
    keyward_rotation::RotationPolicy::from_toml(&text).map_err(invalid)
}

async fn set(args: &RotationSetArgs) -> Result<(), CliError> {
    let path = secret_path(&args.path)?;
    let policy = policy_from_args(args)?;
    let body = serde_json::to_value(&policy)
        .map_err(|error| CliError::Other(format!("cannot encode the policy: {error}")))?;
    let response = Client::new(&args.client)?
        .request(
            Method::PUT,
            &format!("sys/rotation/policy/{path}"),
            Some(&body),
        )
        .await?;
    let data = &response["data"];
    match args.client.format {
        Format::Json => print_json(data),
        Format::Table => println!(
            "Success! Rotation policy set for {path}; next rotation due at {}",
            cell(&data["next_due"])
        ),
    }
    Ok(())
}

async fn show(client: &ClientArgs, raw: &str) -> Result<(), CliError> {
    let path = secret_path(raw)?;
    let response = Client::new(client)?
        .request(Method::GET, &format!("sys/rotation/policy/{path}"), None)
        .await?;
    let data = &response["data"];
    match client.format {
        Format::Json => print_json(data),
        Format::Table => print_table(&rows(data)),
    }
    Ok(())
}

async fn status(client: &ClientArgs, raw: &str) -> Result<(), CliError> {
    let path = secret_path(raw)?;
    let response = Client::new(client)?
        .request(Method::GET, &format!("sys/rotation/status/{path}"), None)
        .await?;
    let data = &response["data"];
    match client.format {
        Format::Json => print_json(data),
        Format::Table => print_table(&rows(data)),
    }
    Ok(())
}

async fn remove(client: &ClientArgs, raw: &str) -> Result<(), CliError> {
    let path = secret_path(raw)?;
    Client::new(client)?
        .request(Method::DELETE, &format!("sys/rotation/policy/{path}"), None)
        .await?;
    println!("Success! Rotation policy removed from {path}");
    Ok(())
}

/// Returns the fields of a JSON object as table rows, in key order.
fn rows(data: &Value) -> Vec<(String, String)> {
    data.as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), cell(value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ClientArgs;

    fn args() -> RotationSetArgs {
        RotationSetArgs {
            client: ClientArgs {
                addr: "https://127.0.0.1:8200".into(),
                token: None,
                cacert: None,
                format: Format::Table,
            },
            path: "app/key".into(),
            schedule: Some("monthly".into()),
            grace: Some("1h".into()),
            generator: "random".into(),
            length: Some(40),
            prefix: Some("sk-".into()),
            charset: None,
            exclude: None,
            rotator_file: None,
            policy_file: None,
        }
    }

    #[test]
    fn options_build_random_policy() {
        let policy = policy_from_args(&args()).expect("valid policy");
        let json = serde_json::to_value(&policy).expect("serialises");
        assert_eq!(json["generator"]["type"], "random");
        assert_eq!(json["generator"]["prefix"], "sk-");
        assert_eq!(json["generator"]["length"], 40);
    }

    #[test]
    fn missing_schedule_is_usage_error() {
        let mut without = args();
        without.schedule = None;
        let error = policy_from_args(&without).expect_err("no schedule");
        assert!(matches!(error, CliError::Usage(_)), "{error:?}");
    }

    #[test]
    fn unknown_generator_is_rejected() {
        let mut wrong = args();
        wrong.generator = "guess".into();
        assert!(policy_from_args(&wrong).is_err());
    }
}
