//! `GET /v1/sys/keyward/watch?prefix=<folder>`: change notifications as server-sent events.
//!
//! The stream starts with a `ready` event, then sends one `change` event per secret write,
//! patch, delete, undelete, destroy or metadata change of the secret the prefix names or of a
//! secret under it, with the path, the
//! version (when one was written) and the kind of change. It never sends a value. A `reset`
//! event means the stream fell behind the manager's event bus and lost events, so the client
//! should treat every cached secret as changed. A comment is sent every 15 s to keep idle
//! connections open.
//!
//! Each change is delivered only if the token's policies grant `read` on that secret, checked
//! when the event happens, with the policies the token had when it was last authenticated. The token is authenticated
//! again every 30 s, and the stream ends once it is revoked or expired.
//!
//! It does not replay changes made before the connection, and the stream does not end on its own
//! when the server shuts down: open streams last until the shutdown grace period ends.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use keyward_manager::{Caller, RequestContext, SecretsManager, SecurityEvent};
use keyward_store::{FolderPath, SecretPath};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, SemaphorePermit, broadcast};
use tokio::time::{Instant, Interval};
use zeroize::Zeroizing;

use super::ApiRequest;
use crate::errors::{ApiError, Rejection};
use crate::request::AppState;

/// Interval of the keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Interval at which an open stream's token is authenticated again.
const REAUTHENTICATE_EVERY: Duration = Duration::from_secs(30);

/// Maximum number of open streams per process. The request limits release their slots once
/// the response head is sent, so long-lived streams need their own bound.
const MAX_STREAMS: usize = 1024;

static OPEN_STREAMS: Semaphore = Semaphore::const_new(MAX_STREAMS);

/// Streams one token may hold open at once, so that one caller cannot take every slot and
/// leave other applications without change notifications.
const MAX_STREAMS_PER_TOKEN: usize = 16;

/// Open streams by token accessor.
static STREAMS_BY_TOKEN: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// One token's share of the open streams, given back when the stream ends.
struct TokenSlot {
    accessor: String,
}

impl TokenSlot {
    /// Takes a slot for `accessor`, or `None` when it holds [`MAX_STREAMS_PER_TOKEN`] already.
    fn take(accessor: &str) -> Option<Self> {
        let mut open = STREAMS_BY_TOKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(accessor.to_owned()).or_insert(0);
        if *count >= MAX_STREAMS_PER_TOKEN {
            return None;
        }
        *count += 1;
        Some(Self {
            accessor: accessor.to_owned(),
        })
    }
}

impl Drop for TokenSlot {
    fn drop(&mut self) {
        let mut open = STREAMS_BY_TOKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.accessor) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.accessor);
            }
        }
    }
}

/// Whether a caller may see a change.
enum Visibility {
    Visible,
    Hidden,
}

/// One open stream.
struct Watch {
    manager: Arc<SecretsManager>,
    events: broadcast::Receiver<SecurityEvent>,
    caller: Caller,
    token: Zeroizing<String>,
    ctx: RequestContext,
    /// Empty for every secret, else a folder ending with `/`.
    prefix: String,
    reauthenticate: Interval,
    ready_sent: bool,
    _slot: SemaphorePermit<'static>,
    _token_slot: TokenSlot,
}

