//! Helpers shared by the integration tests: a store in a temporary directory, paths, data and
//! a raw SQL connection for inspecting or tampering with the file behind the store's back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyward_crypto::Keyring;
use keyward_store::{NewVersion, SecretData, SecretPath, SqliteStore};
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

/// A store in its own temporary directory, with the keyring it was opened with.
pub struct TestStore {
    pub store: SqliteStore,
    pub keyring: Arc<Keyring>,
    pub db_path: PathBuf,
    // Kept so the directory outlives the store.
    pub dir: TempDir,
}

impl TestStore {
    /// Opens a fresh store with a new keyring.
    pub async fn new() -> TestStore {
        let dir = tempfile::tempdir().expect("temporary directory is created");
        let db_path = dir.path().join("keyward.db");
        let keyring = Arc::new(Keyring::generate().expect("keyring is generated"));
        let store = SqliteStore::open(&db_path, Arc::clone(&keyring))
            .await
            .expect("store opens");
        TestStore {
            store,
            keyring,
            db_path,
            dir,
        }
    }

    /// Closes the store and opens the same file again with `keyring`.
    pub async fn reopen_with(self, keyring: Arc<Keyring>) -> TestStore {
        self.store.close().await;
        let store = SqliteStore::open(&self.db_path, Arc::clone(&keyring))
            .await
            .expect("store reopens");
        TestStore {
            store,
            keyring,
            db_path: self.db_path,
            dir: self.dir,
        }
    }

    /// Opens a separate connection to the same database file.
    pub async fn raw(&self) -> SqliteConnection {
        raw_connection(&self.db_path).await
    }
}

pub async fn raw_connection(db_path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(db_path)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("raw connection opens")
}

pub fn path(raw: &str) -> SecretPath {
    SecretPath::parse(raw).expect("test path is valid")
}

pub fn data(value: Value) -> SecretData {
    let Value::Object(map) = value else {
        panic!("test data must be a JSON object");
    };
    SecretData::from_map(&map)
}

pub fn version(value: Value, cas: Option<u64>) -> NewVersion {
    NewVersion {
        data: data(value),
        cas,
        created_by: "accessor-test".to_owned(),
    }
}

/// Builds a write of `{"value": <text>}` without check-and-set.
pub fn text(value: &str) -> NewVersion {
    version(json!({ "value": value }), None)
}

/// Returns the `value` field of a read's data, or `None` when the read returned no data.
pub fn read_value(read: &keyward_store::VersionRead) -> Option<String> {
    read.data.as_ref().map(|data| {
        data.expose_map()["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
}

/// Default `max_versions` passed to writes in tests that do not test pruning.
pub const KEEP_ALL: u32 = 0;
