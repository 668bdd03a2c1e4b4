//! The rotation state machine: create → set → test → finish, then revocation after the grace
//! period.
//!
//! Every step is recorded as started before it acts and as done after, in the rotation
//! database. A run found unfinished (after a crash, or left by a failed step) resumes by one
//! rule: if the provider has not confirmed the new credential (`create`, or `set` not done), it
//! rolls back by discarding the pending version and undoing the provider change; otherwise it
//! rolls forward through `test` and `finish`. Every step is idempotent, so repeating the one
//! that was interrupted is safe. Only `finish` changes which version is current, in one atomic
//! call to the target, so a secret never has two current versions.

use std::sync::Arc;

use crate::db::{FinishRecord, RunRow, ScheduleRow};
use crate::engine::{Engine, EngineError, before_set_done};
use crate::events::{RotationEventKind, Step};
use crate::policy::RotationPolicy;
use crate::rotator::{Credential, Prepared, RollBack, Rotator, VersionRef};
use crate::target::TargetError;

/// Outcome of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// The new version is current.
    Finished,
    /// The run was undone; the current version is unchanged.
    RolledBack,
    /// A step failed; the run will be retried after a backoff.
    Retrying,
    /// A step failed too often; the run stopped until the next scheduled time.
    Failed,
}

/// Summary of the work done on one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathOutcome {
    /// Results of the runs driven, in order (a resumed run, then a new one).
    pub runs: Vec<RunResult>,
    /// Versions revoked.
    pub revoked: Vec<u64>,
    /// Whether another process held the lease, so nothing was done.
    pub busy: bool,
}

/// Everything a run of one path needs.
pub(crate) struct RunContext<'a> {
    pub path: &'a str,
    pub holder: &'a str,
    pub policy: RotationPolicy,
    pub schedule: ScheduleRow,
    pub rotator: Option<Arc<dyn Rotator>>,
    /// When this holder's lease ends, as last written to the database.
    pub lease_until: std::sync::Mutex<time::OffsetDateTime>,
}

impl Engine {
    /// Makes sure the lease lasts through the next step, so a process that lost it stops
    /// acting. No other holder can take a lease before it expires, so one with more than half
    /// its duration left is still held and needs no database write.
    async fn keep_lease(&self, ctx: &RunContext<'_>) -> Result<(), EngineError> {
        let now = self.clock.now();
        let lease_until = *ctx
            .lease_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now + self.config.lease_duration / 2 < lease_until {
            return Ok(());
        }

        let until = now + self.config.lease_duration;
        if !self
            .db
            .renew_lease(ctx.path, ctx.holder, now, until)
            .await?
        {
            return Err(EngineError::LeaseLost(ctx.path.to_owned()));
        }
        *ctx.lease_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
        Ok(())
    }

