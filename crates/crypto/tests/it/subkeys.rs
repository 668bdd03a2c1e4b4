//! Derived per-purpose keys stay stable across rotation and wrapping.

use keyward_crypto::{CryptoError, Keyring, RootKey};

#[test]
fn subkey_is_stable_for_same_label() {
    let keyring = Keyring::generate().expect("generate keyring");

    assert_eq!(
        keyring.derive_subkey("token-hash"),
        keyring.derive_subkey("token-hash")
    );
}

#[test]
fn subkeys_differ_between_labels() {
    let keyring = Keyring::generate().expect("generate keyring");

    assert_ne!(
        keyring.derive_subkey("token-hash"),
        keyring.derive_subkey("audit-hmac")
    );
    assert_ne!(keyring.derive_subkey(""), keyring.derive_subkey("a"));
}

#[test]
fn subkeys_differ_between_keyrings() {
    let first = Keyring::generate().expect("generate keyring");
    let second = Keyring::generate().expect("generate keyring");

    assert_ne!(
        first.derive_subkey("token-hash"),
        second.derive_subkey("token-hash")
    );
}

#[test]
fn subkey_survives_rotate() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    let before = keyring.derive_subkey("audit-hmac");

    keyring.rotate().expect("rotate");

    assert_eq!(keyring.derive_subkey("audit-hmac"), before);
}

#[test]
fn subkey_survives_wrap_and_unwrap() {
    let keyring = Keyring::generate().expect("generate keyring");
    let before = keyring.derive_subkey("token-hash");
    let root = RootKey::generate().expect("root");

    let restored = Keyring::unwrap(&keyring.wrap(&root).expect("wrap"), &root).expect("unwrap");

    assert_eq!(restored.derive_subkey("token-hash"), before);
}

#[test]
fn subkey_is_not_a_data_key() {
    let keyring = Keyring::generate().expect("generate keyring");
    let subkey = keyring.derive_subkey("token-hash");
    let sealed = keyring.encrypt(b"value", b"").expect("encrypt");

    // A subkey must not open data sealed under the data key. With an empty context the
    // associated data is just the 5-byte header.
    let nonce: [u8; 12] = sealed[5..17].try_into().expect("12-byte nonce");
    let result = keyward_crypto::aes_256_gcm_open(&subkey, &nonce, &sealed[..5], &sealed[17..]);

    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}
