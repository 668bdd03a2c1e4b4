//! An HTTP client for the OpenAI API whose bearer key is a field of a Keyward secret.
//!
//! The key is read when the client is built. A background task follows the Keyward client's
//! change notifications and switches to the new key as soon as the secret gets a new version.
//! If the API returns 401 anyway (the key was revoked before the notification arrived), the
//! client reads the secret again and, when that gives a different key, retries the request
//! once. The key appears only in the `Authorization` header, which is marked sensitive; it is
//! never logged, and neither errors nor `Debug` output contain it.
//!
//! With the `async-openai` feature, [`OpenAiClient::async_openai_config`] returns a
//! configuration for the async-openai crate holding the current key. That configuration is a
//! snapshot: build a new one after a change.

use std::fmt;
use std::sync::{Arc, RwLock};

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::client::{Client, transport_reason};
use crate::error::Error;
use crate::secret::SecretValue;
use crate::watch::WatchEvent;

/// OpenAI's API base URL.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// A failed OpenAI API call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenAiError {
    /// The key could not be read from Keyward.
    #[error("cannot read the OpenAI key from keyward: {0}")]
    Keyward(#[from] Error),
    /// The key contains characters that cannot go into an HTTP header.
    #[error("the OpenAI key in secret {path} field {field:?} is not a valid header value")]
    InvalidKey {
        /// The secret's path.
        path: String,
        /// The field.
        field: String,
    },
    /// The request could not be sent or its response not read.
    #[error("OpenAI request to {endpoint} failed: {reason}")]
    Transport {
        /// The endpoint, relative to the base URL.
        endpoint: String,
        /// The transport error.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the OpenAI HTTP client: {0}")]
    Build(String),
}

/// The key in use and the secret version it came from.
#[derive(Clone)]
struct CurrentKey {
    version: u64,
    header: HeaderValue,
}

struct State {
    keyward: Client,
    path: String,
    field: String,
    current: RwLock<CurrentKey>,
    /// Serialises refreshes, so a burst of 401s reads the secret once.
    refresh: tokio::sync::Mutex<()>,
}

/// Builds an [`OpenAiClient`].
pub struct OpenAiClientBuilder {
    keyward: Client,
    path: String,
    field: String,
    base_url: String,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for OpenAiClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClientBuilder")
            .field("path", &self.path)
            .field("field", &self.field)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl OpenAiClientBuilder {
    /// Sets the API base URL (default [`OPENAI_API_BASE`]), e.g. a local test server.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Uses this reqwest client for API calls (default: reqwest's defaults, which use rustls).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Reads the key and starts following changes. Starts the Keyward client's change
    /// notifications for the secret if it follows none yet. Must be called inside a tokio
    /// runtime.
    pub async fn build(self) -> Result<OpenAiClient, OpenAiError> {
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| OpenAiError::Build(transport_reason(&e)))?,
        };
        // Subscribing first means a change after this read is seen, even one that arrives
        // before the follower task first runs.
        let events = self.keyward.subscribe();
        let secret = self.keyward.get(&self.path).await?;
        let current = key_from(&secret, &self.path, &self.field)?;

        let state = Arc::new(State {
            keyward: self.keyward.clone(),
            path: self.path,
            field: self.field,
            current: RwLock::new(current),
            refresh: tokio::sync::Mutex::new(()),
        });
        if !self.keyward.is_watching() {
            self.keyward.watch(&state.path)?;
        }
        let task = tokio::spawn(follow_changes(Arc::downgrade(&state), events));

        Ok(OpenAiClient {
            http,
            base_url: self.base_url,
            state,
            _follower: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An OpenAI API client whose key comes from Keyward. Cloning is cheap.
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base_url: String,
    state: Arc<State>,
    _follower: Arc<AbortOnDrop>,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.base_url)
            .field("path", &self.state.path)
            .field("field", &self.state.field)
            .field("key_version", &self.key_version())
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// Starts a builder for a client whose key is field `field` of Keyward secret `path`.
    pub fn builder(
        keyward: Client,
        path: impl Into<String>,
        field: impl Into<String>,
    ) -> OpenAiClientBuilder {
        OpenAiClientBuilder {
            keyward,
            path: path.into(),
            field: field.into(),
            base_url: OPENAI_API_BASE.to_owned(),
            http: None,
        }
    }

    /// Returns the version of the secret whose key is in use.
    pub fn key_version(&self) -> u64 {
        self.state
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .version
    }

    /// Sends `POST {base_url}/{endpoint}` with a JSON body, e.g. `chat/completions`. On a 401 it
    /// reads the key from Keyward again and, if the key changed, sends the request once more.
    /// Any other status is returned as a response for the caller to inspect.
    pub async fn post_json<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
    ) -> Result<Response, OpenAiError> {
        let url = format!("{}/{}", self.base_url, endpoint.trim_start_matches('/'));
        let used = self.current();
        let response = self.send(&url, endpoint, &used, body).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }

        tracing::info!(
            path = %self.state.path,
            version = used.version,
            "OpenAI rejected the key; reading it again from keyward"
        );
        let fresh = self.refresh_after(used.version).await?;
        if fresh.version == used.version {
            return Ok(response);
        }
        self.send(&url, endpoint, &fresh, body).await
    }

    /// Calls `chat/completions` with `request` and returns the response.
    pub async fn chat_completions<B: Serialize + ?Sized>(
        &self,
        request: &B,
    ) -> Result<Response, OpenAiError> {
        self.post_json("chat/completions", request).await
    }

    /// Returns an async-openai configuration with the current key and this client's base URL.
    /// It does not follow later changes: build a new one after [`OpenAiClient::key_version`]
    /// changes, or after a 401.
    #[cfg(feature = "async-openai")]
    pub async fn async_openai_config(
        &self,
    ) -> Result<async_openai::config::OpenAIConfig, OpenAiError> {
        let secret = self.state.keyward.get(&self.state.path).await?;
        let key = secret
            .field(&self.state.field)
            .ok_or_else(|| Error::MissingField {
                path: self.state.path.clone(),
                field: self.state.field.clone(),
            })?;
        Ok(async_openai::config::OpenAIConfig::new()
            .with_api_base(self.base_url.clone())
            .with_api_key(key.expose()))
    }

    fn current(&self) -> CurrentKey {
        self.state
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        url: &str,
        endpoint: &str,
        key: &CurrentKey,
        body: &B,
    ) -> Result<Response, OpenAiError> {
        self.http
            .post(url)
            .header(AUTHORIZATION, key.header.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| OpenAiError::Transport {
                endpoint: endpoint.to_owned(),
                reason: transport_reason(&e),
            })
    }

    /// Reads the key again unless another task already replaced version `seen`.
    async fn refresh_after(&self, seen: u64) -> Result<CurrentKey, OpenAiError> {
        let _guard = self.state.refresh.lock().await;
        let current = self.current();
        if current.version != seen {
            return Ok(current);
        }
        self.state.reload().await
    }
}

