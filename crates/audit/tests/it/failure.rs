//! Fail closed: a log that cannot be written rejects every append.

use keyward_audit::AuditError;

use crate::{Fixture, entry};

/// Opens a log whose path is a symlink to `/dev/full`, where every write fails with ENOSPC,
/// even for root.
fn open_full_device_log(fixture: &Fixture) -> keyward_audit::AuditLog {
    std::os::unix::fs::symlink("/dev/full", &fixture.path).expect("symlink to /dev/full");
    fixture.open()
}

#[tokio::test]
async fn write_failure_rejects_append() {
    let fixture = Fixture::new();
    let log = open_full_device_log(&fixture);

    let result = log.append(entry(1)).await;

    let Err(AuditError::Io(error)) = result else {
        panic!("expected an i/o error, got {result:?}");
    };
    assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
    assert!(
        error.to_string().contains("audit.log"),
        "message does not name the file: {error}"
    );
    assert!(log.is_failed());
}

#[tokio::test]
async fn appends_after_failure_also_fail() {
    let fixture = Fixture::new();
    let log = open_full_device_log(&fixture);
    let first = log.append(entry(1)).await;
    assert!(first.is_err());

    for n in 2..=4 {
        let result = log.clone().append(entry(n)).await;
        assert!(
            matches!(result, Err(AuditError::Io(_))),
            "append {n} after a failure returned {result:?}"
        );
    }
    assert_eq!(log.sync_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waiters_all_get_failure() {
    let fixture = Fixture::new();
    let log = open_full_device_log(&fixture);

    let tasks: Vec<_> = (1..=20)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(entry(n)).await })
        })
        .collect();

    for task in tasks {
        let result = task.await.expect("task ran");
        assert!(
            matches!(result, Err(AuditError::Io(_))),
            "append returned {result:?}"
        );
    }
}

#[tokio::test]
async fn failed_enqueued_entry_fails_later_appends() {
    let fixture = Fixture::new();
    let log = open_full_device_log(&fixture);

    log.enqueue(entry(1))
        .expect("queueing does not wait for the write");
    let result = log.append(entry(2)).await;

    assert!(matches!(result, Err(AuditError::Io(_))), "{result:?}");
    assert!(log.is_failed());
    assert!(matches!(log.enqueue(entry(3)), Err(AuditError::Io(_))));
}
