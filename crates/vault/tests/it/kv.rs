//! KV v2 against OpenBao: round trips, check-and-set, metadata, version changes, listing.

use std::collections::BTreeMap;

use keyward_vault::{KvMetadataUpdate, SecretJson, VaultError};
use serde_json::json;

use crate::support::{bao, kv_mount};

fn data(value: serde_json::Value) -> SecretJson {
    SecretJson::from_json_bytes(serde_json::to_vec(&value).expect("test data serialises"))
        .expect("test data is an object")
}

fn parse(secret: &SecretJson) -> serde_json::Value {
    serde_json::from_slice(secret.expose_json()).expect("stored data is JSON")
}

#[tokio::test]
async fn kv_write_read_round_trip() {
    let Some(bao) = bao("kv_write_read_round_trip") else {
        return;
    };
    let mount = kv_mount(&bao).await;

    let first = bao
        .root
        .kv_write(&mount, "team/db", &data(json!({"password": "one"})), None)
        .await
        .expect("first write succeeds");
    let second = bao
        .root
        .kv_write(
            &mount,
            "team/db",
            &data(json!({"password": "two", "n": 2})),
            None,
        )
        .await
        .expect("second write succeeds");

    assert_eq!(first.version, 1);
    assert_eq!(second.version, 2);
    let latest = bao
        .root
        .kv_read(&mount, "team/db", None)
        .await
        .expect("latest reads");
    assert_eq!(latest.metadata.version, 2);
    assert_eq!(
        parse(latest.data.as_ref().expect("latest has data")),
        json!({"password": "two", "n": 2})
    );
    let old = bao
        .root
        .kv_read(&mount, "team/db", Some(1))
        .await
        .expect("version 1 reads");
    assert_eq!(
        parse(old.data.as_ref().expect("version 1 has data")),
        json!({"password": "one"})
    );
}

#[tokio::test]
async fn kv_cas_mismatch_is_rejected() {
    let Some(bao) = bao("kv_cas_mismatch_is_rejected") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    let value = data(json!({"k": "v"}));

    bao.root
        .kv_write(&mount, "cas/secret", &value, Some(0))
        .await
        .expect("cas 0 creates the secret");
    let stale = bao
        .root
        .kv_write(&mount, "cas/secret", &value, Some(0))
        .await;
    let wrong = bao
        .root
        .kv_write(&mount, "cas/secret", &value, Some(5))
        .await;
    let right = bao
        .root
        .kv_write(&mount, "cas/secret", &value, Some(1))
        .await;

    assert!(
        matches!(stale, Err(VaultError::CasMismatch { .. })),
        "{stale:?}"
    );
    assert!(
        matches!(wrong, Err(VaultError::CasMismatch { .. })),
        "{wrong:?}"
    );
    assert_eq!(right.expect("matching cas writes").version, 2);
}

#[tokio::test]
async fn kv_cas_required_needs_cas() {
    let Some(bao) = bao("kv_cas_required_needs_cas") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    let update = KvMetadataUpdate {
        cas_required: Some(true),
        ..KvMetadataUpdate::default()
    };
    bao.root
        .kv_write_metadata(&mount, "strict", &update)
        .await
        .expect("metadata writes");

    let without = bao
        .root
        .kv_write(&mount, "strict", &data(json!({"k": "v"})), None)
        .await;

    assert!(
        matches!(without, Err(VaultError::CasRequired { .. })),
        "{without:?}"
    );
}

#[tokio::test]
async fn kv_metadata_round_trip() {
    let Some(bao) = bao("kv_metadata_round_trip") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    bao.root
        .kv_write(&mount, "meta/app", &data(json!({"k": "v"})), None)
        .await
        .expect("write succeeds");
    let custom = BTreeMap::from([("owner".to_owned(), "team-a".to_owned())]);
    let update = KvMetadataUpdate {
        max_versions: Some(3),
        cas_required: Some(true),
        delete_version_after_secs: Some(7200),
        custom_metadata: Some(custom.clone()),
    };

    bao.root
        .kv_write_metadata(&mount, "meta/app", &update)
        .await
        .expect("metadata writes");
    let meta = bao
        .root
        .kv_read_metadata(&mount, "meta/app")
        .await
        .expect("metadata reads");

    assert_eq!(meta.max_versions, 3);
    assert!(meta.cas_required);
    assert_eq!(meta.delete_version_after_secs, 7200);
    assert_eq!(meta.custom_metadata, custom);
    assert_eq!(meta.current_version, 1);
    assert!(meta.versions.contains_key(&1));
    let read = bao
        .root
        .kv_read(&mount, "meta/app", None)
        .await
        .expect("data reads");
    assert_eq!(read.metadata.custom_metadata, custom);

    bao.root
        .kv_delete_metadata(&mount, "meta/app")
        .await
        .expect("metadata deletes");
    let gone = bao.root.kv_read_metadata(&mount, "meta/app").await;
    assert!(matches!(gone, Err(VaultError::NotFound { .. })), "{gone:?}");
}

