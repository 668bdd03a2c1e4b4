//! `keyward keys status/rotate/rewrap/retire/rotate-root`: data-key and root-key management on
//! a running server.
//!
//! `rewrap` calls `sys/keys/rewrap` until no record is left under an older key. Each call is
//! one transaction on the server, so stopping the command at any point (Ctrl-C, a kill, a
//! lost connection, a server crash) loses nothing, and running it again resumes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use super::print_json;
use crate::cli::{ClientArgs, Format, KeysCommand};
use crate::client::Client;
use crate::error::CliError;

/// Runs a `keys` subcommand.
pub async fn run(command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Status { client } => status(&client).await,
        KeysCommand::Rotate { client } => rotate(&client).await,
        KeysCommand::Rewrap { client, batch_size } => rewrap(&client, batch_size).await,
        KeysCommand::Retire { client, id } => retire(&client, id).await,
        KeysCommand::RotateRoot {
            client,
            new_key,
            kdf,
            config,
        } => super::rotate_root::run(&client, &new_key, kdf, config.as_deref()).await,
    }
}

async fn status(client: &ClientArgs) -> Result<(), CliError> {
    let response = Client::new(client)?
        .request(Method::GET, "sys/keys", None)
        .await?;
    let data = &response["data"];
    match client.format {
        Format::Json => print_json(data),
        Format::Table => print!("{}", status_table(data)),
    }
    Ok(())
}

/// Renders `sys/keys` data as an aligned table.
fn status_table(data: &Value) -> String {
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut rows = vec![[
        "ID".to_owned(),
        "CREATED".to_owned(),
        "STATE".to_owned(),
        "RECORDS".to_owned(),
        "ENCRYPTIONS".to_owned(),
    ]];
    for key in data["keys"].as_array().into_iter().flatten() {
        rows.push([
            text(&key["id"]),
            text(&key["created"]),
            text(&key["state"]),
            text(&key["records"]),
            text(&key["encryptions"]),
        ]);
    }

    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn rotate(client: &ClientArgs) -> Result<(), CliError> {
    let response = Client::new(client)?
        .request(Method::POST, "sys/keys/rotate", Some(&json!({})))
        .await?;
    let data = &response["data"];
    match client.format {
        Format::Json => print_json(data),
        Format::Table => {
            let new = &data["key_id"];
            println!(
                "Success! Key {new} is active; key {} now only decrypts.",
                data["previous_key_id"]
            );
            println!("Run `keyward keys rewrap` to move older records onto key {new}.");
        }
    }
    Ok(())
}

async fn retire(client: &ClientArgs, id: u32) -> Result<(), CliError> {
    Client::new(client)?
        .request(Method::DELETE, &format!("sys/keys/{id}"), None)
        .await?;
    match client.format {
        Format::Json => print_json(&json!({ "retired": id })),
        Format::Table => println!("Success! Retired key {id}."),
    }
    Ok(())
}

/// The output of rewrap progress: a progress bar on a terminal, else one JSON line per batch.
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new(format: Format, total: u64) -> Progress {
        if format == Format::Table && std::io::stdout().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} records rewrapped ({eta} left)")
            {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines
        }
    }

    fn batch(&self, rewrapped: u64, remaining: u64, done: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_length(done + remaining);
                bar.set_position(done);
            }
            Progress::Lines => print_json(&json!({
                "rewrapped": rewrapped,
                "remaining": remaining,
                "total_rewrapped": done,
            })),
        }
    }

    fn finish(&self, done: u64) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
            println!("Success! Rewrapped {done} records; every record is under the active key.");
        }
    }
}

async fn rewrap(client: &ClientArgs, batch_size: u32) -> Result<(), CliError> {
    let api = Client::new(client)?;

    // The records under decrypt-only keys are what is left to do; this sizes the bar.
    let status = api.request(Method::GET, "sys/keys", None).await?;
    let pending: u64 = status["data"]["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|key| key["state"] != "active")
        .filter_map(|key| key["records"].as_u64())
        .sum();

    let progress = Progress::new(client.format, pending);
    let body = json!({ "batch_size": batch_size });
    let mut done = 0u64;
    loop {
        let response = api
            .request(Method::POST, "sys/keys/rewrap", Some(&body))
            .await?;
        let field = |name: &str| {
            response["data"][name].as_u64().ok_or_else(|| {
                CliError::Other(format!("server sent a rewrap response without {name}"))
            })
        };
        let rewrapped = field("rewrapped")?;
        let remaining = field("remaining")?;
        done += rewrapped;
        progress.batch(rewrapped, remaining, done);

        if remaining == 0 {
            progress.finish(done);
            return Ok(());
        }
        if rewrapped == 0 {
            return Err(CliError::Other(format!(
                "the server rewrapped nothing but reports {remaining} records left; check its log"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_aligns_columns() {
        let data = json!({
            "active_key_id": 2,
            "keys": [
                { "id": 1, "created": "2025-01-02T03:04:05Z", "state": "decrypt-only",
                  "records": 42, "encryptions": 1234 },
                { "id": 2, "created": "2025-04-02T03:04:05Z", "state": "active",
                  "records": 7, "encryptions": 7 },
                { "id": 9, "created": null, "state": "missing",
                  "records": 3, "encryptions": null },
            ]
        });
        assert_eq!(
            status_table(&data),
            "\
ID  CREATED               STATE         RECORDS  ENCRYPTIONS
1   2025-01-02T03:04:05Z  decrypt-only  42       1234
2   2025-04-02T03:04:05Z  active        7        7
9   -                     missing       3        -
"
        );
    }
}
