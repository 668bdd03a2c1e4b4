//! Wrapping the keyring under a root key and opening it again.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_crypto::{CryptoError, KdfParams, Keyring, RootKey, WrappedKeyring};

use crate::fast_pbkdf2;

#[test]
fn passphrase_wrap_round_trips() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    let old = keyring.encrypt(b"old secret", b"ctx").expect("encrypt");
    keyring.rotate().expect("rotate");
    let new = keyring.encrypt(b"new secret", b"ctx").expect("encrypt");

    let kdf = fast_pbkdf2();
    let root = RootKey::from_passphrase(b"correct horse", &kdf).expect("derive");
    let json = keyring.wrap(&root).expect("wrap").to_json();

    let parsed = WrappedKeyring::from_json(&json).expect("parse");
    assert_eq!(parsed.kdf, kdf);
    let again = RootKey::from_passphrase(b"correct horse", &parsed.kdf).expect("derive");
    let restored = Keyring::unwrap(&parsed, &again).expect("unwrap");

    assert_eq!(restored.active_key_id(), 2);
    assert_eq!(restored.key_ids(), vec![1, 2]);
    assert_eq!(
        restored.decrypt(&old, b"ctx").expect("old").as_slice(),
        b"old secret"
    );
    assert_eq!(
        restored.decrypt(&new, b"ctx").expect("new").as_slice(),
        b"new secret"
    );
}

#[test]
fn raw_key_wrap_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed = keyring.encrypt(b"value", b"ctx").expect("encrypt");

    let root = RootKey::generate().expect("root key");
    let key_file = *root.expose_bytes();
    let wrapped = keyring.wrap(&root).expect("wrap");
    assert_eq!(wrapped.kdf, KdfParams::Raw);

    let from_file = RootKey::from_bytes(&key_file).expect("raw key");
    let restored = Keyring::unwrap(&wrapped, &from_file).expect("unwrap");

    assert_eq!(
        restored
            .decrypt(&sealed, b"ctx")
            .expect("decrypt")
            .as_slice(),
        b"value"
    );
}

#[test]
fn default_pbkdf2_wrap_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let kdf = KdfParams::new_pbkdf2().expect("kdf params");

    let root = RootKey::from_passphrase(b"a long passphrase", &kdf).expect("derive");
    let wrapped = keyring.wrap(&root).expect("wrap");

    let KdfParams::Pbkdf2HmacSha256 { iterations, .. } = &wrapped.kdf else {
        panic!("expected pbkdf2 parameters, got {:?}", wrapped.kdf);
    };
    assert_eq!(*iterations, KdfParams::PBKDF2_ITERATIONS);

    let again = RootKey::from_passphrase(b"a long passphrase", &wrapped.kdf).expect("derive");
    let restored = Keyring::unwrap(&wrapped, &again).expect("unwrap");
    assert_eq!(restored.key_ids(), keyring.key_ids());
}

#[test]
fn wrong_passphrase_is_wrong_root_key() {
    let keyring = Keyring::generate().expect("generate keyring");
    let kdf = fast_pbkdf2();
    let root = RootKey::from_passphrase(b"correct horse", &kdf).expect("derive");
    let wrapped = keyring.wrap(&root).expect("wrap");

    let wrong = RootKey::from_passphrase(b"battery staple", &kdf).expect("derive");
    let result = Keyring::unwrap(&wrapped, &wrong);

    assert!(matches!(result, Err(CryptoError::WrongRootKey)));
}

#[test]
fn wrong_key_file_is_wrong_root_key() {
    let keyring = Keyring::generate().expect("generate keyring");
    let wrapped = keyring
        .wrap(&RootKey::generate().expect("root"))
        .expect("wrap");

    let result = Keyring::unwrap(&wrapped, &RootKey::generate().expect("root"));

    assert!(matches!(result, Err(CryptoError::WrongRootKey)));
}

#[test]
fn edited_clear_fields_fail_to_open() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    keyring.rotate().expect("rotate");
    let root = RootKey::from_passphrase(b"pw", &fast_pbkdf2()).expect("derive");
    let wrapped = keyring.wrap(&root).expect("wrap");

    let mut other_active = wrapped.clone();
    other_active.active = 1;

    let mut other_kdf = wrapped.clone();
    if let KdfParams::Pbkdf2HmacSha256 { iterations, .. } = &mut other_kdf.kdf {
        *iterations += 1;
    }

    for (field, edited) in [("active", other_active), ("kdf", other_kdf)] {
        let result = Keyring::unwrap(&edited, &root);
        assert!(
            matches!(result, Err(CryptoError::WrongRootKey)),
            "editing {field} must make the keyring fail to open"
        );
    }
}

