//! Two schedulers on one database: leases make each rotation run exactly once.

use std::sync::Arc;

use keyward_rotation::{EngineError, RotationEventKind, VersionStage};
use time::Duration;

use crate::faults::FakeProvider;
use crate::{Harness, secret};

const POLICY: &str = r#"
    schedule = "daily"
    grace = "1h"
    generator = { type = "random" }
    rotator = { type = "custom", name = "fake" }
"#;

#[tokio::test]
async fn two_schedulers_rotate_each_once() {
    let provider = Arc::new(FakeProvider::default());
    let harness = Harness::with_rotator("fake", provider.clone()).await;
    let paths: Vec<String> = (0..200).map(|i| format!("team/svc-{i}/key")).collect();
    for path in &paths {
        harness.memory.put_current(path, secret("initial"));
        harness.set_policy(path, POLICY).await;
    }
    let other = harness.second_process().await;

    harness.clock.advance(Duration::days(1));
    let (first, second) = tokio::join!(harness.scheduler.run_due(), other.run_due());
    let first = first.expect("first scheduler");
    let second = second.expect("second scheduler");
    assert_eq!(first.errors + second.errors, 0);
    assert_eq!(
        first.finished + second.finished,
        200,
        "{first:?} {second:?}"
    );

    for path in &paths {
        assert_eq!(
            provider.set_count(path),
            1,
            "{path} was installed more than once"
        );
        assert_eq!(
            harness.memory.stages(path),
            [VersionStage::Previous, VersionStage::Current],
            "{path}"
        );
    }
    let finished = harness
        .sink
        .events()
        .iter()
        .filter(|event| matches!(event.kind, RotationEventKind::Finished { .. }))
        .count();
    assert_eq!(finished, 200);
}

#[tokio::test]
async fn live_lease_blocks_other_holder() {
    let harness = Harness::new().await;
    let path = "team/app/key";
    harness.memory.put_current(path, secret("initial"));
    harness
        .set_policy(
            path,
            "schedule = \"daily\"\ngrace = \"1h\"\ngenerator = { type = \"random\" }\n",
        )
        .await;

    let db = harness.engine.db();
    let now = harness.clock_now();
    assert!(
        db.try_lease(path, "dead-process", now, now + Duration::minutes(5))
            .await
            .expect("lease")
    );

    let error = harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect_err("leased");
    assert!(matches!(error, EngineError::LeaseBusy(_)), "{error}");

    // Once the dead holder's lease expires, another process takes over.
    harness.clock.advance(Duration::minutes(5));
    let outcome = harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect("takeover");
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Finished]);
}

#[tokio::test]
async fn rotate_without_policy_is_rejected() {
    let harness = Harness::new().await;
    let error = harness
        .scheduler
        .rotate_now("team/none/key", true)
        .await
        .expect_err("no policy");
    assert!(matches!(error, EngineError::NoPolicy(_)), "{error}");
}

#[tokio::test]
async fn removed_policy_defers_revocation() {
    let harness = Harness::new().await;
    let path = "team/app/key";
    let policy = "schedule = \"daily\"\ngrace = \"1h\"\ngenerator = { type = \"random\" }\n";
    harness.memory.put_current(path, secret("initial"));
    harness.set_policy(path, policy).await;
    harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect("rotation");

    assert!(harness.engine.remove_policy(path).await.expect("remove"));
    harness.clock.advance(Duration::hours(2));
    let report = harness.scheduler.run_due().await.expect("tick");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(harness.memory.stages(path)[0], VersionStage::Previous);

    harness.set_policy(path, policy).await;
    let report = harness.scheduler.run_due().await.expect("tick");
    assert_eq!(report.revoked, 1, "{report:?}");
    assert_eq!(harness.memory.stages(path)[0], VersionStage::Revoked);
}

#[tokio::test]
async fn paused_holder_stops_after_takeover() {
    let provider = Arc::new(FakeProvider::default());
    let harness = Harness::with_rotator("fake", provider.clone()).await;
    let path = "team/app/paused";
    harness.memory.put_current(path, secret("initial"));
    provider.install(path, "initial");
    harness.set_policy(path, POLICY).await;

    // The first process pauses inside the provider call, past the end of its lease.
    let gate = Arc::new(tokio::sync::Notify::new());
    *provider.gate.lock().expect("provider lock") = Some(gate.clone());
    let paused = {
        let scheduler = harness.scheduler.clone();
        tokio::spawn(async move { scheduler.rotate_now(path, false).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    harness.clock.advance(Duration::minutes(6));

    // Another process takes over and completes the rotation.
    let other = harness.second_process().await;
    let report = other.run_due().await.expect("takeover");
    assert_eq!(report.finished, 1, "{report:?}");
    let current = harness.current_value(path).expect("current");

    // The paused process wakes up, finds its lease gone and changes nothing.
    gate.notify_one();
    let result = paused.await.expect("task");
    assert!(
        matches!(result, Err(EngineError::LeaseLost(_))),
        "{result:?}"
    );
    assert_eq!(
        harness.memory.stages(path),
        [VersionStage::Previous, VersionStage::Current]
    );
    assert_eq!(harness.current_value(path), Some(current.clone()));
    assert_eq!(provider.installed(path), Some(current));
}

#[tokio::test]
async fn hung_provider_call_times_out() {
    let provider = Arc::new(FakeProvider::default());
    let config = keyward_rotation::EngineConfig {
        step_timeout: std::time::Duration::from_millis(200),
        ..crate::test_config()
    };
    let memory = keyward_rotation::MemoryTarget::new();
    let harness = Harness::with_target(
        memory.clone(),
        Arc::new(memory),
        vec![(
            "fake".to_owned(),
            provider.clone() as Arc<dyn keyward_rotation::Rotator>,
        )],
        config,
    )
    .await;
    let path = "team/app/hung";
    harness.memory.put_current(path, secret("initial"));
    provider.install(path, "initial");
    harness.set_policy(path, POLICY).await;
    provider.faults.set("test", crate::faults::Mode::HangBefore);

    let outcome = harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect("attempt");
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Retrying]);
    let status = harness
        .engine
        .status(path)
        .await
        .expect("status")
        .expect("policy");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{:?}",
        status.last_error
    );
    assert_eq!(harness.current_value(path).as_deref(), Some("initial"));
}
