//! The ciphertext format: round trips, tampering, truncation and context binding.

use keyward_crypto::{CIPHERTEXT_OVERHEAD, CryptoError, Keyring};

const CONTEXT: &[u8] = b"team/app/openai#1";

fn sealed_hello() -> (Keyring, Vec<u8>) {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed = keyring.encrypt(b"hello world", CONTEXT).expect("encrypt");
    (keyring, sealed)
}

#[test]
fn encrypt_then_decrypt_round_trips() {
    let (keyring, sealed) = sealed_hello();

    let opened = keyring.decrypt(&sealed, CONTEXT).expect("decrypt");

    assert_eq!(opened.as_slice(), b"hello world");
}

#[test]
fn empty_plaintext_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed = keyring.encrypt(b"", b"").expect("encrypt");
    assert_eq!(sealed.len(), CIPHERTEXT_OVERHEAD);

    let opened = keyring.decrypt(&sealed, b"").expect("decrypt");
    assert!(opened.is_empty());
}

#[test]
fn ciphertext_layout_matches_format() {
    let (keyring, sealed) = sealed_hello();

    assert_eq!(sealed.len(), CIPHERTEXT_OVERHEAD + b"hello world".len());
    assert_eq!(sealed[0], 0x01);
    assert_eq!(sealed[1..5], keyring.active_key_id().to_be_bytes());
}

#[test]
fn same_plaintext_encrypts_differently() {
    let keyring = Keyring::generate().expect("generate keyring");

    let first = keyring.encrypt(b"same", CONTEXT).expect("encrypt");
    let second = keyring.encrypt(b"same", CONTEXT).expect("encrypt");

    assert_ne!(first[5..17], second[5..17], "nonces must differ");
    assert_ne!(first, second);
}

#[test]
fn other_context_fails_decryption() {
    let (keyring, sealed) = sealed_hello();

    let result = keyring.decrypt(&sealed, b"team/app/openai#2");

    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}

#[test]
fn empty_context_differs_from_any_context() {
    let (keyring, sealed) = sealed_hello();

    let result = keyring.decrypt(&sealed, b"");

    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}

#[test]
fn modified_format_byte_is_unsupported() {
    let (keyring, mut sealed) = sealed_hello();
    sealed[0] = 0x03;

    let result = keyring.decrypt(&sealed, CONTEXT);

    assert!(matches!(result, Err(CryptoError::UnsupportedFormat(0x03))));
}

#[test]
fn format_one_relabelled_as_two_fails() {
    let (keyring, mut sealed) = sealed_hello();
    sealed[0] = 0x02;

    let result = keyring.decrypt(&sealed, CONTEXT);

    // The nonce bytes now stand where the checks belong, so a check fails first.
    assert!(
        matches!(
            result,
            Err(CryptoError::WrongKey(1) | CryptoError::WrongContext | CryptoError::Modified)
        ),
        "{result:?}"
    );
}

#[test]
fn modified_key_id_is_unknown() {
    let (keyring, mut sealed) = sealed_hello();
    sealed[4] ^= 0x40;

    let result = keyring.decrypt(&sealed, CONTEXT);

    assert!(matches!(result, Err(CryptoError::UnknownKeyId(0x41))));
}

#[test]
fn key_id_swapped_to_other_key_fails() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    let sealed_under_1 = keyring.encrypt(b"hello", CONTEXT).expect("encrypt");
    keyring.rotate().expect("rotate");

    // Point the header at key 2, which exists: the authenticated header must catch it.
    let mut relabelled = sealed_under_1.clone();
    relabelled[1..5].copy_from_slice(&2u32.to_be_bytes());

    let result = keyring.decrypt(&relabelled, CONTEXT);
    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}