#[tokio::test]
async fn kv_delete_undelete_destroy_versions() {
    let Some(bao) = bao("kv_delete_undelete_destroy_versions") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    for n in 1..=3 {
        bao.root
            .kv_write(&mount, "life/cycle", &data(json!({"n": n})), None)
            .await
            .expect("write succeeds");
    }

    bao.root
        .kv_delete_latest(&mount, "life/cycle")
        .await
        .expect("latest deletes");
    let deleted = bao
        .root
        .kv_read(&mount, "life/cycle", None)
        .await
        .expect("a deleted version still returns metadata");
    assert_eq!(deleted.metadata.version, 3);
    assert!(deleted.metadata.deletion_time.is_some());
    assert!(deleted.data.is_none());

    bao.root
        .kv_undelete_versions(&mount, "life/cycle", &[3])
        .await
        .expect("undelete succeeds");
    let restored = bao
        .root
        .kv_read(&mount, "life/cycle", None)
        .await
        .expect("restored version reads");
    assert_eq!(
        parse(restored.data.as_ref().expect("data is back")),
        json!({"n": 3})
    );

    bao.root
        .kv_delete_versions(&mount, "life/cycle", &[1])
        .await
        .expect("version 1 deletes");
    bao.root
        .kv_destroy_versions(&mount, "life/cycle", &[2])
        .await
        .expect("version 2 is destroyed");
    let meta = bao
        .root
        .kv_read_metadata(&mount, "life/cycle")
        .await
        .expect("metadata reads");
    assert!(meta.versions[&1].deletion_time.is_some());
    assert!(!meta.versions[&1].destroyed);
    assert!(meta.versions[&2].destroyed);
    assert!(meta.versions[&3].deletion_time.is_none());

    bao.root
        .kv_undelete_versions(&mount, "life/cycle", &[2])
        .await
        .expect("undelete of a destroyed version is accepted");
    let destroyed = bao
        .root
        .kv_read(&mount, "life/cycle", Some(2))
        .await
        .expect("destroyed version returns metadata");
    assert!(destroyed.metadata.destroyed);
    assert!(destroyed.data.is_none());
}

#[tokio::test]
async fn kv_list_shows_children() {
    let Some(bao) = bao("kv_list_shows_children") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    for path in ["app/a", "app/b", "app/sub/c"] {
        bao.root
            .kv_write(&mount, path, &data(json!({"k": "v"})), None)
            .await
            .expect("write succeeds");
    }

    let root = bao.root.kv_list(&mount, "").await.expect("root lists");
    let app = bao
        .root
        .kv_list(&mount, "app/")
        .await
        .expect("folder lists");
    let empty = bao
        .root
        .kv_list(&mount, "nothing")
        .await
        .expect("empty lists");

    assert_eq!(root, vec!["app/"]);
    assert_eq!(app, vec!["a", "b", "sub/"]);
    assert!(empty.is_empty());
}

#[tokio::test]
async fn missing_secret_is_not_found() {
    let Some(bao) = bao("missing_secret_is_not_found") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    bao.root
        .kv_write(&mount, "present", &data(json!({"k": "v"})), None)
        .await
        .expect("write succeeds");

    let missing = bao.root.kv_read(&mount, "absent", None).await;
    let missing_version = bao.root.kv_read(&mount, "present", Some(9)).await;

    assert!(
        matches!(missing, Err(VaultError::NotFound { .. })),
        "{missing:?}"
    );
    assert!(
        matches!(missing_version, Err(VaultError::NotFound { .. })),
        "{missing_version:?}"
    );
}
