//! The encrypted on-disk copy of the cache, so the manager can start and serve reads while the
//! backend is down.
//!
//! Each entry is encrypted with the keyring under associated data that binds it to its kind,
//! key (secret path or token hash), requested version, version and sync time, so an entry
//! moved to another secret or given a later sync time fails to decrypt. The file is JSON,
//! replaced as a whole: written to a temporary file beside it, flushed to disk, renamed over
//! the old one, and the directory flushed, so a crash leaves the old or the new file.
//!
//! Entries are sealed when they change and written by [`DiskCache::flush`]; the manager calls
//! it from a background task, after each invalidation, and on request. This module does not
//! decide what is cached or for how long.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyward_crypto::CryptoError;
use keyward_store::KeyringHandle;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::codec::{format_time, parse_time};

/// Domain label of cache entries, so they never decrypt as a stored secret version.
const CACHE_AAD_LABEL: &[u8] = b"keyward/read-cache/v1\0";

/// Version of the file layout.
const FILE_FORMAT: u32 = 1;

/// How long an unchanged entry's sealed copy may lag behind its in-memory sync time. A longer
/// lag saves encryptions. After a restart the entry counts as older than it really is, which
/// errs on the safe side of the staleness limit.
pub(crate) const DISK_RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Error reading or writing the disk cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskCacheError {
    /// Reading or writing the file failed.
    #[error("cache file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a cache file of a known format.
    #[error("cache file {path} is malformed: {detail} (delete it to start with an empty cache)")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// An entry could not be encrypted.
    #[error("cache entry could not be encrypted: {0}")]
    Crypto(#[from] CryptoError),
}

/// The kind of an entry's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum EntryKind {
    /// A cached read; the key is the secret path.
    Read,
    /// A token record; the key is the token's keyed hash.
    Token,
    /// The policy set; the key is empty.
    Policies,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Read => "read",
            EntryKind::Token => "token",
            EntryKind::Policies => "policies",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "read" => EntryKind::Read,
            "token" => EntryKind::Token,
            "policies" => EntryKind::Policies,
            _ => return None,
        })
    }
}

/// Identifies one entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EntryKey {
    pub(crate) kind: EntryKind,
    pub(crate) key: String,
    /// For reads, the version asked for (`None` for the current one).
    pub(crate) requested: Option<u64>,
}

/// A decrypted entry from the file.
pub(crate) struct LoadedEntry {
    pub(crate) key: EntryKey,
    pub(crate) synced_at: OffsetDateTime,
    pub(crate) plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LoadedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedEntry")
            .field("key", &self.key)
            .field("synced_at", &self.synced_at)
            .finish_non_exhaustive()
    }
}

struct Sealed {
    version: u64,
    synced_at: OffsetDateTime,
    digest: u64,
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    entries: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    kind: String,
    key: String,
    requested: Option<u64>,
    version: u64,
    synced_at: String,
    ciphertext: String,
}

/// The on-disk cache.
pub(crate) struct DiskCache {
    file: PathBuf,
    keyring: KeyringHandle,
    entries: Mutex<HashMap<EntryKey, Sealed>>,
    dirty: AtomicBool,
    /// Keys the digests that tell whether an entry changed; they never leave the process.
    digest_hasher: RandomState,
    flush_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn entry_aad(key: &EntryKey, version: u64, synced_at: &str) -> Vec<u8> {
    let requested = key
        .requested
        .map_or_else(|| "current".to_owned(), |v| v.to_string());
    let mut aad = Vec::with_capacity(CACHE_AAD_LABEL.len() + key.key.len() + 64);
    aad.extend_from_slice(CACHE_AAD_LABEL);
    for part in [
        key.kind.as_str(),
        key.key.as_str(),
        requested.as_str(),
        version.to_string().as_str(),
    ] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad.extend_from_slice(synced_at.as_bytes());
    aad
}

impl DiskCache {
    pub(crate) fn new(file: PathBuf, keyring: KeyringHandle) -> Self {
        Self {
            file,
            keyring,
            entries: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            digest_hasher: RandomState::new(),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Reads and decrypts the file. A missing file is an empty cache; an entry that does not
    /// decrypt (another keyring, a moved or edited entry) is skipped with a warning.
    pub(crate) async fn load(&self) -> Result<Vec<LoadedEntry>, DiskCacheError> {
        let file = self.file.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&file))
            .await
            .map_err(|error| self.io_error(std::io::Error::other(error)))?;
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(self.io_error(error)),
        };
        let parsed: CacheFile =
            serde_json::from_slice(&bytes).map_err(|error| self.malformed(error))?;
        if parsed.format != FILE_FORMAT {
            return Err(self.malformed(format!("unknown format {}", parsed.format)));
        }

