//! Tokens and policies.

use std::collections::BTreeMap;

use keyward_store::{PolicyRecord, SecretStore, StoreError, TokenRecord};
use time::OffsetDateTime;

use crate::common::TestStore;

fn token(hash: &str, accessor: &str) -> TokenRecord {
    let created = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
        .expect("test time is valid");
    TokenRecord {
        token_hash: hash.to_owned(),
        accessor: accessor.to_owned(),
        policies: vec!["default".to_owned(), "team-a".to_owned()],
        display_name: "token-ci".to_owned(),
        created_time: created,
        expire_time: Some(created + time::Duration::hours(1)),
        creation_ttl_secs: 3600,
        renewable: true,
        parent_accessor: Some("parent-accessor".to_owned()),
        meta: BTreeMap::from([("job".to_owned(), "deploy".to_owned())]),
    }
}

#[tokio::test]
async fn token_round_trips_by_hash_and_accessor() {
    let t = TestStore::new().await;
    let record = token("hash-1", "acc-1");
    t.store.create_token(&record).await.expect("create");

    assert_eq!(
        t.store.token_by_hash("hash-1").await.expect("by hash"),
        record
    );
    assert_eq!(
        t.store
            .token_by_accessor("acc-1")
            .await
            .expect("by accessor"),
        record
    );
}

#[tokio::test]
async fn root_token_without_expiry_round_trips() {
    let t = TestStore::new().await;
    let record = TokenRecord {
        expire_time: None,
        creation_ttl_secs: 0,
        renewable: false,
        parent_accessor: None,
        meta: BTreeMap::new(),
        policies: vec!["root".to_owned()],
        ..token("hash-root", "acc-root")
    };
    t.store.create_token(&record).await.expect("create");
    assert_eq!(
        t.store.token_by_accessor("acc-root").await.expect("lookup"),
        record
    );
}

