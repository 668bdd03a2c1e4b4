//! The key lifecycle: rotation under concurrent traffic, automatic rotation at the encryption
//! limit, rewrap and retirement, root-key rotation, saves, permissions and audit entries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::{CryptoError, Keyring, RootKey, WrappedKeyring};
use keyward_manager::{
    Caller, KeyManagement, KeyState, KeyringSink, ManagerConfig, ManagerError, SecretsManager,
    SecurityEvent, TokenCreateRequest,
};
use keyward_store::{SecretStore, SqliteStore};
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;

use crate::common::{config, ctx, data, path, read_json};

const ROOT_KEY_BYTES: [u8; 32] = [0x42; 32];

/// Keeps every saved keyring in memory and fails saves on request.
#[derive(Default)]
struct MemorySink {
    saved: Mutex<Vec<WrappedKeyring>>,
    fail: AtomicBool,
}

impl MemorySink {
    fn saves(&self) -> usize {
        self.saved.lock().expect("sink lock").len()
    }

    fn last(&self) -> WrappedKeyring {
        self.saved
            .lock()
            .expect("sink lock")
            .last()
            .cloned()
            .expect("at least one keyring was saved")
    }
}

impl KeyringSink for MemorySink {
    fn save(&self, wrapped: &WrappedKeyring) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("disk full (simulated)".to_owned());
        }
        self.saved.lock().expect("sink lock").push(wrapped.clone());
        Ok(())
    }
}

/// A manager with key management over a temporary store and audit log.
struct KeyHarness {
    manager: Arc<SecretsManager>,
    store: Arc<SqliteStore>,
    root: Caller,
    sink: Arc<MemorySink>,
    audit_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl KeyHarness {
    async fn new() -> KeyHarness {
        KeyHarness::with_config(config()).await
    }

    async fn with_config(config: ManagerConfig) -> KeyHarness {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit_path = dir.path().join("audit.log");
        let keyring = Arc::new(Keyring::generate().expect("keyring"));
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("keyward.db"), keyring)
                .await
                .expect("store opens"),
        );
        let audit =
            AuditLog::open(&audit_path, AuditKey::from_bytes([7; 32])).expect("audit opens");
        let sink = Arc::new(MemorySink::default());
        let manager = SecretsManager::new(store.clone(), audit, [9; 32], config)
            .await
            .expect("manager starts")
            .with_key_management(KeyManagement {
                keyring: store.keyring_handle(),
                root_key: RootKey::from_bytes(&ROOT_KEY_BYTES).expect("root key"),
                sink: sink.clone(),
            });

        let issued = manager.create_root_token(&ctx()).await.expect("root token");
        let root = manager
            .authenticate(Some(issued.token.expose()), &ctx())
            .await
            .expect("root authenticates");
        KeyHarness {
            manager: Arc::new(manager),
            store,
            root,
            sink,
            audit_path,
            _dir: dir,
        }
    }

    async fn write(&self, raw: &str, value: &str) -> u64 {
        self.manager
            .kv_write(
                &self.root,
                &ctx(),
                &path(raw),
                data(json!({ "value": value })),
                None,
            )
            .await
            .expect("root writes")
            .version
    }

    async fn read(&self, raw: &str, version: u64) -> Value {
        let read = self
            .manager
            .kv_read(&self.root, &ctx(), &path(raw), Some(version))
            .await
            .unwrap_or_else(|error| panic!("{raw} v{version} does not read: {error}"));
        read_json(&read)["value"].clone()
    }

    async fn rewrap_all(&self) -> u64 {
        let mut total = 0;
        loop {
            let progress = self
                .manager
                .keys_rewrap(&self.root, &ctx(), 3)
                .await
                .expect("rewrap");
            total += progress.rewrapped;
            if progress.remaining == 0 {
                return total;
            }
        }
    }

    async fn status(&self) -> Vec<(u32, KeyState, u64)> {
        self.manager
            .keys_status(&self.root, &ctx())
            .await
            .expect("status")
            .into_iter()
            .map(|key| (key.id, key.state, key.records))
            .collect()
    }

    async fn caller_with_policy(&self, name: &str, text: &str) -> Caller {
        self.manager
            .policy_write(&self.root, &ctx(), name, text)
            .await
            .expect("policy writes");
        let issued = self
            .manager
            .token_create(
                &self.root,
                &ctx(),
                TokenCreateRequest {
                    policies: vec![name.to_owned()],
                    ..Default::default()
                },
            )
            .await
            .expect("token creates");
        self.manager
            .authenticate(Some(issued.token.expose()), &ctx())
            .await
            .expect("token authenticates")
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit_path).expect("audit log readable")
    }

    fn audit_entries(&self, operation: &str) -> Vec<Value> {
        self.audit_text()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).expect("audit line is JSON")["entry"].clone()
            })
            .filter(|entry| entry["operation"] == operation)
            .collect()
    }
}

