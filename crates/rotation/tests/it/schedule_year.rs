//! A monthly secret driven by the manual clock across a leap year.

use keyward_rotation::{RotationEventKind, VersionStage};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::{Harness, secret};

const PATH: &str = "team/billing/api-key";

/// Monthly on the 31st: short months rotate on their last day, and the 31st comes back.
const EXPECTED: [OffsetDateTime; 13] = [
    datetime!(2028-01-31 00:00 UTC),
    datetime!(2028-02-29 00:00 UTC),
    datetime!(2028-03-31 00:00 UTC),
    datetime!(2028-04-30 00:00 UTC),
    datetime!(2028-05-31 00:00 UTC),
    datetime!(2028-06-30 00:00 UTC),
    datetime!(2028-07-31 00:00 UTC),
    datetime!(2028-08-31 00:00 UTC),
    datetime!(2028-09-30 00:00 UTC),
    datetime!(2028-10-31 00:00 UTC),
    datetime!(2028-11-30 00:00 UTC),
    datetime!(2028-12-31 00:00 UTC),
    datetime!(2029-01-31 00:00 UTC),
];

#[tokio::test]
async fn monthly_rotation_across_leap_year() {
    let harness = Harness::new().await;
    harness.memory.put_current(PATH, secret("sk-initial"));
    let due = harness
        .set_policy(
            PATH,
            r#"
            schedule = "monthly"
            anchor = "2028-01-31T00:00:00Z"
            grace = "2d"
            generator = { type = "random", prefix = "sk-", length = 32 }
            "#,
        )
        .await;
    assert_eq!(due, EXPECTED[0]);

    for (index, instant) in EXPECTED.iter().enumerate() {
        // One second early: nothing rotates.
        harness.clock.set(*instant - Duration::seconds(1));
        let early = harness.scheduler.run_due().await.expect("tick");
        assert_eq!(early.finished, 0, "rotated before {instant}");

        harness.clock.set(*instant);
        let report = harness.scheduler.run_due().await.expect("tick");
        assert_eq!(report.finished, 1, "no rotation at {instant}");
        harness.assert_consistent(PATH);

        let status = harness
            .engine
            .status(PATH)
            .await
            .expect("status")
            .expect("policy");
        assert_eq!(status.last_rotated_at, Some(*instant));
        if let Some(next) = EXPECTED.get(index + 1) {
            assert_eq!(status.next_due, *next, "after {instant}");
        }

        // Within the grace period both versions are readable.
        assert_eq!(harness.memory.stages(PATH).len(), index + 2);
        let previous = harness.memory.versions(PATH)[index].clone();
        assert_eq!(previous.stage, VersionStage::Previous);
        assert_eq!(previous.grace_deadline, Some(*instant + Duration::days(2)));
    }

    // 13 rotations; every replaced version but the last is revoked once its grace is over.
    harness.clock.set(datetime!(2029-02-02 00:00 UTC));
    harness.scheduler.run_due().await.expect("tick");
    let stages = harness.memory.stages(PATH);
    assert_eq!(stages.len(), 14);
    assert!(
        stages[..13]
            .iter()
            .all(|stage| *stage == VersionStage::Revoked),
        "{stages:?}"
    );
    assert_eq!(stages[13], VersionStage::Current);
    let revoked = harness
        .sink
        .events_for(PATH)
        .iter()
        .filter(|event| matches!(event, RotationEventKind::Revoked { .. }))
        .count();
    assert_eq!(revoked, 13);
}

#[tokio::test]
async fn jitter_spreads_equal_schedules() {
    let config = keyward_rotation::EngineConfig {
        jitter_window: Duration::hours(2),
        ..crate::test_config()
    };
    let memory = keyward_rotation::MemoryTarget::new();
    let harness = Harness::with_target(
        memory.clone(),
        std::sync::Arc::new(memory),
        Vec::new(),
        config,
    )
    .await;
    let mut seconds = std::collections::HashSet::new();
    for i in 0..200 {
        let due = harness
            .set_policy(
                &format!("team/app/key-{i}"),
                r#"
                schedule = "monthly"
                anchor = "2028-02-01T00:00:00Z"
                grace = "1h"
                generator = { type = "random" }
                "#,
            )
            .await;
        assert!(due >= datetime!(2028-02-01 00:00 UTC));
        assert!(due < datetime!(2028-02-01 02:00 UTC));
        seconds.insert(due);
    }
    assert!(
        seconds.len() > 190,
        "only {} distinct due times",
        seconds.len()
    );
}

#[tokio::test]
async fn due_lookup_uses_indexes() {
    let harness = Harness::new().await;
    let plan = harness
        .engine
        .db()
        .explain_due_paths()
        .await
        .expect("plan")
        .join("\n");
    assert!(plan.contains("rotation_schedules_due"), "{plan}");
    assert!(plan.contains("rotation_versions_revoke"), "{plan}");
}