        let keyring = self.keyring.load();
        let mut loaded = Vec::with_capacity(parsed.entries.len());
        let mut sealed = self.lock();
        for entry in parsed.entries {
            let Some(kind) = EntryKind::parse(&entry.kind) else {
                tracing::warn!(file = %self.file.display(), kind = %entry.kind, "skipping cache entry of unknown kind");
                continue;
            };
            let key = EntryKey {
                kind,
                key: entry.key,
                requested: entry.requested,
            };
            let opened = STANDARD
                .decode(&entry.ciphertext)
                .ok()
                .and_then(|ciphertext| {
                    let aad = entry_aad(&key, entry.version, &entry.synced_at);
                    let plaintext = keyring.decrypt(&ciphertext, &aad).ok()?;
                    let synced_at = parse_time(&entry.synced_at).ok()?;
                    Some((ciphertext, plaintext, synced_at))
                });
            let Some((ciphertext, plaintext, synced_at)) = opened else {
                tracing::warn!(file = %self.file.display(), kind = kind.as_str(), key = %key.key, "skipping cache entry that does not decrypt");
                continue;
            };

            sealed.insert(
                key.clone(),
                Sealed {
                    version: entry.version,
                    synced_at,
                    digest: self.digest(&plaintext),
                    ciphertext,
                },
            );
            loaded.push(LoadedEntry {
                key,
                synced_at,
                plaintext,
            });
        }
        Ok(loaded)
    }

    /// Seals an entry unless the sealed copy has the same content and a sync time less than
    /// [`DISK_RESYNC_INTERVAL`] older.
    pub(crate) fn put(
        &self,
        key: EntryKey,
        version: u64,
        synced_at: OffsetDateTime,
        plaintext: &[u8],
    ) -> Result<(), DiskCacheError> {
        let digest = self.digest(plaintext);
        {
            let sealed = self.lock();
            if let Some(existing) = sealed.get(&key)
                && existing.version == version
                && existing.digest == digest
                && synced_at - existing.synced_at < DISK_RESYNC_INTERVAL
            {
                return Ok(());
            }
        }

        let synced_text = format_time(synced_at);
        let aad = entry_aad(&key, version, &synced_text);
        let ciphertext = self.keyring.load().encrypt(plaintext, &aad)?;
        self.lock().insert(
            key,
            Sealed {
                version,
                synced_at,
                digest,
                ciphertext,
            },
        );
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Removes the entries that match `predicate`; returns whether any was removed.
    pub(crate) fn remove_where(&self, predicate: impl Fn(&EntryKey) -> bool) -> bool {
        let mut sealed = self.lock();
        let before = sealed.len();
        sealed.retain(|key, _| !predicate(key));
        let removed = sealed.len() != before;
        drop(sealed);
        if removed {
            self.dirty.store(true, Ordering::SeqCst);
        }
        removed
    }

    /// Writes the file if anything changed since the last write.
    pub(crate) async fn flush(&self) -> Result<(), DiskCacheError> {
        let _serialised = self.flush_lock.lock().await;
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }

        let file = {
            let sealed = self.lock();
            let entries = sealed
                .iter()
                .map(|(key, entry)| FileEntry {
                    kind: key.kind.as_str().to_owned(),
                    key: key.key.clone(),
                    requested: key.requested,
                    version: entry.version,
                    synced_at: format_time(entry.synced_at),
                    ciphertext: STANDARD.encode(&entry.ciphertext),
                })
                .collect();
            CacheFile {
                format: FILE_FORMAT,
                entries,
            }
        };
        // Serialising strings and numbers cannot fail.
        let bytes = serde_json::to_vec(&file).unwrap_or_default();

        let target = self.file.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&target, &bytes))
            .await
            .map_err(|error| self.io_error(std::io::Error::other(error)))
            .and_then(|result| result);
        if written.is_err() {
            // Keep the changes for the next attempt.
            self.dirty.store(true, Ordering::SeqCst);
        }
        written
    }

    fn digest(&self, plaintext: &[u8]) -> u64 {
        self.digest_hasher.hash_one(plaintext)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EntryKey, Sealed>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, source: std::io::Error) -> DiskCacheError {
        DiskCacheError::Io {
            path: self.file.clone(),
            source,
        }
    }

    fn malformed(&self, detail: impl std::fmt::Display) -> DiskCacheError {
        DiskCacheError::Malformed {
            path: self.file.clone(),
            detail: detail.to_string(),
        }
    }
}

