//! Rust client for Keyward: reads secrets over TLS 1.3 with a cache, stale-if-error, a circuit
//! breaker and an environment-variable fallback, and follows the server's change notifications
//! so that a rotated secret is picked up within a second.
//!
//! ```no_run
//! # async fn example() -> Result<(), keyward_client::Error> {
//! // KEYWARD_ADDR, KEYWARD_TOKEN (or KEYWARD_TOKEN_FILE) and KEYWARD_CACERT.
//! let client = keyward_client::Client::from_env()?;
//! client.watch("app/")?;
//! let password = client.get_field("app/db", "password").await?;
//! connect(password.expose());
//! # Ok(())
//! # }
//! # fn connect(_: &str) {}
//! ```
//!
//! What it does not do: write secrets, renew tokens, or verify the server beyond TLS with the
//! configured CA. Values pass through reqwest's and serde_json's buffers, which are not
//! zeroized; the copies this crate keeps are.
//!
//! With the `openai` feature, [`openai::OpenAiClient`] sends OpenAI API requests with a bearer
//! key read from Keyward and switches keys after a rotation.

mod breaker;
mod client;
mod config;
mod error;
#[cfg(feature = "openai")]
pub mod openai;
mod secret;
mod watch;

pub use breaker::BreakerConfig;
pub use client::Client;
pub use config::{
    ADDR_VAR, CACERT_VAR, ClientBuilder, DEFAULT_CACHE_TTL, DEFAULT_MAX_STALE, TOKEN_FILE_VAR,
    TOKEN_VAR,
};
pub use error::Error;
pub use secret::{Secret, SecretValue};
pub use watch::{Change, WATCH_ROUTE, WatchEvent};
