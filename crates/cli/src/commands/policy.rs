//! `keyward policy write/list`.

use std::io::Read;

use keyward_manager::policy::{MAX_POLICY_NAME_LEN, validate_policy_name};
use reqwest::Method;
use serde_json::json;

use super::{cell, print_json};
use crate::cli::{Format, PolicyCommand};
use crate::client::Client;
use crate::error::CliError;

/// Runs a `policy` subcommand.
pub async fn run(command: PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Write { client, name, file } => {
            check_policy_name(&name)?;
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| CliError::Usage(format!("cannot read policy from stdin: {e}")))?;
                text
            } else {
                std::fs::read_to_string(&file).map_err(|e| {
                    CliError::Usage(format!("cannot read policy file {}: {e}", file.display()))
                })?
            };
            let body = json!({ "policy": text });
            Client::new(&client)?
                .request(
                    Method::PUT,
                    &format!("sys/policies/acl/{name}"),
                    Some(&body),
                )
                .await?;
            if client.format == Format::Table {
                println!("Success! Uploaded policy: {name}");
            }
        }
        PolicyCommand::List { client } => {
            let response = Client::new(&client)?
                .request(Method::GET, "sys/policies/acl?list=true", None)
                .await?;
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
    }
    Ok(())
}

/// Checks a policy name before it goes into the URL, with the server's rule: a name with `/`
/// would otherwise address another route and fail with a message about paths.
fn check_policy_name(name: &str) -> Result<(), CliError> {
    validate_policy_name(name).map_err(|_| {
        CliError::Usage(format!(
            "invalid policy name {name:?}: use 1 to {MAX_POLICY_NAME_LEN} characters of \
             A-Z a-z 0-9 . _ - (and not . or ..)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_follow_server_rule() {
        for name in ["reader", "app.read-only_2", "a"] {
            assert!(check_policy_name(name).is_ok(), "{name}");
        }
        let too_long = "p".repeat(MAX_POLICY_NAME_LEN + 1);
        for name in ["", "team/reader", "read er", "..", too_long.as_str()] {
            let error = check_policy_name(name).expect_err(name);
            assert!(matches!(error, CliError::Usage(_)), "{name}: {error}");
            assert!(
                error.to_string().starts_with("invalid policy name"),
                "{name}: {error}"
            );
        }
    }
}
