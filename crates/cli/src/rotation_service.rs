//! The rotation engine inside `keyward server`: opens `<data_dir>/rotation.db`, wires the
//! engine to the secrets manager (versions, audit entries, security events) and runs the
//! scheduler loop until shutdown.
//!
//! It does not serve anything itself: the server's rotation routes use the scheduler handle
//! that [`RotationService::scheduler`] returns.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyward_manager::SecretsManager;
use keyward_rotation::{
    Engine, EngineConfig, ManagerEventSink, ManagerTarget, RotationDb, Rotators, Scheduler,
    SystemClock,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::RotationSettings;
use crate::error::CliError;

/// File name of the engine's database in the data dir.
pub const ROTATION_DB_FILE: &str = "rotation.db";

/// How long shutdown waits for queued rotation events to reach the audit log.
const AUDIT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns the `[rotation]` settings into the engine's tuning. The step timeout is lowered to
/// half the lease when it is not below it, so that a hung call cannot outlive its lease.
fn engine_config(settings: &RotationSettings) -> EngineConfig {
    let seconds = |value: u64| time::Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX));
    let lease_secs = settings.lease_secs.max(2);
    let mut step_timeout_secs = settings.step_timeout_secs.max(1);
    if step_timeout_secs >= lease_secs {
        step_timeout_secs = lease_secs / 2;
        tracing::warn!(
            step_timeout_secs,
            lease_secs,
            "rotation step_timeout_secs must be below lease_secs; using half the lease"
        );
    }
    EngineConfig {
        jitter_window: seconds(settings.jitter_window_secs),
        lease_duration: seconds(lease_secs),
        step_timeout: Duration::from_secs(step_timeout_secs),
        ..EngineConfig::default()
    }
}

/// Creates the database file owner-only (0600) before SQLite opens it, or narrows an existing
/// one: it holds policies, webhook URLs and provider key ids. SQLite gives its `-wal` and `-shm`
/// files the database file's mode.
fn restrict_to_owner(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let failed = |error: std::io::Error| {
        CliError::Other(format!(
            "cannot create the rotation database {} with mode 0600: {error}",
            path.display()
        ))
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)
}

/// Stores the policies declared in `[rotation.policies]`. A policy equal to the stored one is
/// left alone, because setting it again would move an overdue rotation to the next period.
async fn apply_configured_policies(
    engine: &Engine,
    settings: &RotationSettings,
) -> Result<(), CliError> {
    for (path, policy) in &settings.policies {
        let failed = |error: keyward_rotation::EngineError| {
            CliError::Other(format!(
                "cannot apply the rotation policy of {path} from the configuration: {error}"
            ))
        };
        let stored = engine.status(path).await.map_err(failed)?;
        if stored.is_some_and(|status| status.policy == *policy) {
            continue;
        }
        let due = engine.set_policy(path, policy).await.map_err(failed)?;
        tracing::info!(path = %path, next_due = %due, "rotation policy applied from the configuration");
    }
    Ok(())
}

/// A running rotation engine.
pub struct RotationService {
    scheduler: Arc<Scheduler>,
    stop: oneshot::Sender<()>,
    loop_task: JoinHandle<()>,
    audit_task: JoinHandle<()>,
}

impl RotationService {
    /// Opens the engine's database in `data_dir` and starts the scheduler loop.
    pub async fn start(
        manager: Arc<SecretsManager>,
        data_dir: &Path,
        settings: &RotationSettings,
    ) -> Result<Self, CliError> {
        let db_path = data_dir.join(ROTATION_DB_FILE);
        restrict_to_owner(&db_path)?;
        let db = RotationDb::open(&db_path).await.map_err(|error| {
            CliError::Other(format!(
                "cannot open the rotation database {}: {error}",
                db_path.display()
            ))
        })?;

        let target = Arc::new(ManagerTarget::new(Arc::clone(&manager)));
        let (sink, audit_task) = ManagerEventSink::spawn(Arc::clone(&manager));
        let config = engine_config(settings);
        let engine = Engine::new(
            db,
            target.clone(),
            Arc::new(SystemClock),
            Arc::new(sink),
            config,
        )
        .with_rotators(Rotators::new(target));
        apply_configured_policies(&engine, settings).await?;
        let scheduler = Arc::new(Scheduler::new(Arc::new(engine)));

        let (stop, stopped) = oneshot::channel::<()>();
        let interval = Duration::from_secs(settings.tick_interval_secs.max(1));
        let looping = Arc::clone(&scheduler);
        let loop_task = tokio::spawn(async move {
            looping
                .run_until(interval, async {
                    let _ = stopped.await;
                })
                .await;
        });
        tracing::info!(database = %db_path.display(), "rotation engine started");

        Ok(Self {
            scheduler,
            stop,
            loop_task,
            audit_task,
        })
    }

    /// Returns the scheduler, for the server's rotation routes.
    pub fn scheduler(&self) -> Arc<Scheduler> {
        Arc::clone(&self.scheduler)
    }

    /// Stops the loop after its current tick, then waits until every rotation event queued so
    /// far is in the audit log.
    pub async fn stop(self) {
        let Self {
            scheduler,
            stop,
            loop_task,
            audit_task,
        } = self;
        let _ = stop.send(());
        if let Err(error) = loop_task.await {
            tracing::error!(%error, "rotation scheduler task failed");
        }
        scheduler.engine().notifier().wait_idle().await;

        // The audit task ends when the last sink clone (held by the engine) is dropped. A
        // handle still held elsewhere would keep it alive, hence the bound on the wait.
        drop(scheduler);
        match tokio::time::timeout(AUDIT_DRAIN_TIMEOUT, audit_task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "rotation audit task failed"),
            Err(_) => tracing::warn!(
                "rotation events still queued at shutdown were not audited within 5s"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_database_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ROTATION_DB_FILE);
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        restrict_to_owner(&path).expect("restrict");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn step_timeout_stays_below_lease() {
        let settings = RotationSettings {
            step_timeout_secs: 60,
            lease_secs: 30,
            ..RotationSettings::default()
        };
        let config = engine_config(&settings);
        assert_eq!(config.lease_duration, time::Duration::seconds(30));
        assert_eq!(config.step_timeout, Duration::from_secs(15));
    }

    #[test]
    fn default_settings_keep_their_values() {
        let config = engine_config(&RotationSettings::default());
        assert_eq!(config.lease_duration, time::Duration::minutes(5));
        assert_eq!(config.step_timeout, Duration::from_secs(120));
        assert_eq!(config.jitter_window, time::Duration::hours(1));
    }
}
