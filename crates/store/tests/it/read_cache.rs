//! The in-memory read cache: a repeated read skips SQLite, and every change the store makes
//! reaches the next read at once.

use std::collections::BTreeMap;

use keyward_store::{MetadataUpdate, SecretStore, Stage, StoreError};
use time::{Duration, OffsetDateTime};

use crate::common::{KEEP_ALL, TestStore, path, read_value, text};

/// Reads `name` without a version and returns its `value` field.
async fn current_value(t: &TestStore, name: &str) -> Option<String> {
    let read = t.store.get(&path(name), None).await.expect("get");
    read_value(&read)
}

#[tokio::test]
async fn repeated_read_skips_sqlite() {
    let t = TestStore::new().await;
    t.store
        .put(&path("app/db"), text("one"), KEEP_ALL)
        .await
        .expect("put");
    assert_eq!(current_value(&t, "app/db").await.as_deref(), Some("one"));

    // Behind the store's back, so only a read from SQLite would see it.
    let mut raw = t.raw().await;
    sqlx::query("UPDATE secret_versions SET ciphertext = x'00' WHERE path = 'app/db'")
        .execute(&mut raw)
        .await
        .expect("raw update");

    assert_eq!(current_value(&t, "app/db").await.as_deref(), Some("one"));
}

#[tokio::test]
async fn new_version_replaces_cached_read() {
    let t = TestStore::new().await;
    let p = path("app/db");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    assert_eq!(current_value(&t, "app/db").await.as_deref(), Some("one"));

    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put");

    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.meta.version, 2);
    assert_eq!(read_value(&read).as_deref(), Some("two"));
}

#[tokio::test]
async fn delete_undelete_destroy_reach_cached_read() {
    let t = TestStore::new().await;
    let p = path("app/db");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    assert_eq!(current_value(&t, "app/db").await.as_deref(), Some("one"));

    t.store.delete_versions(&p, &[1]).await.expect("delete");
    assert_eq!(current_value(&t, "app/db").await, None);

    t.store.undelete_versions(&p, &[1]).await.expect("undelete");
    assert_eq!(current_value(&t, "app/db").await.as_deref(), Some("one"));

    t.store.destroy_versions(&p, &[1]).await.expect("destroy");
    let read = t.store.get(&p, None).await.expect("get");
    assert!(read.meta.destroyed);
    assert!(read.data.is_none());
}

#[tokio::test]
async fn metadata_changes_reach_cached_read() {
    let t = TestStore::new().await;
    let p = path("app/db");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    let read = t.store.get(&p, None).await.expect("get");
    assert!(read.custom_metadata.is_empty());

    let owner = BTreeMap::from([("owner".to_owned(), "payments".to_owned())]);
    let update = MetadataUpdate {
        custom_metadata: Some(owner.clone()),
        ..Default::default()
    };
    t.store.write_metadata(&p, update).await.expect("metadata");
    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.custom_metadata, owner);

    t.store.delete_metadata(&p).await.expect("delete metadata");
    let error = t.store.get(&p, None).await.expect_err("deleted secret");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

#[tokio::test]
async fn rotation_stages_reach_cached_read() {
    let t = TestStore::new().await;
    let p = path("app/api-key");
    t.store.put(&p, text("old"), KEEP_ALL).await.expect("put");
    assert_eq!(
        current_value(&t, "app/api-key").await.as_deref(),
        Some("old")
    );

    t.store
        .write_pending(&p, text("new"))
        .await
        .expect("pending");
    assert_eq!(
        current_value(&t, "app/api-key").await.as_deref(),
        Some("old")
    );

    let deadline = OffsetDateTime::now_utc() + Duration::hours(1);
    t.store
        .promote_pending(&p, 2, deadline)
        .await
        .expect("promote");
    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.meta.stage, Stage::Current);
    assert_eq!(read_value(&read).as_deref(), Some("new"));
}

#[tokio::test]
async fn passing_deletion_time_hides_cached_data() {
    let t = TestStore::new().await;
    let p = path("app/short-lived");
    let update = MetadataUpdate {
        delete_version_after_secs: Some(1),
        ..Default::default()
    };
    t.store.write_metadata(&p, update).await.expect("metadata");
    t.store.put(&p, text("brief"), KEEP_ALL).await.expect("put");
    assert_eq!(
        current_value(&t, "app/short-lived").await.as_deref(),
        Some("brief")
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    assert_eq!(current_value(&t, "app/short-lived").await, None);
}

#[tokio::test]
async fn cancelled_write_leaves_no_stale_read() {
    let t = TestStore::new().await;
    let p = path("app/db");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    assert_eq!(current_value(&t, "app/db").await.as_deref(), Some("one"));

    // Dropped at its first await, then given time to commit if it got that far. Whether it
    // committed or not, reads must agree with SQLite from now on.
    let write = t.store.put(&p, text("two"), KEEP_ALL);
    let _ = tokio::time::timeout(std::time::Duration::ZERO, write).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let mut raw = t.raw().await;
    let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM secret_versions")
        .fetch_one(&mut raw)
        .await
        .expect("raw read");
    for _ in 0..2 {
        let read = t.store.get(&p, None).await.expect("get");
        assert_eq!(
            read.meta.version,
            u64::try_from(newest).expect("version is positive")
        );
    }
}
