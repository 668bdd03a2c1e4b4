//! The rotation engine: its dependencies and settings, policy registration and status.
//!
//! The state machine itself is in `run.rs` and the scheduling loop in `scheduler.rs`. The engine
//! reaches secrets only through [`SecretTarget`]; it never opens a secret store.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::db::{DbError, RotationDb, RunRow};
use crate::events::{EventSink, RotationEvent, RotationEventKind, Step};
use crate::generate::{GenerateError, Generators};
use crate::notify::Notifier;
use crate::policy::{PolicyError, RotationPolicy};
use crate::rotator::{RotatorError, Rotators};
use crate::schedule::{ScheduleError, jitter_offset};
use crate::target::{SecretTarget, TargetError, TargetSource};

/// Tuning of the engine. The defaults suit production; tests shorten them.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Consecutive failed attempts after which a rotation stops until its next scheduled time.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles after each failure.
    pub backoff_base: Duration,
    /// Maximum delay between retries.
    pub backoff_max: Duration,
    /// How long a lease lasts without renewal; a holder that dies is replaced after this.
    pub lease_duration: Duration,
    /// Due times are spread over this window, by path (see [`crate::jitter_offset`]).
    pub jitter_window: Duration,
    /// How many due paths one scheduler tick takes.
    pub batch_size: u32,
    /// How many paths one scheduler rotates at once.
    pub concurrency: usize,
    /// Attempts per notification delivery.
    pub notify_attempts: u32,
    /// Delay before the first notification retry (real time); it doubles after each failure.
    pub notify_first_delay: StdDuration,
    /// Real-time limit of one generator or provider call. Keep it well below
    /// `lease_duration`, so that a call cannot outlive the lease it started under.
    pub step_timeout: StdDuration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base: Duration::seconds(30),
            backoff_max: Duration::hours(1),
            lease_duration: Duration::minutes(5),
            jitter_window: Duration::hours(1),
            batch_size: 100,
            concurrency: 8,
            notify_attempts: 5,
            notify_first_delay: StdDuration::from_secs(1),
            step_timeout: StdDuration::from_secs(120),
        }
    }
}

/// Errors of the rotation engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The rotation database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The schedule has no next occurrence.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The secret store refused or failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The generator failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The provider rotator failed.
    #[error(transparent)]
    Rotator(#[from] RotatorError),
    /// The secret has no rotation policy.
    #[error("secret {0:?} has no rotation policy; set one first")]
    NoPolicy(String),
    /// Another process holds the secret's lease.
    #[error("secret {0:?} is being rotated by another process; try again after its lease ends")]
    LeaseBusy(String),
    /// A generator or provider call ran past the step timeout.
    #[error(
        "the {operation} call timed out after {seconds}s; check that the provider is reachable"
    )]
    StepTimeout {
        /// The call, e.g. `set`.
        operation: &'static str,
        /// The timeout, in seconds.
        seconds: u64,
    },
    /// The lease ran out during the rotation and another process may have taken over.
    #[error("lost the lease on secret {0:?}; the rotation continues in whichever process holds it")]
    LeaseLost(String),
}

impl EngineError {
    /// Returns whether the error ends processing at once (database trouble, lost lease) instead of
    /// counting as a failed step.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, EngineError::Db(_) | EngineError::LeaseLost(_))
    }
}

/// The state of one secret's rotation, for `rotation status`.
#[derive(Clone, Debug)]
pub struct RotationStatus {
    /// The secret's path.
    pub path: String,
    /// The policy.
    pub policy: RotationPolicy,
    /// `idle`, `running`, `retrying` or `failed`.
    pub state: String,
    /// When the scheduler next acts on the secret.
    pub next_due: OffsetDateTime,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last rotation finished.
    pub last_rotated_at: Option<OffsetDateTime>,
    /// The unfinished run, if any.
    pub active_run: Option<RunRow>,
    /// Versions waiting for revocation, with their deadlines.
    pub pending_revocations: Vec<(u64, OffsetDateTime)>,
}

/// The rotation engine: the database, the target, the generators, rotators and sinks.
pub struct Engine {
    pub(crate) db: RotationDb,
    pub(crate) target: Arc<dyn SecretTarget>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) generators: Generators,
    pub(crate) rotators: Rotators,
    pub(crate) notifier: Notifier,
    pub(crate) config: EngineConfig,
}