/// Replaces `target` with `bytes`: temporary file, fsync, rename, fsync of the directory.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), DiskCacheError> {
    let io_error = |path: &Path, source| DiskCacheError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temporary_name = target.as_os_str().to_owned();
    temporary_name.push(".tmp");
    let temporary = PathBuf::from(temporary_name);

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The entries are encrypted, but their paths and sync times are not.
        options.mode(0o600);
    }
    let mut out = options
        .open(&temporary)
        .map_err(|e| io_error(&temporary, e))?;
    out.write_all(bytes).map_err(|e| io_error(&temporary, e))?;
    out.sync_all().map_err(|e| io_error(&temporary, e))?;
    drop(out);

    std::fs::rename(&temporary, target).map_err(|e| io_error(target, e))?;
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(directory, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_crypto::Keyring;
    use std::sync::Arc;

    fn cache(dir: &tempfile::TempDir, keyring: &KeyringHandle) -> DiskCache {
        DiskCache::new(dir.path().join("cache.json"), keyring.clone())
    }

    fn read_key(path: &str) -> EntryKey {
        EntryKey {
            kind: EntryKind::Read,
            key: path.into(),
            requested: None,
        }
    }

    fn keyring() -> KeyringHandle {
        KeyringHandle::new(Arc::new(Keyring::generate().expect("keyring")))
    }

    #[tokio::test]
    async fn entries_survive_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = keyring();
        let synced = OffsetDateTime::now_utc();
        let first = cache(&dir, &keyring);
        first
            .put(read_key("app/db"), 3, synced, b"secret bytes")
            .expect("seals");
        first.flush().await.expect("writes");

        let file = std::fs::read_to_string(dir.path().join("cache.json")).expect("file");
        assert!(!file.contains("secret bytes"), "{file}");

        let loaded = cache(&dir, &keyring).load().await.expect("loads");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].key, read_key("app/db"));
        assert_eq!(loaded[0].plaintext.as_slice(), b"secret bytes");
        assert_eq!(format_time(loaded[0].synced_at), format_time(synced));
    }

    #[tokio::test]
    async fn moved_or_retimed_entry_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = keyring();
        let first = cache(&dir, &keyring);
        let synced = OffsetDateTime::now_utc();
        first
            .put(read_key("app/db"), 3, synced, b"secret bytes")
            .expect("seals");
        first.flush().await.expect("writes");

        let path = dir.path().join("cache.json");
        let original = std::fs::read_to_string(&path).expect("file");
        let moved = original.replace("app/db", "app/xx");
        std::fs::write(&path, moved).expect("edit");
        assert!(
            cache(&dir, &keyring)
                .load()
                .await
                .expect("loads")
                .is_empty()
        );

        let later = format_time(synced + Duration::from_secs(3600));
        let retimed = original.replace(&format_time(synced), &later);
        std::fs::write(&path, retimed).expect("edit");
        assert!(
            cache(&dir, &keyring)
                .load()
                .await
                .expect("loads")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn other_keyring_cannot_read_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = cache(&dir, &keyring());
        first
            .put(read_key("app/db"), 1, OffsetDateTime::now_utc(), b"v")
            .expect("seals");
        first.flush().await.expect("writes");

        assert!(
            cache(&dir, &keyring())
                .load()
                .await
                .expect("loads")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn missing_file_is_empty_and_garbage_is_malformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = keyring();
        assert!(
            cache(&dir, &keyring)
                .load()
                .await
                .expect("loads")
                .is_empty()
        );

        std::fs::write(dir.path().join("cache.json"), b"not json").expect("write");
        let result = cache(&dir, &keyring).load().await;
        assert!(
            matches!(result, Err(DiskCacheError::Malformed { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn unchanged_entry_is_not_sealed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = keyring();
        let disk = cache(&dir, &keyring);
        let synced = OffsetDateTime::now_utc();
        disk.put(read_key("a"), 1, synced, b"v").expect("seals");
        disk.flush().await.expect("writes");
        let before = keyring.load().encryptions(keyring.load().active_key_id());

        disk.put(read_key("a"), 1, synced + Duration::from_secs(5), b"v")
            .expect("skips");

        let after = keyring.load().encryptions(keyring.load().active_key_id());
        assert_eq!(before, after);
        assert!(!disk.dirty.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn removed_entry_is_gone_after_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = keyring();
        let disk = cache(&dir, &keyring);
        disk.put(read_key("a"), 1, OffsetDateTime::now_utc(), b"v")
            .expect("seals");
        disk.flush().await.expect("writes");

        assert!(disk.remove_where(|key| key.key == "a"));
        disk.flush().await.expect("writes");

        assert!(
            cache(&dir, &keyring)
                .load()
                .await
                .expect("loads")
                .is_empty()
        );
    }
}
