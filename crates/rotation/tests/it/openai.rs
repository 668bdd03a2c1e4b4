//! The OpenAI rotator against the local fake: grace periods, revocation, emergency rotation.

use keyward_rotation::{TargetError, VersionStage};
use time::Duration;

use crate::fake_openai::{ADMIN_KEY, FakeOpenAi, PROJECT, SERVICE_ACCOUNT};
use crate::{Harness, secret};

const PATH: &str = "team/chat/openai";
const FIRST_KEY: &str = "sk-svcacct-first";

async fn setup() -> (Harness, FakeOpenAi) {
    let fake = FakeOpenAi::start().await;
    let harness = Harness::new().await;
    harness
        .memory
        .put_current("ops/openai/admin", secret(ADMIN_KEY));
    fake.seed_key("key_first", FIRST_KEY);
    let version = harness.memory.put_current(PATH, secret(FIRST_KEY));
    harness
        .engine
        .db()
        .set_provider_ref(PATH, version, "key_first")
        .await
        .expect("record key id");
    let policy = format!(
        r#"
        schedule = "monthly"
        grace = "3d"
        generator = {{ type = "random" }}
        rotator = {{ type = "openai", base_url = "{}", project_id = "{PROJECT}", service_account_id = "{SERVICE_ACCOUNT}", admin_key_secret = "ops/openai/admin" }}
        "#,
        fake.base_url
    );
    harness.set_policy(PATH, &policy).await;
    (harness, fake)
}

#[tokio::test]
async fn grace_keeps_old_key_then_revokes() {
    let (harness, fake) = setup().await;
    assert_eq!(fake.models_status(FIRST_KEY).await, 200);

    harness.clock.advance(Duration::days(31));
    let report = harness.scheduler.run_due().await.expect("rotation");
    assert_eq!(report.finished, 1, "{report:?}");

    let new_key = harness.current_value(PATH).expect("current");
    assert!(new_key.starts_with("sk-svcacct-"));
    assert_ne!(new_key, FIRST_KEY);

    // During grace: both versions read by number, and both keys work at OpenAI.
    let old = harness
        .target
        .read_version(PATH, 1)
        .await
        .expect("old version readable");
    assert_eq!(old.expose_secret(), FIRST_KEY);
    let new = harness
        .target
        .read_version(PATH, 2)
        .await
        .expect("new version readable");
    assert_eq!(new.expose_secret(), new_key);
    assert_eq!(fake.models_status(FIRST_KEY).await, 200);
    assert_eq!(fake.models_status(&new_key).await, 200);

    // One second before the deadline nothing is revoked.
    harness
        .clock
        .advance(Duration::days(3) - Duration::seconds(1));
    harness.scheduler.run_due().await.expect("tick");
    assert_eq!(fake.models_status(FIRST_KEY).await, 200);

    harness.clock.advance(Duration::seconds(1));
    let report = harness.scheduler.run_due().await.expect("revocation");
    assert_eq!(report.revoked, 1);
    assert_eq!(fake.models_status(FIRST_KEY).await, 401);
    assert_eq!(fake.models_status(&new_key).await, 200);
    let refused = harness
        .target
        .read_version(PATH, 1)
        .await
        .expect_err("revoked");
    assert!(matches!(
        refused,
        TargetError::WrongStage {
            stage: VersionStage::Revoked,
            ..
        }
    ));
    assert_eq!(fake.live_keys(), 1);
}

#[tokio::test]
async fn emergency_rotation_revokes_at_once() {
    let (harness, fake) = setup().await;

    let started = std::time::Instant::now();
    let outcome = harness
        .scheduler
        .rotate_now(PATH, true)
        .await
        .expect("emergency rotation");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Finished]);
    assert_eq!(outcome.revoked, [1]);

    assert_eq!(fake.models_status(FIRST_KEY).await, 401);
    let new_key = harness.current_value(PATH).expect("current");
    assert_eq!(fake.models_status(&new_key).await, 200);
    assert!(harness.target.read_version(PATH, 1).await.is_err());
    assert_eq!(
        harness.memory.stages(PATH),
        [VersionStage::Revoked, VersionStage::Current]
    );
    let events = harness.sink.events();
    assert!(
        events
            .iter()
            .all(|event| event.run_id.is_none() || event.emergency)
    );
}

#[tokio::test]
async fn emergency_revokes_every_version_in_grace() {
    let (harness, fake) = setup().await;

    for _ in 0..2 {
        let outcome = harness
            .scheduler
            .rotate_now(PATH, false)
            .await
            .expect("scheduled rotation");
        assert_eq!(outcome.runs, [keyward_rotation::RunResult::Finished]);
    }
    let in_grace = harness.current_value(PATH).expect("current");
    assert_eq!(fake.models_status(FIRST_KEY).await, 200, "still in grace");

    let outcome = harness
        .scheduler
        .rotate_now(PATH, true)
        .await
        .expect("emergency rotation");
    assert_eq!(outcome.revoked, [1, 2, 3]);
    assert_eq!(fake.models_status(FIRST_KEY).await, 401);
    assert_eq!(fake.models_status(&in_grace).await, 401);
    assert_eq!(
        harness.memory.stages(PATH),
        [
            VersionStage::Revoked,
            VersionStage::Revoked,
            VersionStage::Revoked,
            VersionStage::Current
        ]
    );
}

#[tokio::test]
async fn rolled_back_rotation_deletes_new_key() {
    let fake = FakeOpenAi::start().await;
    let memory = keyward_rotation::MemoryTarget::new();
    let faults = crate::faults::Faults::default();
    let target = std::sync::Arc::new(crate::faults::FaultyTarget {
        inner: memory.clone(),
        faults: faults.clone(),
    });
    let harness = Harness::with_target(memory, target, Vec::new(), crate::test_config()).await;
    harness
        .memory
        .put_current("ops/openai/admin", secret(ADMIN_KEY));
    fake.seed_key("key_first", FIRST_KEY);
    harness.memory.put_current(PATH, secret(FIRST_KEY));
    let policy = format!(
        r#"
        schedule = "monthly"
        grace = "3d"
        generator = {{ type = "random" }}
        rotator = {{ type = "openai", base_url = "{}", project_id = "{PROJECT}", service_account_id = "{SERVICE_ACCOUNT}", admin_key_secret = "ops/openai/admin" }}
        "#,
        fake.base_url
    );
    harness.set_policy(PATH, &policy).await;

    // OpenAI issues the key, then writing the pending version fails: the key must not linger.
    faults.set("write_pending", crate::faults::Mode::Fail);
    let outcome = harness
        .scheduler
        .rotate_now(PATH, false)
        .await
        .expect("attempt");
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Retrying]);
    assert_eq!(fake.live_keys(), 1, "the abandoned key is still live");
    assert_eq!(fake.models_status(FIRST_KEY).await, 200);
    assert_eq!(harness.current_value(PATH).as_deref(), Some(FIRST_KEY));
}