impl Engine {
    /// Creates an engine. Rotators and notifications read their own credentials (admin keys,
    /// signing keys) through `target`.
    pub fn new(
        db: RotationDb,
        target: Arc<dyn SecretTarget>,
        clock: Arc<dyn Clock>,
        events: Arc<dyn EventSink>,
        config: EngineConfig,
    ) -> Self {
        let source = Arc::new(TargetSource(target.clone()));
        let notifier = Notifier::new(
            db.clone(),
            source.clone(),
            clock.clone(),
            config.notify_attempts,
            config.notify_first_delay,
        );
        Self {
            db,
            target,
            clock,
            events,
            generators: Generators::new(),
            rotators: Rotators::new(source),
            notifier,
            config,
        }
    }

    /// Replaces the generator registry (to add custom generators).
    pub fn with_generators(mut self, generators: Generators) -> Self {
        self.generators = generators;
        self
    }

    /// Replaces the rotator registry (to add custom rotators or another credential source).
    pub fn with_rotators(mut self, rotators: Rotators) -> Self {
        self.rotators = rotators;
        self
    }

    /// Returns the engine's database.
    pub fn db(&self) -> &RotationDb {
        &self.db
    }

    /// Returns the notifier, e.g. to wait for deliveries in tests.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Sets or replaces the rotation policy of `path` and returns when it is next due. Without
    /// an anchor in the policy, the schedule counts from now, so the first rotation is one
    /// period away.
    pub async fn set_policy(
        &self,
        path: &str,
        policy: &RotationPolicy,
    ) -> Result<OffsetDateTime, EngineError> {
        policy.validate()?;
        let now = self.clock.now();
        let anchor = match (policy.anchor, self.db.schedule(path).await?) {
            (Some(anchor), _) => anchor,
            (None, Some(existing)) => existing.anchor,
            (None, None) => now,
        };
        let due = self.next_due(path, policy, anchor, now)?;
        let json = serde_json::to_string(policy).map_err(PolicyError::from)?;
        self.db.upsert_schedule(path, &json, anchor, due).await?;
        Ok(due)
    }

    /// Removes the rotation policy of `path`; returns whether it had one.
    pub async fn remove_policy(&self, path: &str) -> Result<bool, EngineError> {
        Ok(self.db.delete_schedule(path).await?)
    }

    /// Returns the rotation state of `path`, or `None` if it has no policy.
    pub async fn status(&self, path: &str) -> Result<Option<RotationStatus>, EngineError> {
        let Some(schedule) = self.db.schedule(path).await? else {
            return Ok(None);
        };
        let policy = parse_stored_policy(&schedule.policy_json, path)?;
        Ok(Some(RotationStatus {
            path: path.to_owned(),
            policy,
            state: schedule.status,
            next_due: schedule.due_at,
            failures: schedule.failures,
            last_error: schedule.last_error,
            last_rotated_at: schedule.last_rotated_at,
            active_run: self.db.active_run(path).await?,
            pending_revocations: self.db.pending_revocations(path).await?,
        }))
    }

    /// Returns the next scheduled time after `after`, plus the path's jitter.
    pub(crate) fn next_due(
        &self,
        path: &str,
        policy: &RotationPolicy,
        anchor: OffsetDateTime,
        after: OffsetDateTime,
    ) -> Result<OffsetDateTime, EngineError> {
        let nominal = policy.schedule.next_after(anchor, after)?;
        nominal
            .checked_add(jitter_offset(path, self.config.jitter_window))
            .ok_or_else(|| {
                EngineError::from(ScheduleError::NoOccurrence(policy.schedule.to_string()))
            })
    }

    /// Returns the delay before retry number `failures` (1 for the first retry).
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let delay = self
            .config
            .backoff_base
            .checked_mul(1_i32 << exponent)
            .unwrap_or(self.config.backoff_max);
        delay.min(self.config.backoff_max)
    }

    /// Publishes an event to the sink and the policy's webhooks.
    pub(crate) async fn emit(
        &self,
        policy: &RotationPolicy,
        path: &str,
        run: Option<&RunRow>,
        kind: RotationEventKind,
    ) {
        let event = RotationEvent {
            path: path.to_owned(),
            run_id: run.map(|run| run.id),
            emergency: run.is_some_and(|run| run.emergency),
            at: self.clock.now(),
            kind,
        };
        self.events.publish(&event);
        self.notifier.notify(&policy.notify, &event).await;
    }
}

pub(crate) fn parse_stored_policy(json: &str, path: &str) -> Result<RotationPolicy, EngineError> {
    serde_json::from_str(json).map_err(|_| {
        EngineError::Db(DbError::Corrupt {
            field: "policy",
            path: path.to_owned(),
        })
    })
}

/// Returns whether `run` stopped before the provider confirmed the new credential. An
/// interrupted run in such a step rolls back, and one in a later step rolls forward.
pub(crate) fn before_set_done(run: &RunRow) -> bool {
    matches!(
        (run.step, run.step_done),
        (Step::Create, _) | (Step::Set, false)
    )
}
