//! Secret metadata: write before data, partial updates, limits and removal.

use std::collections::BTreeMap;

use keyward_store::{MetadataUpdate, SecretStore, StoreError};
use serde_json::json;

use crate::common::{KEEP_ALL, TestStore, path, text, version};

fn custom(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn missing_metadata_is_not_found() {
    let t = TestStore::new().await;
    let result = t.store.read_metadata(&path("none/here")).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn metadata_before_data_creates_secret() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    let update = MetadataUpdate {
        max_versions: Some(5),
        cas_required: Some(false),
        delete_version_after_secs: Some(0),
        custom_metadata: Some(custom(&[("owner", "team-a")])),
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");

    let meta = t.store.read_metadata(&p).await.expect("read metadata");
    assert_eq!(meta.current_version, 0);
    assert_eq!(meta.oldest_version, 0);
    assert!(meta.versions.is_empty());
    assert_eq!(meta.max_versions, 5);
    assert_eq!(meta.custom_metadata, custom(&[("owner", "team-a")]));
    assert!(matches!(
        t.store.get(&p, None).await,
        Err(StoreError::NotFound)
    ));

    // The secret has no version yet, so check-and-set 0 still writes.
    let written = t
        .store
        .put(&p, version(json!({ "k": "v" }), Some(0)), KEEP_ALL)
        .await;
    assert_eq!(written.expect("first write").version, 1);
}

#[tokio::test]
async fn metadata_update_keeps_unnamed_fields() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    let first = MetadataUpdate {
        max_versions: Some(7),
        cas_required: Some(true),
        delete_version_after_secs: Some(60),
        custom_metadata: Some(custom(&[("owner", "team-a")])),
    };
    t.store
        .write_metadata(&p, first)
        .await
        .expect("first update");
    let before = t.store.read_metadata(&p).await.expect("metadata before");

    let second = MetadataUpdate {
        max_versions: Some(3),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, second)
        .await
        .expect("second update");

    let after = t.store.read_metadata(&p).await.expect("metadata after");
    assert_eq!(after.max_versions, 3);
    assert!(after.cas_required);
    assert_eq!(after.delete_version_after_secs, 60);
    assert_eq!(after.custom_metadata, custom(&[("owner", "team-a")]));
    assert_eq!(after.created_time, before.created_time);
    assert!(after.updated_time >= before.updated_time);
    assert_eq!(after.versions, before.versions);
}

#[tokio::test]
async fn custom_metadata_comes_with_reads() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    let update = MetadataUpdate {
        custom_metadata: Some(custom(&[("rotation", "monthly")])),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");

    let read = t.store.get(&p, None).await.expect("get");
    assert_eq!(read.custom_metadata, custom(&[("rotation", "monthly")]));
}

#[tokio::test]
async fn invalid_metadata_writes_nothing() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    let too_many = MetadataUpdate {
        max_versions: Some(1001),
        ..Default::default()
    };
    let result = t.store.write_metadata(&p, too_many).await;
    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    assert!(matches!(
        t.store.read_metadata(&p).await,
        Err(StoreError::NotFound)
    ));

    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");
    let before = t.store.read_metadata(&p).await.expect("metadata before");
    let bad_custom = MetadataUpdate {
        cas_required: Some(true),
        custom_metadata: Some(custom(&[("key", "line\nbreak")])),
        ..Default::default()
    };
    let result = t.store.write_metadata(&p, bad_custom).await;
    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    assert_eq!(
        t.store.read_metadata(&p).await.expect("metadata after"),
        before
    );
}

#[tokio::test]
async fn lowered_max_versions_prunes_on_next_write() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    for i in 1..=4 {
        t.store
            .put(&p, text(&format!("v{i}")), KEEP_ALL)
            .await
            .expect("put");
    }
    let update = MetadataUpdate {
        max_versions: Some(2),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");
    assert_eq!(
        t.store
            .read_metadata(&p)
            .await
            .expect("metadata")
            .versions
            .len(),
        4
    );

    t.store.put(&p, text("v5"), KEEP_ALL).await.expect("put 5");

    let meta = t.store.read_metadata(&p).await.expect("metadata");
    assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [4, 5]);
}

#[tokio::test]
async fn delete_metadata_removes_everything() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");

    t.store.delete_metadata(&p).await.expect("delete metadata");

    assert!(matches!(
        t.store.read_metadata(&p).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        t.store.get(&p, Some(1)).await,
        Err(StoreError::NotFound)
    ));
    let listed = t
        .store
        .list(&keyward_store::FolderPath::parse("svc").expect("folder"))
        .await;
    assert!(listed.expect("list").is_empty());

    let mut raw = t.raw().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_versions")
        .fetch_one(&mut raw)
        .await
        .expect("count rows");
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn secret_restarts_at_one_after_delete_metadata() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");
    t.store.delete_metadata(&p).await.expect("delete metadata");

    let written = t
        .store
        .put(&p, version(json!({ "value": "again" }), Some(0)), KEEP_ALL)
        .await;
    assert_eq!(written.expect("write after removal").version, 1);
}

#[tokio::test]
async fn delete_missing_metadata_succeeds() {
    let t = TestStore::new().await;
    t.store
        .delete_metadata(&path("never/written"))
        .await
        .expect("delete missing");
}
