//! The client: secret reads through a TTL cache, a circuit breaker and an environment fallback.
//!
//! A read returns the first of these that has the secret:
//! 1. a fresh cache entry,
//! 2. the server, when the breaker lets the request through,
//! 3. while the server is unavailable, a cached entry no older than `max_stale`,
//! 4. the configured environment variables.
//!
//! Responses such as "not found" or "permission denied" are returned as they are and never
//! replaced by stale data.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

use crate::breaker::{Admission, CircuitBreaker};
use crate::config::ClientBuilder;
use crate::error::Error;
use crate::secret::{Secret, SecretValue};
use crate::watch::{self, WatchEvent};

/// Time allowed for one read, from connecting to the end of the response.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed to open a connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum length of a secret path, in bytes. A longer path is rejected before any request.
const MAX_PATH_LEN: usize = 512;

/// Capacity of the change-event channel; a slow subscriber misses older events.
const EVENT_CAPACITY: usize = 256;

struct CacheEntry {
    secret: Secret,
    fetched_at: Instant,
    /// Set by a change notification: the entry is no longer fresh, but may still be served
    /// stale while the server is unavailable.
    invalidated: bool,
}

/// State shared by the client's clones and its watch task.
pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    /// A second client without an overall timeout, for the long-lived watch stream.
    pub(crate) stream_http: reqwest::Client,
    pub(crate) addr: String,
    pub(crate) token: Zeroizing<String>,
    cache: Mutex<HashMap<String, CacheEntry>>,
    breaker: CircuitBreaker,
    cache_ttl: Duration,
    max_stale: Duration,
    fallback: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) events: broadcast::Sender<WatchEvent>,
    /// Set when a watch connection delivered its ready event, so the reconnection backoff
    /// starts over.
    watch_connected: AtomicBool,
}

struct Inner {
    shared: Arc<Shared>,
    watch: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(handle) = self.watch.lock().unwrap_or_else(|e| e.into_inner()).take() {
            handle.abort();
        }
    }
}

/// A Keyward client. Cloning is cheap; clones share the cache, breaker and watch task.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.shared.addr)
            .field("cache_ttl", &self.inner.shared.cache_ttl)
            .field("max_stale", &self.inner.shared.max_stale)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ReadEnvelope<'a> {
    #[serde(borrow)]
    data: ReadData<'a>,
}

#[derive(Deserialize)]
struct ReadData<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    metadata: ReadMetadata,
}

#[derive(Deserialize)]
struct ReadMetadata {
    version: u64,
}

impl Client {
    /// Builds a client from `KEYWARD_ADDR`, `KEYWARD_TOKEN` (or `KEYWARD_TOKEN_FILE`) and
    /// `KEYWARD_CACERT` with the default settings.
    pub fn from_env() -> Result<Self, Error> {
        ClientBuilder::from_env()?.build()
    }

    pub(crate) fn from_parts(
        builder: ClientBuilder,
        addr: String,
        token: Zeroizing<String>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let stream_http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);

