//! Group commit: concurrent appends share syncs.

use std::sync::Arc;

use keyward_audit::verify;
use tokio::sync::Barrier;

use crate::{Fixture, entry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_syncs() {
    let fixture = Fixture::new();
    let log = fixture.open();
    let start = Arc::new(Barrier::new(200));

    let tasks: Vec<_> = (1..=200)
        .map(|n| {
            let log = log.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                log.append(entry(n)).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task ran").expect("append entry");
    }
    let syncs = log.sync_count();
    log.close();

    assert!(syncs >= 1);
    assert!(syncs < 200, "200 concurrent appends took {syncs} syncs");
    assert_eq!(verify(&fixture.path).expect("log verifies").entries, 200);
}

#[tokio::test]
async fn sequential_appends_sync_each_entry() {
    let fixture = Fixture::new();
    let log = fixture.open();

    for n in 1..=5 {
        log.append(entry(n)).await.expect("append entry");
    }

    assert_eq!(log.sync_count(), 5);
}

#[tokio::test]
async fn enqueued_entry_keeps_its_order() {
    let fixture = Fixture::new();
    let log = fixture.open();

    log.append(entry(1)).await.expect("append entry");
    log.enqueue(entry(2)).expect("enqueue entry");
    let seq = log.append(entry(3)).await.expect("append entry");
    log.close();

    assert_eq!(seq, 3);
    let lines = fixture.read_lines();
    assert!(lines[1].contains(r#""n":2"#), "{}", lines[1]);
    assert_eq!(verify(&fixture.path).expect("log verifies").entries, 3);
}

#[tokio::test]
async fn head_is_not_synced_per_append() {
    let fixture = Fixture::new();
    let log = fixture.open();

    for n in 1..=5 {
        log.append(entry(n)).await.expect("append entry");
    }
    let head_syncs = log.head_sync_count();
    log.close();

    assert_eq!(log.sync_count(), 5);
    assert!(head_syncs < 5, "5 appends took {head_syncs} head syncs");
    let head = std::fs::read_to_string(fixture.head_path()).expect("read head");
    assert!(head.starts_with(r#"{"seq":5,"#), "{head}");
    assert!(verify(&fixture.path).expect("log verifies").head_checked);
}
