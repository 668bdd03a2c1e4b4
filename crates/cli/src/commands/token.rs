//! `keyward token create/revoke`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{cell, print_json, print_table};
use crate::cli::{Format, TokenCommand};
use crate::client::Client;
use crate::error::CliError;

/// Runs a `token` subcommand.
pub async fn run(command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            client,
            policies,
            ttl,
            display_name,
        } => {
            let mut body = json!({ "policies": policies });
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            if let Some(name) = display_name {
                body["display_name"] = json!(name);
            }
            let response = Client::new(&client)?
                .request(Method::POST, "auth/token/create", Some(&body))
                .await?;
            let auth = &response["auth"];
            match client.format {
                Format::Json => print_json(auth),
                Format::Table => {
                    let rows: Vec<(String, String)> = [
                        ("token", "client_token"),
                        ("token_accessor", "accessor"),
                        ("token_duration", "lease_duration"),
                        ("token_renewable", "renewable"),
                        ("token_policies", "token_policies"),
                    ]
                    .iter()
                    .map(|(label, field)| ((*label).to_owned(), cell(&auth[*field])))
                    .collect();
                    print_table(&rows);
                }
            }
        }
        TokenCommand::Revoke { client, accessor } => {
            let api = Client::new(&client)?;
            match accessor {
                Some(accessor) => {
                    let body = json!({ "accessor": accessor });
                    api.request(Method::POST, "auth/token/revoke-accessor", Some(&body))
                        .await?;
                }
                None => {
                    api.request(Method::POST, "auth/token/revoke-self", Some(&Value::Null))
                        .await?;
                }
            }
            if client.format == Format::Table {
                println!("Success! Revoked token (if it existed)");
            }
        }
    }
    Ok(())
}
