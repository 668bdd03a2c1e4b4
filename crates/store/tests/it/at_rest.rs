//! What reaches the database file: ciphertext only, bound to its row, durable across reopen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keyward_crypto::Keyring;
use keyward_store::{
    FolderPath, MetadataUpdate, PolicyRecord, SecretStore, SqliteStore, StoreError, TokenRecord,
    secret_aad,
};
use serde_json::json;
use time::OffsetDateTime;

use crate::common::{KEEP_ALL, TestStore, path, read_value, text, version};

const CANARY_VALUE: &str = "canary-7f3a9c1e5b2d4086-value";
const CANARY_KEY: &str = "canary-key-0d8e6b4a2c9f1357";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Checks that `file` contains no canary. When `has_rows` is set, the file must contain the
/// secret's path, which is stored in plain text, so a passing check proves the search works.
fn assert_no_canary(file: &Path, has_rows: bool) {
    let bytes = std::fs::read(file).expect("database file is readable");
    if has_rows {
        assert!(
            contains(&bytes, "canary/secret"),
            "{} contains no secret rows",
            file.display()
        );
    }
    assert!(
        !contains(&bytes, CANARY_VALUE),
        "{} contains the secret value",
        file.display()
    );
    assert!(
        !contains(&bytes, CANARY_KEY),
        "{} contains the secret key",
        file.display()
    );
}

