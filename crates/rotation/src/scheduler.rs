//! The scheduler: finds due secrets through the due-time index, takes each one's lease, and
//! runs the state machine.
//!
//! Any number of schedulers (in one process or several) may share a rotation database. A
//! scheduler acts on a secret only while it holds the secret's lease, renews the lease before
//! every step, and re-reads the secret's state after taking it; a rotation that finished moves
//! the due time forward before the lease is released. So each due rotation runs once, and a
//! holder that dies is replaced when its lease expires.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::{Engine, EngineError, parse_stored_policy};
use crate::run::{PathOutcome, RunContext, RunResult};

/// Totals of one scheduler pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Paths this scheduler processed (held the lease for).
    pub processed: usize,
    /// Rotations finished.
    pub finished: usize,
    /// Rotations rolled back.
    pub rolled_back: usize,
    /// Rotations that failed (will retry or stopped).
    pub failed: usize,
    /// Versions revoked.
    pub revoked: usize,
    /// Paths skipped because another holder had the lease.
    pub busy: usize,
    /// Paths whose processing ended with an error (logged).
    pub errors: usize,
}

/// Runs due rotations and revocations.
#[derive(Clone)]
pub struct Scheduler {
    engine: Arc<Engine>,
    holder: String,
}

impl Scheduler {
    /// Creates a scheduler with a fresh random lease holder id.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_holder(engine, format!("scheduler-{}", uuid::Uuid::new_v4()))
    }

    /// Creates a scheduler with a given holder id. A process restarted with the same id takes
    /// its own leases back at once instead of waiting for them to expire.
    pub fn with_holder(engine: Arc<Engine>, holder: String) -> Self {
        Self { engine, holder }
    }

    /// Returns the lease holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Returns the engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Processes one batch of due paths (at most `batch_size`), `concurrency` at a time.
    pub async fn tick(&self) -> Result<TickReport, EngineError> {
        let now = self.engine.clock.now();
        let paths = self
            .engine
            .db
            .due_paths(now, self.engine.config.batch_size)
            .await?;

        let permits = Arc::new(Semaphore::new(self.engine.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for path in paths {
            let scheduler = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = scheduler.process(&path, None).await;
                (path, result)
            });
        }

        let mut report = TickReport::default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(outcome))) => add_outcome(&mut report, &outcome),
                Ok((path, Err(error))) => {
                    report.errors += 1;
                    tracing::error!(path = %path, %error, "rotation processing failed");
                }
                Err(error) => {
                    report.errors += 1;
                    tracing::error!(%error, "rotation task panicked or was cancelled");
                }
            }
        }
        Ok(report)
    }

    /// Runs ticks until one processes nothing; returns the summed report.
    pub async fn run_due(&self) -> Result<TickReport, EngineError> {
        let mut total = TickReport::default();
        loop {
            let report = self.tick().await?;
            let progressed = report.processed > 0;
            total.processed += report.processed;
            total.finished += report.finished;
            total.rolled_back += report.rolled_back;
            total.failed += report.failed;
            total.revoked += report.revoked;
            total.busy += report.busy;
            total.errors += report.errors;
            if !progressed {
                return Ok(total);
            }
        }
    }

    /// Ticks every `interval` until `shutdown` completes. Errors are logged and the loop goes
    /// on, so a database hiccup does not stop rotation for good.
    pub async fn run_until(&self, interval: StdDuration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let interval = interval.max(StdDuration::from_millis(10));
        tracing::info!(holder = %self.holder, "rotation scheduler started");
        loop {
            if let Err(error) = self.tick().await {
                tracing::error!(holder = %self.holder, %error, "rotation scheduler tick failed");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!(holder = %self.holder, "rotation scheduler stopped");
    }

    /// Rotates `path` now, whatever its schedule. An unfinished earlier run is resumed (or
    /// rolled back) first. With `emergency`, the old version gets no grace period and is revoked
    /// at the provider before this returns.
    pub async fn rotate_now(
        &self,
        path: &str,
        emergency: bool,
    ) -> Result<PathOutcome, EngineError> {
        let outcome = self.process(path, Some(emergency)).await?;
        if outcome.busy {
            return Err(EngineError::LeaseBusy(path.to_owned()));
        }
        Ok(outcome)
    }

    /// Takes the lease of `path`, does what is due (or forced), and releases the lease.
    async fn process(&self, path: &str, force: Option<bool>) -> Result<PathOutcome, EngineError> {
        let engine = &self.engine;
        let now = engine.clock.now();
        let until = now + engine.config.lease_duration;
        if !engine.db.try_lease(path, &self.holder, now, until).await? {
            if engine.db.schedule(path).await?.is_none() {
                return Err(EngineError::NoPolicy(path.to_owned()));
            }
            return Ok(PathOutcome {
                busy: true,
                ..PathOutcome::default()
            });
        }

        let result = self.process_leased(path, force, until).await;
        if let Err(error) = engine.db.release_lease(path, &self.holder).await {
            tracing::error!(path, %error, "failed to release a rotation lease; it expires on its own");
        }
        result
    }

    async fn process_leased(
        &self,
        path: &str,
        force: Option<bool>,
        lease_until: time::OffsetDateTime,
    ) -> Result<PathOutcome, EngineError> {
        let engine = &self.engine;
        let schedule = engine
            .db
            .schedule(path)
            .await?
            .ok_or_else(|| EngineError::NoPolicy(path.to_owned()))?;
        let policy = parse_stored_policy(&schedule.policy_json, path)?;
        let rotator = policy
            .rotator
            .as_ref()
            .map(|spec| engine.rotators.build(spec))
            .transpose()?;
        let ctx = RunContext {
            path,
            holder: &self.holder,
            policy,
            schedule,
            rotator,
            lease_until: std::sync::Mutex::new(lease_until),
        };

        let mut outcome = PathOutcome::default();
        if let Some(run) = engine.db.active_run(path).await? {
            tracing::info!(
                path,
                run_id = run.id,
                step = run.step.as_str(),
                "resuming an unfinished rotation"
            );
            outcome.runs.push(engine.drive(&ctx, run, true).await?);
        }

        // Re-read: the resumed run may have moved the due time.
        let due_at = engine
            .db
            .schedule(path)
            .await?
            .map(|schedule| schedule.due_at);
        let due = due_at.is_some_and(|due_at| due_at <= engine.clock.now());
        let active = engine.db.active_run(path).await?.is_some();
        if !active && (force.is_some() || due) {
            let emergency = force.unwrap_or(false);
            outcome.runs.push(engine.start_run(&ctx, emergency).await?);
        }

        outcome.revoked = engine.revoke_due(&ctx).await?;
        Ok(outcome)
    }
}

fn add_outcome(report: &mut TickReport, outcome: &PathOutcome) {
    if outcome.busy {
        report.busy += 1;
        return;
    }
    report.processed += 1;
    for run in &outcome.runs {
        match run {
            RunResult::Finished => report.finished += 1,
            RunResult::RolledBack => report.rolled_back += 1,
            RunResult::Retrying | RunResult::Failed => report.failed += 1,
        }
    }
    report.revoked += outcome.revoked.len();
}
