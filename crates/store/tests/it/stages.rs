//! Rotation stages: pending versions, promotion with a grace deadline, discard and revoke.

use keyward_store::{SecretPath, SecretStore, Stage, StoreError};
use time::{Duration, OffsetDateTime};

use crate::common::{KEEP_ALL, TestStore, path, read_value, text};

/// Writes `current` as version 1 of `p`, then `pending` as its pending version 2.
async fn put_with_pending(t: &TestStore, p: &SecretPath, current: &str, pending: &str) {
    t.store.put(p, text(current), KEEP_ALL).await.expect("put");
    t.store
        .write_pending(p, text(pending))
        .await
        .expect("pending");
}

#[tokio::test]
async fn pending_version_is_hidden_from_unversioned_reads() {
    let t = TestStore::new().await;
    let p = path("app/api-key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");

    let pending = t
        .store
        .write_pending(&p, text("two"))
        .await
        .expect("pending");
    assert_eq!(pending.version, 2);
    assert_eq!(pending.stage, Stage::Pending);

    let current = t.store.get(&p, None).await.expect("get current");
    assert_eq!(current.meta.version, 1);
    assert_eq!(read_value(&current).as_deref(), Some("one"));

    let by_version = t.store.get(&p, Some(2)).await.expect("get pending");
    assert_eq!(by_version.meta.stage, Stage::Pending);
    assert_eq!(read_value(&by_version).as_deref(), Some("two"));
}

#[tokio::test]
async fn only_pending_version_reads_as_not_found() {
    let t = TestStore::new().await;
    let p = path("app/new-key");
    t.store
        .write_pending(&p, text("first"))
        .await
        .expect("pending");

    let error = t.store.get(&p, None).await.expect_err("no current version");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

#[tokio::test]
async fn second_pending_version_is_rejected() {
    let t = TestStore::new().await;
    let p = path("app/key");
    t.store.write_pending(&p, text("a")).await.expect("pending");

    let error = t
        .store
        .write_pending(&p, text("b"))
        .await
        .expect_err("second pending");
    assert!(
        matches!(error, StoreError::PendingExists { version: 1 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn promote_swaps_current_and_sets_deadline() {
    let t = TestStore::new().await;
    let p = path("app/key");
    put_with_pending(&t, &p, "old", "new").await;
    let deadline = OffsetDateTime::now_utc() + Duration::hours(1);

    let replaced = t
        .store
        .promote_pending(&p, 2, deadline)
        .await
        .expect("promote");
    assert_eq!(replaced, Some(1));

    let current = t.store.get(&p, None).await.expect("get current");
    assert_eq!(current.meta.version, 2);
    assert_eq!(current.meta.stage, Stage::Current);
    assert_eq!(read_value(&current).as_deref(), Some("new"));

    let old = t.store.get(&p, Some(1)).await.expect("get old");
    assert_eq!(old.meta.stage, Stage::Previous);
    assert_eq!(old.meta.grace_deadline, Some(deadline));
    assert_eq!(read_value(&old).as_deref(), Some("old"));

    let again = t
        .store
        .promote_pending(&p, 2, deadline)
        .await
        .expect("promote again");
    assert_eq!(again, Some(1));
}

#[tokio::test]
async fn previous_past_deadline_is_unreadable() {
    let t = TestStore::new().await;
    let p = path("app/key");
    put_with_pending(&t, &p, "old", "new").await;
    let past = OffsetDateTime::now_utc() - Duration::seconds(1);
    t.store.promote_pending(&p, 2, past).await.expect("promote");

    let old = t.store.get(&p, Some(1)).await.expect("get old");
    assert!(old.data.is_none());
}

#[tokio::test]
async fn discard_erases_pending_version() {
    let t = TestStore::new().await;
    let p = path("app/key");
    put_with_pending(&t, &p, "old", "new").await;

    t.store.discard_pending(&p, 2).await.expect("discard");
    t.store.discard_pending(&p, 2).await.expect("discard again");

    let gone = t.store.get(&p, Some(2)).await.expect("get discarded");
    assert_eq!(gone.meta.stage, Stage::Destroyed);
    assert!(gone.data.is_none());
    let current = t.store.get(&p, None).await.expect("get current");
    assert_eq!(current.meta.version, 1);

    let error = t.store.discard_pending(&p, 1).await.expect_err("current");
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");

    // A new rotation can start once the pending version is gone.
    let next = t
        .store
        .write_pending(&p, text("newer"))
        .await
        .expect("pending");
    assert_eq!(next.version, 3);
}

#[tokio::test]
async fn revoked_version_has_no_data() {
    let t = TestStore::new().await;
    let p = path("app/key");
    put_with_pending(&t, &p, "old", "new").await;
    let deadline = OffsetDateTime::now_utc() + Duration::hours(1);
    t.store
        .promote_pending(&p, 2, deadline)
        .await
        .expect("promote");

    t.store.revoke_version(&p, 1).await.expect("revoke");
    t.store.revoke_version(&p, 1).await.expect("revoke again");

    let old = t.store.get(&p, Some(1)).await.expect("get revoked");
    assert_eq!(old.meta.stage, Stage::Revoked);
    assert!(old.data.is_none());

    let mut raw = t.raw().await;
    let ciphertext: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT ciphertext FROM secret_versions WHERE path = 'app/key' AND version = 1",
    )
    .fetch_one(&mut raw)
    .await
    .expect("raw read");
    assert!(ciphertext.is_none(), "revoked data is erased");

    let error = t.store.revoke_version(&p, 2).await.expect_err("current");
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    let error = t.store.revoke_version(&p, 9).await.expect_err("missing");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

#[tokio::test]
async fn pruning_keeps_pending_version() {
    let t = TestStore::new().await;
    let p = path("app/key");
    t.store.put(&p, text("one"), 2).await.expect("put");
    t.store
        .write_pending(&p, text("pending"))
        .await
        .expect("pending");
    t.store.put(&p, text("three"), 2).await.expect("put");
    t.store.put(&p, text("four"), 2).await.expect("put");

    let pending = t.store.get(&p, Some(2)).await.expect("pending kept");
    assert_eq!(pending.meta.stage, Stage::Pending);
    let error = t.store.get(&p, Some(1)).await.expect_err("pruned");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
}

#[tokio::test]
async fn cas_ignores_pending_version() {
    let t = TestStore::new().await;
    let p = path("app/key");
    put_with_pending(&t, &p, "one", "pending").await;

    let written = t
        .store
        .put(
            &p,
            crate::common::version(serde_json::json!({ "value": "two" }), Some(1)),
            KEEP_ALL,
        )
        .await
        .expect("cas against the current version");
    assert_eq!(written.version, 3);
}

#[tokio::test]
async fn empty_version_list_spares_pending_version() {
    let t = TestStore::new().await;
    let p = path("app/key");
    put_with_pending(&t, &p, "old", "new").await;

    t.store.delete_versions(&p, &[]).await.expect("delete");

    let current = t.store.get(&p, None).await.expect("get current");
    assert_eq!(current.meta.version, 1);
    assert!(current.data.is_none());
    let pending = t.store.get(&p, Some(2)).await.expect("get pending");
    assert_eq!(pending.meta.stage, Stage::Pending);
    assert_eq!(read_value(&pending).as_deref(), Some("new"));

    t.store.destroy_versions(&p, &[]).await.expect("destroy");
    let pending = t.store.get(&p, Some(2)).await.expect("get pending");
    assert!(!pending.meta.destroyed);
}