#[test]
fn modified_nonce_body_or_tag_fails() {
    let (keyring, sealed) = sealed_hello();
    let regions = [
        ("nonce", 5),
        ("nonce end", 16),
        ("body", 17),
        ("body end", sealed.len() - 17),
        ("tag", sealed.len() - 16),
        ("tag end", sealed.len() - 1),
    ];

    for (region, index) in regions {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x01;

        let result = keyring.decrypt(&tampered, CONTEXT);
        assert!(
            matches!(result, Err(CryptoError::DecryptionFailed)),
            "flipping a bit in the {region} (byte {index}) must fail"
        );
    }
}

#[test]
fn appended_byte_fails_decryption() {
    let (keyring, mut sealed) = sealed_hello();
    sealed.push(0);

    let result = keyring.decrypt(&sealed, CONTEXT);

    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}

#[test]
fn short_input_is_truncated() {
    let (keyring, sealed) = sealed_hello();

    for len in [0, 1, 5, 17, CIPHERTEXT_OVERHEAD - 1] {
        let result = keyring.decrypt(&sealed[..len], CONTEXT);
        assert!(
            matches!(result, Err(CryptoError::Truncated)),
            "a {len}-byte input must be reported as truncated"
        );
    }
}

#[test]
fn cut_body_fails_decryption() {
    let (keyring, sealed) = sealed_hello();

    let result = keyring.decrypt(&sealed[..sealed.len() - 1], CONTEXT);

    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}

#[test]
fn other_keyring_fails_decryption() {
    let (_, sealed) = sealed_hello();
    let other = Keyring::generate().expect("generate keyring");

    // Both keyrings start with key id 1, so the id matches but the key does not.
    let result = other.decrypt(&sealed, CONTEXT);

    assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
}

#[test]
fn key_id_of_reads_header() {
    let (keyring, sealed) = sealed_hello();

    assert_eq!(Keyring::key_id_of(&sealed).expect("header"), 1);
    assert_eq!(keyring.active_key_id(), 1);
}

#[test]
fn key_id_of_rejects_bad_input() {
    assert!(matches!(
        Keyring::key_id_of(&[]),
        Err(CryptoError::Truncated)
    ));
    assert!(matches!(
        Keyring::key_id_of(&[0x09; 40]),
        Err(CryptoError::UnsupportedFormat(0x09))
    ));
    assert!(matches!(
        Keyring::key_id_of(&[0x01, 0, 0, 0, 1]),
        Err(CryptoError::Truncated)
    ));
}

#[test]
fn encryption_counter_increases() {
    let keyring = Keyring::generate().expect("generate keyring");
    assert_eq!(keyring.encryptions(1), Some(0));

    for expected in 1..=3 {
        keyring.encrypt(b"value", CONTEXT).expect("encrypt");
        assert_eq!(keyring.encryptions(1), Some(expected));
    }

    let sealed = keyring.encrypt(b"value", CONTEXT).expect("encrypt");
    keyring.decrypt(&sealed, CONTEXT).expect("decrypt");
    assert_eq!(keyring.encryptions(1), Some(4), "decryption does not count");
    assert_eq!(keyring.encryptions(2), None);
}

#[test]
fn concurrent_encryptions_are_all_counted() {
    let keyring = Keyring::generate().expect("generate keyring");

    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..250 {
                    keyring.encrypt(b"value", CONTEXT).expect("encrypt");
                }
            });
        }
    });

    assert_eq!(keyring.encryptions(1), Some(1000));
}

#[test]
fn error_messages_are_lowercase_single_lines() {
    let errors = [
        CryptoError::UnknownKeyId(7),
        CryptoError::Truncated,
        CryptoError::UnsupportedFormat(2),
        CryptoError::DecryptionFailed,
        CryptoError::WrongRootKey,
        CryptoError::InvalidKeyring("bad".to_owned()),
        CryptoError::InvalidKeyLength(3),
        CryptoError::Random,
        CryptoError::KeyringExhausted,
    ];

    for error in errors {
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with(|c: char| !c.is_uppercase()),
            "{message}"
        );
    }
    assert_eq!(
        CryptoError::UnknownKeyId(7).to_string(),
        "unknown data key id 7: the keyring does not hold it"
    );
}
