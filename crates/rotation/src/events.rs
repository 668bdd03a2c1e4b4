//! Events the engine publishes at every rotation step, and the sink trait that receives them.
//!
//! The embedding program maps these onto its own security events (the manager's
//! `SecurityEvent`) and audit log. Events carry paths, version numbers and error messages,
//! never a secret value.

use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

/// One of the four steps of a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A new value is generated and written as the `pending` version.
    Create,
    /// The rotator installs the pending value at the provider.
    Set,
    /// The rotator proves the pending value works.
    Test,
    /// The pending version becomes current; the old current becomes previous.
    Finish,
}

impl Step {
    /// Returns the step's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Set => "set",
            Step::Test => "test",
            Step::Finish => "finish",
        }
    }

    /// Parses a stored step name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "create" => Step::Create,
            "set" => Step::Set,
            "test" => Step::Test,
            "finish" => Step::Finish,
            _ => return None,
        })
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RotationEventKind {
    /// A rotation began.
    Started,
    /// The new value was written as a pending version.
    PendingCreated {
        /// The pending version.
        version: u64,
    },
    /// The rotator installed the pending value at the provider.
    Installed {
        /// The pending version.
        version: u64,
    },
    /// The rotator proved the pending value works.
    Tested {
        /// The pending version.
        version: u64,
    },
    /// The pending version became current.
    Finished {
        /// The new current version.
        version: u64,
        /// The replaced version, now `previous`.
        previous: Option<u64>,
        /// When the previous version will be revoked.
        #[serde(with = "time::serde::rfc3339")]
        grace_deadline: OffsetDateTime,
    },
    /// The rotation was undone; the current version is unchanged.
    RolledBack {
        /// The step that failed or was interrupted.
        step: Step,
        /// Why.
        reason: String,
    },
    /// A step failed and the rotation will be tried again.
    Retrying {
        /// The step that failed.
        step: Step,
        /// Consecutive failed attempts so far.
        attempt: u32,
        /// The error that made the step fail.
        error: String,
        /// When the next attempt is due.
        #[serde(with = "time::serde::rfc3339")]
        next_attempt_at: OffsetDateTime,
    },
    /// The rotation failed for good after its retries; the current version is unchanged.
    Failed {
        /// The step that failed.
        step: Step,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// An old version was revoked at the provider and in Keyward.
    Revoked {
        /// The revoked version.
        version: u64,
    },
    /// Revoking an old version failed repeatedly; it will be tried again later.
    RevokeFailed {
        /// The version that is still valid at the provider.
        version: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// A rotation event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationEvent {
    /// The secret's path.
    pub path: String,
    /// The rotation run, if the event belongs to one (revocations do not).
    pub run_id: Option<i64>,
    /// Whether the rotation is an emergency rotation.
    pub emergency: bool,
    /// When the event happened, by the engine's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    #[serde(flatten)]
    pub kind: RotationEventKind,
}

/// Receives every rotation event. Implementations must not block: hand slow work to a task.
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn publish(&self, event: &RotationEvent);
}

/// A sink that logs every event through `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn publish(&self, event: &RotationEvent) {
        match &event.kind {
            RotationEventKind::Failed { .. } | RotationEventKind::RevokeFailed { .. } => {
                tracing::error!(path = %event.path, run_id = ?event.run_id, event = ?event.kind, "rotation event");
            }
            RotationEventKind::RolledBack { .. } | RotationEventKind::Retrying { .. } => {
                tracing::warn!(path = %event.path, run_id = ?event.run_id, event = ?event.kind, "rotation event");
            }
            _ => {
                tracing::info!(path = %event.path, run_id = ?event.run_id, event = ?event.kind, "rotation event");
            }
        }
    }
}

/// A sink that keeps every event in memory; for tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<RotationEvent>>,
}

impl MemorySink {
    /// Creates an empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the events received so far.
    pub fn events(&self) -> Vec<RotationEvent> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Returns the events received so far for `path`.
    pub fn events_for(&self, path: &str) -> Vec<RotationEventKind> {
        self.events()
            .into_iter()
            .filter(|event| event.path == path)
            .map(|event| event.kind)
            .collect()
    }
}

impl EventSink for MemorySink {
    fn publish(&self, event: &RotationEvent) {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn event_serializes_flat() {
        let event = RotationEvent {
            path: "team/app/key".to_owned(),
            run_id: Some(3),
            emergency: false,
            at: datetime!(2028-02-29 00:00 UTC),
            kind: RotationEventKind::PendingCreated { version: 4 },
        };
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["event"], "pending_created");
        assert_eq!(json["version"], 4);
        assert_eq!(json["at"], "2028-02-29T00:00:00Z");
    }

    #[test]
    fn steps_round_trip() {
        for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert_eq!(Step::parse("revoke"), None);
    }
}
