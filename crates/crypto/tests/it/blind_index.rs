//! Blind indexes: stable lookups for encrypted columns.

use keyward_crypto::{BlindIndex, CryptoError, Keyring, RootKey, Zeroizing};

fn email_index(keyring: &Keyring) -> BlindIndex {
    BlindIndex::for_column(keyring, "users", "email").expect("valid names")
}

#[test]
fn same_value_gives_same_index() {
    let keyring = Keyring::generate().expect("generate keyring");
    let index = email_index(&keyring);

    assert_eq!(
        index.compute(b"ada@example.com"),
        index.compute(b"ada@example.com")
    );
    assert_ne!(
        index.compute(b"ada@example.com"),
        index.compute(b"bob@example.com")
    );
}

#[test]
fn index_survives_data_key_rotation() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    let before = email_index(&keyring).compute(b"ada@example.com");

    keyring.rotate().expect("rotate");

    assert_eq!(email_index(&keyring).compute(b"ada@example.com"), before);
}

#[test]
fn index_survives_wrap_and_unwrap() {
    let keyring = Keyring::generate().expect("generate keyring");
    let before = email_index(&keyring).compute(b"ada@example.com");
    let root = RootKey::generate().expect("root");

    let restored = Keyring::unwrap(&keyring.wrap(&root).expect("wrap"), &root).expect("unwrap");

    assert_eq!(email_index(&restored).compute(b"ada@example.com"), before);
}

#[test]
fn columns_and_keyrings_have_separate_indexes() {
    let keyring = Keyring::generate().expect("generate keyring");
    let other_keyring = Keyring::generate().expect("generate keyring");
    let value = b"ada@example.com";
    let base = email_index(&keyring).compute(value);

    let other_column = BlindIndex::for_column(&keyring, "users", "backup_email").expect("names");
    let other_table = BlindIndex::for_column(&keyring, "invites", "email").expect("names");

    assert_ne!(other_column.compute(value), base);
    assert_ne!(other_table.compute(value), base);
    assert_ne!(email_index(&other_keyring).compute(value), base);
}

#[test]
fn for_column_uses_documented_subkey() {
    let keyring = Keyring::generate().expect("generate keyring");
    let key = Zeroizing::new(keyring.derive_subkey("blind-index/users/email"));

    let explicit = BlindIndex::from_key(&key);

    assert_eq!(
        explicit.compute(b"ada@example.com"),
        email_index(&keyring).compute(b"ada@example.com")
    );
}

#[test]
fn normalizer_applies_to_compute_and_matches() {
    let keyring = Keyring::generate().expect("generate keyring");
    let index = email_index(&keyring)
        .with_normalizer(|email| Zeroizing::new(email.trim_ascii().to_ascii_lowercase()));

    let stored = index.compute(b"  Ada@Example.COM ");

    assert_eq!(index.compute(b"ada@example.com"), stored);
    assert!(index.matches(b"ADA@example.com", &stored));
    assert!(!index.matches(b"ada@example.org", &stored));
    assert_ne!(email_index(&keyring).compute(b"Ada@Example.COM"), stored);
}

#[test]
fn matches_rejects_other_lengths() {
    let index = BlindIndex::from_key(&[4u8; 32]);
    let stored = index.compute(b"value");

    assert!(index.matches(b"value", &stored));
    assert!(!index.matches(b"value", &stored[..16]));
    assert!(!index.matches(b"value", &[]));
}

#[test]
fn index_does_not_contain_plaintext_or_key() {
    let key = [0x42u8; 32];
    let index = BlindIndex::from_key(&key);

    let value = index.compute(b"ada@example.com");
    let debug = format!("{index:?}");

    assert!(!value.windows(3).any(|w| w == b"ada"));
    assert!(
        !debug.contains("42, 66") && !debug.contains("4242"),
        "{debug}"
    );
}

#[test]
fn slash_in_name_is_rejected() {
    let keyring = Keyring::generate().expect("generate keyring");

    let result = BlindIndex::for_column(&keyring, "users/admins", "email");

    assert!(matches!(result, Err(CryptoError::InvalidIndexName(name)) if name == "users/admins"));
}