/// Drains the events published so far.
fn drain(receiver: &mut Receiver<SecurityEvent>) -> Vec<SecurityEvent> {
    let mut events = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        events.push(event);
    }
    events
}

fn open_with(wrapped: &WrappedKeyring, bytes: &[u8; 32]) -> Result<Keyring, CryptoError> {
    Keyring::unwrap(wrapped, &RootKey::from_bytes(bytes).expect("root key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_during_traffic_loses_nothing() {
    const TASKS: usize = 6;
    const WRITES: u64 = 25;

    let h = KeyHarness::with_config(ManagerConfig {
        default_max_versions: 100,
        ..config()
    })
    .await;
    for task in 0..TASKS {
        h.write(&format!("load/t{task}"), "seed").await;
    }

    // Each task writes its own secret and reads back what it wrote, plus a neighbour's.
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let manager = Arc::clone(&h.manager);
        let root = h.root.clone();
        tasks.push(tokio::spawn(async move {
            let own = path(&format!("load/t{task}"));
            let neighbour = path(&format!("load/t{}", (task + 1) % TASKS));
            for step in 0..WRITES {
                let value = format!("t{task}-step{step}");
                let written = manager
                    .kv_write(&root, &ctx(), &own, data(json!({ "value": value })), None)
                    .await
                    .expect("write during rotation");
                let read = manager
                    .kv_read(&root, &ctx(), &own, Some(written.version))
                    .await
                    .expect("read own write during rotation");
                assert_eq!(read_json(&read)["value"], value.as_str());
                manager
                    .kv_read(&root, &ctx(), &neighbour, None)
                    .await
                    .expect("read neighbour during rotation");
                tokio::task::yield_now().await;
            }
        }));
    }

    // Meanwhile: rotate twice, rewrap everything onto the newest key, retire the oldest.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let first = h
        .manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    assert_eq!(first.key_id, 2);
    h.rewrap_all().await;
    let second = h
        .manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    assert_eq!(second.key_id, 3);
    h.rewrap_all().await;
    h.manager
        .keys_retire(&h.root, &ctx(), 1)
        .await
        .expect("key 1 retires once nothing uses it");
    assert!(
        tasks.iter().any(|task| !task.is_finished()),
        "the traffic ended before the key changes, so they did not overlap"
    );

    for task in tasks {
        task.await.expect("task finished without a failure");
    }

    for task in 0..TASKS {
        let raw = format!("load/t{task}");
        assert_eq!(h.read(&raw, 1).await, "seed");
        for step in 0..WRITES {
            assert_eq!(h.read(&raw, step + 2).await, format!("t{task}-step{step}"));
        }
    }
    let status = h.status().await;
    assert!(
        status.iter().all(|&(id, _, _)| id != 1),
        "key 1 is retired: {status:?}"
    );
    assert_eq!(
        status.iter().map(|&(_, _, records)| records).sum::<u64>(),
        h.store
            .count_by_key()
            .await
            .expect("count")
            .values()
            .sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_rotation_fires_once_at_limit() {
    let h = KeyHarness::with_config(ManagerConfig {
        data_key_rotate_after: 10,
        ..config()
    })
    .await;
    let mut events = h.manager.subscribe();

    let mut tasks = Vec::new();
    for task in 0..4 {
        let manager = Arc::clone(&h.manager);
        let root = h.root.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..4 {
                manager
                    .kv_write(
                        &root,
                        &ctx(),
                        &path(&format!("auto/t{task}")),
                        data(json!({ "value": format!("{task}-{step}") })),
                        None,
                    )
                    .await
                    .expect("write");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer finished");
    }

    let rotations: Vec<SecurityEvent> = drain(&mut events)
        .into_iter()
        .filter(|event| matches!(event, SecurityEvent::DataKeyRotated { .. }))
        .collect();
    assert_eq!(
        rotations,
        vec![SecurityEvent::DataKeyRotated {
            key_id: 2,
            reason: "encryption limit".to_owned()
        }]
    );
    assert_eq!(h.store.keyring().active_key_id(), 2);
    assert_eq!(h.sink.last().active, 2, "the rotated keyring was saved");

    let audited = h.audit_entries("keys.rotate");
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!(audited[0]["type"], "request");
    assert_eq!(audited[1]["accessor"], "system");
    assert_eq!(audited[1]["reason"], "encryption limit");
    assert_eq!(audited[1]["outcome"], "ok");
}

#[tokio::test]
async fn retire_waits_for_rewrap() {
    let h = KeyHarness::new().await;
    for version in 1..=3 {
        h.write("app/db", &format!("v{version}")).await;
    }
    h.manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    let mut events = h.manager.subscribe();

    let early = h.manager.keys_retire(&h.root, &ctx(), 1).await;
    let Err(ManagerError::Invalid(message)) = early else {
        panic!("retire with records left must be rejected: {early:?}");
    };
    assert_eq!(
        message,
        "key 1 still protects 3 records: run `keyward keys rewrap` first"
    );
    let active = h.manager.keys_retire(&h.root, &ctx(), 2).await;
    assert!(
        matches!(&active, Err(ManagerError::Invalid(m)) if m.contains("active key")),
        "{active:?}"
    );
    let unknown = h.manager.keys_retire(&h.root, &ctx(), 9).await;
    assert!(
        matches!(&unknown, Err(ManagerError::Invalid(m)) if m.contains("not in the keyring")),
        "{unknown:?}"
    );
    assert_eq!(
        h.store.keyring().key_ids(),
        vec![1, 2],
        "nothing was retired"
    );

    assert_eq!(h.rewrap_all().await, 3);
    h.manager
        .keys_retire(&h.root, &ctx(), 1)
        .await
        .expect("retire after rewrap");

    assert_eq!(h.status().await, vec![(2, KeyState::Active, 3)]);
    assert_eq!(
        open_with(&h.sink.last(), &ROOT_KEY_BYTES)
            .expect("opens")
            .key_ids(),
        vec![2]
    );
    for version in 1..=3 {
        assert_eq!(h.read("app/db", version).await, format!("v{version}"));
    }
    let published = drain(&mut events);
    assert!(published.contains(&SecurityEvent::RewrapFinished { key_id: 2 }));
    assert!(published.contains(&SecurityEvent::KeyRetired { key_id: 1 }));
}

#[tokio::test]
async fn status_counts_records_and_encryptions() {
    let h = KeyHarness::new().await;
    for raw in ["app/a", "app/b"] {
        h.write(raw, "one").await;
        h.write(raw, "two").await;
    }
    h.manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    h.write("app/c", "three").await;
    h.manager
        .kv_destroy(&h.root, &ctx(), &path("app/a"), &[1])
        .await
        .expect("destroy");

    let status = h
        .manager
        .keys_status(&h.root, &ctx())
        .await
        .expect("status");

    let rows: Vec<(u32, KeyState, u64, Option<u64>)> = status
        .iter()
        .map(|key| (key.id, key.state, key.records, key.encryptions))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, KeyState::DecryptOnly, 3, Some(4)),
            (2, KeyState::Active, 1, Some(1)),
        ]
    );
    assert!(status.iter().all(|key| key.created.is_some()));
    assert_eq!(KeyState::DecryptOnly.as_str(), "decrypt-only");
}

#[tokio::test]
async fn key_operations_need_sudo() {
    let h = KeyHarness::new().await;
    h.write("app/db", "v1").await;
    let writer = h
        .caller_with_policy(
            "writer",
            r#"path "secret/*" { capabilities = ["create", "read", "update"] }
               path "sys/keys" { capabilities = ["read"] }"#,
        )
        .await;

    let results = [
        h.manager.keys_status(&writer, &ctx()).await.map(|_| ()),
        h.manager.keys_rotate(&writer, &ctx()).await.map(|_| ()),
        h.manager.keys_rewrap(&writer, &ctx(), 10).await.map(|_| ()),
        h.manager.keys_retire(&writer, &ctx(), 1).await,
        h.manager
            .keys_rotate_root(&writer, &ctx(), RootKey::generate().expect("root"))
            .await
            .map(|_| ()),
    ];
    for result in &results {
        assert!(
            matches!(result, Err(ManagerError::PermissionDenied)),
            "{result:?}"
        );
    }
    assert_eq!(h.store.keyring().key_ids(), vec![1]);
    assert_eq!(h.sink.saves(), 0);
    let denied = h.audit_entries("keys.rotate");
    assert_eq!(denied.len(), 1, "only a response entry: {denied:?}");
    assert_eq!(denied[0]["error"], "permission_denied");

    let operator = h
        .caller_with_policy(
            "key-operator",
            r#"path "sys/keys" { capabilities = ["sudo"] }
               path "sys/keys/*" { capabilities = ["sudo"] }"#,
        )
        .await;
    h.manager
        .keys_status(&operator, &ctx())
        .await
        .expect("status with sudo");
    h.manager
        .keys_rotate(&operator, &ctx())
        .await
        .expect("rotate with sudo");
}

#[tokio::test]
async fn failed_save_changes_nothing() {
    let h = KeyHarness::new().await;
    h.write("app/db", "v1").await;
    h.sink.fail.store(true, Ordering::SeqCst);

    let rotated = h.manager.keys_rotate(&h.root, &ctx()).await;
    assert!(
        matches!(rotated, Err(ManagerError::Unavailable(_))),
        "{rotated:?}"
    );
    let rooted = h
        .manager
        .keys_rotate_root(&h.root, &ctx(), RootKey::generate().expect("root"))
        .await;
    assert!(
        matches!(rooted, Err(ManagerError::Unavailable(_))),
        "{rooted:?}"
    );

    assert_eq!(h.store.keyring().key_ids(), vec![1]);
    h.write("app/db", "v2").await;
    assert_eq!(h.status().await, vec![(1, KeyState::Active, 2)]);

    // The root key in use is still the old one: the next save is sealed under it.
    h.sink.fail.store(false, Ordering::SeqCst);
    h.manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    assert!(open_with(&h.sink.last(), &ROOT_KEY_BYTES).is_ok());
}

#[tokio::test]
async fn root_rotation_reseals_keyring() {
    let h = KeyHarness::new().await;
    h.write("app/db", "v1").await;
    let mut events = h.manager.subscribe();
    let new_bytes = [0x17u8; 32];

    let rotated = h
        .manager
        .keys_rotate_root(
            &h.root,
            &ctx(),
            RootKey::from_bytes(&new_bytes).expect("root"),
        )
        .await
        .expect("rotate root");

    assert_eq!((rotated.kdf, rotated.previous_kdf), ("raw", "raw"));
    let saved = h.sink.last();
    assert!(matches!(
        open_with(&saved, &ROOT_KEY_BYTES),
        Err(CryptoError::WrongRootKey)
    ));
    let reopened = open_with(&saved, &new_bytes).expect("new root key opens the keyring");
    assert_eq!(reopened.key_ids(), vec![1]);
    assert_eq!(h.read("app/db", 1).await, "v1");

    // Later saves use the new root key too.
    h.manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    assert!(open_with(&h.sink.last(), &new_bytes).is_ok());
    assert!(drain(&mut events).contains(&SecurityEvent::RootKeyRotated {
        kdf: "raw".to_owned()
    }));
}

#[tokio::test]
async fn counts_saved_periodically_and_at_shutdown() {
    let h = KeyHarness::with_config(ManagerConfig {
        keyring_save_every: 4,
        ..config()
    })
    .await;
    for version in 1..=9 {
        h.write("app/db", &format!("v{version}")).await;
    }
    assert_eq!(h.sink.saves(), 2, "saved after 4 and 8 encryptions");
    let saved = open_with(&h.sink.last(), &ROOT_KEY_BYTES).expect("opens");
    assert_eq!(saved.encryptions(1), Some(8));

    h.manager.shutdown().await.expect("shutdown saves");
    let saved = open_with(&h.sink.last(), &ROOT_KEY_BYTES).expect("opens");
    assert_eq!(saved.encryptions(1), Some(9));
}

#[tokio::test]
async fn rewrap_batch_size_is_bounded() {
    let h = KeyHarness::new().await;
    for size in [0, 10_001] {
        let result = h.manager.keys_rewrap(&h.root, &ctx(), size).await;
        assert!(
            matches!(result, Err(ManagerError::Invalid(_))),
            "{size}: {result:?}"
        );
    }
}

#[tokio::test]
async fn audit_entries_hold_no_key_material() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    let h = KeyHarness::new().await;
    h.write("app/db", "v1").await;
    let new_bytes = [0x5au8; 32];
    h.manager
        .keys_rotate(&h.root, &ctx())
        .await
        .expect("rotate");
    h.manager
        .keys_status(&h.root, &ctx())
        .await
        .expect("status");
    h.rewrap_all().await;
    h.manager
        .keys_retire(&h.root, &ctx(), 1)
        .await
        .expect("retire");
    h.manager
        .keys_rotate_root(
            &h.root,
            &ctx(),
            RootKey::from_bytes(&new_bytes).expect("root"),
        )
        .await
        .expect("rotate root");

    for operation in [
        "keys.rotate",
        "keys.rewrap",
        "keys.retire",
        "keys.rotate_root",
    ] {
        let kinds: Vec<Value> = h
            .audit_entries(operation)
            .iter()
            .map(|entry| entry["type"].clone())
            .take(2)
            .collect();
        assert_eq!(
            kinds,
            vec![json!("request"), json!("response")],
            "{operation}"
        );
    }
    assert_eq!(h.audit_entries("keys.status").len(), 1);

    let text = h.audit_text();
    let saved = h.sink.last();
    for bytes in [ROOT_KEY_BYTES, new_bytes] {
        for encoding in [
            hex::encode(bytes),
            hex::encode_upper(bytes),
            STANDARD.encode(bytes),
        ] {
            assert!(!text.contains(&encoding), "root key in the audit log");
        }
    }
    assert!(
        !text.contains(&saved.ciphertext),
        "wrapped keyring in the audit log"
    );
}
