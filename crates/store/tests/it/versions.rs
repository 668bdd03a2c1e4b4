//! Writing, reading, deleting and destroying versions.

use std::sync::Arc;

use keyward_store::{MetadataUpdate, SecretStore, Stage, StoreError};
use serde_json::json;

use crate::common::{KEEP_ALL, TestStore, path, read_value, text, version};

#[tokio::test]
async fn put_then_get_returns_data() {
    let t = TestStore::new().await;
    let p = path("team/db/password");
    let value = json!({ "user": "app", "port": 5432, "tls": true, "nested": { "a": [1, 2] } });

    let written = t
        .store
        .put(&p, version(value.clone(), None), KEEP_ALL)
        .await
        .expect("put");
    assert_eq!(written.version, 1);
    assert_eq!(written.stage, Stage::Current);
    assert_eq!(written.created_by, "accessor-test");
    assert!(!written.destroyed);
    assert_eq!(written.deletion_time, None);

    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.meta, written);
    let data = read.data.expect("current version has data");
    assert_eq!(serde_json::Value::Object(data.expose_map()), value);
}

#[tokio::test]
async fn versions_count_up_and_demote_previous() {
    let t = TestStore::new().await;
    let p = path("svc/key");

    for (i, value) in ["one", "two", "three"].into_iter().enumerate() {
        let meta = t.store.put(&p, text(value), KEEP_ALL).await.expect("put");
        assert_eq!(meta.version, i as u64 + 1);
    }

    let current = t.store.get(&p, None).await.expect("get current");
    assert_eq!(current.meta.version, 3);
    assert_eq!(read_value(&current).as_deref(), Some("three"));

    let first = t.store.get(&p, Some(1)).await.expect("get version 1");
    assert_eq!(first.meta.stage, Stage::Previous);
    assert_eq!(read_value(&first).as_deref(), Some("one"));

    let meta = t.store.read_metadata(&p).await.expect("metadata");
    let stages: Vec<Stage> = meta.versions.values().map(|v| v.stage).collect();
    assert_eq!(stages, [Stage::Previous, Stage::Previous, Stage::Current]);
    assert_eq!(meta.current_version, 3);
    assert_eq!(meta.oldest_version, 0, "nothing pruned yet");
}

#[tokio::test]
async fn missing_secret_or_version_is_not_found() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    assert!(matches!(
        t.store.get(&p, None).await,
        Err(StoreError::NotFound)
    ));

    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    for missing in [0, 2, u64::MAX] {
        let result = t.store.get(&p, Some(missing)).await;
        assert!(
            matches!(result, Err(StoreError::NotFound)),
            "version {missing}: {result:?}"
        );
    }
}

#[tokio::test]
async fn cas_zero_only_creates() {
    let t = TestStore::new().await;
    let p = path("svc/key");

    let meta = t
        .store
        .put(&p, version(json!({ "v": "1" }), Some(0)), KEEP_ALL)
        .await;
    assert_eq!(meta.expect("cas 0 on a new secret").version, 1);

    let again = t
        .store
        .put(&p, version(json!({ "v": "2" }), Some(0)), KEEP_ALL)
        .await;
    assert!(matches!(again, Err(StoreError::CasMismatch)), "{again:?}");
}

#[tokio::test]
async fn cas_matching_current_version_writes() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");

    let meta = t
        .store
        .put(&p, version(json!({ "value": "three" }), Some(2)), KEEP_ALL)
        .await;
    assert_eq!(meta.expect("cas 2 matches").version, 3);
}

#[tokio::test]
async fn cas_mismatch_writes_nothing() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");
    let before = t.store.read_metadata(&p).await.expect("metadata before");

    for stale in [1, 3, 0] {
        let result = t
            .store
            .put(&p, version(json!({ "value": "x" }), Some(stale)), 1)
            .await;
        assert!(
            matches!(result, Err(StoreError::CasMismatch)),
            "cas {stale}: {result:?}"
        );
    }

    // Nothing changed: no new version, no stage change, no pruning (max 1 was passed).
    let after = t.store.read_metadata(&p).await.expect("metadata after");
    assert_eq!(after, before);
    let current = t.store.get(&p, None).await.expect("get");
    assert_eq!(read_value(&current).as_deref(), Some("two"));
}

