//! Data-key rotation: old ciphertexts keep decrypting, new ones use the new key.

use keyward_crypto::{CryptoError, Keyring};

#[test]
fn generated_keyring_has_key_one_active() {
    let keyring = Keyring::generate().expect("generate keyring");

    assert_eq!(keyring.active_key_id(), 1);
    assert_eq!(keyring.key_ids(), vec![1]);
}

#[test]
fn rotate_adds_new_active_key() {
    let mut keyring = Keyring::generate().expect("generate keyring");

    assert_eq!(keyring.rotate().expect("rotate"), 2);
    assert_eq!(keyring.rotate().expect("rotate"), 3);

    assert_eq!(keyring.active_key_id(), 3);
    assert_eq!(keyring.key_ids(), vec![1, 2, 3]);
}

#[test]
fn old_ciphertexts_decrypt_after_rotate() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    let old = keyring.encrypt(b"before", b"ctx").expect("encrypt");

    keyring.rotate().expect("rotate");
    let new = keyring.encrypt(b"after", b"ctx").expect("encrypt");

    assert_eq!(Keyring::key_id_of(&old).expect("header"), 1);
    assert_eq!(Keyring::key_id_of(&new).expect("header"), 2);
    assert_eq!(
        keyring.decrypt(&old, b"ctx").expect("old").as_slice(),
        b"before"
    );
    assert_eq!(
        keyring.decrypt(&new, b"ctx").expect("new").as_slice(),
        b"after"
    );
}

#[test]
fn rotation_counts_per_key() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    keyring.encrypt(b"a", b"").expect("encrypt");
    keyring.encrypt(b"b", b"").expect("encrypt");

    keyring.rotate().expect("rotate");
    keyring.encrypt(b"c", b"").expect("encrypt");

    assert_eq!(keyring.encryptions(1), Some(2));
    assert_eq!(keyring.encryptions(2), Some(1));
}

#[test]
fn new_key_ciphertext_unknown_to_old_keyring() {
    let old_keyring = Keyring::generate().expect("generate keyring");
    let wrapped_root = keyward_crypto::RootKey::generate().expect("root key");
    let wrapped = old_keyring.wrap(&wrapped_root).expect("wrap");

    let mut rotated = Keyring::unwrap(&wrapped, &wrapped_root).expect("unwrap");
    rotated.rotate().expect("rotate");
    let sealed = rotated.encrypt(b"new", b"").expect("encrypt");

    let result = old_keyring.decrypt(&sealed, b"");
    assert!(matches!(result, Err(CryptoError::UnknownKeyId(2))));
}
