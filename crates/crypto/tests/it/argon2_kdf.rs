//! Argon2id root keys: wrapping, recording the parameters, and bounds on edited files.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_crypto::{CryptoError, KdfParams, Keyring, RootKey, WrappedKeyring};

/// Small Argon2id parameters with a fresh salt, so tests stay fast in debug builds.
fn fast_argon2id() -> KdfParams {
    let salt: [u8; 16] = keyward_crypto::random_bytes().expect("system rng");
    KdfParams::Argon2id {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
        salt: BASE64.encode(salt),
    }
}

#[test]
fn argon2id_wrap_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed = keyring.encrypt(b"value", b"ctx").expect("encrypt");
    let kdf = fast_argon2id();
    let root = RootKey::from_passphrase(b"correct horse", &kdf).expect("derive");

    let json = keyring.wrap(&root).expect("wrap").to_json();
    let parsed = WrappedKeyring::from_json(&json).expect("parse");
    let again = RootKey::from_passphrase(b"correct horse", &parsed.kdf).expect("derive");
    let restored = Keyring::unwrap(&parsed, &again).expect("unwrap");

    assert_eq!(parsed.kdf, kdf);
    assert!(json.contains("\"algorithm\": \"argon2id\""), "{json}");
    assert_eq!(
        restored
            .decrypt(&sealed, b"ctx")
            .expect("decrypt")
            .as_slice(),
        b"value"
    );
}

#[test]
fn default_argon2id_wrap_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let kdf = KdfParams::new_argon2id().expect("kdf params");
    let root = RootKey::from_passphrase(b"a long passphrase", &kdf).expect("derive");

    let wrapped = keyring.wrap(&root).expect("wrap");
    let again = RootKey::from_passphrase(b"a long passphrase", &wrapped.kdf).expect("derive");

    assert_eq!(root.kdf(), &kdf);
    assert!(Keyring::unwrap(&wrapped, &again).is_ok());
}

#[test]
fn argon2id_wrong_passphrase_is_wrong_root_key() {
    let keyring = Keyring::generate().expect("generate keyring");
    let kdf = fast_argon2id();
    let wrapped = keyring
        .wrap(&RootKey::from_passphrase(b"correct horse", &kdf).expect("derive"))
        .expect("wrap");

    let wrong = RootKey::from_passphrase(b"battery staple", &kdf).expect("derive");

    assert!(matches!(
        Keyring::unwrap(&wrapped, &wrong),
        Err(CryptoError::WrongRootKey)
    ));
}

#[test]
fn edited_argon2id_params_fail_to_open() {
    let keyring = Keyring::generate().expect("generate keyring");
    let root = RootKey::from_passphrase(b"pw", &fast_argon2id()).expect("derive");
    let mut wrapped = keyring.wrap(&root).expect("wrap");

    if let KdfParams::Argon2id { memory_kib, .. } = &mut wrapped.kdf {
        *memory_kib += 8;
    }

    // The recorded parameters are authenticated, even when the same root key is offered.
    assert!(matches!(
        Keyring::unwrap(&wrapped, &root),
        Err(CryptoError::WrongRootKey)
    ));
}

#[test]
fn oversized_argon2id_params_in_json_are_rejected() {
    let keyring = Keyring::generate().expect("generate keyring");
    let root = RootKey::from_passphrase(b"pw", &fast_argon2id()).expect("derive");
    let json = keyring.wrap(&root).expect("wrap").to_json();

    let cases = [
        (
            "memory over 2 GiB",
            json.replace("\"memory_kib\": 256", "\"memory_kib\": 4194304"),
        ),
        (
            "too many passes",
            json.replace("\"iterations\": 1", "\"iterations\": 100000"),
        ),
        (
            "too many lanes",
            json.replace("\"parallelism\": 1", "\"parallelism\": 1000"),
        ),
        (
            "memory beyond u32",
            json.replace("\"memory_kib\": 256", "\"memory_kib\": 99999999999"),
        ),
    ];
    for (case, text) in cases {
        assert_ne!(text, json, "{case}: the replacement must change the JSON");
        let result = WrappedKeyring::from_json(&text);
        assert!(
            matches!(result, Err(CryptoError::InvalidKeyring(_))),
            "{case} must be rejected"
        );
    }
}

#[test]
fn oversized_argon2id_params_are_rejected_before_deriving() {
    let kdf = KdfParams::Argon2id {
        memory_kib: KdfParams::MAX_ARGON2_MEMORY_KIB,
        iterations: 1000,
        parallelism: 1,
        salt: BASE64.encode([1u8; 16]),
    };

    let started = std::time::Instant::now();
    let result = RootKey::from_passphrase(b"pw", &kdf);

    assert!(matches!(result, Err(CryptoError::InvalidKeyring(_))));
    assert!(started.elapsed().as_secs() < 1, "rejected without running");
}