#[tokio::test]
async fn cas_required_rejects_write_without_cas() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    let update = MetadataUpdate {
        cas_required: Some(true),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");

    let result = t.store.put(&p, text("two"), KEEP_ALL).await;
    assert!(matches!(result, Err(StoreError::CasRequired)), "{result:?}");
    assert_eq!(
        t.store
            .read_metadata(&p)
            .await
            .expect("metadata")
            .current_version,
        1
    );

    let meta = t
        .store
        .put(&p, version(json!({ "value": "two" }), Some(1)), KEEP_ALL)
        .await;
    assert_eq!(meta.expect("write with cas").version, 2);
}

#[tokio::test]
async fn failure_mid_write_rolls_back() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), 2).await.expect("put 1");
    t.store.put(&p, text("two"), 2).await.expect("put 2");
    let before = t.store.read_metadata(&p).await.expect("metadata before");

    // The trigger fails the version insert, which runs after the secret row was updated and
    // the old current version demoted, and before pruning.
    let mut raw = t.raw().await;
    sqlx::query(
        "CREATE TRIGGER fail_third_version BEFORE INSERT ON secret_versions
         WHEN NEW.version = 3 BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut raw)
    .await
    .expect("trigger is created");

    let result = t.store.put(&p, text("three"), 2).await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");

    let after = t.store.read_metadata(&p).await.expect("metadata after");
    assert_eq!(after, before);
    assert_eq!(after.versions[&2].stage, Stage::Current);
    let current = t.store.get(&p, None).await.expect("get");
    assert_eq!(read_value(&current).as_deref(), Some("two"));
}

#[tokio::test]
async fn versions_beyond_default_max_are_pruned() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    for i in 1..=5 {
        t.store
            .put(&p, text(&format!("v{i}")), 3)
            .await
            .expect("put");
    }

    let meta = t.store.read_metadata(&p).await.expect("metadata");
    assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(meta.oldest_version, 3);
    assert_eq!(meta.current_version, 5);
    assert!(matches!(
        t.store.get(&p, Some(2)).await,
        Err(StoreError::NotFound)
    ));

    let mut raw = t.raw().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_versions WHERE path = ?")
        .bind("svc/key")
        .fetch_one(&mut raw)
        .await
        .expect("count rows");
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn secret_max_versions_overrides_default() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    let update = MetadataUpdate {
        max_versions: Some(2),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");

    for i in 1..=4 {
        t.store
            .put(&p, text(&format!("v{i}")), 10)
            .await
            .expect("put");
    }
    let meta = t.store.read_metadata(&p).await.expect("metadata");
    assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [3, 4]);
}

#[tokio::test]
async fn pruned_version_numbers_are_not_reused() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    for i in 1..=3 {
        t.store
            .put(&p, text(&format!("v{i}")), 1)
            .await
            .expect("put");
    }

    let next = t
        .store
        .put(&p, text("v4"), 1)
        .await
        .expect("put after pruning");
    assert_eq!(next.version, 4);
    assert!(matches!(
        t.store.get(&p, Some(3)).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn delete_without_versions_deletes_latest() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");

    t.store
        .delete_versions(&p, &[])
        .await
        .expect("delete latest");

    let latest = t
        .store
        .get(&p, None)
        .await
        .expect("latest still has metadata");
    assert_eq!(latest.meta.version, 2);
    assert!(latest.meta.deletion_time.is_some());
    assert!(latest.data.is_none());
    assert!(!latest.meta.destroyed);

    let older = t.store.get(&p, Some(1)).await.expect("get version 1");
    assert_eq!(read_value(&older).as_deref(), Some("one"));
}

#[tokio::test]
async fn undelete_restores_data() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");
    t.store
        .delete_versions(&p, &[1, 2, 99])
        .await
        .expect("delete with unknown version");
    assert!(
        t.store
            .get(&p, Some(1))
            .await
            .expect("get 1")
            .data
            .is_none()
    );

    t.store
        .undelete_versions(&p, &[1])
        .await
        .expect("undelete 1");

    let first = t.store.get(&p, Some(1)).await.expect("get 1");
    assert_eq!(first.meta.deletion_time, None);
    assert_eq!(read_value(&first).as_deref(), Some("one"));
    assert!(
        t.store
            .get(&p, Some(2))
            .await
            .expect("get 2")
            .data
            .is_none()
    );
}

