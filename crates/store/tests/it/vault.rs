//! The Vault backend against a real OpenBao server: plain and sealed values, interop with the
//! `bao` CLI, check-and-set, version changes, metadata, listing, and outage errors.
//!
//! Needs `KEYWARD_TEST_OPENBAO_ADDR`, `KEYWARD_TEST_OPENBAO_TOKEN` and `KEYWARD_TEST_BAO_BIN`
//! (set by `scripts/test.sh`). Each test uses its own KV v2 mount.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyward_crypto::Keyring;
use keyward_store::{
    FolderPath, MetadataUpdate, PolicyRecord, SecretStore, SqliteStore, Stage, StoreError,
    VaultStore, VaultStoreConfig,
};
use keyward_vault::{Auth, SecretJson, VaultClient, VaultConfig, VaultToken};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{KEEP_ALL, path, read_value, text, version};

/// The shared server's address and root token.
struct Server {
    addr: String,
    token: String,
    bin: PathBuf,
}

fn server(test: &str) -> Option<Server> {
    let addr = std::env::var("KEYWARD_TEST_OPENBAO_ADDR").ok();
    let token = std::env::var("KEYWARD_TEST_OPENBAO_TOKEN").ok();
    let bin = std::env::var("KEYWARD_TEST_BAO_BIN").ok();
    let (Some(addr), Some(token), Some(bin)) = (addr, token, bin) else {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!(
                "{test}: KEYWARD_TEST_OPENBAO_ADDR, KEYWARD_TEST_OPENBAO_TOKEN and KEYWARD_TEST_BAO_BIN must be set under CI=true"
            );
        }
        eprintln!("SKIPPED {test}: OpenBao variables not set; run scripts/test.sh");
        return None;
    };
    Some(Server {
        addr,
        token,
        bin: PathBuf::from(bin),
    })
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn root_client(server: &Server) -> VaultClient {
    VaultClient::new(
        VaultConfig::new(server.addr.clone()),
        Auth::Token(VaultToken::new(server.token.clone())),
    )
    .expect("root client builds")
}

/// A store on its own KV v2 mount under the prefix `keyward`.
struct Fixture {
    store: VaultStore,
    raw: VaultClient,
    mount: String,
    keyring: Arc<Keyring>,
    _dir: TempDir,
}

async fn fixture(server: &Server, encrypt_values: bool) -> Fixture {
    let raw = root_client(server);
    let mount = unique("kv");
    let options = BTreeMap::from([("version".to_owned(), "2".to_owned())]);
    raw.enable_secrets_engine(&mount, "kv", &options)
        .await
        .expect("kv v2 engine is enabled");

    let dir = tempfile::tempdir().expect("temporary directory is created");
    let keyring = Arc::new(Keyring::generate().expect("keyring is generated"));
    let local = SqliteStore::open(&dir.path().join("local.db"), Arc::clone(&keyring))
        .await
        .expect("local store opens");
    let config = VaultStoreConfig {
        mount: mount.clone(),
        prefix: "keyward".to_owned(),
        encrypt_values,
    };
    let store =
        VaultStore::new(root_client(server), config, Arc::new(local)).expect("store builds");
    Fixture {
        store,
        raw,
        mount,
        keyring,
        _dir: dir,
    }
}

fn object(secret: &SecretJson) -> Value {
    serde_json::from_slice(secret.expose_json()).expect("vault data is JSON")
}

