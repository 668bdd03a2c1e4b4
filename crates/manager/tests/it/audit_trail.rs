//! What the audit log records, what it never records, and failing closed.

use std::sync::Arc;

use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::Keyring;
use keyward_manager::{ManagerError, SecretsManager};
use keyward_store::{SecretStore, SqliteStore, StoreError, TokenRecord};
use serde_json::json;

use crate::common::{Harness, ctx, data, path};

#[tokio::test]
async fn audit_records_request_without_secret_or_token() {
    let h = Harness::new().await;
    let canary = "canary-value-5d1e0b7c";
    h.write("app/db", json!({"password": canary})).await;
    h.manager
        .kv_read(&h.root, &ctx(), &path("app/db"), None)
        .await
        .expect("reads");

    let text = h.audit_text();
    assert!(!text.contains(canary), "secret value in audit log");
    assert!(!text.contains(&h.root_token), "token in audit log");

    let entries = h.audit_entries();
    let read = entries
        .iter()
        .find(|e| e["operation"] == "kv.read" && e["type"] == "response")
        .expect("read audited");
    assert_eq!(read["path"], "secret/data/app/db");
    assert_eq!(read["accessor"], json!(h.root.accessor()));
    assert_eq!(read["outcome"], "ok");
    assert_eq!(read["version"], 1);
}

#[tokio::test]
async fn write_is_audited_before_and_after() {
    let h = Harness::new().await;
    h.write("app/db", json!({"k": "v"})).await;
    // The write's response entry is queued without a wait; the read's, which is awaited,
    // comes after it in the log.
    h.manager
        .kv_read(&h.root, &ctx(), &path("app/db"), None)
        .await
        .expect("reads");

    let kinds: Vec<String> = h
        .audit_entries()
        .iter()
        .filter(|e| e["operation"] == "kv.write")
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, vec!["request".to_owned(), "response".to_owned()]);
}

#[tokio::test]
async fn denied_request_is_audited() {
    let h = Harness::new().await;
    let (caller, _) = h
        .caller_with_policy(
            "app-read",
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
        )
        .await;
    let _ = h
        .manager
        .kv_read(&caller, &ctx(), &path("other"), None)
        .await;

    let denied = h
        .audit_entries()
        .into_iter()
        .find(|e| e["operation"] == "kv.read" && e["outcome"] == "error")
        .expect("denial audited");
    assert_eq!(denied["error"], "permission_denied");
}

#[tokio::test]
async fn auth_failure_is_audited_with_token_hmac_only() {
    let h = Harness::new().await;
    let guess = "kwt.guessed-token-value";
    let _ = h.manager.authenticate(Some(guess), &ctx()).await;

    let text = h.audit_text();
    assert!(!text.contains(guess));
    let failure = h
        .audit_entries()
        .into_iter()
        .find(|e| e["type"] == "auth_failure")
        .expect("auth failure audited");
    assert_eq!(failure["reason"], "unknown_token");
    assert!(
        failure["token_hmac"]
            .as_str()
            .is_some_and(|s| s.starts_with("hmac-sha256:"))
    );
}

#[tokio::test]
async fn unwritable_audit_log_refuses_requests_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = dir.path().join("audit.log");
    std::os::unix::fs::symlink("/dev/full", &full).expect("symlink");

    let keyring = Arc::new(Keyring::generate().expect("keyring"));
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("keyward.db"), keyring)
            .await
            .expect("store opens"),
    );
    let audit = AuditLog::open(&full, AuditKey::from_bytes([1; 32]))
        .expect("opening /dev/full succeeds; writing to it fails");
    let token_key = [2; 32];
    let manager = SecretsManager::new(store.clone(), audit, token_key, crate::common::config())
        .await
        .expect("manager starts");

    // The root token cannot be created through the manager (that is audited too), so store
    // one directly.
    let token = "kwt.test-root-token";
    store
        .create_token(&TokenRecord {
            token_hash: hex::encode(keyward_crypto::hmac_sha256(&token_key, token.as_bytes())),
            accessor: "root-accessor".into(),
            policies: vec!["root".into()],
            display_name: "root".into(),
            created_time: time::OffsetDateTime::now_utc(),
            expire_time: None,
            creation_ttl_secs: 0,
            renewable: false,
            parent_accessor: None,
            meta: Default::default(),
        })
        .await
        .expect("token stored");
    let root = manager
        .authenticate(Some(token), &ctx())
        .await
        .expect("authenticates");

    let write = manager
        .kv_write(
            &root,
            &ctx(),
            &path("app/db"),
            data(json!({"v": "1"})),
            None,
        )
        .await;
    assert!(matches!(write, Err(ManagerError::AuditFailed)), "{write:?}");
    let stored = store.read_metadata(&path("app/db")).await;
    assert!(matches!(stored, Err(StoreError::NotFound)), "{stored:?}");

    let read = manager.kv_read(&root, &ctx(), &path("app/db"), None).await;
    assert!(matches!(read, Err(ManagerError::AuditFailed)), "{read:?}");
}
