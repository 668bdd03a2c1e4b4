//! Follows the server's change notifications (`GET /v1/sys/keyward/watch`, server-sent events)
//! and invalidates the cache as they arrive.
//!
//! After a drop the task reconnects with exponential, jittered backoff. Changes made while it
//! was disconnected are unknown, so each new connection invalidates the whole cache and
//! reports [`WatchEvent::Connected`]. Events carry paths and versions, never values.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::jitter;
use crate::client::{Shared, transport_reason};

/// Route of the change notifications, under `/v1/`.
pub const WATCH_ROUTE: &str = "sys/keyward/watch";

/// First reconnection delay; it doubles after each failed attempt.
const RECONNECT_BASE: Duration = Duration::from_millis(250);

/// Upper bound of the reconnection delay.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// A connection that sends nothing for this long (the server sends a keep-alive comment every
/// 15 s) is presumed dead and replaced.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Largest event accepted; a longer one ends the connection.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// A change to one secret, as the server reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Change {
    /// The secret's path.
    pub path: String,
    /// The version written, when the change made one.
    pub version: Option<u64>,
    /// The kind of change: `write`, `patch`, `delete`, `undelete`, `destroy`, `metadata` or
    /// `metadata_delete`.
    pub kind: String,
}

/// An event of the watch task, sent to [`crate::Client::subscribe`] receivers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A connection is established; changes from now on will be reported. The cache has been
    /// invalidated, since changes during the disconnection are unknown.
    Connected,
    /// A secret changed; its cached copy has been invalidated.
    Changed(Change),
    /// The server dropped events (the watcher fell behind); the whole cache has been
    /// invalidated.
    Reset,
    /// The connection dropped; the task reconnects after a backoff.
    Disconnected,
}

/// Runs until aborted: connects, reads events, reconnects.
pub(crate) async fn run(shared: Arc<Shared>, prefix: String) {
    let mut backoff = RECONNECT_BASE;
    loop {
        match follow(&shared, &prefix).await {
            Ok(()) => {
                tracing::info!("change notification stream ended; reconnecting");
            }
            Err(reason) => {
                tracing::warn!(reason = %reason, "change notification stream failed; reconnecting");
            }
        }
        let _ = shared.events.send(WatchEvent::Disconnected);

        let delay = jitter(backoff);
        tokio::time::sleep(delay).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);

        // A connection that delivered its ready event resets the backoff in `follow`, through
        // this flag.
        if shared.take_watch_success() {
            backoff = RECONNECT_BASE;
        }
    }
}

/// Holds one connection until it ends. Returns `Err` with a reason when it could not be opened
/// or failed.
async fn follow(shared: &Shared, prefix: &str) -> Result<(), String> {
    // The prefix was checked to contain only path characters, so it needs no escaping.
    let url = format!("{}/v1/{WATCH_ROUTE}?prefix={prefix}", shared.addr);
    let mut response = shared
        .stream_http
        .get(&url)
        .header("X-Vault-Token", shared.token.as_str())
        .header("Accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| transport_reason(&e))?;
    if !response.status().is_success() {
        return Err(format!("server returned {}", response.status()));
    }

    let mut parser = EventParser::default();
    loop {
        let chunk = tokio::time::timeout(IDLE_TIMEOUT, response.chunk())
            .await
            .map_err(|_| format!("no data for {IDLE_TIMEOUT:?}"))?
            .map_err(|e| transport_reason(&e))?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        for event in parser.push(&chunk)? {
            handle(shared, event);
        }
    }
}

fn handle(shared: &Shared, event: RawEvent) {
    match event.name.as_str() {
        "ready" => {
            shared.invalidate_all();
            shared.mark_watch_success();
            tracing::debug!("change notification stream connected");
            let _ = shared.events.send(WatchEvent::Connected);
        }
        "change" => match serde_json::from_str::<Change>(&event.data) {
            Ok(change) => {
                shared.invalidate(&change.path);
                tracing::debug!(path = %change.path, version = ?change.version, kind = %change.kind, "secret changed");
                let _ = shared.events.send(WatchEvent::Changed(change));
            }
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed change event");
            }
        },
        "reset" => {
            shared.invalidate_all();
            let _ = shared.events.send(WatchEvent::Reset);
        }
        _ => {}
    }
}

/// One server-sent event: its `event:` name and its `data:` lines joined.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// An incremental parser of the `text/event-stream` format (comments, `event:` and `data:`
/// fields; other fields are ignored).
#[derive(Default)]
pub(crate) struct EventParser {
    buffer: Vec<u8>,
}

impl EventParser {
    /// Adds bytes and returns the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<RawEvent>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.buffer) {
            let block: Vec<u8> = self.buffer.drain(..end.0).collect();
            self.buffer.drain(..end.1);
            let text = String::from_utf8_lossy(&block);
            let mut event = RawEvent {
                name: "message".to_owned(),
                data: String::new(),
            };
            let mut has_field = false;
            for line in text.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.name = value.to_owned(),
                    "data" => {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                    }
                    _ => continue,
                }
                has_field = true;
            }
            if has_field {
                events.push(event);
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(format!("event longer than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(events)
    }
}

/// Finds the blank line that ends an event: returns (end of the event, length of the
/// separator).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let text = buffer;
    (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") || text[i..].starts_with(b"\r\r") {
            Some((i, 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_joined() {
        let mut parser = EventParser::default();
        assert!(parser.push(b"event: cha").expect("ok").is_empty());
        let events = parser
            .push(b"nge\ndata: {\"path\":\"a\"}\n\n: keep-alive\n\nevent: ready\ndata: {}\n\n")
            .expect("ok");
        assert_eq!(
            events,
            vec![
                RawEvent {
                    name: "change".into(),
                    data: "{\"path\":\"a\"}".into()
                },
                RawEvent {
                    name: "ready".into(),
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn comments_alone_produce_no_event() {
        let mut parser = EventParser::default();
        assert!(
            parser
                .push(b":\n\n: keep-alive\n\n")
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn overlong_event_is_rejected() {
        let mut parser = EventParser::default();
        let long = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(parser.push(&long).is_err());
    }

    #[test]
    fn change_event_parses() {
        let change: Change =
            serde_json::from_str(r#"{"path":"app/x","version":4,"kind":"write"}"#).expect("ok");
        assert_eq!(change.version, Some(4));
    }
}
