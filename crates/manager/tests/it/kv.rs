//! Reading and writing secrets through the manager.

use keyward_manager::ManagerError;
use serde_json::json;

use crate::common::{Harness, ctx, data, obj, path, read_json};

#[tokio::test]
async fn written_secret_reads_back() {
    let h = Harness::new().await;
    assert_eq!(h.write("app/db", json!({"password": "p1"})).await, 1);
    assert_eq!(h.write("app/db", json!({"password": "p2"})).await, 2);

    let current = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/db"), None)
        .await
        .expect("reads");
    assert_eq!(current.meta.version, 2);
    assert_eq!(read_json(&current), json!({"password": "p2"}));

    let first = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/db"), Some(1))
        .await
        .expect("reads v1");
    assert_eq!(read_json(&first), json!({"password": "p1"}));
}

#[tokio::test]
async fn patch_merges_into_current_version() {
    let h = Harness::new().await;
    h.write("app/cfg", json!({"a": "1", "b": "2"})).await;

    let meta = h
        .manager
        .kv_patch(
            &h.root,
            &ctx(),
            &path("app/cfg"),
            obj(json!({"b": null, "c": "3"})),
            None,
        )
        .await
        .expect("patch applies");
    assert_eq!(meta.version, 2);

    let read = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/cfg"), None)
        .await
        .expect("reads");
    assert_eq!(read_json(&read), json!({"a": "1", "c": "3"}));
}

#[tokio::test]
async fn patch_of_missing_secret_is_not_found() {
    let h = Harness::new().await;
    let result = h
        .manager
        .kv_patch(&h.root, &ctx(), &path("none"), obj(json!({"a": "1"})), None)
        .await;
    assert!(matches!(result, Err(ManagerError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn stale_cas_is_rejected_and_writes_nothing() {
    let h = Harness::new().await;
    h.write("app/x", json!({"v": "1"})).await;
    h.write("app/x", json!({"v": "2"})).await;

    let result = h
        .manager
        .kv_write(
            &h.root,
            &ctx(),
            &path("app/x"),
            data(json!({"v": "3"})),
            Some(1),
        )
        .await;
    assert!(
        matches!(result, Err(ManagerError::CasMismatch)),
        "{result:?}"
    );

    let read = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/x"), None)
        .await
        .expect("reads");
    assert_eq!(read.meta.version, 2);
    assert_eq!(read_json(&read), json!({"v": "2"}));
}

#[tokio::test]
async fn deleted_version_reads_without_data_until_undeleted() {
    let h = Harness::new().await;
    h.write("app/y", json!({"k": "v"})).await;
    h.manager
        .kv_delete(&h.root, &ctx(), &path("app/y"), &[])
        .await
        .expect("deletes");

    let read = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/y"), None)
        .await
        .expect("reads");
    assert!(read.data.is_none());
    assert!(read.meta.deletion_time.is_some());

    h.manager
        .kv_undelete(&h.root, &ctx(), &path("app/y"), &[1])
        .await
        .expect("undeletes");
    let read = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/y"), None)
        .await
        .expect("reads");
    assert_eq!(read_json(&read), json!({"k": "v"}));
}

#[tokio::test]
async fn undelete_without_versions_is_invalid() {
    let h = Harness::new().await;
    h.write("app/z", json!({"k": "v"})).await;
    let result = h
        .manager
        .kv_undelete(&h.root, &ctx(), &path("app/z"), &[])
        .await;
    assert!(
        matches!(result, Err(ManagerError::Invalid(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn empty_folder_lists_as_not_found() {
    let h = Harness::new().await;
    h.write("team/a", json!({"k": "v"})).await;
    h.write("team/sub/b", json!({"k": "v"})).await;

    let keys = h
        .manager
        .kv_list(
            &h.root,
            &ctx(),
            &keyward_store::FolderPath::parse("team/").expect("folder"),
        )
        .await
        .expect("lists");
    assert_eq!(keys, vec!["a".to_owned(), "sub/".to_owned()]);

    let empty = h
        .manager
        .kv_list(
            &h.root,
            &ctx(),
            &keyward_store::FolderPath::parse("nothing/").expect("folder"),
        )
        .await;
    assert!(matches!(empty, Err(ManagerError::NotFound)), "{empty:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_all_apply() {
    let h = std::sync::Arc::new(Harness::new().await);
    h.write("app/shared", json!({"base": "0"})).await;

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..20 {
        let h = std::sync::Arc::clone(&h);
        tasks.spawn(async move {
            let patch = obj(json!({ format!("key{index}"): index.to_string() }));
            h.manager
                .kv_patch(&h.root, &ctx(), &path("app/shared"), patch, None)
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let result = joined.expect("task finishes");
        assert!(result.is_ok(), "a patch failed: {result:?}");
    }

    let read = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/shared"), None)
        .await
        .expect("reads");
    assert_eq!(read.meta.version, 21);
    let merged = read_json(&read);
    assert_eq!(merged["base"], "0");
    for index in 0..20 {
        assert_eq!(
            merged[format!("key{index}")],
            index.to_string(),
            "key{index}"
        );
    }
}
