//! Policy enforcement: deny by default, Vault's path rules.

use keyward_manager::ManagerError;
use keyward_store::FolderPath;
use serde_json::json;

use crate::common::{Harness, ctx, data, obj, path};

const APP_READ: &str = r#"
path "secret/data/app/*" {
  capabilities = ["read"]
}
"#;

#[tokio::test]
async fn read_only_policy_cannot_read_outside_its_paths() {
    let h = Harness::new().await;
    h.write("other", json!({"k": "v"})).await;
    let (caller, _) = h.caller_with_policy("app-read", APP_READ).await;

    let result = h
        .manager
        .kv_read(&caller, &ctx(), &path("other"), None)
        .await;
    assert!(
        matches!(result, Err(ManagerError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn missing_and_forbidden_secrets_look_the_same() {
    let h = Harness::new().await;
    h.write("other", json!({"k": "v"})).await;
    let (caller, _) = h.caller_with_policy("app-read", APP_READ).await;

    let existing = h
        .manager
        .kv_read(&caller, &ctx(), &path("other"), None)
        .await;
    let missing = h
        .manager
        .kv_read(&caller, &ctx(), &path("nothing"), None)
        .await;
    assert_eq!(
        existing.map(|_| ()).map_err(|e| e.to_string()),
        missing.map(|_| ()).map_err(|e| e.to_string())
    );
}

#[tokio::test]
async fn read_only_policy_cannot_write_and_nothing_changes() {
    let h = Harness::new().await;
    h.write("app/db", json!({"password": "original"})).await;
    let (caller, _) = h.caller_with_policy("app-read", APP_READ).await;

    let write = h
        .manager
        .kv_write(
            &caller,
            &ctx(),
            &path("app/db"),
            data(json!({"password": "evil"})),
            None,
        )
        .await;
    assert!(
        matches!(write, Err(ManagerError::PermissionDenied)),
        "{write:?}"
    );
    let patch = h
        .manager
        .kv_patch(
            &caller,
            &ctx(),
            &path("app/db"),
            obj(json!({"password": "evil"})),
            None,
        )
        .await;
    assert!(
        matches!(patch, Err(ManagerError::PermissionDenied)),
        "{patch:?}"
    );
    let delete = h
        .manager
        .kv_delete(&caller, &ctx(), &path("app/db"), &[])
        .await;
    assert!(
        matches!(delete, Err(ManagerError::PermissionDenied)),
        "{delete:?}"
    );

    let read = h
        .manager
        .kv_read(&caller, &ctx(), &path("app/db"), None)
        .await
        .expect("may read");
    assert_eq!(read.meta.version, 1);
}

#[tokio::test]
async fn read_only_policy_cannot_list() {
    let h = Harness::new().await;
    h.write("app/db", json!({"k": "v"})).await;
    let (caller, _) = h.caller_with_policy("app-read", APP_READ).await;

    for folder in ["", "app/"] {
        let result = h
            .manager
            .kv_list(&caller, &ctx(), &FolderPath::parse(folder).expect("folder"))
            .await;
        assert!(
            matches!(result, Err(ManagerError::PermissionDenied)),
            "{folder:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn create_only_policy_cannot_overwrite() {
    let h = Harness::new().await;
    h.write("app/existing", json!({"k": "v"})).await;
    let (caller, _) = h
        .caller_with_policy(
            "app-create",
            r#"path "secret/data/app/*" { capabilities = ["create"] }"#,
        )
        .await;

    let new = h
        .manager
        .kv_write(
            &caller,
            &ctx(),
            &path("app/new"),
            data(json!({"k": "v"})),
            None,
        )
        .await;
    assert!(new.is_ok(), "{new:?}");
    let overwrite = h
        .manager
        .kv_write(
            &caller,
            &ctx(),
            &path("app/existing"),
            data(json!({"k": "w"})),
            None,
        )
        .await;
    assert!(
        matches!(overwrite, Err(ManagerError::PermissionDenied)),
        "{overwrite:?}"
    );
}

#[tokio::test]
async fn policy_change_applies_to_new_authentications() {
    let h = Harness::new().await;
    h.write("app/db", json!({"k": "v"})).await;
    let (_, token) = h.caller_with_policy("flip", APP_READ).await;

    h.manager
        .policy_write(
            &h.root,
            &ctx(),
            "flip",
            r#"path "secret/data/other/*" { capabilities = ["read"] }"#,
        )
        .await
        .expect("policy rewrites");
    let caller = h
        .manager
        .authenticate(Some(&token), &ctx())
        .await
        .expect("token still valid");
    let result = h
        .manager
        .kv_read(&caller, &ctx(), &path("app/db"), None)
        .await;
    assert!(
        matches!(result, Err(ManagerError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn invalid_policy_is_rejected_and_not_stored() {
    let h = Harness::new().await;
    let result = h
        .manager
        .policy_write(
            &h.root,
            &ctx(),
            "broken",
            r#"path "a/*" { capabilities = ["fly"] }"#,
        )
        .await;
    assert!(
        matches!(result, Err(ManagerError::Invalid(_))),
        "{result:?}"
    );

    let names = h.manager.policy_list(&h.root, &ctx()).await.expect("lists");
    assert!(!names.contains(&"broken".to_owned()), "{names:?}");
}

#[tokio::test]
async fn root_and_default_policies_cannot_be_deleted() {
    let h = Harness::new().await;
    for name in ["root", "default"] {
        let result = h.manager.policy_delete(&h.root, &ctx(), name).await;
        assert!(
            matches!(result, Err(ManagerError::Invalid(_))),
            "{name}: {result:?}"
        );
    }
}
