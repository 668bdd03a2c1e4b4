//! `keyward token create/revoke`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{cell, print_json, print_table};
use crate::cli::{Format, TokenCommand};
use crate::client::Client;
use crate::duration;
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
            if let Some(ttl_secs) = ttl {
                body["ttl"] = json!(ttl_secs);
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
                    print_table(&created_rows(auth));
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

/// Rows of `token create`'s table, as `bao token create` prints them; the duration has a unit.
fn created_rows(auth: &Value) -> Vec<(String, String)> {
    let duration = match auth["lease_duration"].as_u64() {
        Some(seconds) => duration::format_seconds(seconds),
        None => cell(&auth["lease_duration"]),
    };
    vec![
        ("token".to_owned(), cell(&auth["client_token"])),
        ("token_accessor".to_owned(), cell(&auth["accessor"])),
        ("token_duration".to_owned(), duration),
        ("token_renewable".to_owned(), cell(&auth["renewable"])),
        ("token_policies".to_owned(), cell(&auth["token_policies"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_duration_has_unit() {
        let auth = json!({
            "client_token": "kw_example",
            "accessor": "acc",
            "lease_duration": 2_764_800,
            "renewable": true,
            "token_policies": ["default", "reader"],
        });

        let rows = created_rows(&auth);

        let duration = rows.iter().find(|(label, _)| label == "token_duration");
        assert_eq!(duration.map(|(_, value)| value.as_str()), Some("768h"));
    }
}