impl State {
    /// Reads the secret from the server and installs its key.
    async fn reload(&self) -> Result<CurrentKey, OpenAiError> {
        let secret = self.keyward.refresh(&self.path).await?;
        let fresh = key_from(&secret, &self.path, &self.field)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if fresh.version != current.version {
            tracing::info!(path = %self.path, version = fresh.version, "switched to a new OpenAI key");
        }
        *current = fresh.clone();
        Ok(fresh)
    }
}

fn key_from(secret: &crate::Secret, path: &str, field: &str) -> Result<CurrentKey, OpenAiError> {
    let key: &SecretValue = secret.field(field).ok_or_else(|| Error::MissingField {
        path: path.to_owned(),
        field: field.to_owned(),
    })?;
    let text = zeroize::Zeroizing::new(format!("Bearer {}", key.expose()));
    let mut header = HeaderValue::from_str(&text).map_err(|_| OpenAiError::InvalidKey {
        path: path.to_owned(),
        field: field.to_owned(),
    })?;
    header.set_sensitive(true);
    Ok(CurrentKey {
        version: secret.version(),
        header,
    })
}

/// Reloads the key on each change of the secret, and after each (re)connection or reset of the
/// change notifications, which may have missed a change.
async fn follow_changes(
    state: std::sync::Weak<State>,
    mut events: tokio::sync::broadcast::Receiver<WatchEvent>,
) {
    loop {
        let reload = match events.recv().await {
            Ok(WatchEvent::Changed(change)) => {
                state.upgrade().is_some_and(|s| s.path == change.path)
            }
            Ok(WatchEvent::Connected | WatchEvent::Reset) | Err(RecvError::Lagged(_)) => true,
            Ok(_) => false,
            Err(RecvError::Closed) => return,
        };
        if !reload {
            continue;
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        let _guard = state.refresh.lock().await;
        if let Err(error) = state.reload().await {
            tracing::warn!(path = %state.path, %error, "cannot read the new OpenAI key; keeping the current one");
        }
    }
}
