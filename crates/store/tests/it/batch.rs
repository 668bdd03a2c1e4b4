//! Group commit of new versions: writes queued together share a transaction, and one that fails
//! is rolled back alone.

use std::sync::Arc;

use keyward_store::{SecretStore, StoreError};
use serde_json::json;

use crate::common::{KEEP_ALL, TestStore, path, read_value, text, version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_spares_its_batch() {
    let t = TestStore::new().await;
    let store = Arc::new(t.store);

    // Queued at once, so most of them share transactions. Of the `cas = 0` writes to one
    // secret, only the first can succeed.
    let mut creates = Vec::new();
    let mut others = Vec::new();
    for index in 0..20 {
        let store_for_create = Arc::clone(&store);
        creates.push(tokio::spawn(async move {
            let write = version(json!({ "value": format!("create-{index}") }), Some(0));
            store_for_create
                .put(&path("svc/once"), write, KEEP_ALL)
                .await
        }));
        let store_for_other = Arc::clone(&store);
        others.push(tokio::spawn(async move {
            let other = path(&format!("svc/many-{index}"));
            store_for_other
                .put(&other, text(&format!("other-{index}")), KEEP_ALL)
                .await
        }));
    }

    let mut created = 0;
    for task in creates {
        match task.await.expect("task joins") {
            Ok(meta) => {
                assert_eq!(meta.version, 1);
                created += 1;
            }
            Err(error) => assert!(matches!(error, StoreError::CasMismatch), "{error:?}"),
        }
    }
    assert_eq!(created, 1);
    for task in others {
        let meta = task.await.expect("task joins").expect("write succeeds");
        assert_eq!(meta.version, 1);
    }

    let once = store
        .read_metadata(&path("svc/once"))
        .await
        .expect("metadata");
    assert_eq!(once.versions.len(), 1);
    for index in 0..20 {
        let read = store
            .get(&path(&format!("svc/many-{index}")), None)
            .await
            .expect("get");
        assert_eq!(read_value(&read), Some(format!("other-{index}")));
    }
}

#[tokio::test]
async fn write_after_close_fails_cleanly() {
    let t = TestStore::new().await;
    t.store.close().await;

    let error = t
        .store
        .put(&path("svc/key"), text("late"), KEEP_ALL)
        .await
        .expect_err("closed store");

    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transaction_fails_each_write_clearly() {
    let t = TestStore::new().await;

    // RAISE(ROLLBACK) ends the whole transaction, so the write's own rollback fails too.
    let mut raw = t.raw().await;
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON secret_versions
         WHEN NEW.path = 'svc/poison'
         BEGIN SELECT RAISE(ROLLBACK, 'poisoned write'); END",
    )
    .execute(&mut raw)
    .await
    .expect("trigger");
    let store = Arc::new(t.store);

    let mut tasks = Vec::new();
    for index in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let name = if index == 10 {
                "svc/poison".to_owned()
            } else {
                format!("svc/ok-{index}")
            };
            let result = store.put(&path(&name), text("value"), KEEP_ALL).await;
            (name, result)
        }));
    }

    for task in tasks {
        let (name, result) = task.await.expect("task joins");
        match result {
            Ok(_) => {
                let read = store
                    .get(&path(&name), None)
                    .await
                    .expect("acknowledged write");
                assert_eq!(read_value(&read).as_deref(), Some("value"));
            }
            Err(error) => {
                let message = error.to_string();
                assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
                assert!(!message.contains("stopped"), "{name}: {message}");
                if name == "svc/poison" {
                    assert!(message.contains("poisoned write"), "{message}");
                }
            }
        }
    }
    let poisoned = store.get(&path("svc/poison"), None).await;
    assert!(
        matches!(poisoned, Err(StoreError::NotFound)),
        "{poisoned:?}"
    );

    store
        .put(&path("svc/after"), text("later"), KEEP_ALL)
        .await
        .expect("the writer recovers");
}