        let shared = Shared {
            http,
            stream_http,
            addr,
            token,
            cache: Mutex::new(HashMap::new()),
            breaker: CircuitBreaker::new(builder.breaker),
            cache_ttl: builder.cache_ttl,
            max_stale: builder.max_stale.max(builder.cache_ttl),
            fallback: builder.fallback,
            events,
            watch_connected: AtomicBool::new(false),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(shared),
                watch: Mutex::new(None),
            }),
        })
    }

    /// Reads the current version of a secret.
    pub async fn get(&self, path: &str) -> Result<Secret, Error> {
        check_path(path)?;
        self.inner.shared.read(path, false).await
    }

    /// Reads one field of a secret's current version.
    pub async fn get_field(&self, path: &str, field: &str) -> Result<SecretValue, Error> {
        let secret = self.get(path).await?;
        secret
            .field(field)
            .cloned()
            .ok_or_else(|| Error::MissingField {
                path: path.to_owned(),
                field: field.to_owned(),
            })
    }

    /// Reads a secret and deserializes its fields into `T`. `T` contains copies of the values,
    /// so give it [`zeroize::Zeroizing`] fields or drop it soon.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let secret = self.get(path).await?;
        secret.deserialize().map_err(|error| Error::Decode {
            path: path.to_owned(),
            reason: describe_json_error(&error),
        })
    }

    /// Reads a secret from the server even if the cache contains a fresh copy. The breaker, the
    /// stale cache and the fallback still apply when the server is unavailable.
    pub async fn refresh(&self, path: &str) -> Result<Secret, Error> {
        check_path(path)?;
        self.inner.shared.read(path, true).await
    }

    /// Marks a cached secret as no longer fresh.
    pub fn invalidate(&self, path: &str) {
        self.inner.shared.invalidate(path);
    }

    /// Starts a background task that follows the server's change notifications for secrets
    /// under `prefix` (empty for all the token may read), invalidates cached copies as changes
    /// arrive, and reconnects with backoff after a drop. Replaces a previous watch task.
    ///
    /// Must be called inside a tokio runtime.
    pub fn watch(&self, prefix: &str) -> Result<(), Error> {
        if !prefix.is_empty() {
            check_path(prefix.trim_end_matches('/'))?;
        }
        let task = tokio::spawn(watch::run(
            Arc::clone(&self.inner.shared),
            prefix.to_owned(),
        ));
        let mut slot = self.inner.watch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = slot.replace(task.abort_handle()) {
            previous.abort();
        }
        Ok(())
    }

    /// Returns whether a watch task is running (see [`Client::watch`]).
    pub fn is_watching(&self) -> bool {
        self.inner
            .watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
    }

    /// Returns a receiver of the watch task's events: connection, changes and resets.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Returns whether the circuit breaker currently lets reads reach the server.
    pub fn is_server_available(&self) -> bool {
        self.inner.shared.breaker.is_closed()
    }
}

impl Shared {
    async fn read(&self, path: &str, force: bool) -> Result<Secret, Error> {
        let now = Instant::now();
        if !force && let Some(secret) = self.cached(path, now, self.cache_ttl, true) {
            return Ok(secret);
        }

        if let Admission::Rejected(retry_in) = self.breaker.admit(now) {
            return self.degraded(
                path,
                Error::CircuitOpen {
                    path: path.to_owned(),
                    retry_in,
                },
            );
        }

        match self.fetch(path).await {
            Ok(secret) => {
                self.breaker.record_success();
                self.store(path, &secret);
                Ok(secret)
            }
            Err(error) if error.is_unavailable() => {
                self.breaker.record_failure(Instant::now());
                tracing::warn!(path, %error, "secret read failed");
                self.degraded(path, error)
            }
            Err(error) => {
                // The server responded, so it is healthy even if the response is a refusal.
                self.breaker.record_success();
                if matches!(error, Error::NotFound { .. }) {
                    self.remove(path);
                }
                Err(error)
            }
        }
    }

    /// Serves a stale cached copy or the environment fallback when the server is unavailable.
    fn degraded(&self, path: &str, error: Error) -> Result<Secret, Error> {
        if let Some(secret) = self.cached(path, Instant::now(), self.max_stale, false) {
            tracing::debug!(path, "serving a stale cached secret");
            return Ok(secret);
        }
        if let Some(secret) = self.fallback_secret(path) {
            tracing::info!(path, "serving a secret from the environment fallback");
            return Ok(secret);
        }
        Err(error)
    }