#[test]
fn modified_wrapped_ciphertext_fails_to_open() {
    let keyring = Keyring::generate().expect("generate keyring");
    let root = RootKey::generate().expect("root");
    let mut wrapped = keyring.wrap(&root).expect("wrap");

    let mut sealed = BASE64.decode(&wrapped.ciphertext).expect("base64");
    sealed[20] ^= 0x01;
    wrapped.ciphertext = BASE64.encode(sealed);

    let result = Keyring::unwrap(&wrapped, &root);
    assert!(matches!(result, Err(CryptoError::WrongRootKey)));
}

#[test]
fn malformed_wrapped_keyring_is_invalid() {
    let keyring = Keyring::generate().expect("generate keyring");
    let root = RootKey::generate().expect("root");
    let wrapped = keyring.wrap(&root).expect("wrap");

    let mut not_base64 = wrapped.clone();
    not_base64.ciphertext = "%%%".to_owned();
    let mut too_short = wrapped.clone();
    too_short.ciphertext = BASE64.encode([0u8; 27]);
    let mut future_format = wrapped.clone();
    future_format.format = 2;

    for (case, edited) in [
        ("not base64", not_base64),
        ("too short", too_short),
        ("future format", future_format),
    ] {
        let result = Keyring::unwrap(&edited, &root);
        assert!(
            matches!(result, Err(CryptoError::InvalidKeyring(_))),
            "{case} must be an invalid keyring"
        );
    }
}

#[test]
fn malformed_json_is_invalid_keyring() {
    let keyring = Keyring::generate().expect("generate keyring");
    let json = keyring
        .wrap(&RootKey::generate().expect("root"))
        .expect("wrap")
        .to_json();

    let cases = [
        ("not json", "keyring".to_owned()),
        ("unknown kdf", json.replace("\"raw\"", "\"scrypt\"")),
        (
            "future format",
            json.replace("\"format\": 1", "\"format\": 9"),
        ),
        ("missing field", json.replace("\"active\"", "\"inactive\"")),
    ];
    for (case, text) in cases {
        let result = WrappedKeyring::from_json(&text);
        assert!(
            matches!(result, Err(CryptoError::InvalidKeyring(_))),
            "{case} must be an invalid keyring"
        );
    }
}

#[test]
fn json_round_trip_preserves_fields() {
    let keyring = Keyring::generate().expect("generate keyring");
    let root = RootKey::from_passphrase(b"pw", &fast_pbkdf2()).expect("derive");
    let wrapped = keyring.wrap(&root).expect("wrap");

    let parsed = WrappedKeyring::from_json(&wrapped.to_json()).expect("parse");

    assert_eq!(parsed, wrapped);
    assert_eq!(parsed.format, 1);
    assert!(
        wrapped
            .to_json()
            .contains("\"algorithm\": \"pbkdf2-hmac-sha256\"")
    );
}

#[test]
fn counters_survive_wrap_and_unwrap() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    for _ in 0..3 {
        keyring.encrypt(b"v", b"").expect("encrypt");
    }
    keyring.rotate().expect("rotate");
    keyring.encrypt(b"v", b"").expect("encrypt");

    let root = RootKey::generate().expect("root");
    let restored = Keyring::unwrap(&keyring.wrap(&root).expect("wrap"), &root).expect("unwrap");

    assert_eq!(restored.encryptions(1), Some(3));
    assert_eq!(restored.encryptions(2), Some(1));
    assert_eq!(restored.created_at(1), keyring.created_at(1));
    assert_eq!(restored.created_at(2), keyring.created_at(2));
}

#[test]
fn rewrap_under_new_root_key() {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed = keyring.encrypt(b"value", b"ctx").expect("encrypt");
    let old_root = RootKey::from_passphrase(b"old", &fast_pbkdf2()).expect("derive");
    let opened =
        Keyring::unwrap(&keyring.wrap(&old_root).expect("wrap"), &old_root).expect("unwrap");

    let new_root = RootKey::generate().expect("root");
    let rewrapped = opened.wrap(&new_root).expect("rewrap");

    assert!(matches!(
        Keyring::unwrap(&rewrapped, &old_root),
        Err(CryptoError::WrongRootKey)
    ));
    let restored = Keyring::unwrap(&rewrapped, &new_root).expect("unwrap");
    assert_eq!(
        restored
            .decrypt(&sealed, b"ctx")
            .expect("decrypt")
            .as_slice(),
        b"value"
    );
}
