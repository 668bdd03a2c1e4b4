//! Storage for Keyward: the [`SecretStore`] trait and its backends.
//!
//! A store keeps secret versions (as ciphertext only, bound to path and version), secret
//! metadata, hashed tokens and policies. It does not check permissions, write audit entries or
//! cache: the manager does that above it.
//!
//! Backends: [`SqliteStore`] (one embedded file) and [`VaultStore`] (secret versions in a
//! Vault or OpenBao KV v2 mount, tokens and policies in a local SQLite file). Unless its
//! `encrypt_values` option is on, the Vault backend stores values as plain key/value maps that
//! Vault's operators can read; Vault then encrypts them at rest itself.

mod aad;
mod handle;
mod model;
mod path;
mod sqlite;
mod store;
mod vault;

pub use aad::secret_aad;
pub use handle::KeyringHandle;
pub use model::{
    InvalidSecretData, MetadataUpdate, NewVersion, PolicyRecord, SecretData, SecretMeta, Stage,
    TokenRecord, VersionMeta,
};
pub use path::{FolderPath, MAX_PATH_LEN, MAX_SEGMENT_LEN, MAX_SEGMENTS, PathError, SecretPath};
pub use sqlite::SqliteStore;
pub use store::{RewrapProgress, SecretStore, StoreError, VersionRead};
pub use vault::{VaultStore, VaultStoreConfig};
