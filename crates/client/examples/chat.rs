//! Sends one chat completion request to the OpenAI API with a key stored in Keyward, and prints
//! the reply.
//!
//! ```text
//! export KEYWARD_ADDR=https://127.0.0.1:8200 KEYWARD_CACERT=ca.pem KEYWARD_TOKEN=...
//! keyward kv put app/openai api_key=sk-...
//! cargo run -p keyward-client --features openai --example chat -- "Say hello"
//! ```
//!
//! Settings (environment): `OPENAI_KEY_PATH` (default `app/openai`), `OPENAI_KEY_FIELD`
//! (default `api_key`), `OPENAI_BASE_URL` (default `https://api.openai.com/v1`, point it at a
//! local server for testing) and `OPENAI_MODEL` (default `gpt-4o-mini`).

use std::process::ExitCode;

use keyward_client::Client;
use keyward_client::openai::{OPENAI_API_BASE, OpenAiClient};
use serde_json::{Value, json};

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    match chat().await {
        Ok(reply) => {
            println!("{reply}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn chat() -> Result<String, Box<dyn std::error::Error>> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Say hello in one word.".to_owned());

    let keyward = Client::from_env()?;
    let openai = OpenAiClient::builder(
        keyward,
        setting("OPENAI_KEY_PATH", "app/openai"),
        setting("OPENAI_KEY_FIELD", "api_key"),
    )
    .base_url(setting("OPENAI_BASE_URL", OPENAI_API_BASE))
    .build()
    .await?;

    let request = json!({
        "model": setting("OPENAI_MODEL", "gpt-4o-mini"),
        "messages": [{ "role": "user", "content": prompt }],
    });
    let response = openai.chat_completions(&request).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        return Err(format!("chat completion failed with {status}: {message}").into());
    }

    let reply = body["choices"][0]["message"]["content"]
        .as_str()
        .ok_or("the response has no choices[0].message.content")?;
    Ok(reply.to_owned())
}
