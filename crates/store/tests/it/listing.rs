//! Listing the names under a folder.

use keyward_store::{FolderPath, MetadataUpdate, SecretStore};

use crate::common::{KEEP_ALL, TestStore, path, text};

fn folder(raw: &str) -> FolderPath {
    FolderPath::parse(raw).expect("test folder is valid")
}

async fn store_with(paths: &[&str]) -> TestStore {
    let t = TestStore::new().await;
    for raw in paths {
        t.store
            .put(&path(raw), text("x"), KEEP_ALL)
            .await
            .expect("put");
    }
    t
}

#[tokio::test]
async fn root_lists_top_level_names_and_folders() {
    let t = store_with(&["top", "team/a", "team/b/c", "team/b/d", "other/x", "zeta"]).await;
    let listed = t.store.list(&folder("")).await.expect("list root");
    assert_eq!(listed, ["other/", "team/", "top", "zeta"]);
}

#[tokio::test]
async fn nested_folder_lists_direct_children() {
    let t = store_with(&[
        "team/a",
        "team/b/c",
        "team/b/d",
        "team/b/e/f",
        "teams/x",
        "team-1/y",
    ])
    .await;

    assert_eq!(
        t.store.list(&folder("team")).await.expect("list team"),
        ["a", "b/"]
    );
    assert_eq!(
        t.store.list(&folder("team/b/")).await.expect("list team/b"),
        ["c", "d", "e/"]
    );
    assert_eq!(
        t.store
            .list(&folder("team/b/e"))
            .await
            .expect("list team/b/e"),
        ["f"]
    );
}

#[tokio::test]
async fn name_can_be_secret_and_folder() {
    let t = store_with(&["app", "app/db"]).await;
    assert_eq!(
        t.store.list(&folder("")).await.expect("list root"),
        ["app", "app/"]
    );
}

#[tokio::test]
async fn underscore_matches_only_itself() {
    // '_' is a LIKE wildcard; a LIKE-based listing of "a_/" would also return "ab/two".
    let t = store_with(&["a_/one", "ab/two", "axe/three"]).await;
    assert_eq!(t.store.list(&folder("a_")).await.expect("list a_"), ["one"]);
}

#[tokio::test]
async fn empty_or_missing_folder_lists_nothing() {
    let t = store_with(&["team/a"]).await;
    assert!(
        t.store
            .list(&folder("nothing"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        t.store
            .list(&folder("team/a"))
            .await
            .expect("list secret as folder")
            .is_empty()
    );

    let empty = TestStore::new().await;
    assert!(
        empty
            .store
            .list(&folder(""))
            .await
            .expect("list empty root")
            .is_empty()
    );
}

#[tokio::test]
async fn deleted_and_metadata_only_secrets_are_listed() {
    let t = store_with(&["svc/deleted", "svc/destroyed"]).await;
    t.store
        .delete_versions(&path("svc/deleted"), &[])
        .await
        .expect("delete");
    t.store
        .destroy_versions(&path("svc/destroyed"), &[1])
        .await
        .expect("destroy");
    let update = MetadataUpdate {
        max_versions: Some(3),
        ..Default::default()
    };
    t.store
        .write_metadata(&path("svc/planned"), update)
        .await
        .expect("write metadata");

    let listed = t.store.list(&folder("svc")).await.expect("list");
    assert_eq!(listed, ["deleted", "destroyed", "planned"]);
}
