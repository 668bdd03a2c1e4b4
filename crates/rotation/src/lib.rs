//! Rotation of Keyward secrets: scheduled and emergency rotation with grace periods, provider
//! rotators, and a state machine that survives crashes.
//!
//! A secret with a [`RotationPolicy`] rotates on its [`Schedule`]: the [`Scheduler`] finds it
//! through a due-time index, takes a lease so that only one process acts on it, and drives the
//! four steps: **create** (a [`Generator`] or the provider makes the value, written as the
//! `pending` version), **set** (the [`Rotator`] installs it at the provider), **test** (the rotator
//! proves it works) and **finish** (`pending` becomes `current`, the old `current` becomes
//! `previous` until its grace deadline). After the deadline the rotator revokes the old credential
//! and the version becomes `revoked`. An emergency rotation ([`Scheduler::rotate_now`]) has no
//! grace period and revokes at once.
//!
//! Each step is recorded in the engine's SQLite database ([`RotationDb`]) before and after it
//! acts. After a crash, a run that the provider had not confirmed rolls back; one that it had
//! rolls forward. Every step emits a [`RotationEvent`] to an [`EventSink`] and to the policy's
//! notification webhooks.
//!
//! The engine never opens a secret store: it writes and promotes versions through
//! [`SecretTarget`], which the secrets manager implements. [`MemoryTarget`] is an in-memory
//! implementation for tests; [`ManagerTarget`] is the one the server uses, over the secrets
//! manager, with [`ManagerEventSink`] writing every step to the audit log.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use keyward_rotation::*;
//! use time::macros::datetime;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let db = RotationDb::open(dir.path().join("rotation.db")).await?;
//! let target = Arc::new(MemoryTarget::new());
//! target.put_current("team/app/token", SecretValue::new("first".to_owned()));
//! let clock = Arc::new(ManualClock::new(datetime!(2028-01-31 00:00 UTC)));
//! let config = EngineConfig { jitter_window: time::Duration::ZERO, ..EngineConfig::default() };
//! let engine = Arc::new(Engine::new(db, target.clone(), clock.clone(), Arc::new(TracingSink), config));
//!
//! let policy = RotationPolicy::from_toml(r#"
//!     schedule = "monthly"
//!     grace = "1d"
//!     generator = { type = "random", prefix = "tok-" }
//! "#)?;
//! let due = engine.set_policy("team/app/token", &policy).await?;
//! assert_eq!(due, datetime!(2028-02-29 00:00 UTC));
//!
//! let scheduler = Scheduler::new(engine);
//! clock.set(due);
//! let report = scheduler.run_due().await?;
//! assert_eq!(report.finished, 1);
//! assert_eq!(target.stages("team/app/token"), [VersionStage::Previous, VersionStage::Current]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Not done here
//!
//! - A credential that a provider issued during `create` is lost if the process dies before
//!   the engine records its id; such a key stays at the provider unused (see the OpenAI
//!   rotator).
//! - Notification deliveries pending at shutdown are not resent after a restart.
//! - Leases have no fencing at the provider: a process paused inside a provider call for longer
//!   than its lease can still complete that one call. The step timeout (below the lease
//!   duration) bounds this for hung calls, not for a stopped process.
//! - The PostgreSQL rotator connects without TLS (sqlx is built without a TLS feature).
//! - An emergency rotation revokes the version it replaces at once; older versions still in
//!   their grace period keep their deadlines.

mod clock;
mod db;
mod duration;
mod engine;
mod events;
mod generate;
mod manager_target;
mod notify;
mod policy;
mod rotator;
mod run;
mod schedule;
mod scheduler;
mod secret;
pub mod sign;
mod target;

pub use clock::{Clock, ManualClock, SystemClock};
pub use db::{DbError, DeliveryRow, FinishRecord, RevocationRow, RotationDb, RunRow, ScheduleRow};
pub use duration::{format_duration, parse_duration};
pub use engine::{Engine, EngineConfig, EngineError, RotationStatus};
pub use events::{EventSink, MemorySink, RotationEvent, RotationEventKind, Step, TracingSink};
pub use generate::{
    ApiKeyGenerator, CommandGenerator, GenerateError, Generator, Generators, PasswordGenerator,
};
pub use manager_target::{ManagerEventSink, ManagerTarget, VALUE_FIELD};
pub use notify::Notifier;
pub use policy::{
    CharClass, Charset, GeneratorSpec, MAX_GRACE, NotifySpec, PolicyError, RotationPolicy,
    RotatorSpec,
};
pub use rotator::{
    Credential, OpenAiRotator, PostgresRotator, Prepared, RollBack, Rotator, RotatorError,
    Rotators, VersionRef, WebhookRotator,
};
pub use run::{PathOutcome, RunResult};
pub use schedule::{Schedule, ScheduleError, jitter_offset};
pub use scheduler::{Scheduler, TickReport};
pub use secret::SecretValue;
pub use target::{
    MemoryTarget, MemoryVersion, SecretSource, SecretTarget, TargetError, TargetSource,
    VersionStage,
};