#[tokio::test]
async fn delete_keeps_first_deletion_time() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    t.store
        .delete_versions(&p, &[1])
        .await
        .expect("first delete");
    let first = t.store.get(&p, None).await.expect("get").meta.deletion_time;

    t.store
        .delete_versions(&p, &[1])
        .await
        .expect("second delete");
    assert_eq!(
        t.store.get(&p, None).await.expect("get").meta.deletion_time,
        first
    );
}

#[tokio::test]
async fn changes_on_missing_secret_are_ignored() {
    let t = TestStore::new().await;
    let p = path("never/written");
    t.store.delete_versions(&p, &[]).await.expect("delete");
    t.store.undelete_versions(&p, &[1]).await.expect("undelete");
    t.store.destroy_versions(&p, &[1]).await.expect("destroy");
    assert!(matches!(
        t.store.read_metadata(&p).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn destroy_erases_ciphertext_for_good() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");

    t.store.destroy_versions(&p, &[1]).await.expect("destroy 1");

    let first = t.store.get(&p, Some(1)).await.expect("get 1");
    assert!(first.meta.destroyed);
    assert_eq!(first.meta.stage, Stage::Destroyed);
    assert!(first.data.is_none());

    let mut raw = t.raw().await;
    let (ciphertext, key_id): (Option<Vec<u8>>, Option<i64>) = sqlx::query_as(
        "SELECT ciphertext, key_id FROM secret_versions WHERE path = ? AND version = 1",
    )
    .bind("svc/key")
    .fetch_one(&mut raw)
    .await
    .expect("read row");
    assert_eq!(ciphertext, None);
    assert_eq!(key_id, None);

    // Neither undelete nor delete brings a destroyed version back or marks it.
    t.store
        .undelete_versions(&p, &[1])
        .await
        .expect("undelete 1");
    t.store.delete_versions(&p, &[1]).await.expect("delete 1");
    let first = t.store.get(&p, Some(1)).await.expect("get 1 again");
    assert!(first.data.is_none());
    assert!(first.meta.destroyed);
    assert_eq!(first.meta.deletion_time, None);

    let second = t.store.get(&p, Some(2)).await.expect("get 2");
    assert_eq!(read_value(&second).as_deref(), Some("two"));
}

#[tokio::test]
async fn destroyed_current_is_not_demoted() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store
        .destroy_versions(&p, &[])
        .await
        .expect("destroy current");

    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");

    let meta = t.store.read_metadata(&p).await.expect("metadata");
    assert_eq!(meta.versions[&1].stage, Stage::Destroyed);
    assert_eq!(meta.versions[&2].stage, Stage::Current);
}

#[tokio::test]
async fn write_after_deleted_current_succeeds() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.delete_versions(&p, &[]).await.expect("delete");

    let meta = t
        .store
        .put(&p, version(json!({ "value": "two" }), Some(1)), KEEP_ALL)
        .await;
    assert_eq!(meta.expect("cas against deleted current").version, 2);
    let current = t.store.get(&p, None).await.expect("get");
    assert_eq!(read_value(&current).as_deref(), Some("two"));
}

#[tokio::test]
async fn delete_version_after_sets_future_deletion() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    let update = MetadataUpdate {
        delete_version_after_secs: Some(3600),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");

    let written = t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    let expected = written.created_time + time::Duration::hours(1);
    assert_eq!(written.deletion_time, Some(expected));

    // Until that time the version stays readable.
    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.meta.deletion_time, Some(expected));
    assert_eq!(read_value(&read).as_deref(), Some("one"));

    // An explicit delete moves the deletion time to now.
    t.store.delete_versions(&p, &[]).await.expect("delete");
    let read = t.store.get(&p, None).await.expect("get after delete");
    assert!(read.data.is_none());
    assert!(read.meta.deletion_time.is_some_and(|time| time < expected));
}

