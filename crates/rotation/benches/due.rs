//! How long the scheduler takes to rotate many due secrets at once (random generator, no
//! rotator, in-memory target, rotation database on disk with `synchronous=FULL`).
//!
//! Prints the time for 10,000 due secrets once, then lets criterion measure batches of 1,000.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_rotation::{
    Engine, EngineConfig, ManualClock, MemoryTarget, RotationDb, RotationPolicy, Scheduler,
    SecretValue, TracingSink,
};
use time::macros::datetime;

const POLICY: &str = r#"
    schedule = "daily"
    grace = "1h"
    generator = { type = "random", prefix = "sk-", length = 40 }
"#;

/// Registers `count` secrets, makes them all due, and returns how long rotating them took.
async fn rotate_due(count: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = RotationDb::open(dir.path().join("rotation.db"))
        .await
        .expect("open database");
    let target = Arc::new(MemoryTarget::new());
    let clock = Arc::new(ManualClock::new(datetime!(2028-01-01 00:00 UTC)));
    let config = EngineConfig {
        jitter_window: time::Duration::ZERO,
        batch_size: 500,
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(
        db,
        target.clone(),
        clock.clone(),
        Arc::new(TracingSink),
        config,
    ));
    let policy = RotationPolicy::from_toml(POLICY).expect("valid policy");
    for i in 0..count {
        let path = format!("team/svc-{i}/api-key");
        target.put_current(&path, SecretValue::new(format!("initial-{i}")));
        engine.set_policy(&path, &policy).await.expect("set policy");
    }
    clock.advance(time::Duration::days(1));

    let scheduler = Scheduler::new(engine);
    let started = Instant::now();
    let report = scheduler.run_due().await.expect("rotation");
    let elapsed = started.elapsed();
    assert_eq!(report.finished, count, "{report:?}");
    elapsed
}

fn due(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let elapsed = runtime.block_on(rotate_due(10_000));
    println!(
        "rotating 10,000 due secrets (random generator, no rotator): {:.2} s, {:.0} rotations/s",
        elapsed.as_secs_f64(),
        10_000.0 / elapsed.as_secs_f64()
    );

    let mut group = c.benchmark_group("due");
    group.sample_size(10);
    group.bench_function("rotate_1000_due_secrets", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| runtime.block_on(rotate_due(1_000)))
                .sum()
        });
    });
    group.finish();
}

criterion_group!(benches, due);
criterion_main!(benches);
