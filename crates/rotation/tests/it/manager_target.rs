//! The engine over the real secrets manager and SQLite store: versions change stage through
//! `ManagerTarget`, and `ManagerEventSink` writes every step to the audit log.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::Keyring;
use keyward_manager::{ManagerConfig, RequestContext, SecretsManager};
use keyward_rotation::{
    Engine, EngineConfig, ManagerEventSink, ManagerTarget, ManualClock, RotationDb, RotationPolicy,
    Scheduler, SecretSource, SecretTarget, TargetError, VersionStage,
};
use keyward_store::{SecretData, SecretPath, SqliteStore, Stage};
use serde_json::{Value, json};
use time::Duration;
use time::macros::datetime;

const PATH: &str = "team/app/token";

struct Setup {
    manager: Arc<SecretsManager>,
    target: ManagerTarget,
    scheduler: Scheduler,
    clock: Arc<ManualClock>,
    audit_path: std::path::PathBuf,
    audit_task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = Arc::new(Keyring::generate().expect("keyring"));
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("keyward.db"), keyring)
            .await
            .expect("store opens"),
    );
    let audit_path = dir.path().join("audit.log");
    let audit = AuditLog::open(&audit_path, AuditKey::from_bytes([3; 32])).expect("audit opens");
    let manager = Arc::new(
        SecretsManager::new(store, audit, [4; 32], ManagerConfig::default())
            .await
            .expect("manager starts"),
    );

    let ctx = RequestContext {
        request_id: "setup".to_owned(),
        remote_addr: [127, 0, 0, 1].into(),
    };
    let issued = manager.create_root_token(&ctx).await.expect("root token");
    let root = manager
        .authenticate(Some(issued.token.expose()), &ctx)
        .await
        .expect("root authenticates");
    let Value::Object(first) = json!({ "value": "first" }) else {
        unreachable!("literal is an object")
    };
    manager
        .kv_write(
            &root,
            &ctx,
            &secret_path(),
            SecretData::from_map(&first),
            None,
        )
        .await
        .expect("first version");

    let target = ManagerTarget::new(Arc::clone(&manager));
    let (sink, audit_task) = ManagerEventSink::spawn(Arc::clone(&manager));
    let clock = Arc::new(ManualClock::new(datetime!(2028-01-31 00:00 UTC)));
    let config = EngineConfig {
        jitter_window: Duration::ZERO,
        notify_first_delay: StdDuration::from_millis(1),
        ..EngineConfig::default()
    };
    let db = RotationDb::open(dir.path().join("rotation.db"))
        .await
        .expect("rotation db");
    let engine = Engine::new(
        db,
        Arc::new(target.clone()),
        clock.clone(),
        Arc::new(sink),
        config,
    );
    Setup {
        manager,
        target,
        scheduler: Scheduler::new(Arc::new(engine)),
        clock,
        audit_path,
        audit_task,
        _dir: dir,
    }
}

fn secret_path() -> SecretPath {
    SecretPath::parse(PATH).expect("valid path")
}

async fn stages(manager: &SecretsManager) -> Vec<Stage> {
    let meta = manager
        .rotation_versions(&secret_path())
        .await
        .expect("metadata");
    meta.versions
        .values()
        .map(|version| version.stage)
        .collect()
}

#[tokio::test]
async fn scheduled_rotation_goes_through_manager() {
    let s = setup().await;
    let policy = RotationPolicy::from_toml(
        r#"
        schedule = "monthly"
        grace = "1d"
        generator = { type = "random", prefix = "tok-" }
        "#,
    )
    .expect("policy");
    let due = s
        .scheduler
        .engine()
        .set_policy(PATH, &policy)
        .await
        .expect("set policy");

    s.clock.set(due);
    let report = s.scheduler.run_due().await.expect("rotation");
    assert_eq!(report.finished, 1, "{report:?}");
    assert_eq!(stages(&s.manager).await, [Stage::Previous, Stage::Current]);

    let current = s.target.read_current(PATH).await.expect("current");
    assert!(current.expose_secret().starts_with("tok-"));
    let old = s.target.read_version(PATH, 1).await.expect("old version");
    assert_eq!(old.expose_secret(), "first");

    s.clock.advance(Duration::days(1));
    let report = s.scheduler.run_due().await.expect("revocation");
    assert_eq!(report.revoked, 1, "{report:?}");
    let refused = s.target.read_version(PATH, 1).await.expect_err("revoked");
    assert!(
        matches!(
            refused,
            TargetError::WrongStage {
                stage: VersionStage::Revoked,
                ..
            }
        ),
        "{refused:?}"
    );

    // The sink's task ends once the engine (the last sink holder) is gone.
    drop(s.scheduler);
    s.audit_task.await.expect("audit task");
    let audit = std::fs::read_to_string(&s.audit_path).expect("audit log");
    for event in [
        "\"started\"",
        "\"pending_created\"",
        "\"finished\"",
        "\"revoked\"",
    ] {
        assert!(audit.contains(event), "audit log has {event}");
    }
    assert!(
        !audit.contains(current.expose_secret()),
        "no value in the audit log"
    );
}

#[tokio::test]
async fn stage_changes_repeat_safely() {
    let s = setup().await;
    let value = keyward_rotation::SecretValue::new("second".to_owned());
    let pending = s
        .target
        .write_pending(PATH, &value, &Default::default())
        .await
        .expect("pending");
    assert_eq!(
        s.target.pending_version(PATH).await.expect("query"),
        Some(2)
    );
    assert_eq!(
        s.target.current_version(PATH).await.expect("query"),
        Some(1)
    );

    let again = s
        .target
        .write_pending(PATH, &value, &Default::default())
        .await
        .expect_err("second pending");
    assert!(matches!(
        again,
        TargetError::PendingExists { version: 2, .. }
    ));

    let deadline = datetime!(2028-02-01 00:00 UTC);
    assert_eq!(
        s.target
            .promote(PATH, pending, deadline)
            .await
            .expect("promote"),
        Some(1)
    );
    assert_eq!(
        s.target
            .promote(PATH, pending, deadline)
            .await
            .expect("again"),
        Some(1)
    );
    s.target.revoke_version(PATH, 1).await.expect("revoke");
    s.target
        .revoke_version(PATH, 1)
        .await
        .expect("revoke again");

    let wrong = s
        .target
        .discard_pending(PATH, 2)
        .await
        .expect_err("current");
    assert!(
        matches!(
            wrong,
            TargetError::WrongStage {
                stage: VersionStage::Current,
                ..
            }
        ),
        "{wrong:?}"
    );
}
