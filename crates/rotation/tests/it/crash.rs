//! Failures and simulated crashes at every step boundary: the current version stays usable,
//! and after a restart the rotation finishes or rolls back, never leaving two current versions.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use keyward_rotation::{MemoryTarget, RotationEventKind, Step, VersionStage};
use time::Duration;

use crate::faults::{FakeProvider, Faults, FaultyTarget, Mode};
use crate::{Harness, secret, test_config};

const PATH: &str = "team/app/db-password";
const POLICY: &str = r#"
    schedule = "daily"
    grace = "1h"
    generator = { type = "password", length = 20 }
    rotator = { type = "custom", name = "fake" }
"#;

struct Setup {
    harness: Harness,
    provider: Arc<FakeProvider>,
    target_faults: Faults,
}

async fn setup() -> Setup {
    let memory = MemoryTarget::new();
    let target_faults = Faults::default();
    let target = Arc::new(FaultyTarget {
        inner: memory.clone(),
        faults: target_faults.clone(),
    });
    let provider = Arc::new(FakeProvider::default());
    let harness = Harness::with_target(
        memory,
        target,
        vec![("fake".to_owned(), provider.clone())],
        test_config(),
    )
    .await;
    harness.memory.put_current(PATH, secret("initial-password"));
    provider.install(PATH, "initial-password");
    harness.set_policy(PATH, POLICY).await;
    Setup {
        harness,
        provider,
        target_faults,
    }
}

fn inject(setup: &Setup, operation: &'static str, mode: Mode) {
    match operation {
        "write_pending" | "promote" => setup.target_faults.set(operation, mode),
        _ => setup.provider.faults.set(operation, mode),
    }
}

fn clear(setup: &Setup) {
    setup.target_faults.clear();
    setup.provider.faults.clear();
}

/// Asserts that the provider accepts exactly the current version's value.
fn assert_current_works(setup: &Setup) {
    let current = setup
        .harness
        .current_value(PATH)
        .expect("a current version");
    assert_eq!(
        setup.provider.installed(PATH).as_deref(),
        Some(current.as_str()),
        "the provider does not accept the current version"
    );
}

const POINTS: [&str; 5] = ["prepare", "write_pending", "set", "test", "promote"];

#[tokio::test]
async fn crash_at_each_step_recovers_after_restart() {
    for operation in POINTS {
        for mode in [Mode::HangBefore, Mode::HangAfter] {
            let mut setup = setup().await;
            inject(&setup, operation, mode);

            // The rotation is cut off mid-step, as if the process were killed.
            let cut = tokio::time::timeout(
                StdDuration::from_millis(300),
                setup.harness.scheduler.rotate_now(PATH, false),
            )
            .await;
            assert!(
                cut.is_err(),
                "{operation} {mode:?}: the rotation was not cut off"
            );
            setup.harness.assert_consistent(PATH);
            let promoted = operation == "promote" && mode == Mode::HangAfter;
            if !promoted {
                assert_eq!(
                    setup.harness.current_value(PATH).as_deref(),
                    Some("initial-password"),
                    "{operation} {mode:?}: current changed before finish"
                );
            }

            // Restart; the old lease expires, and the new process picks the run up.
            clear(&setup);
            setup.harness.restart().await;
            setup.harness.clock.advance(Duration::minutes(6));
            let report = setup.harness.scheduler.run_due().await.expect("recovery");
            assert_eq!(report.errors, 0, "{operation} {mode:?}: {report:?}");

            setup.harness.assert_consistent(PATH);
            let stages = setup.harness.memory.stages(PATH);
            assert!(
                !stages.contains(&VersionStage::Pending),
                "{operation} {mode:?}: pending left: {stages:?}"
            );
            assert_ne!(
                setup.harness.current_value(PATH).as_deref(),
                Some("initial-password"),
                "{operation} {mode:?}: the rotation did not complete after restart"
            );
            assert_current_works(&setup);
            let status = setup
                .harness
                .engine
                .status(PATH)
                .await
                .expect("status")
                .expect("policy");
            assert!(status.active_run.is_none(), "{operation} {mode:?}");
            assert_eq!(status.state, "idle", "{operation} {mode:?}");

            // Interrupted before `set` finished: rolled back. Later: rolled forward.
            let rolled_back = setup
                .harness
                .sink
                .events_for(PATH)
                .iter()
                .any(|event| matches!(event, RotationEventKind::RolledBack { .. }));
            let expect_rollback = matches!(operation, "prepare" | "write_pending" | "set");
            assert_eq!(rolled_back, expect_rollback, "{operation} {mode:?}");
        }
    }
}

