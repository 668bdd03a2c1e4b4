//! Ciphertext format 2: key and context checks that tell the decryption failures apart.

use keyward_crypto::{CIPHERTEXT_V2_OVERHEAD, CryptoError, Keyring};

const CONTEXT: &[u8] = b"users/email/7";

fn sealed_hello() -> (Keyring, Vec<u8>) {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed = keyring
        .encrypt_with_checks(b"hello world", CONTEXT)
        .expect("encrypt");
    (keyring, sealed)
}

#[test]
fn checked_encrypt_round_trips() {
    let (keyring, sealed) = sealed_hello();

    let opened = keyring.decrypt(&sealed, CONTEXT).expect("decrypt");

    assert_eq!(opened.as_slice(), b"hello world");
}

#[test]
fn checked_layout_matches_format() {
    let (keyring, sealed) = sealed_hello();

    assert_eq!(sealed.len(), CIPHERTEXT_V2_OVERHEAD + b"hello world".len());
    assert_eq!(CIPHERTEXT_V2_OVERHEAD, 41);
    assert_eq!(sealed[0], 0x02);
    assert_eq!(sealed[1..5], keyring.active_key_id().to_be_bytes());
    assert_eq!(Keyring::key_id_of(&sealed).expect("header"), 1);
}

#[test]
fn key_check_is_stable_per_key() {
    let keyring = Keyring::generate().expect("generate keyring");

    let first = keyring.encrypt_with_checks(b"a", b"one").expect("encrypt");
    let second = keyring.encrypt_with_checks(b"b", b"two").expect("encrypt");

    assert_eq!(first[5..9], second[5..9], "same key, same key check");
    assert_ne!(
        first[9..13],
        second[9..13],
        "other context, other context check"
    );
}

#[test]
fn other_keyring_is_wrong_key() {
    let (_, sealed) = sealed_hello();
    let other = Keyring::generate().expect("generate keyring");

    // Both keyrings have a key with id 1, but not the same key.
    let result = other.decrypt(&sealed, CONTEXT);

    assert!(
        matches!(result, Err(CryptoError::WrongKey(1))),
        "{result:?}"
    );
}

#[test]
fn other_context_is_wrong_context() {
    let (keyring, sealed) = sealed_hello();

    for context in [&b"users/email/8"[..], b"", b"users/email/7\0"] {
        let result = keyring.decrypt(&sealed, context);
        assert!(
            matches!(result, Err(CryptoError::WrongContext)),
            "context {context:?} gave {result:?}"
        );
    }
}

#[test]
fn modified_nonce_body_or_tag_is_modified() {
    let (keyring, sealed) = sealed_hello();
    let regions = [
        ("nonce", 13),
        ("nonce end", 24),
        ("body", 25),
        ("tag end", sealed.len() - 1),
    ];

    for (region, index) in regions {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x01;

        let result = keyring.decrypt(&tampered, CONTEXT);
        assert!(
            matches!(result, Err(CryptoError::Modified)),
            "flipping a bit in the {region} (byte {index}) gave {result:?}"
        );
    }
}

#[test]
fn modified_checks_are_reported_as_checks() {
    let (keyring, sealed) = sealed_hello();

    let mut key_check = sealed.clone();
    key_check[5] ^= 0x01;
    let mut context_check = sealed.clone();
    context_check[12] ^= 0x01;

    assert!(matches!(
        keyring.decrypt(&key_check, CONTEXT),
        Err(CryptoError::WrongKey(1))
    ));
    assert!(matches!(
        keyring.decrypt(&context_check, CONTEXT),
        Err(CryptoError::WrongContext)
    ));
}

#[test]
fn checked_key_id_swap_is_wrong_key() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    let sealed_under_1 = keyring.encrypt_with_checks(b"v", CONTEXT).expect("encrypt");
    keyring.rotate().expect("rotate");

    let mut relabelled = sealed_under_1;
    relabelled[1..5].copy_from_slice(&2u32.to_be_bytes());

    let result = keyring.decrypt(&relabelled, CONTEXT);
    assert!(
        matches!(result, Err(CryptoError::WrongKey(2))),
        "{result:?}"
    );
}

#[test]
fn checked_unknown_key_id_is_reported() {
    let mut rotated = Keyring::generate().expect("generate keyring");
    rotated.rotate().expect("rotate");
    let sealed = rotated.encrypt_with_checks(b"v", CONTEXT).expect("encrypt");

    let fresh = Keyring::generate().expect("generate keyring");

    assert!(matches!(
        fresh.decrypt(&sealed, CONTEXT),
        Err(CryptoError::UnknownKeyId(2))
    ));
}

#[test]
fn short_checked_input_is_truncated() {
    let (keyring, sealed) = sealed_hello();

    for len in [1, 5, 13, 25, CIPHERTEXT_V2_OVERHEAD - 1] {
        let result = keyring.decrypt(&sealed[..len], CONTEXT);
        assert!(
            matches!(result, Err(CryptoError::Truncated)),
            "a {len}-byte input gave {result:?}"
        );
    }
}

#[test]
fn both_formats_decrypt_side_by_side() {
    let keyring = Keyring::generate().expect("generate keyring");

    let v1 = keyring.encrypt(b"one", CONTEXT).expect("encrypt");
    let v2 = keyring
        .encrypt_with_checks(b"two", CONTEXT)
        .expect("encrypt");

    assert_eq!(
        keyring.decrypt(&v1, CONTEXT).expect("v1").as_slice(),
        b"one"
    );
    assert_eq!(
        keyring.decrypt(&v2, CONTEXT).expect("v2").as_slice(),
        b"two"
    );
    assert_eq!(keyring.encryptions(1), Some(2), "both formats count");
}

#[test]
fn new_error_messages_are_lowercase_single_lines() {
    let errors = [
        CryptoError::WrongKey(3),
        CryptoError::WrongContext,
        CryptoError::Modified,
        CryptoError::SerializationFailed { type_name: "T" },
        CryptoError::DeserializationFailed { type_name: "T" },
        CryptoError::InvalidIndexName("a/b".to_owned()),
    ];

    for error in errors {
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with(|c: char| !c.is_uppercase()),
            "{message}"
        );
    }
}
