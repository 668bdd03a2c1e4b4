//! A manager over a temporary SQLite store and audit log.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::Keyring;
use keyward_manager::{
    Caller, LockoutConfig, ManagerConfig, RequestContext, SecretsManager, TokenCreateRequest,
};
use keyward_store::{SecretData, SecretPath, SqliteStore};
use serde_json::{Map, Value};

pub struct Harness {
    pub manager: SecretsManager,
    pub root: Caller,
    pub root_token: String,
    pub audit_path: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn ctx() -> RequestContext {
    ctx_from([127, 0, 0, 1].into())
}

pub fn ctx_from(addr: IpAddr) -> RequestContext {
    RequestContext {
        request_id: "test-request".to_owned(),
        remote_addr: addr,
    }
}

pub fn path(raw: &str) -> SecretPath {
    SecretPath::parse(raw).expect("valid test path")
}

pub fn data(value: Value) -> SecretData {
    match value {
        Value::Object(map) => SecretData::from_map(&map),
        _ => SecretData::from_map(&Map::new()),
    }
}

pub fn config() -> ManagerConfig {
    ManagerConfig {
        lockout: LockoutConfig {
            threshold: 3,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(60),
        },
        ..ManagerConfig::default()
    }
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit_path = dir.path().join("audit.log");
        Self::with_audit_path(dir, audit_path).await
    }

    pub async fn with_audit_path(dir: tempfile::TempDir, audit_path: PathBuf) -> Self {
        Self::with_config(dir, audit_path, config()).await
    }

    pub async fn with_config(
        dir: tempfile::TempDir,
        audit_path: PathBuf,
        config: ManagerConfig,
    ) -> Self {
        let keyring = Arc::new(Keyring::generate().expect("keyring"));
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("keyward.db"), keyring.clone())
                .await
                .expect("store opens"),
        );
        let audit =
            AuditLog::open(&audit_path, AuditKey::from_bytes([7; 32])).expect("audit opens");
        let manager = SecretsManager::new(store.clone(), audit, [9; 32], config)
            .await
            .expect("manager starts");

        let issued = manager.create_root_token(&ctx()).await.expect("root token");
        let root_token = issued.token.expose().to_owned();
        let root = manager
            .authenticate(Some(&root_token), &ctx())
            .await
            .expect("root token authenticates");
        Self {
            manager,
            root,
            root_token,
            audit_path,
            _dir: dir,
        }
    }

    /// Writes a policy and returns an authenticated caller holding only it.
    pub async fn caller_with_policy(&self, name: &str, text: &str) -> (Caller, String) {
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
        let token = issued.token.expose().to_owned();
        let caller = self
            .manager
            .authenticate(Some(&token), &ctx())
            .await
            .expect("new token authenticates");
        (caller, token)
    }

    pub async fn write(&self, raw: &str, value: Value) -> u64 {
        self.manager
            .kv_write(&self.root, &ctx(), &path(raw), data(value), None)
            .await
            .expect("root writes")
            .version
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit_path).expect("audit log readable")
    }

    pub fn audit_entries(&self) -> Vec<Value> {
        self.audit_text()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).expect("audit line is JSON")["entry"].clone()
            })
            .collect()
    }
}

pub fn read_json(read: &keyward_manager::KvRead) -> Value {
    Value::Object(read.data.as_ref().expect("readable").expose_map())
}

pub fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