#[tokio::test]
async fn failure_at_each_step_keeps_current() {
    for operation in POINTS {
        let mut setup = setup().await;
        inject(&setup, operation, Mode::Fail);

        let outcome = setup
            .harness
            .scheduler
            .rotate_now(PATH, false)
            .await
            .expect("rotation attempt");
        assert_eq!(
            outcome.runs,
            [keyward_rotation::RunResult::Retrying],
            "{operation}"
        );
        setup.harness.assert_consistent(PATH);
        assert_eq!(
            setup.harness.current_value(PATH).as_deref(),
            Some("initial-password"),
            "{operation}: current changed"
        );
        let status = setup
            .harness
            .engine
            .status(PATH)
            .await
            .expect("status")
            .expect("policy");
        assert_eq!(status.state, "retrying", "{operation}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("injected failure")),
            "{operation}: {:?}",
            status.last_error
        );
        // Before `set` finished the pending version is discarded; after, it waits to roll forward.
        let pending_kept = setup
            .harness
            .memory
            .stages(PATH)
            .contains(&VersionStage::Pending);
        assert_eq!(
            pending_kept,
            matches!(operation, "test" | "promote"),
            "{operation}"
        );
        if !matches!(operation, "test" | "promote") {
            assert_current_works(&setup);
        }

        // After a restart and the backoff, the retry finishes the rotation.
        clear(&setup);
        setup.harness.restart().await;
        setup.harness.clock.advance(Duration::minutes(6));
        let report = setup.harness.scheduler.run_due().await.expect("retry");
        assert_eq!(report.finished, 1, "{operation}: {report:?}");
        setup.harness.assert_consistent(PATH);
        assert_current_works(&setup);
    }
}

#[tokio::test]
async fn repeated_failure_stops_and_reports() {
    let setup = setup().await;
    inject(&setup, "test", Mode::Fail);

    let first = setup
        .harness
        .scheduler
        .rotate_now(PATH, false)
        .await
        .expect("attempt");
    assert_eq!(first.runs, [keyward_rotation::RunResult::Retrying]);
    for _ in 0..4 {
        setup.harness.clock.advance(Duration::minutes(10));
        setup.harness.scheduler.run_due().await.expect("retry");
    }

    let events = setup.harness.sink.events_for(PATH);
    let retries = events
        .iter()
        .filter(|event| matches!(event, RotationEventKind::Retrying { .. }))
        .count();
    assert_eq!(retries, 2, "{events:?}");
    assert!(
        events.iter().any(|event| matches!(
            event,
            RotationEventKind::Failed {
                step: Step::Test,
                attempts: 3,
                ..
            }
        )),
        "{events:?}"
    );
    let status = setup
        .harness
        .engine
        .status(PATH)
        .await
        .expect("status")
        .expect("policy");
    assert_eq!(status.state, "failed");
    assert!(status.next_due > setup.harness.clock_now() + Duration::hours(1));
    assert_eq!(
        setup.harness.current_value(PATH).as_deref(),
        Some("initial-password")
    );
    setup.harness.assert_consistent(PATH);

    // Stopped means stopped: no attempt until the next scheduled time.
    let sets_before = setup.provider.set_count(PATH);
    setup.harness.clock.advance(Duration::hours(1));
    setup.harness.scheduler.run_due().await.expect("idle tick");
    assert_eq!(setup.provider.set_count(PATH), sets_before);
}

#[tokio::test]
async fn retry_backoff_doubles() {
    let setup = setup().await;
    inject(&setup, "set", Mode::Fail);
    setup
        .harness
        .scheduler
        .rotate_now(PATH, false)
        .await
        .expect("attempt");
    let after_first = setup
        .harness
        .engine
        .status(PATH)
        .await
        .expect("status")
        .expect("policy");
    assert_eq!(
        after_first.next_due,
        setup.harness.clock_now() + Duration::minutes(1)
    );

    setup.harness.clock.advance(Duration::minutes(1));
    setup.harness.scheduler.run_due().await.expect("retry");
    let after_second = setup
        .harness
        .engine
        .status(PATH)
        .await
        .expect("status")
        .expect("policy");
    assert_eq!(after_second.failures, 2);
    assert_eq!(
        after_second.next_due,
        setup.harness.clock_now() + Duration::minutes(2)
    );
}

impl Harness {
    pub(crate) fn clock_now(&self) -> time::OffsetDateTime {
        use keyward_rotation::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn foreign_pending_version_is_kept() {
    let setup = setup().await;
    let foreign = setup
        .harness
        .target
        .write_pending(PATH, &secret("written-by-an-operator"), &Default::default())
        .await
        .expect("pending write");

    let outcome = setup
        .harness
        .scheduler
        .rotate_now(PATH, false)
        .await
        .expect("attempt");
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Retrying]);
    assert_eq!(
        setup
            .harness
            .target
            .pending_version(PATH)
            .await
            .expect("query"),
        Some(foreign),
        "the rotation discarded a pending version it did not write"
    );
    let status = setup
        .harness
        .engine
        .status(PATH)
        .await
        .expect("status")
        .expect("policy");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("pending")),
        "{:?}",
        status.last_error
    );
}