fn wal_path(db_path: &Path) -> std::path::PathBuf {
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

#[tokio::test]
async fn database_files_hold_no_plaintext() {
    let t = TestStore::new().await;
    let p = path("canary/secret");
    for _ in 0..3 {
        let value = json!({ CANARY_KEY: CANARY_VALUE, "note": CANARY_VALUE });
        t.store
            .put(&p, version(value, None), KEEP_ALL)
            .await
            .expect("put");
    }

    // While open, the new pages sit in the write-ahead log.
    let wal = wal_path(&t.db_path);
    assert!(wal.exists(), "the store runs in WAL mode");
    assert_no_canary(&wal, true);
    assert_no_canary(&t.db_path, false);

    // After close, the log is checkpointed into the main file.
    t.store.close().await;
    assert_no_canary(&t.db_path, true);
    if wal.exists() {
        assert_no_canary(&wal, false);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let t = TestStore::new().await;
    t.store
        .put(&path("svc/key"), text("one"), KEEP_ALL)
        .await
        .expect("put");

    for file in [t.db_path.clone(), wal_path(&t.db_path)] {
        let mode = std::fs::metadata(&file)
            .expect("file exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
}

#[tokio::test]
async fn ciphertext_moved_to_other_row_fails() {
    let t = TestStore::new().await;
    t.store
        .put(&path("a/source"), text("source-value"), KEEP_ALL)
        .await
        .expect("put source");
    t.store
        .put(&path("b/target"), text("target-value"), KEEP_ALL)
        .await
        .expect("put target");
    t.store
        .put(&path("b/target"), text("target-value-2"), KEEP_ALL)
        .await
        .expect("put target 2");

    let mut raw = t.raw().await;
    sqlx::query(
        "UPDATE secret_versions SET ciphertext =
            (SELECT ciphertext FROM secret_versions WHERE path = 'a/source' AND version = 1)
         WHERE path = 'b/target' AND version = 1",
    )
    .execute(&mut raw)
    .await
    .expect("copy across paths");
    sqlx::query(
        "UPDATE secret_versions SET ciphertext =
            (SELECT ciphertext FROM secret_versions WHERE path = 'b/target' AND version = 1)
         WHERE path = 'b/target' AND version = 2",
    )
    .execute(&mut raw)
    .await
    .expect("copy across versions");

    for read_version in [1, 2] {
        let result = t.store.get(&path("b/target"), Some(read_version)).await;
        assert!(matches!(result, Err(StoreError::Crypto(_))), "{result:?}");
    }
    let source = t
        .store
        .get(&path("a/source"), None)
        .await
        .expect("source still reads");
    assert_eq!(read_value(&source).as_deref(), Some("source-value"));
}

#[tokio::test]
async fn ciphertext_decrypts_with_secret_aad() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");

    let mut raw = t.raw().await;
    let (ciphertext, key_id): (Vec<u8>, i64) = sqlx::query_as(
        "SELECT ciphertext, key_id FROM secret_versions WHERE path = 'svc/key' AND version = 1",
    )
    .fetch_one(&mut raw)
    .await
    .expect("read row");

    let plaintext = t
        .keyring
        .decrypt(&ciphertext, &secret_aad(&p, 1))
        .expect("decrypts");
    assert_eq!(plaintext.as_slice(), br#"{"value":"one"}"#);
    assert!(t.keyring.decrypt(&ciphertext, &secret_aad(&p, 2)).is_err());
    assert_eq!(
        i64::from(Keyring::key_id_of(&ciphertext).expect("key id")),
        key_id
    );
}

#[tokio::test]
async fn wrong_keyring_fails_with_crypto_error() {
    let t = TestStore::new().await;
    let p = path("svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put");

    let other = Arc::new(Keyring::generate().expect("keyring is generated"));
    let t = t.reopen_with(other).await;

    let result = t.store.get(&p, None).await;
    assert!(matches!(result, Err(StoreError::Crypto(_))), "{result:?}");
    // Metadata is not encrypted and still reads.
    assert_eq!(
        t.store
            .read_metadata(&p)
            .await
            .expect("metadata")
            .current_version,
        1
    );
}

#[tokio::test]
async fn reopened_store_keeps_all_writes() {
    let t = TestStore::new().await;
    let p = path("team/svc/key");
    t.store.put(&p, text("one"), KEEP_ALL).await.expect("put 1");
    t.store.put(&p, text("two"), KEEP_ALL).await.expect("put 2");
    t.store.delete_versions(&p, &[1]).await.expect("delete 1");
    let update = MetadataUpdate {
        custom_metadata: Some(BTreeMap::from([("owner".to_owned(), "ops".to_owned())])),
        ..Default::default()
    };
    t.store
        .write_metadata(&p, update)
        .await
        .expect("write metadata");
    let token = TokenRecord {
        token_hash: "hash-1".to_owned(),
        accessor: "acc-1".to_owned(),
        policies: vec!["default".to_owned()],
        display_name: "token".to_owned(),
        created_time: OffsetDateTime::now_utc(),
        expire_time: None,
        creation_ttl_secs: 0,
        renewable: false,
        parent_accessor: None,
        meta: BTreeMap::new(),
    };
    t.store.create_token(&token).await.expect("create token");
    let policy = PolicyRecord {
        name: "ops".to_owned(),
        text: "{}".to_owned(),
    };
    t.store.put_policy(&policy).await.expect("put policy");
    let meta_before = t.store.read_metadata(&p).await.expect("metadata before");

    let keyring = Arc::clone(&t.keyring);
    let t = t.reopen_with(keyring).await;

    assert_eq!(
        t.store.read_metadata(&p).await.expect("metadata after"),
        meta_before
    );
    let current = t.store.get(&p, None).await.expect("get");
    assert_eq!(read_value(&current).as_deref(), Some("two"));
    assert!(
        t.store
            .get(&p, Some(1))
            .await
            .expect("get 1")
            .data
            .is_none()
    );
    assert_eq!(t.store.token_by_hash("hash-1").await.expect("token"), token);
    assert_eq!(t.store.get_policy("ops").await.expect("policy"), policy);
    let root = FolderPath::parse("").expect("root folder");
    assert_eq!(t.store.list(&root).await.expect("list"), ["team/"]);
}

#[tokio::test]
async fn newer_schema_version_is_rejected() {
    let t = TestStore::new().await;
    let mut raw = t.raw().await;
    sqlx::query("UPDATE schema_version SET version = version + 1")
        .execute(&mut raw)
        .await
        .expect("bump schema version");
    drop(raw);
    t.store.close().await;

    let result = SqliteStore::open(&t.db_path, Arc::clone(&t.keyring)).await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
}

#[tokio::test]
async fn missing_directory_fails_to_open() {
    let dir = tempfile::tempdir().expect("temporary directory is created");
    let keyring = Arc::new(Keyring::generate().expect("keyring is generated"));
    let result = SqliteStore::open(&dir.path().join("absent/keyward.db"), keyring).await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
}