fn run_bao(server: &Server, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("temporary directory is created");
    let output = Command::new(&server.bin)
        .args(args)
        .env("BAO_ADDR", &server.addr)
        .env("BAO_TOKEN", &server.token)
        .env("HOME", home.path())
        .output()
        .expect("bao CLI runs");
    assert!(
        output.status.success(),
        "bao {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn plain_values_round_trip_through_vault() {
    let Some(server) = server("plain_values_round_trip_through_vault") else {
        return;
    };
    let f = fixture(&server, false).await;

    let first = f
        .store
        .put(&path("team/db"), text("one"), KEEP_ALL)
        .await
        .expect("first write succeeds");
    let second = f
        .store
        .put(&path("team/db"), text("two"), KEEP_ALL)
        .await
        .expect("second write succeeds");
    let current = f.store.get(&path("team/db"), None).await.expect("reads");
    let old = f
        .store
        .get(&path("team/db"), Some(1))
        .await
        .expect("reads v1");
    let raw = f
        .raw
        .kv_read(&f.mount, "keyward/team/db", None)
        .await
        .expect("vault has the secret under the prefix");

    assert_eq!(first.version, 1);
    assert_eq!(second.version, 2);
    assert_eq!(second.stage, Stage::Current);
    assert_eq!(read_value(&current).as_deref(), Some("two"));
    assert_eq!(current.meta.stage, Stage::Current);
    assert_eq!(read_value(&old).as_deref(), Some("one"));
    assert_eq!(old.meta.stage, Stage::Previous);
    assert_eq!(
        object(raw.data.as_ref().expect("data")),
        json!({"value": "two"})
    );
}

#[tokio::test]
async fn bao_cli_and_store_share_secrets() {
    let Some(server) = server("bao_cli_and_store_share_secrets") else {
        return;
    };
    let f = fixture(&server, false).await;

    run_bao(
        &server,
        &[
            "kv",
            "put",
            &format!("-mount={}", f.mount),
            "keyward/app/api",
            "key=from-cli",
        ],
    );
    let read = f
        .store
        .get(&path("app/api"), None)
        .await
        .expect("store reads");
    f.store
        .put(&path("app/token"), text("from-keyward"), KEEP_ALL)
        .await
        .expect("store writes");
    let cli = run_bao(
        &server,
        &[
            "kv",
            "get",
            "-format=json",
            &format!("-mount={}", f.mount),
            "keyward/app/token",
        ],
    );

    let data = read
        .data
        .as_ref()
        .expect("cli secret has data")
        .expose_map();
    assert_eq!(data["key"], "from-cli");
    let cli: Value = serde_json::from_str(&cli).expect("bao prints JSON");
    assert_eq!(cli["data"]["data"]["value"], "from-keyward");
}

#[tokio::test]
async fn encrypted_values_hide_plaintext_in_vault() {
    let Some(server) = server("encrypted_values_hide_plaintext_in_vault") else {
        return;
    };
    let f = fixture(&server, true).await;

    let written = f
        .store
        .put(&path("team/db"), text("hunter2"), KEEP_ALL)
        .await
        .expect("write succeeds");
    let read = f.store.get(&path("team/db"), None).await.expect("reads");
    let raw = f
        .raw
        .kv_read(&f.mount, "keyward/team/db", None)
        .await
        .expect("vault has the secret");
    let raw_text =
        String::from_utf8_lossy(raw.data.as_ref().expect("data").expose_json()).into_owned();

    assert_eq!(written.version, 1);
    assert_eq!(read_value(&read).as_deref(), Some("hunter2"));
    assert_eq!(read.meta.created_by, "accessor-test");
    assert!(!raw_text.contains("hunter2"), "{raw_text}");
    assert!(raw_text.contains("keyward_ciphertext"), "{raw_text}");
    let counts = f.store.count_by_key().await.expect("counts");
    assert_eq!(counts.get(&f.keyring.active_key_id()), Some(&1));
}

#[tokio::test]
async fn sealed_value_copied_elsewhere_fails() {
    let Some(server) = server("sealed_value_copied_elsewhere_fails") else {
        return;
    };
    let f = fixture(&server, true).await;
    f.store
        .put(&path("team/a"), text("secret-a"), KEEP_ALL)
        .await
        .expect("write succeeds");
    let sealed = f
        .raw
        .kv_read(&f.mount, "keyward/team/a", None)
        .await
        .expect("vault has the secret")
        .data
        .expect("data");

    f.raw
        .kv_write(&f.mount, "keyward/team/b", &sealed, None)
        .await
        .expect("copy writes");
    let copied = f.store.get(&path("team/b"), None).await;
    f.raw
        .kv_write(
            &f.mount,
            "keyward/team/plain",
            &SecretJson::from_map(
                json!({"value": "not sealed"})
                    .as_object()
                    .expect("object literal"),
            ),
            None,
        )
        .await
        .expect("plain write");
    let plain = f.store.get(&path("team/plain"), None).await;

    assert!(matches!(copied, Err(StoreError::Crypto(_))), "{copied:?}");
    assert!(matches!(plain, Err(StoreError::Corrupt(_))), "{plain:?}");
}

#[tokio::test]
async fn check_and_set_is_enforced() {
    let Some(server) = server("check_and_set_is_enforced") else {
        return;
    };
    for encrypt_values in [false, true] {
        let f = fixture(&server, encrypt_values).await;
        let p = path("cas/secret");

        f.store
            .put(&p, version(json!({"value": "a"}), Some(0)), KEEP_ALL)
            .await
            .expect("cas 0 creates");
        let stale = f
            .store
            .put(&p, version(json!({"value": "b"}), Some(0)), KEEP_ALL)
            .await;
        let good = f
            .store
            .put(&p, version(json!({"value": "c"}), Some(1)), KEEP_ALL)
            .await;
        f.store
            .write_metadata(
                &p,
                MetadataUpdate {
                    cas_required: Some(true),
                    ..MetadataUpdate::default()
                },
            )
            .await
            .expect("metadata writes");
        let missing_cas = f.store.put(&p, text("d"), KEEP_ALL).await;

        assert!(
            matches!(stale, Err(StoreError::CasMismatch)),
            "{encrypt_values}: {stale:?}"
        );
        assert_eq!(good.expect("matching cas writes").version, 2);
        assert!(
            matches!(missing_cas, Err(StoreError::CasRequired)),
            "{encrypt_values}: {missing_cas:?}"
        );
    }
}

#[tokio::test]
async fn version_changes_map_to_store_types() {
    let Some(server) = server("version_changes_map_to_store_types") else {
        return;
    };
    let f = fixture(&server, true).await;
    let p = path("life/cycle");
    for value in ["1", "2", "3"] {
        f.store
            .put(&p, text(value), KEEP_ALL)
            .await
            .expect("writes");
    }

    f.store
        .delete_versions(&p, &[])
        .await
        .expect("deletes current");
    let deleted = f.store.get(&p, None).await.expect("deleted version reads");
    f.store
        .undelete_versions(&p, &[])
        .await
        .expect("undeletes current");
    let restored = f.store.get(&p, None).await.expect("restored version reads");
    f.store
        .destroy_versions(&p, &[1])
        .await
        .expect("destroys v1");
    f.store
        .delete_versions(&p, &[2, 99])
        .await
        .expect("deletes v2, ignores v99");
    let meta = f.store.read_metadata(&p).await.expect("metadata reads");

    assert!(deleted.data.is_none());
    assert!(deleted.meta.deletion_time.is_some());
    assert_eq!(read_value(&restored).as_deref(), Some("3"));
    assert!(restored.meta.deletion_time.is_none());
    assert!(meta.versions[&1].destroyed);
    assert_eq!(meta.versions[&1].stage, Stage::Destroyed);
    assert!(meta.versions[&2].deletion_time.is_some());
    assert_eq!(meta.versions[&2].stage, Stage::Previous);
    assert_eq!(meta.versions[&3].stage, Stage::Current);
    assert_eq!(meta.current_version, 3);
    let missing = f.store.get(&path("life/none"), None).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

#[tokio::test]
async fn metadata_maps_vault_settings() {
    let Some(server) = server("metadata_maps_vault_settings") else {
        return;
    };
    let f = fixture(&server, false).await;
    let p = path("meta/app");
    f.store.put(&p, text("v"), KEEP_ALL).await.expect("writes");
    let custom = BTreeMap::from([("owner".to_owned(), "team-a".to_owned())]);

    f.store
        .write_metadata(
            &p,
            MetadataUpdate {
                max_versions: Some(4),
                cas_required: Some(true),
                delete_version_after_secs: Some(3600),
                custom_metadata: Some(custom.clone()),
            },
        )
        .await
        .expect("metadata writes");
    let meta = f.store.read_metadata(&p).await.expect("metadata reads");
    let read = f.store.get(&p, None).await.expect("data reads");
    let cli = run_bao(
        &server,
        &[
            "kv",
            "metadata",
            "get",
            "-format=json",
            &format!("-mount={}", f.mount),
            "keyward/meta/app",
        ],
    );

    assert_eq!(meta.max_versions, 4);
    assert!(meta.cas_required);
    assert_eq!(meta.delete_version_after_secs, 3600);
    assert_eq!(meta.custom_metadata, custom);
    assert_eq!(read.custom_metadata, custom);
    let cli: Value = serde_json::from_str(&cli).expect("bao prints JSON");
    assert_eq!(cli["data"]["max_versions"], 4);
    assert_eq!(cli["data"]["custom_metadata"]["owner"], "team-a");

    f.store.delete_metadata(&p).await.expect("deletes");
    let gone = f.store.read_metadata(&p).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
}

#[tokio::test]
async fn listing_stays_under_prefix() {
    let Some(server) = server("listing_stays_under_prefix") else {
        return;
    };
    let f = fixture(&server, false).await;
    for p in ["app/a", "app/sub/b", "top"] {
        f.store
            .put(&path(p), text("v"), KEEP_ALL)
            .await
            .expect("writes");
    }
    f.raw
        .kv_write(
            &f.mount,
            "outside/x",
            &SecretJson::from_map(json!({"v": 1}).as_object().expect("object literal")),
            None,
        )
        .await
        .expect("write outside the prefix");

    let root = f
        .store
        .list(&FolderPath::parse("").expect("root folder"))
        .await
        .expect("root lists");
    let app = f
        .store
        .list(&FolderPath::parse("app/").expect("folder"))
        .await
        .expect("folder lists");
    let none = f
        .store
        .list(&FolderPath::parse("nothing").expect("folder"))
        .await
        .expect("empty folder lists");

    assert_eq!(root, vec!["app/", "top"]);
    assert_eq!(app, vec!["a", "sub/"]);
    assert!(none.is_empty());
}

#[tokio::test]
async fn policies_stay_in_local_store() {
    let Some(server) = server("policies_stay_in_local_store") else {
        return;
    };
    let f = fixture(&server, false).await;
    let policy = PolicyRecord {
        name: "readers".to_owned(),
        text: "path \"team/*\" { capabilities = [\"read\"] }".to_owned(),
    };

    f.store.put_policy(&policy).await.expect("policy writes");

    assert_eq!(f.store.get_policy("readers").await.expect("reads"), policy);
    assert_eq!(
        f.store.local().get_policy("readers").await.expect("reads"),
        policy
    );
    let vault_keys = f.raw.kv_list(&f.mount, "").await.expect("lists");
    assert!(vault_keys.is_empty(), "{vault_keys:?}");
}

#[tokio::test]
async fn unreachable_vault_is_backend_error() {
    let dir = tempfile::tempdir().expect("temporary directory is created");
    let keyring = Arc::new(Keyring::generate().expect("keyring is generated"));
    let local = SqliteStore::open(&dir.path().join("local.db"), keyring)
        .await
        .expect("local store opens");
    let mut config = VaultConfig::new("http://127.0.0.1:9");
    config.request_timeout = Duration::from_secs(2);
    let client = VaultClient::new(config, Auth::Token(VaultToken::new("unused-token-value")))
        .expect("client builds");
    let store = VaultStore::new(
        client,
        VaultStoreConfig {
            mount: "secret".to_owned(),
            prefix: "keyward".to_owned(),
            encrypt_values: false,
        },
        Arc::new(local),
    )
    .expect("store builds");

    let read = store.get(&path("team/db"), None).await;
    let write = store.put(&path("team/db"), text("hunter2"), KEEP_ALL).await;

    for result in [read.map(|_| ()), write.map(|_| ())] {
        let Err(StoreError::Backend(message)) = result else {
            panic!("expected a backend error, got {result:?}");
        };
        assert!(message.contains("team/db"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!message.contains("unused-token-value"), "{message}");
    }
}
