//! `keyward policy write/list`.

use std::io::Read;

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