    /// Runs a generator or provider call with the step timeout, which is shorter than the lease,
    /// so a hung provider cannot keep a step running after another process took over.
    async fn bounded<T, E: Into<EngineError>>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(self.config.step_timeout, call).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(EngineError::StepTimeout {
                operation,
                seconds: self.config.step_timeout.as_secs(),
            }),
        }
    }

    async fn version_ref(&self, path: &str, version: u64) -> Result<VersionRef, EngineError> {
        Ok(VersionRef {
            version,
            provider_ref: self.db.provider_ref(path, version).await?,
        })
    }

    /// Starts a new run of `ctx.path` and drives it to its end.
    pub(crate) async fn start_run(
        &self,
        ctx: &RunContext<'_>,
        emergency: bool,
    ) -> Result<RunResult, EngineError> {
        // An emergency ends every grace period of the path at once, before the run itself, so
        // that the revocations happen even if the new version cannot be made.
        if emergency {
            self.db.expire_grace(ctx.path, self.clock.now()).await?;
        }

        let current = self.target.current_version(ctx.path).await?;
        let run = self
            .db
            .start_run(ctx.path, emergency, current, self.clock.now())
            .await?;
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(&run),
            RotationEventKind::Started,
        )
        .await;
        self.drive(ctx, run, false).await
    }

    /// Drives a run from its recorded step to its end. `resumed` runs were found unfinished in
    /// the database, so a step recorded as started may have been cut off.
    pub(crate) async fn drive(
        &self,
        ctx: &RunContext<'_>,
        mut run: RunRow,
        resumed: bool,
    ) -> Result<RunResult, EngineError> {
        if resumed && before_set_done(&run) {
            let reason =
                "the rotation was interrupted before the provider confirmed the new credential";
            return match self.roll_back(ctx, &run, reason, true).await {
                Ok(()) => Ok(RunResult::RolledBack),
                Err(error) if error.is_fatal() => Err(error),
                Err(error) => self.step_failed(ctx, run, error, true).await,
            };
        }

        loop {
            let result = match (run.step, run.step_done) {
                (Step::Create, false) => self.step_create(ctx, &mut run).await,
                (Step::Create, true) if ctx.rotator.is_none() => {
                    self.step_finish(ctx, &mut run).await
                }
                (Step::Create, true) | (Step::Set, false) => self.step_set(ctx, &mut run).await,
                (Step::Set, true) | (Step::Test, false) => self.step_test(ctx, &mut run).await,
                (Step::Test, true) | (Step::Finish, false) => self.step_finish(ctx, &mut run).await,
                (Step::Finish, true) => return Ok(RunResult::Finished),
            };
            match result {
                Ok(()) => {}
                Err(error) if error.is_fatal() => return Err(error),
                Err(error) => return self.step_failed(ctx, run, error, resumed).await,
            }
        }
    }

    async fn step_create(&self, ctx: &RunContext<'_>, run: &mut RunRow) -> Result<(), EngineError> {
        self.keep_lease(ctx).await?;
        let generator = self.generators.build(&ctx.policy.generator)?;
        let generated = self
            .bounded("generate", generator.generate(ctx.path))
            .await?;

        let current = match run.previous_version {
            Some(version) => Some(self.version_ref(ctx.path, version).await?),
            None => None,
        };
        let prepared = match &ctx.rotator {
            Some(rotator) => {
                self.bounded(
                    "prepare",
                    rotator.prepare(ctx.path, current.as_ref(), generated),
                )
                .await?
            }
            None => Prepared {
                value: generated,
                provider_ref: None,
                attributes: Default::default(),
            },
        };

        // The provider's id is recorded before the version is written, so that a rollback
        // after a crash here can still remove a credential the provider already issued.
        if prepared.provider_ref.is_some() {
            run.pending_ref = prepared.provider_ref.clone();
            self.db.record_step(run, self.clock.now()).await?;
        }

        // The provider call may have outlived the lease; only the holder may write a version.
        self.keep_lease(ctx).await?;
        let version = self
            .target
            .write_pending(ctx.path, &prepared.value, &prepared.attributes)
            .await?;
        run.pending_version = Some(version);
        run.step_done = true;
        self.db.record_step(run, self.clock.now()).await?;
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(run),
            RotationEventKind::PendingCreated { version },
        )
        .await;
        Ok(())
    }

    fn pending_of(run: &RunRow) -> Result<u64, EngineError> {
        run.pending_version.ok_or_else(|| {
            EngineError::Target(TargetError::NotFound {
                path: run.path.clone(),
                version: 0,
            })
        })
    }

    async fn begin_step(
        &self,
        ctx: &RunContext<'_>,
        run: &mut RunRow,
        step: Step,
    ) -> Result<(), EngineError> {
        self.keep_lease(ctx).await?;
        run.step = step;
        run.step_done = false;
        self.db.record_step(run, self.clock.now()).await?;
        Ok(())
    }

    async fn end_step(&self, run: &mut RunRow) -> Result<(), EngineError> {
        run.step_done = true;
        self.db.record_step(run, self.clock.now()).await?;
        Ok(())
    }

    async fn step_set(&self, ctx: &RunContext<'_>, run: &mut RunRow) -> Result<(), EngineError> {
        let version = Self::pending_of(run)?;
        self.begin_step(ctx, run, Step::Set).await?;
        if let Some(rotator) = &ctx.rotator {
            let value = self.target.read_version(ctx.path, version).await?;
            let credential = Credential {
                version,
                value: &value,
                provider_ref: run.pending_ref.as_deref(),
            };
            self.bounded("set", rotator.set(ctx.path, credential))
                .await?;
        }
        self.end_step(run).await?;
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(run),
            RotationEventKind::Installed { version },
        )
        .await;
        Ok(())
    }

    async fn step_test(&self, ctx: &RunContext<'_>, run: &mut RunRow) -> Result<(), EngineError> {
        let version = Self::pending_of(run)?;
        self.begin_step(ctx, run, Step::Test).await?;
        if let Some(rotator) = &ctx.rotator {
            let value = self.target.read_version(ctx.path, version).await?;
            let credential = Credential {
                version,
                value: &value,
                provider_ref: run.pending_ref.as_deref(),
            };
            self.bounded("test", rotator.test(ctx.path, credential))
                .await?;
        }
        self.end_step(run).await?;
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(run),
            RotationEventKind::Tested { version },
        )
        .await;
        Ok(())
    }

    async fn step_finish(&self, ctx: &RunContext<'_>, run: &mut RunRow) -> Result<(), EngineError> {
        let version = Self::pending_of(run)?;
        self.begin_step(ctx, run, Step::Finish).await?;
        let now = self.clock.now();
        let grace = if run.emergency {
            time::Duration::ZERO
        } else {
            ctx.policy.grace
        };
        let deadline = now + grace;
        let previous = self.target.promote(ctx.path, version, deadline).await?;

        let next_due = self.next_due(ctx.path, &ctx.policy, ctx.schedule.anchor, now)?;
        self.db
            .complete_finish(&FinishRecord {
                run_id: run.id,
                path: ctx.path,
                version,
                provider_ref: run.pending_ref.as_deref(),
                previous: previous.map(|previous| (previous, deadline)),
                next_due,
                now,
            })
            .await?;
        run.step_done = true;
        run.outcome = Some("finished".to_owned());
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(run),
            RotationEventKind::Finished {
                version,
                previous,
                grace_deadline: deadline,
            },
        )
        .await;
        Ok(())
    }

    /// Undoes a run that the provider has not confirmed: the rotator restores the current
    /// credential, and the pending version is discarded. `interrupted` runs were cut off by a
    /// crash, so a pending version they did not record may still be theirs.
    async fn roll_back(
        &self,
        ctx: &RunContext<'_>,
        run: &RunRow,
        reason: &str,
        interrupted: bool,
    ) -> Result<(), EngineError> {
        self.keep_lease(ctx).await?;
        let set_attempted = !matches!(run.step, Step::Create);
        if let Some(rotator) = &ctx.rotator
            && (set_attempted || run.pending_ref.is_some())
        {
            let current_version = self.target.current_version(ctx.path).await?;
            let current = match current_version {
                Some(version) => Some((
                    self.target.read_version(ctx.path, version).await?,
                    self.version_ref(ctx.path, version).await?,
                )),
                None => None,
            };
            let undo = RollBack {
                pending_ref: run.pending_ref.as_deref(),
                current: current.as_ref().map(|(value, reference)| Credential {
                    version: reference.version,
                    value,
                    provider_ref: reference.provider_ref.as_deref(),
                }),
                set_attempted,
            };
            self.bounded("roll back", rotator.roll_back(ctx.path, undo))
                .await?;
        }

        // A crash inside `create` can leave a pending version the run never recorded. Without a
        // crash, an unrecorded pending version belongs to someone else and stays.
        let pending = match run.pending_version {
            Some(version) => Some(version),
            None if interrupted && run.step == Step::Create => {
                self.target.pending_version(ctx.path).await?
            }
            None => None,
        };
        if let Some(version) = pending {
            self.keep_lease(ctx).await?;
            self.target.discard_pending(ctx.path, version).await?;
        }

        self.db
            .end_run(run.id, "rolled_back", Some(reason), self.clock.now())
            .await?;
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(run),
            RotationEventKind::RolledBack {
                step: run.step,
                reason: reason.to_owned(),
            },
        )
        .await;
        Ok(())
    }

    /// Handles a failed step: undo it if the provider has not confirmed the new credential,
    /// then schedule a retry with backoff, or stop after too many failures.
    async fn step_failed(
        &self,
        ctx: &RunContext<'_>,
        mut run: RunRow,
        error: EngineError,
        interrupted: bool,
    ) -> Result<RunResult, EngineError> {
        let step = run.step;
        let message = error.to_string();
        tracing::warn!(path = ctx.path, run_id = run.id, step = step.as_str(), error = %message, "rotation step failed");

        if before_set_done(&run) && run.outcome.is_none() {
            match self.roll_back(ctx, &run, &message, interrupted).await {
                Ok(()) => run.outcome = Some("rolled_back".to_owned()),
                Err(rollback_error) if rollback_error.is_fatal() => return Err(rollback_error),
                Err(rollback_error) => {
                    // The run stays active in its step; resuming it tries the rollback again.
                    tracing::error!(path = ctx.path, run_id = run.id, error = %rollback_error, "rotation rollback failed");
                    run.last_error = Some(format!("{message}; rollback failed: {rollback_error}"));
                    self.db.record_step(&run, self.clock.now()).await?;
                }
            }
        } else {
            run.last_error = Some(message.clone());
            self.db.record_step(&run, self.clock.now()).await?;
        }

        let now = self.clock.now();
        let failures = self
            .db
            .schedule(ctx.path)
            .await?
            .map_or(0, |schedule| schedule.failures)
            .saturating_add(1);
        if failures < self.config.max_attempts {
            let next_attempt_at = now + self.backoff(failures);
            self.db
                .set_schedule_state(
                    ctx.path,
                    next_attempt_at,
                    "retrying",
                    failures,
                    Some(&message),
                )
                .await?;
            self.emit(
                &ctx.policy,
                ctx.path,
                Some(&run),
                RotationEventKind::Retrying {
                    step,
                    attempt: failures,
                    error: message,
                    next_attempt_at,
                },
            )
            .await;
            return Ok(RunResult::Retrying);
        }

        let next_due = self.next_due(ctx.path, &ctx.policy, ctx.schedule.anchor, now)?;
        self.db
            .set_schedule_state(ctx.path, next_due, "failed", 0, Some(&message))
            .await?;
        self.emit(
            &ctx.policy,
            ctx.path,
            Some(&run),
            RotationEventKind::Failed {
                step,
                attempts: failures,
                error: message,
            },
        )
        .await;
        Ok(RunResult::Failed)
    }

    /// Revokes the versions of `ctx.path` whose grace period is over: at the provider first,
    /// then in the store. A failure is retried with backoff and never given up, because the
    /// old credential stays valid until it succeeds.
    pub(crate) async fn revoke_due(&self, ctx: &RunContext<'_>) -> Result<Vec<u64>, EngineError> {
        let mut revoked = Vec::new();
        let now = self.clock.now();
        for row in self.db.due_revocations(ctx.path, now).await? {
            self.keep_lease(ctx).await?;
            let old = VersionRef {
                version: row.version,
                provider_ref: row.provider_ref.clone(),
            };
            match self.revoke_one(ctx, &old).await {
                Ok(()) => {
                    self.db
                        .mark_revoked(ctx.path, row.version, self.clock.now())
                        .await?;
                    revoked.push(row.version);
                    self.emit(
                        &ctx.policy,
                        ctx.path,
                        None,
                        RotationEventKind::Revoked {
                            version: row.version,
                        },
                    )
                    .await;
                }
                Err(error) if error.is_fatal() => return Err(error),
                Err(error) => {
                    let attempts = row.attempts.saturating_add(1);
                    let message = error.to_string();
                    let retry_at = self.clock.now() + self.backoff(attempts);
                    self.db
                        .revocation_failed(ctx.path, row.version, attempts, retry_at, &message)
                        .await?;
                    tracing::warn!(path = ctx.path, version = row.version, attempts, error = %message, "revocation failed");
                    if attempts % self.config.max_attempts.max(1) == 0 {
                        self.emit(
                            &ctx.policy,
                            ctx.path,
                            None,
                            RotationEventKind::RevokeFailed {
                                version: row.version,
                                attempts,
                                error: message,
                            },
                        )
                        .await;
                    }
                }
            }
        }
        Ok(revoked)
    }

    async fn revoke_one(&self, ctx: &RunContext<'_>, old: &VersionRef) -> Result<(), EngineError> {
        if let Some(rotator) = &ctx.rotator {
            // Never revoke a provider credential that the current version still uses (one
            // PostgreSQL role whose password already changed, for example).
            let current_ref = match self.target.current_version(ctx.path).await? {
                Some(version) => self.db.provider_ref(ctx.path, version).await?,
                None => None,
            };
            let shared = old.provider_ref.is_some() && old.provider_ref == current_ref;
            if !shared {
                self.bounded("revoke", rotator.revoke(ctx.path, old))
                    .await?;
            }
        }
        match self.target.revoke_version(ctx.path, old.version).await {
            Ok(()) => Ok(()),
            Err(TargetError::WrongStage {
                stage: crate::target::VersionStage::Destroyed,
                ..
            })
            | Err(TargetError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