    fn cached(&self, path: &str, now: Instant, max_age: Duration, fresh: bool) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get(path)?;
        if fresh && entry.invalidated {
            return None;
        }
        (now.duration_since(entry.fetched_at) <= max_age).then(|| entry.secret.clone())
    }

    fn store(&self, path: &str, secret: &Secret) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            path.to_owned(),
            CacheEntry {
                secret: secret.clone(),
                fetched_at: Instant::now(),
                invalidated: false,
            },
        );
    }

    fn remove(&self, path: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }

    pub(crate) fn invalidate(&self, path: &str) {
        if let Some(entry) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(path)
        {
            entry.invalidated = true;
        }
    }

    pub(crate) fn mark_watch_success(&self) {
        self.watch_connected.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_watch_success(&self) -> bool {
        self.watch_connected.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn invalidate_all(&self) {
        for entry in self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values_mut()
        {
            entry.invalidated = true;
        }
    }

    fn fallback_secret(&self, path: &str) -> Option<Secret> {
        let fields = self.fallback.get(path)?;
        let values: BTreeMap<String, SecretValue> = fields
            .iter()
            .filter_map(|(field, var)| {
                let value = std::env::var(var).ok()?;
                Some((field.clone(), SecretValue::new(value)))
            })
            .collect();
        (!values.is_empty()).then(|| Secret::from_fields(values))
    }

    async fn fetch(&self, path: &str) -> Result<Secret, Error> {
        let unavailable = |reason: String| Error::Unavailable {
            path: path.to_owned(),
            reason,
        };
        let url = format!("{}/v1/secret/data/{path}", self.addr);
        let response = self
            .http
            .get(&url)
            .header("X-Vault-Token", self.token.as_str())
            .send()
            .await
            .map_err(|e| unavailable(transport_reason(&e)))?;

        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::NotFound {
                    path: path.to_owned(),
                });
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(Error::PermissionDenied {
                    path: path.to_owned(),
                });
            }
            status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                return Err(unavailable(format!("server returned {status}")));
            }
            status => {
                return Err(Error::InvalidResponse {
                    path: path.to_owned(),
                    reason: format!("unexpected status {status}"),
                });
            }
        }

        let body = Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(|e| unavailable(transport_reason(&e)))?
                .to_vec(),
        );
        let invalid = |reason: &str| Error::InvalidResponse {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let envelope: ReadEnvelope<'_> =
            serde_json::from_slice(&body).map_err(|_| invalid("not a KV v2 read response"))?;
        let data = envelope.data.data.ok_or_else(|| Error::NotFound {
            path: path.to_owned(),
        })?;
        Secret::from_json(
            envelope.data.metadata.version,
            Zeroizing::new(data.get().to_owned()),
        )
        .map_err(|reason| invalid(&reason))
    }
}

/// Checks a secret path before it goes into a URL: segments of `[A-Za-z0-9._-]`, no empty,
/// `.` or `..` segment.
pub(crate) fn check_path(path: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::Config(format!("invalid secret path {path:?}: {why}"));
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err(invalid("expected 1 to 512 characters"));
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(invalid("empty, `.` or `..` segment"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid("segments may contain only A-Z a-z 0-9 . _ -"));
        }
    }
    Ok(())
}

/// Describes a transport error by kind, without the URL's query or any header.
pub(crate) fn transport_reason(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    let mut reason = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Describes a serde_json error by category and position: its message may quote a value.
fn describe_json_error(error: &serde_json::Error) -> String {
    let category = match error.classify() {
        serde_json::error::Category::Data => "fields or types do not match",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
        serde_json::error::Category::Io => "read error",
    };
    format!(
        "{category} at line {} column {}",
        error.line(),
        error.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_before_use() {
        for bad in ["", "a//b", "a/../b", "a/./b", "a b", "a?x=1", "a/%2e"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert!(check_path("team/svc/db-1.main_x").is_ok());
    }

    #[test]
    fn json_errors_do_not_quote_values() {
        let error = serde_json::from_str::<u64>(r#""kw-canary-json""#).expect_err("not a number");
        let described = describe_json_error(&error);
        assert!(!described.contains("kw-canary"), "{described}");
    }
}
