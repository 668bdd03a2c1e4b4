//! Counting versions per data key and rewrapping them onto the active key after a rotation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyward_crypto::{CryptoError, Keyring, RootKey};
use keyward_store::{SecretStore, StoreError};
use sqlx::Row;

use crate::common::{KEEP_ALL, TestStore, path, read_value, text};

/// Returns a copy of `keyring` (same keys and derivation secret) with one more key, active.
fn rotated(keyring: &Keyring) -> Arc<Keyring> {
    let root = RootKey::generate().expect("root key");
    let wrapped = keyring.wrap(&root).expect("wrap");
    let mut copy = Keyring::unwrap(&wrapped, &root).expect("unwrap");
    copy.rotate().expect("rotate");
    Arc::new(copy)
}

/// Writes `count` versions of `{"value": "<name>-v<version>"}` to each of `names`.
async fn write_versions(t: &TestStore, names: &[&str], count: u64) {
    for name in names {
        for version in 1..=count {
            t.store
                .put(&path(name), text(&format!("{name}-v{version}")), KEEP_ALL)
                .await
                .expect("put");
        }
    }
}

/// Asserts that every version written by [`write_versions`] reads back its value.
async fn assert_values_intact(t: &TestStore, names: &[&str], count: u64) {
    for name in names {
        for version in 1..=count {
            let read = t
                .store
                .get(&path(name), Some(version))
                .await
                .unwrap_or_else(|error| panic!("{name} v{version} does not read: {error}"));
            assert_eq!(
                read_value(&read).as_deref(),
                Some(format!("{name}-v{version}").as_str()),
                "{name} v{version}"
            );
        }
    }
}

/// Reads each stored row's `key_id` column and the key id in its ciphertext header.
async fn stored_key_ids(t: &TestStore) -> Vec<(i64, u32)> {
    let mut raw = t.raw().await;
    let rows = sqlx::query("SELECT key_id, ciphertext FROM secret_versions WHERE destroyed = 0")
        .fetch_all(&mut raw)
        .await
        .expect("rows read");
    rows.iter()
        .map(|row| {
            let column: i64 = row.get("key_id");
            let ciphertext: Vec<u8> = row.get("ciphertext");
            (column, Keyring::key_id_of(&ciphertext).expect("header"))
        })
        .collect()
}

#[tokio::test]
async fn count_by_key_counts_stored_versions() {
    let t = TestStore::new().await;
    assert!(t.store.count_by_key().await.expect("count").is_empty());

    write_versions(&t, &["app/a", "app/b"], 3).await;
    t.store.set_keyring(rotated(&t.keyring));
    write_versions(&t, &["app/c"], 2).await;
    assert_eq!(
        t.store.count_by_key().await.expect("count"),
        BTreeMap::from([(1, 6), (2, 2)])
    );

    // A soft-deleted version can come back, so it still counts; a destroyed one cannot.
    t.store
        .delete_versions(&path("app/a"), &[1])
        .await
        .expect("delete");
    t.store
        .destroy_versions(&path("app/b"), &[1, 2])
        .await
        .expect("destroy");
    assert_eq!(
        t.store.count_by_key().await.expect("count"),
        BTreeMap::from([(1, 4), (2, 2)])
    );
}

#[tokio::test]
async fn writes_use_swapped_keyring() {
    let t = TestStore::new().await;
    write_versions(&t, &["app/a"], 1).await;

    let next = rotated(&t.keyring);
    t.store.set_keyring(Arc::clone(&next));
    write_versions(&t, &["app/b"], 1).await;

    assert_eq!(t.store.keyring().active_key_id(), 2);
    let mut ids = stored_key_ids(&t).await;
    ids.sort_unstable();
    assert_eq!(ids, vec![(1, 1), (2, 2)]);
    assert_values_intact(&t, &["app/a", "app/b"], 1).await;
}

#[tokio::test]
async fn rewrap_batch_moves_versions_to_active_key() {
    let t = TestStore::new().await;
    let names = ["svc/one", "svc/two"];
    write_versions(&t, &names, 5).await;
    t.store.set_keyring(rotated(&t.keyring));

    let mut progress = Vec::new();
    for _ in 0..4 {
        let step = t.store.rewrap_batch(4).await.expect("rewrap");
        progress.push((step.rewrapped, step.remaining));
    }

    assert_eq!(progress, vec![(4, 6), (4, 2), (2, 0), (0, 0)]);
    assert_eq!(
        t.store.count_by_key().await.expect("count"),
        BTreeMap::from([(2, 10)])
    );
    assert!(
        stored_key_ids(&t)
            .await
            .iter()
            .all(|&(column, header)| column == 2 && header == 2),
        "every row's column and header name key 2"
    );
    assert_values_intact(&t, &names, 5).await;
}

