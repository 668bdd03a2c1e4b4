//! The `sys/keys` routes over HTTPS: status, rotation, rewrap, retirement and root-key
//! rotation, with Vault's envelope and error shapes.

use keyward_crypto::{Keyring, RootKey};
use serde_json::{Value, json};

use crate::harness::{ROOT_KEY_BYTES, TestServer};

async fn write(server: &TestServer, path: &str, value: &str) {
    let (status, body) = server
        .call(
            "PUT",
            &format!("secret/data/{path}"),
            Some(json!({ "data": { "value": value } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn key_summary(body: &Value) -> Vec<(u64, String, u64)> {
    body["data"]["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|key| {
            (
                key["id"].as_u64().expect("id"),
                key["state"].as_str().expect("state").to_owned(),
                key["records"].as_u64().expect("records"),
            )
        })
        .collect()
}

#[tokio::test]
async fn key_routes_rotate_rewrap_and_retire() {
    let server = TestServer::start().await;
    write(&server, "app/a", "one").await;
    write(&server, "app/b", "two").await;

    let (status, body) = server.call("GET", "sys/keys", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["active_key_id"], 1);
    assert_eq!(key_summary(&body), vec![(1, "active".to_owned(), 2)]);
    let first = &body["data"]["keys"][0];
    assert_eq!(first["encryptions"], 2);
    assert!(
        first["created"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );

    let (status, body) = server.call("POST", "sys/keys/rotate", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({ "key_id": 2, "previous_key_id": 1 }));
    assert_eq!(server.saved_keyring().active, 2);

    let (status, body) = server.call("DELETE", "sys/keys/1", None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "errors": ["key 1 still protects 2 records: run `keyward keys rewrap` first"] })
    );
    let (status, body) = server.call("DELETE", "sys/keys/2", None).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = server
        .call("POST", "sys/keys/rewrap", Some(json!({ "batch_size": 1 })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({ "rewrapped": 1, "remaining": 1 }));
    let (status, body) = server.call("POST", "sys/keys/rewrap", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({ "rewrapped": 1, "remaining": 0 }));

    let (status, body) = server.call("DELETE", "sys/keys/1", None).await;
    assert_eq!(status, 204, "{body}");
    let (_, body) = server.call("GET", "sys/keys", None).await;
    assert_eq!(key_summary(&body), vec![(2, "active".to_owned(), 2)]);
    let (status, body) = server.call("GET", "secret/data/app/a", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["data"]["value"], "one");
}

#[tokio::test]
async fn rewrap_batch_size_is_checked() {
    let server = TestServer::start().await;
    for batch_size in [json!(0), json!(10_001), json!(-1), json!("ten")] {
        let (status, body) = server
            .call(
                "POST",
                "sys/keys/rewrap",
                Some(json!({ "batch_size": batch_size })),
            )
            .await;
        assert_eq!(status, 400, "{batch_size}: {body}");
        assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");
    }
}

#[tokio::test]
async fn rotate_root_with_passphrase_reseals_keyring() {
    let server = TestServer::start().await;
    write(&server, "app/a", "one").await;
    let passphrase = "correct horse battery staple 7c1d";

    let (status, body) = server
        .call(
            "POST",
            "sys/keys/rotate-root",
            Some(json!({ "passphrase": passphrase })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({ "kdf": "pbkdf2-hmac-sha256", "previous_kdf": "raw" })
    );

    let saved = server.saved_keyring();
    let old_root = RootKey::from_bytes(&ROOT_KEY_BYTES).expect("root key");
    assert!(Keyring::unwrap(&saved, &old_root).is_err());
    let new_root = RootKey::from_passphrase(passphrase.as_bytes(), &saved.kdf).expect("derive");
    assert!(Keyring::unwrap(&saved, &new_root).is_ok());

    let audit = std::fs::read_to_string(&server.audit_path).expect("audit log");
    assert!(!audit.contains(passphrase), "passphrase in the audit log");
    let (status, body) = server.call("GET", "secret/data/app/a", None).await;
    assert_eq!(
        (status, &body["data"]["data"]["value"]),
        (200, &json!("one"))
    );
}

#[tokio::test]
async fn rotate_root_with_key_and_argon2id() {
    let server = TestServer::start().await;
    let key_hex = "3c".repeat(32);

    let (status, body) = server
        .call(
            "POST",
            "sys/keys/rotate-root",
            Some(json!({ "key_hex": key_hex })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["kdf"], "raw");
    let saved = server.saved_keyring();
    let root = RootKey::from_bytes(&[0x3c; 32]).expect("root key");
    assert!(Keyring::unwrap(&saved, &root).is_ok());

    let (status, body) = server
        .call(
            "POST",
            "sys/keys/rotate-root",
            Some(json!({ "passphrase": "argon pass", "kdf": "argon2id" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["kdf"], "argon2id");
    assert_eq!(server.saved_keyring().kdf.validate().ok(), Some(()));

    let (status, body) = server
        .call(
            "POST",
            "sys/keys/rotate-root",
            Some(json!({ "passphrase": "x", "key_hex": key_hex })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains(&key_hex), "{body}");
}

#[tokio::test]
async fn key_routes_need_sudo_and_right_method() {
    let server = TestServer::start().await;
    let (status, _) = server.call_as("", "GET", "sys/keys", None).await;
    assert_eq!(status, 403);

    let (status, body) = server
        .call(
            "POST",
            "auth/token/create",
            Some(json!({ "policies": ["default"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    for (method, path) in [
        ("GET", "sys/keys"),
        ("POST", "sys/keys/rotate"),
        ("POST", "sys/keys/rewrap"),
        ("DELETE", "sys/keys/1"),
        ("POST", "sys/keys/rotate-root"),
    ] {
        let (status, body) = server.call_as(&token, method, path, None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body, json!({ "errors": ["permission denied"] }));
    }

    let (status, _) = server.call("GET", "sys/keys/rotate", None).await;
    assert_eq!(status, 405);
    let (status, _) = server.call("POST", "sys/keys/7", None).await;
    assert_eq!(status, 405);
    let (status, _) = server.call("DELETE", "sys/keys/abc", None).await;
    assert_eq!(status, 404);
}