#[tokio::test]
async fn past_deletion_time_hides_data() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");

    let mut raw = t.raw().await;
    sqlx::query("UPDATE secret_versions SET deletion_time = 1 WHERE path = ?")
        .bind("svc/key")
        .execute(&mut raw)
        .await
        .expect("set deletion time");

    assert!(t.store.get(&p, None).await.expect("get").data.is_none());
}

#[tokio::test]
async fn revoked_version_returns_no_data() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");

    let mut raw = t.raw().await;
    sqlx::query("UPDATE secret_versions SET stage = 'revoked' WHERE path = ?")
        .bind("svc/key")
        .execute(&mut raw)
        .await
        .expect("revoke");

    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.meta.stage, Stage::Revoked);
    assert!(read.data.is_none());
}

#[tokio::test]
async fn previous_past_grace_returns_no_data() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");

    let mut raw = t.raw().await;
    sqlx::query("UPDATE secret_versions SET grace_deadline = 1 WHERE path = ? AND version = 1")
        .bind("svc/key")
        .execute(&mut raw)
        .await
        .expect("set grace deadline");

    let first = t.store.get(&p, Some(1)).await.expect("get 1");
    assert!(first.meta.grace_deadline.is_some());
    assert!(first.data.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_get_distinct_versions() {
    let t = TestStore::new().await;
    let store = Arc::new(t.store);
    let p = path("svc/key");

    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = Arc::clone(&store);
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put(&p, text(&format!("v{i}")), KEEP_ALL)
                .await
                .map(|meta| meta.version)
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.expect("task joins").expect("put"));
    }
    versions.sort_unstable();

    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    let meta = store.read_metadata(&p).await.expect("metadata");
    let current: Vec<u64> = meta
        .versions
        .values()
        .filter(|v| v.stage == Stage::Current)
        .map(|v| v.version)
        .collect();
    assert_eq!(current, [20]);
}

#[tokio::test]
async fn long_version_lists_change_only_listed_versions() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    for value in ["one", "two", "three"] {
        t.store.put(&p, text(value), KEEP_ALL).await.expect("put");
    }
    // Duplicates, unknown numbers and numbers past i64::MAX around the two real targets.
    let mut versions = vec![1, 3, 3, 1, u64::MAX, 0];
    versions.extend(std::iter::repeat_n(3, 1000));
    versions.extend(10..2000);

    t.store
        .delete_versions(&p, &versions)
        .await
        .expect("delete many");
    let deleted: Vec<bool> = t
        .store
        .read_metadata(&p)
        .await
        .expect("metadata")
        .versions
        .values()
        .map(|v| v.deletion_time.is_some())
        .collect();
    assert_eq!(deleted, [true, false, true]);

    t.store
        .undelete_versions(&p, &versions)
        .await
        .expect("undelete many");
    t.store
        .destroy_versions(&p, &[3, 3, 3])
        .await
        .expect("destroy duplicates");
    let meta = t.store.read_metadata(&p).await.expect("metadata");
    let destroyed: Vec<bool> = meta.versions.values().map(|v| v.destroyed).collect();
    assert_eq!(destroyed, [false, false, true]);
    assert!(meta.versions.values().all(|v| v.deletion_time.is_none()));
}

#[tokio::test]
async fn huge_version_list_is_one_quick_write() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    let versions: Vec<u64> = (1..=200_000).collect();

    // One UPDATE per version took several seconds here while holding the write lock; one
    // statement over the whole list takes milliseconds.
    let started = std::time::Instant::now();
    t.store
        .delete_versions(&p, &versions)
        .await
        .expect("delete");
    let elapsed = started.elapsed();

    assert!(
        elapsed < std::time::Duration::from_secs(2),
        "deleting took {elapsed:?}"
    );
    assert!(t.store.get(&p, None).await.expect("get").data.is_none());
}