#[tokio::test]
async fn rewrapped_versions_read_after_old_key_retired() {
    let t = TestStore::new().await;
    write_versions(&t, &["app/db"], 3).await;
    let next = rotated(&t.keyring);
    t.store.set_keyring(Arc::clone(&next));
    while t.store.rewrap_batch(2).await.expect("rewrap").remaining > 0 {}

    let root = RootKey::generate().expect("root key");
    let mut without_old = Keyring::unwrap(&next.wrap(&root).expect("wrap"), &root).expect("copy");
    without_old.retire(1).expect("retire key 1");
    let t = t.reopen_with(Arc::new(without_old)).await;

    assert_values_intact(&t, &["app/db"], 3).await;
}

#[tokio::test]
async fn rewrap_resumes_after_reopen() {
    let t = TestStore::new().await;
    let names = ["a/x", "b/y", "c/z"];
    write_versions(&t, &names, 4).await;
    let next = rotated(&t.keyring);
    t.store.set_keyring(Arc::clone(&next));

    let first = t.store.rewrap_batch(5).await.expect("rewrap");
    assert_eq!((first.rewrapped, first.remaining), (5, 7));
    let t = t.reopen_with(next).await;

    let second = t.store.rewrap_batch(100).await.expect("rewrap");
    assert_eq!((second.rewrapped, second.remaining), (7, 0));
    assert_values_intact(&t, &names, 4).await;
}

#[tokio::test]
async fn cancelled_rewrap_leaves_every_version_readable() {
    let t = TestStore::new().await;
    let names = ["p/1", "p/2", "p/3", "p/4"];
    write_versions(&t, &names, 10).await;
    t.store.set_keyring(rotated(&t.keyring));

    // Cut batches off at growing delays, so some stop mid-transaction and some finish.
    for micros in (0..30).map(|step| step * 150) {
        let _ = tokio::time::timeout(Duration::from_micros(micros), t.store.rewrap_batch(7)).await;
        let counts = t.store.count_by_key().await.expect("count");
        assert_eq!(counts.values().sum::<u64>(), 40, "{counts:?}");
    }
    assert_values_intact(&t, &names, 10).await;

    while t.store.rewrap_batch(7).await.expect("rewrap").remaining > 0 {}
    assert_eq!(
        t.store.count_by_key().await.expect("count"),
        BTreeMap::from([(2, 40)])
    );
    assert_values_intact(&t, &names, 10).await;
}

#[tokio::test]
async fn undecryptable_version_stops_batch_unchanged() {
    let t = TestStore::new().await;
    write_versions(&t, &["a/source", "b/target"], 2).await;
    let mut raw = t.raw().await;
    sqlx::query(
        "UPDATE secret_versions SET ciphertext =
            (SELECT ciphertext FROM secret_versions WHERE path = 'a/source' AND version = 1)
         WHERE path = 'b/target' AND version = 2",
    )
    .execute(&mut raw)
    .await
    .expect("move a ciphertext");
    t.store.set_keyring(rotated(&t.keyring));

    let result = t.store.rewrap_batch(100).await;

    assert!(matches!(result, Err(StoreError::Crypto(_))), "{result:?}");
    assert_eq!(
        t.store.count_by_key().await.expect("count"),
        BTreeMap::from([(1, 4)]),
        "the failed batch moved nothing"
    );
    assert_values_intact(&t, &["a/source"], 2).await;
}

#[tokio::test]
async fn rewrap_without_old_key_fails() {
    let t = TestStore::new().await;
    write_versions(&t, &["app/db"], 2).await;
    let mut next = Keyring::generate().expect("keyring");
    next.rotate().expect("rotate");
    next.retire(1).expect("retire");
    t.store.set_keyring(Arc::new(next));

    let result = t.store.rewrap_batch(10).await;

    assert!(
        matches!(
            result,
            Err(StoreError::Crypto(CryptoError::UnknownKeyId(1)))
        ),
        "{result:?}"
    );
    assert_eq!(
        t.store.count_by_key().await.expect("count"),
        BTreeMap::from([(1, 2)])
    );
}

#[tokio::test]
async fn rewrap_batch_rejects_zero_limit() {
    let t = TestStore::new().await;
    let result = t.store.rewrap_batch(0).await;
    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
}