/// Opens a change notification stream.
pub(super) async fn open(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let raw_prefix = request.query.get("prefix").unwrap_or("");
    let prefix = FolderPath::parse(raw_prefix)
        .map_err(|error| Rejection::bad_path(&error))?
        .as_prefix()
        .to_owned();
    let Some(token_slot) = TokenSlot::take(caller.accessor()) else {
        tracing::warn!(
            accessor = caller.accessor(),
            limit = MAX_STREAMS_PER_TOKEN,
            "change notification stream rejected: too many open streams for this token"
        );
        return Err(Rejection::rate_limited("too_many_streams_for_token", 5).into());
    };
    let Ok(slot) = OPEN_STREAMS.try_acquire() else {
        tracing::warn!(
            limit = MAX_STREAMS,
            "change notification stream rejected: too many open streams"
        );
        return Err(Rejection::overloaded().into());
    };

    // Subscribe before responding, so that no change after the `ready` event is missed.
    let events = state.manager.subscribe();
    let watch = Watch {
        manager: Arc::clone(&state.manager),
        events,
        caller: caller.clone(),
        token: request.token.clone(),
        ctx: request.ctx.clone(),
        prefix,
        reauthenticate: tokio::time::interval_at(
            Instant::now() + REAUTHENTICATE_EVERY,
            REAUTHENTICATE_EVERY,
        ),
        ready_sent: false,
        _slot: slot,
        _token_slot: token_slot,
    };
    tracing::info!(accessor = caller.accessor(), prefix = %watch.prefix, "change notification stream opened");

    let events = stream::unfold(watch, next_event);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

/// Waits for the next event to send; `None` ends the stream.
async fn next_event(mut watch: Watch) -> Option<(Result<Event, Infallible>, Watch)> {
    if !watch.ready_sent {
        watch.ready_sent = true;
        let ready = Event::default().event("ready").data("{}");
        return Some((Ok(ready), watch));
    }

    loop {
        tokio::select! {
            received = watch.events.recv() => match received {
                Ok(SecurityEvent::SecretWritten { path, operation, version, .. }) => {
                    if !watch.in_prefix(&path) {
                        continue;
                    }
                    match watch.visibility(&path) {
                        Visibility::Visible => {
                            let data = json!({ "path": path, "version": version, "kind": operation });
                            let change = Event::default().event("change").data(data.to_string());
                            return Some((Ok(change), watch));
                        }
                        Visibility::Hidden => continue,
                    }
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(accessor = watch.caller.accessor(), missed, "change notification stream fell behind; sending reset");
                    let reset = Event::default().event("reset").data(json!({ "missed": missed }).to_string());
                    return Some((Ok(reset), watch));
                }
                Err(RecvError::Closed) => return None,
            },
            _ = watch.reauthenticate.tick() => {
                match watch.manager.authenticate(Some(watch.token.as_str()), &watch.ctx).await {
                    Ok(caller) => watch.caller = caller,
                    Err(error) => {
                        tracing::info!(accessor = watch.caller.accessor(), error = error.kind(), "change notification stream closed: token no longer valid");
                        return None;
                    }
                }
            }
        }
    }
}

impl Watch {
    fn in_prefix(&self, path: &str) -> bool {
        path_in_prefix(&self.prefix, path)
    }

    /// Decides whether the caller may learn that `path` changed: it must be allowed to read the
    /// secret, which is what a change event is about. The check writes no audit entry, so an
    /// event costs no disk write per watcher.
    fn visibility(&self, path: &str) -> Visibility {
        match SecretPath::parse(path) {
            Ok(secret) if self.manager.may_read(&self.caller, &secret) => Visibility::Visible,
            _ => Visibility::Hidden,
        }
    }
}

/// Returns whether `path` is the secret `prefix` names or lies under it. `prefix` is empty or
/// a folder ending with `/`.
fn path_in_prefix(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || path.starts_with(prefix) || prefix.strip_suffix('/') == Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_holds_a_bounded_share_of_streams() {
        let slots: Vec<TokenSlot> = (0..MAX_STREAMS_PER_TOKEN)
            .map(|_| TokenSlot::take("accessor-under-test").expect("within the share"))
            .collect();
        assert!(TokenSlot::take("accessor-under-test").is_none());
        assert!(TokenSlot::take("another-accessor").is_some());

        drop(slots);
        assert!(TokenSlot::take("accessor-under-test").is_some());
    }

    #[test]
    fn prefix_matches_whole_segments() {
        assert!(path_in_prefix("", "app/db"));
        assert!(path_in_prefix("app/", "app/db"));
        assert!(path_in_prefix("app/", "app/sub/db"));
        assert!(!path_in_prefix("app/", "application/db"));
        assert!(path_in_prefix("app/db/", "app/db"));
        assert!(!path_in_prefix("app/db/", "app/db2"));
    }
}
