//! Storage for Keyward: the [`SecretStore`] trait and its backends.
//!
//! A store keeps secret versions (as ciphertext only, bound to path and version), secret
//! metadata, hashed tokens and policies. It does not check permissions, write audit entries or
//! cache: the manager does that above it.

mod aad;
mod handle;
mod model;
mod path;
mod sqlite;
mod store;

pub use aad::secret_aad;
pub use handle::KeyringHandle;
pub use model::{
    InvalidSecretData, MetadataUpdate, NewVersion, PolicyRecord, SecretData, SecretMeta, Stage,
    TokenRecord, VersionMeta,
};
pub use path::{FolderPath, MAX_PATH_LEN, MAX_SEGMENT_LEN, MAX_SEGMENTS, PathError, SecretPath};
pub use sqlite::SqliteStore;
pub use store::{RewrapProgress, SecretStore, StoreError, VersionRead};
