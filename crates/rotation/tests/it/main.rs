//! Integration tests of the rotation engine against real SQLite files, local HTTP fakes and,
//! when configured, a real PostgreSQL server.

mod crash;
mod fake_openai;
mod faults;
mod leases;
mod manager_target;
mod openai;
mod postgres;
mod schedule_year;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

use keyward_rotation::{
    Engine, EngineConfig, ManualClock, MemorySink, MemoryTarget, RotationDb, RotationPolicy,
    Rotator, Rotators, Scheduler, SecretTarget, SecretValue, TargetSource, VersionStage,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// The instant every test clock starts at.
pub(crate) const START: OffsetDateTime = datetime!(2028-01-15 00:00 UTC);

/// Settings with no jitter and short, clock-driven retries.
pub(crate) fn test_config() -> EngineConfig {
    EngineConfig {
        max_attempts: 3,
        backoff_base: time::Duration::minutes(1),
        backoff_max: time::Duration::minutes(10),
        lease_duration: time::Duration::minutes(5),
        jitter_window: time::Duration::ZERO,
        notify_attempts: 3,
        notify_first_delay: std::time::Duration::from_millis(20),
        ..EngineConfig::default()
    }
}

/// An engine on a temporary database with a manual clock and an in-memory target.
pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) target: Arc<dyn SecretTarget>,
    pub(crate) memory: MemoryTarget,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) sink: Arc<MemorySink>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) scheduler: Scheduler,
    pub(crate) custom: Vec<(String, Arc<dyn Rotator>)>,
}

impl Harness {
    pub(crate) async fn new() -> Self {
        let memory = MemoryTarget::new();
        Self::with_target(memory.clone(), Arc::new(memory), Vec::new(), test_config()).await
    }

    pub(crate) async fn with_rotator(name: &str, rotator: Arc<dyn Rotator>) -> Self {
        let memory = MemoryTarget::new();
        Self::with_target(
            memory.clone(),
            Arc::new(memory),
            vec![(name.to_owned(), rotator)],
            test_config(),
        )
        .await
    }

    pub(crate) async fn with_target(
        memory: MemoryTarget,
        target: Arc<dyn SecretTarget>,
        custom: Vec<(String, Arc<dyn Rotator>)>,
        config: EngineConfig,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = Arc::new(ManualClock::new(START));
        let sink = Arc::new(MemorySink::new());
        let engine = build_engine(
            &dir.path().join("rotation.db"),
            &target,
            &clock,
            &sink,
            &custom,
            config,
        )
        .await;
        let scheduler = Scheduler::new(engine.clone());
        Self {
            dir,
            target,
            memory,
            clock,
            sink,
            engine,
            scheduler,
            custom,
        }
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("rotation.db")
    }

    /// Simulates a process restart: a new engine on a freshly opened database, with the same
    /// secret store, clock and provider, and a new lease holder id.
    pub(crate) async fn restart(&mut self) {
        self.engine.db().close().await;
        self.engine = build_engine(
            &self.db_path(),
            &self.target,
            &self.clock,
            &self.sink,
            &self.custom,
            test_config(),
        )
        .await;
        self.scheduler = Scheduler::new(self.engine.clone());
    }

    /// A second engine and scheduler on the same database file, as another process would have.
    pub(crate) async fn second_process(&self) -> Scheduler {
        let engine = build_engine(
            &self.db_path(),
            &self.target,
            &self.clock,
            &self.sink,
            &self.custom,
            test_config(),
        )
        .await;
        Scheduler::new(engine)
    }

    pub(crate) async fn set_policy(&self, path: &str, toml: &str) -> OffsetDateTime {
        let policy = RotationPolicy::from_toml(toml).expect("valid policy");
        self.engine
            .set_policy(path, &policy)
            .await
            .expect("set policy")
    }

    /// Asserts the invariant every test relies on: at most one current and one pending version.
    pub(crate) fn assert_consistent(&self, path: &str) {
        let stages = self.memory.stages(path);
        let current = stages
            .iter()
            .filter(|s| **s == VersionStage::Current)
            .count();
        let pending = stages
            .iter()
            .filter(|s| **s == VersionStage::Pending)
            .count();
        assert!(
            current <= 1,
            "{path} has {current} current versions: {stages:?}"
        );
        assert!(
            pending <= 1,
            "{path} has {pending} pending versions: {stages:?}"
        );
    }

    pub(crate) fn current_value(&self, path: &str) -> Option<String> {
        self.memory
            .versions(path)
            .into_iter()
            .find(|version| version.stage == VersionStage::Current)
            .map(|version| version.value.expose_secret().to_owned())
    }
}

async fn build_engine(
    db_path: &std::path::Path,
    target: &Arc<dyn SecretTarget>,
    clock: &Arc<ManualClock>,
    sink: &Arc<MemorySink>,
    custom: &[(String, Arc<dyn Rotator>)],
    config: EngineConfig,
) -> Arc<Engine> {
    let db = RotationDb::open(db_path).await.expect("open rotation db");
    let mut rotators = Rotators::new(Arc::new(TargetSource(target.clone())));
    for (name, rotator) in custom {
        rotators.register(name.clone(), rotator.clone());
    }
    Arc::new(
        Engine::new(db, target.clone(), clock.clone(), sink.clone(), config)
            .with_rotators(rotators),
    )
}

pub(crate) fn secret(text: &str) -> SecretValue {
    SecretValue::new(text.to_owned())
}

/// Reads a service address from the environment: a missing one fails under `CI=true` and
/// skips (loudly) elsewhere.
pub(crate) fn service_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{name} is not set; scripts/test.sh starts the service and sets it")
        }
        _ => {
            eprintln!(
                "!!! SKIPPED: {name} is not set; run scripts/test.sh to run this test against a real service"
            );
            None
        }
    }
}
