//! Security events and the in-process bus that carries them.
//!
//! The manager publishes one event per security-relevant action. Subscribers (metrics, the
//! rotation engine, webhooks) receive them through a tokio broadcast channel; a slow subscriber
//! loses old events rather than slowing requests down. Events carry accessors and paths, never
//! secret values or tokens.

use std::net::IpAddr;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a subscriber may lag behind before it misses some.
const BUS_CAPACITY: usize = 1024;

/// A security-relevant event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecurityEvent {
    /// A request carried a missing, unknown or expired token.
    AuthFailure {
        /// The caller's address.
        remote_addr: IpAddr,
        /// Why authentication failed: `missing_token`, `unknown_token`, `expired_token`.
        reason: &'static str,
    },
    /// An address was locked out after repeated authentication failures.
    LockedOut {
        /// The locked address.
        remote_addr: IpAddr,
    },
    /// A request was turned away before it reached an operation (rate limit, bad input).
    RequestRejected {
        /// The caller's address.
        remote_addr: IpAddr,
        /// Why, e.g. `rate_limited`, `body_too_large`, `invalid_path`.
        reason: String,
    },
    /// A token was refused an operation by its policies.
    PermissionDenied {
        /// The token's accessor.
        accessor: String,
        /// The API path it asked for.
        path: String,
    },
    /// A secret version was read.
    SecretRead {
        /// The token's accessor.
        accessor: String,
        /// The secret's path.
        path: String,
        /// The version read.
        version: u64,
    },
    /// A secret changed: a write, patch, delete, undelete, destroy or metadata change.
    SecretWritten {
        /// The token's accessor.
        accessor: String,
        /// The secret's path.
        path: String,
        /// What was done, e.g. `write`, `destroy`.
        operation: &'static str,
        /// The version written, if any.
        version: Option<u64>,
    },
    /// A token was created.
    TokenCreated {
        /// The creator's accessor.
        accessor: String,
        /// The new token's accessor.
        new_accessor: String,
    },
    /// A token was revoked.
    TokenRevoked {
        /// The revoker's accessor.
        accessor: String,
        /// The revoked token's accessor.
        revoked_accessor: String,
    },
    /// A policy was written or deleted.
    PolicyChanged {
        /// The writer's accessor.
        accessor: String,
        /// The policy's name.
        name: String,
    },
    /// The audit log could not be written; requests are being refused.
    AuditFailure,
    /// A new data key became active; older keys now only decrypt.
    DataKeyRotated {
        /// The new active key's id.
        key_id: u32,
        /// Why: `requested` by an operator, or `encryption limit` when the active key reached
        /// its configured number of encryptions.
        reason: String,
    },
    /// A data key that no stored version used any more was removed from the keyring.
    KeyRetired {
        /// The removed key's id.
        key_id: u32,
    },
    /// The keyring was sealed under a new root key; the previous one no longer opens it.
    RootKeyRotated {
        /// The new root key's KDF: `pbkdf2-hmac-sha256`, `argon2id` or `raw`.
        kdf: String,
    },
    /// A rewrap batch moved the last stored versions onto the active data key.
    RewrapFinished {
        /// The active key, which now protects every stored version.
        key_id: u32,
    },
    /// A storage backend failed after a run of successful calls.
    BackendUnavailable {
        /// The backend's name.
        backend: String,
    },
    /// A backend's circuit breaker opened: calls fail fast until its backoff ends.
    CircuitOpened {
        /// The backend's name.
        backend: String,
        /// Consecutive failures counted when it opened.
        consecutive_failures: u32,
        /// How long it stays open before a probe, in milliseconds.
        backoff_ms: u64,
    },
    /// A backend's circuit breaker let one probe call through.
    CircuitHalfOpen {
        /// The backend's name.
        backend: String,
    },
    /// A backend's circuit breaker closed after a successful probe.
    CircuitClosed {
        /// The backend's name.
        backend: String,
    },
    /// A rotation of a secret started.
    RotationStarted {
        /// The secret's path.
        path: String,
        /// Whether it is an emergency rotation (no grace period).
        emergency: bool,
    },
    /// A rotation finished: `version` is now current.
    RotationFinished {
        /// The secret's path.
        path: String,
        /// The new current version.
        version: u64,
        /// The version it replaced, if any.
        replaced: Option<u64>,
    },
    /// A rotation failed or rolled back; the current version is unchanged.
    RotationFailed {
        /// The secret's path.
        path: String,
        /// The step that failed and why, without any value.
        reason: String,
    },
    /// A replaced version was revoked: reads refuse it and its provider credential is gone.
    VersionRevoked {
        /// The secret's path.
        path: String,
        /// The revoked version.
        version: u64,
    },
    /// A secret was reported leaked; an emergency rotation follows.
    KeyCompromised {
        /// The reporter's accessor.
        accessor: String,
        /// The secret's path.
        path: String,
        /// HMAC-SHA256 of the reporter's reason under the audit key: the reason may quote the
        /// leaked value.
        reason_hmac: String,
    },
}

/// The in-process event bus.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: broadcast::Sender<SecurityEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(BUS_CAPACITY);
        Self { sender }
    }
}

impl EventBus {
    /// Publishes an event; having no subscriber is not an error.
    pub fn publish(&self, event: SecurityEvent) {
        let _ = self.sender.send(event);
    }

    /// Returns a receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SecurityEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscriber_receives_published_events() {
        let bus = EventBus::default();
        let mut receiver = bus.subscribe();
        bus.publish(SecurityEvent::AuditFailure);
        assert_eq!(
            receiver.recv().await.ok(),
            Some(SecurityEvent::AuditFailure)
        );
    }

    #[test]
    fn publish_without_subscribers_is_fine() {
        EventBus::default().publish(SecurityEvent::AuditFailure);
    }
}
