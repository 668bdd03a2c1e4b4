//! The rotation engine's operations on the manager: pending versions, promotion, revocation,
//! their audit entries and events, and the `rotate` capability.

use keyward_manager::{ManagerError, ROTATION_ACCESSOR, SecurityEvent};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::common::{Harness, ctx, data, path};

fn value_of(read: &keyward_manager::KvRead) -> Option<String> {
    read.data.as_ref().map(|data| {
        data.expose_map()["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
}

#[tokio::test]
async fn pending_version_is_hidden_from_kv_reads() {
    let h = Harness::new().await;
    h.write("app/key", json!({ "value": "one" })).await;
    let pending = h
        .manager
        .rotation_write_pending(&path("app/key"), data(json!({ "value": "two" })))
        .await
        .expect("pending");
    assert_eq!(pending.version, 2);

    let current = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/key"), None)
        .await
        .expect("read current");
    assert_eq!(current.meta.version, 1);
    assert_eq!(value_of(&current).as_deref(), Some("one"));

    let by_number = h
        .manager
        .kv_read(&h.root, &ctx(), &path("app/key"), Some(2))
        .await
        .expect("read pending");
    assert!(by_number.data.is_none(), "pending data stays hidden");

    let engine_read = h
        .manager
        .rotation_read(&path("app/key"), Some(2))
        .await
        .expect("engine read");
    assert!(
        engine_read.data.is_some(),
        "the engine reads its pending version"
    );
}

#[tokio::test]
async fn engine_changes_are_audited_and_published() {
    let h = Harness::new().await;
    let mut events = h.manager.subscribe();
    h.write("app/key", json!({ "value": "one" })).await;
    let secret = path("app/key");

    h.manager
        .rotation_write_pending(&secret, data(json!({ "value": "two" })))
        .await
        .expect("pending");
    let deadline = OffsetDateTime::now_utc() + Duration::hours(1);
    let replaced = h
        .manager
        .rotation_promote(&secret, 2, deadline)
        .await
        .expect("promote");
    assert_eq!(replaced, Some(1));
    h.manager.rotation_revoke(&secret, 1).await.expect("revoke");

    let old = h
        .manager
        .kv_read(&h.root, &ctx(), &secret, Some(1))
        .await
        .expect("read revoked");
    assert!(old.data.is_none(), "a revoked version has no data");

    let entries = h.audit_entries();
    for operation in [
        "rotation.write_pending",
        "rotation.promote",
        "rotation.revoke",
    ] {
        let request = entries
            .iter()
            .find(|entry| entry["type"] == "request" && entry["operation"] == operation);
        let request = request.unwrap_or_else(|| panic!("no request entry for {operation}"));
        assert_eq!(request["accessor"], ROTATION_ACCESSOR);
        let response = entries
            .iter()
            .find(|entry| entry["type"] == "response" && entry["operation"] == operation);
        let response = response.unwrap_or_else(|| panic!("no response entry for {operation}"));
        assert_eq!(response["outcome"], "ok");
    }
    assert!(
        !h.audit_text().contains("\"two\""),
        "no value in the audit log"
    );

    let mut revoked = false;
    while let Ok(event) = events.try_recv() {
        if event
            == (SecurityEvent::VersionRevoked {
                path: "app/key".to_owned(),
                version: 1,
            })
        {
            revoked = true;
        }
    }
    assert!(revoked, "VersionRevoked was published");
}

#[tokio::test]
async fn second_pending_version_is_pending_exists() {
    let h = Harness::new().await;
    let secret = path("app/key");
    h.manager
        .rotation_write_pending(&secret, data(json!({ "value": "a" })))
        .await
        .expect("pending");
    let error = h
        .manager
        .rotation_write_pending(&secret, data(json!({ "value": "b" })))
        .await
        .expect_err("second pending");
    assert!(
        matches!(error, ManagerError::PendingExists { version: 1 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn rotate_capability_is_required() {
    let h = Harness::new().await;
    let (reader, _) = h
        .caller_with_policy(
            "reader",
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
        )
        .await;
    let (rotator, _) = h
        .caller_with_policy(
            "rotator",
            r#"path "secret/data/app/*" { capabilities = ["rotate"] }"#,
        )
        .await;
    let secret = path("app/key");

    let denied = h.manager.require_rotate(&reader, &secret);
    assert!(matches!(denied, Err(ManagerError::PermissionDenied)));
    assert!(h.manager.require_rotate(&rotator, &secret).is_ok());

    let refused = h
        .manager
        .report_compromised(&reader, &ctx(), &secret, "leaked")
        .await;
    assert!(matches!(refused, Err(ManagerError::PermissionDenied)));
}

#[tokio::test]
async fn compromise_report_is_audited_and_published() {
    let h = Harness::new().await;
    let mut events = h.manager.subscribe();
    h.manager
        .report_compromised(&h.root, &ctx(), &path("app/key"), "found in a paste")
        .await
        .expect("report");

    let entries = h.audit_entries();
    let request = entries
        .iter()
        .find(|entry| entry["type"] == "request" && entry["operation"] == "rotation.compromised")
        .expect("request entry");
    // The reason may quote the leaked value: only its keyed hash is kept.
    assert!(
        request["reason_hmac"]
            .as_str()
            .is_some_and(|hmac| hmac.starts_with("hmac-sha256:")),
        "{request}"
    );
    assert!(request.get("reason").is_none(), "{request}");
    assert!(!request.to_string().contains("paste"), "{request}");

    let mut reported = false;
    while let Ok(event) = events.try_recv() {
        if matches!(event, SecurityEvent::KeyCompromised { ref path, .. } if path == "app/key") {
            reported = true;
        }
    }
    assert!(reported, "KeyCompromised was published");
}
