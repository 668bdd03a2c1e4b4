//! A shared, swappable reference to the keyring, so a data-key rotation takes effect without
//! a restart.
//!
//! The store and the manager hold clones of one [`KeyringHandle`]. Each operation takes an
//! `Arc<Keyring>` from it and works with that snapshot, so a swap never changes the keyring
//! under an operation in progress. The lock is held only to clone or replace the `Arc`. The
//! handle does not persist the keyring: whoever swaps it in must have stored it first.

use std::fmt;
use std::sync::{Arc, RwLock};

use keyward_crypto::Keyring;

/// A clonable handle to the current keyring; all clones see the same keyring.
#[derive(Clone)]
pub struct KeyringHandle {
    current: Arc<RwLock<Arc<Keyring>>>,
}

impl KeyringHandle {
    /// Creates a handle holding `keyring`.
    pub fn new(keyring: Arc<Keyring>) -> KeyringHandle {
        KeyringHandle {
            current: Arc::new(RwLock::new(keyring)),
        }
    }

    /// Returns the current keyring.
    pub fn load(&self) -> Arc<Keyring> {
        // A poisoned lock still holds a valid `Arc`: replacing it cannot panic halfway.
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Makes `keyring` the current keyring for every clone of this handle and returns the
    /// previous one.
    pub fn replace(&self, keyring: Arc<Keyring>) -> Arc<Keyring> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, keyring)
    }
}

impl fmt::Debug for KeyringHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyring = self.load();
        f.debug_struct("KeyringHandle")
            .field("active", &keyring.active_key_id())
            .field("key_ids", &keyring.key_ids())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_is_seen_by_every_clone() {
        let handle = KeyringHandle::new(Arc::new(Keyring::generate().expect("generate")));
        let clone = handle.clone();
        let mut next = Keyring::generate().expect("generate");
        next.rotate().expect("rotate");

        let previous = handle.replace(Arc::new(next));

        assert_eq!(previous.active_key_id(), 1);
        assert_eq!(clone.load().active_key_id(), 2);
    }

    #[test]
    fn snapshot_outlives_replace() {
        let handle = KeyringHandle::new(Arc::new(Keyring::generate().expect("generate")));
        let snapshot = handle.load();
        let sealed = snapshot.encrypt(b"value", b"ctx").expect("encrypt");

        handle.replace(Arc::new(Keyring::generate().expect("generate")));

        let opened = snapshot
            .decrypt(&sealed, b"ctx")
            .expect("old snapshot decrypts");
        assert_eq!(opened.as_slice(), b"value");
    }
}