#[tokio::test]
async fn unknown_token_is_not_found() {
    let t = TestStore::new().await;
    assert!(matches!(
        t.store.token_by_hash("nope").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        t.store.token_by_accessor("nope").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn duplicate_hash_or_accessor_is_rejected() {
    let t = TestStore::new().await;
    let original = token("hash-1", "acc-1");
    t.store.create_token(&original).await.expect("create");

    let same_hash = TokenRecord {
        display_name: "other".to_owned(),
        ..token("hash-1", "acc-2")
    };
    let same_accessor = TokenRecord {
        display_name: "other".to_owned(),
        ..token("hash-2", "acc-1")
    };
    for duplicate in [same_hash, same_accessor] {
        let result = t.store.create_token(&duplicate).await;
        assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    }

    assert_eq!(
        t.store
            .token_by_hash("hash-1")
            .await
            .expect("original stays"),
        original
    );
    assert!(matches!(
        t.store.token_by_accessor("acc-2").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        t.store.token_by_hash("hash-2").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn revoked_token_is_gone() {
    let t = TestStore::new().await;
    t.store
        .create_token(&token("hash-1", "acc-1"))
        .await
        .expect("create 1");
    t.store
        .create_token(&token("hash-2", "acc-2"))
        .await
        .expect("create 2");

    assert_eq!(t.store.revoke_token("acc-1").await.expect("revoke"), 1);

    assert!(matches!(
        t.store.token_by_hash("hash-1").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        t.store.token_by_accessor("acc-1").await,
        Err(StoreError::NotFound)
    ));
    assert!(t.store.token_by_accessor("acc-2").await.is_ok());
}

/// Builds a token created by `parent`, or an orphan when `parent` is `None`.
fn child(accessor: &str, parent: Option<&str>) -> TokenRecord {
    TokenRecord {
        parent_accessor: parent.map(str::to_owned),
        ..token(&format!("hash-{accessor}"), accessor)
    }
}

async fn exists(t: &TestStore, accessor: &str) -> bool {
    match t.store.token_by_accessor(accessor).await {
        Ok(_) => true,
        Err(StoreError::NotFound) => false,
        Err(other) => panic!("lookup of {accessor} failed: {other}"),
    }
}

#[tokio::test]
async fn revoke_removes_the_whole_subtree() {
    let t = TestStore::new().await;
    // root ─┬─ a ─── a1 ─── a1x
    //       └─ b          other ─── other1
    for (accessor, parent) in [
        ("root", None),
        ("a", Some("root")),
        ("b", Some("root")),
        ("a1", Some("a")),
        ("a1x", Some("a1")),
        ("other", None),
        ("other1", Some("other")),
    ] {
        t.store
            .create_token(&child(accessor, parent))
            .await
            .expect("create");
    }

    let count = t.store.revoke_token("a").await.expect("revoke a");

    assert_eq!(count, 3);
    for revoked in ["a", "a1", "a1x"] {
        assert!(
            !exists(&t, revoked).await,
            "{revoked} outlived its ancestor"
        );
    }
    for untouched in ["root", "b", "other", "other1"] {
        assert!(
            exists(&t, untouched).await,
            "{untouched} was revoked with a"
        );
    }

    assert_eq!(t.store.revoke_token("root").await.expect("revoke root"), 2);
    assert!(!exists(&t, "b").await);
    assert!(exists(&t, "other1").await);
}

#[tokio::test]
async fn upgrade_revokes_children_of_revoked_tokens() {
    let t = TestStore::new().await;
    let hour = time::Duration::hours(1);
    let parent = TokenRecord {
        expire_time: Some(token("x", "x").created_time + hour),
        ..child("parent", None)
    };
    let long_child = TokenRecord {
        expire_time: Some(parent.created_time + 10 * hour),
        ..child("long-child", Some("parent"))
    };
    let grandchild = TokenRecord {
        expire_time: None,
        ..child("grandchild", Some("long-child"))
    };
    for record in [
        &parent,
        &long_child,
        &grandchild,
        &child("orphaned", Some("revoked-earlier")),
        &child("orphaned-child", Some("orphaned")),
    ] {
        t.store.create_token(record).await.expect("create");
    }

    // Put the file back in the state the previous schema left it in.
    let mut raw = t.raw().await;
    for statement in [
        "DROP INDEX tokens_by_parent",
        "UPDATE schema_version SET version = 1",
    ] {
        sqlx::query(statement)
            .execute(&mut raw)
            .await
            .expect("downgrade");
    }
    drop(raw);
    let keyring = std::sync::Arc::clone(&t.keyring);
    let t = t.reopen_with(keyring).await;

    assert!(!exists(&t, "orphaned").await);
    assert!(!exists(&t, "orphaned-child").await);
    for capped in ["long-child", "grandchild"] {
        let record = t.store.token_by_accessor(capped).await.expect("kept");
        assert_eq!(record.expire_time, parent.expire_time, "{capped}");
    }
    let record = t.store.token_by_accessor("parent").await.expect("kept");
    assert_eq!(record.expire_time, parent.expire_time);
}

#[tokio::test]
async fn revoking_unknown_accessor_is_not_found() {
    let t = TestStore::new().await;
    assert!(matches!(
        t.store.revoke_token("nope").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn token_expiry_updates() {
    let t = TestStore::new().await;
    let record = token("hash-1", "acc-1");
    t.store.create_token(&record).await.expect("create");
    let later = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_000_000_001)
        .expect("test time is valid");

    t.store
        .set_token_expiry("acc-1", Some(later))
        .await
        .expect("renew");
    let renewed = t.store.token_by_hash("hash-1").await.expect("lookup");
    assert_eq!(renewed.expire_time, Some(later));
    assert_eq!(
        renewed,
        TokenRecord {
            expire_time: Some(later),
            ..record
        }
    );

    t.store
        .set_token_expiry("acc-1", None)
        .await
        .expect("clear expiry");
    assert_eq!(
        t.store
            .token_by_hash("hash-1")
            .await
            .expect("lookup")
            .expire_time,
        None
    );

    let result = t.store.set_token_expiry("nope", Some(later)).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

fn policy(name: &str, text: &str) -> PolicyRecord {
    PolicyRecord {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

#[tokio::test]
async fn policy_put_replaces_and_reads() {
    let t = TestStore::new().await;
    let first = policy("team-a", r#"path "team-a/*" { capabilities = ["read"] }"#);
    t.store.put_policy(&first).await.expect("put");
    assert_eq!(t.store.get_policy("team-a").await.expect("get"), first);

    let second = policy(
        "team-a",
        r#"path "team-a/*" { capabilities = ["read", "list"] }"#,
    );
    t.store.put_policy(&second).await.expect("replace");
    assert_eq!(t.store.get_policy("team-a").await.expect("get"), second);
}

#[tokio::test]
async fn all_policies_are_sorted_by_name() {
    let t = TestStore::new().await;
    for name in ["zeta", "alpha", "mid"] {
        t.store.put_policy(&policy(name, "{}")).await.expect("put");
    }
    let names: Vec<String> = t
        .store
        .all_policies()
        .await
        .expect("all")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[tokio::test]
async fn deleted_policy_is_not_found() {
    let t = TestStore::new().await;
    t.store
        .put_policy(&policy("team-a", "{}"))
        .await
        .expect("put");
    t.store.delete_policy("team-a").await.expect("delete");

    assert!(matches!(
        t.store.get_policy("team-a").await,
        Err(StoreError::NotFound)
    ));
    assert!(t.store.all_policies().await.expect("all").is_empty());
    t.store
        .delete_policy("team-a")
        .await
        .expect("deleting a missing policy succeeds");
}
