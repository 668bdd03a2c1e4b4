//! `Encrypted<T>`: typed field values bound to table, column and row.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_crypto::{CryptoError, Encrypted, EncryptionContext, Keyring};
use serde::{Deserialize, Serialize};

fn email_context(row: u64) -> EncryptionContext {
    EncryptionContext::new("users", "email", row.to_string())
}

fn sealed_email() -> (Keyring, Encrypted<String>) {
    let keyring = Keyring::generate().expect("generate keyring");
    let sealed =
        Encrypted::seal(&keyring, &"ada@example.com".to_owned(), &email_context(7)).expect("seal");
    (keyring, sealed)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    postcode: String,
    floors: Vec<u8>,
}

#[test]
fn string_field_round_trips() {
    let (keyring, sealed) = sealed_email();

    let opened = sealed.open(&keyring, &email_context(7)).expect("open");

    assert_eq!(opened, "ada@example.com");
    assert_eq!(sealed.key_id(), 1);
}

#[test]
fn struct_field_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let context = EncryptionContext::new("users", "address", "7");
    let address = Address {
        street: "1 Analytical Row".to_owned(),
        postcode: "N1".to_owned(),
        floors: vec![0, 3],
    };

    let sealed = Encrypted::seal(&keyring, &address, &context).expect("seal");

    assert_eq!(sealed.open(&keyring, &context).expect("open"), address);
}

#[test]
fn sealed_bytes_are_format_two() {
    let (keyring, sealed) = sealed_email();
    let json_len = "\"ada@example.com\"".len();

    assert_eq!(sealed.as_bytes()[0], 0x02);
    assert_eq!(sealed.as_bytes().len(), json_len + 41);
    assert!(!sealed.needs_rewrap(&keyring));
}

#[test]
fn value_moved_elsewhere_is_wrong_context() {
    let (keyring, sealed) = sealed_email();
    let elsewhere = [
        ("other row", EncryptionContext::new("users", "email", "8")),
        (
            "other column",
            EncryptionContext::new("users", "backup_email", "7"),
        ),
        (
            "other table",
            EncryptionContext::new("admins", "email", "7"),
        ),
    ];

    for (case, context) in elsewhere {
        let result = sealed.open(&keyring, &context);
        assert!(
            matches!(result, Err(CryptoError::WrongContext)),
            "{case} gave {result:?}"
        );
    }
}

#[test]
fn other_keyring_is_wrong_key() {
    let (_, sealed) = sealed_email();
    let other = Keyring::generate().expect("generate keyring");

    let result = sealed.open(&other, &email_context(7));

    assert!(
        matches!(result, Err(CryptoError::WrongKey(1))),
        "{result:?}"
    );
}

#[test]
fn modified_body_is_modified() {
    let (keyring, sealed) = sealed_email();
    let mut bytes = sealed.into_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    let tampered = Encrypted::<String>::from_bytes(bytes).expect("header intact");

    let result = tampered.open(&keyring, &email_context(7));

    assert!(matches!(result, Err(CryptoError::Modified)), "{result:?}");
}

#[test]
fn from_bytes_checks_header() {
    assert!(matches!(
        Encrypted::<String>::from_bytes(Vec::new()),
        Err(CryptoError::Truncated)
    ));
    assert!(matches!(
        Encrypted::<String>::from_bytes(vec![0x07; 64]),
        Err(CryptoError::UnsupportedFormat(0x07))
    ));
    assert!(matches!(
        Encrypted::<String>::from_bytes(vec![0x02; 40]),
        Err(CryptoError::Truncated)
    ));
}

#[test]
fn from_bytes_round_trips_stored_value() {
    let (keyring, sealed) = sealed_email();

    let restored = Encrypted::<String>::from_bytes(sealed.as_bytes().to_vec()).expect("header");

    assert_eq!(restored, sealed);
    assert_eq!(
        restored.open(&keyring, &email_context(7)).expect("open"),
        "ada@example.com"
    );
}

#[test]
fn wrong_type_is_deserialization_failure() {
    let (keyring, sealed) = sealed_email();
    let as_number = Encrypted::<u64>::from_bytes(sealed.into_bytes()).expect("header");

    let error = as_number
        .open(&keyring, &email_context(7))
        .expect_err("a string is not a u64");

    assert!(matches!(
        error,
        CryptoError::DeserializationFailed { type_name: "u64" }
    ));
    assert!(!error.to_string().contains("ada@"), "{error}");
    assert!(!format!("{error:?}").contains("ada@"), "{error:?}");
}

#[test]
fn non_string_map_keys_fail_to_seal() {
    let keyring = Keyring::generate().expect("generate keyring");
    let mut map = BTreeMap::new();
    map.insert(vec![1u8, 2], "secret-value".to_owned());

    let error = Encrypted::seal(&keyring, &map, &email_context(1)).expect_err("rejected");

    assert!(matches!(error, CryptoError::SerializationFailed { .. }));
    assert!(!error.to_string().contains("secret-value"), "{error}");
    assert_eq!(keyring.encryptions(1), Some(0), "nothing was encrypted");
}

#[test]
fn rewrap_moves_value_to_active_key() {
    let (mut keyring, sealed) = sealed_email();
    keyring.rotate().expect("rotate");
    assert!(sealed.needs_rewrap(&keyring));

    let rewrapped = sealed.rewrap(&keyring, &email_context(7)).expect("rewrap");

    assert_eq!(rewrapped.key_id(), 2);
    assert!(!rewrapped.needs_rewrap(&keyring));
    assert_eq!(
        rewrapped.open(&keyring, &email_context(7)).expect("open"),
        "ada@example.com"
    );
    assert_eq!(
        sealed
            .open(&keyring, &email_context(7))
            .expect("old value still opens"),
        "ada@example.com"
    );
}

#[test]
fn rewrap_checks_context() {
    let (mut keyring, sealed) = sealed_email();
    keyring.rotate().expect("rotate");

    let result = sealed.rewrap(&keyring, &email_context(8));

    assert!(
        matches!(result, Err(CryptoError::WrongContext)),
        "{result:?}"
    );
}

#[test]
fn format_one_value_opens_and_needs_rewrap() {
    let keyring = Keyring::generate().expect("generate keyring");
    let context = email_context(7);
    let v1 = keyring
        .encrypt(b"\"ada@example.com\"", &context.associated_data())
        .expect("encrypt");

    let field = Encrypted::<String>::from_bytes(v1).expect("header");

    assert_eq!(
        field.open(&keyring, &context).expect("open"),
        "ada@example.com"
    );
    assert!(field.needs_rewrap(&keyring), "format 1 moves to format 2");
    let rewrapped = field.rewrap(&keyring, &context).expect("rewrap");
    assert_eq!(rewrapped.as_bytes()[0], 0x02);
}

#[test]
fn serde_json_uses_base64_string() {
    let (keyring, sealed) = sealed_email();

    let json = serde_json::to_string(&sealed).expect("serialize");

    assert_eq!(json, format!("\"{}\"", BASE64.encode(sealed.as_bytes())));
    let parsed: Encrypted<String> = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(parsed, sealed);
    assert_eq!(
        parsed.open(&keyring, &email_context(7)).expect("open"),
        "ada@example.com"
    );
}

#[test]
fn serde_field_inside_struct_round_trips() {
    #[derive(Serialize, Deserialize)]
    struct Config {
        name: String,
        api_key: Encrypted<String>,
    }

    let keyring = Keyring::generate().expect("generate keyring");
    let context = EncryptionContext::new("config", "api_key", "openai");
    let config = Config {
        name: "openai".to_owned(),
        api_key: Encrypted::seal(&keyring, &"sk-test-123".to_owned(), &context).expect("seal"),
    };

    let json = serde_json::to_string(&config).expect("serialize");
    let parsed: Config = serde_json::from_str(&json).expect("deserialize");

    assert!(!json.contains("sk-test"), "{json}");
    assert_eq!(parsed.name, "openai");
    assert_eq!(
        parsed.api_key.open(&keyring, &context).expect("open"),
        "sk-test-123"
    );
}

#[test]
fn serde_rejects_bad_strings() {
    let cases = [
        ("not base64", "\"%%%\""),
        ("too short", "\"AgAAAAE=\""),
        (
            "unknown format",
            &format!("\"{}\"", BASE64.encode([9u8; 64])),
        ),
        ("a number", "42"),
    ];

    for (case, json) in cases {
        let result = serde_json::from_str::<Encrypted<String>>(json);
        assert!(result.is_err(), "{case} must be rejected");
    }
}

#[test]
fn debug_hides_ciphertext_and_plaintext() {
    let (_, sealed) = sealed_email();

    let debug = format!("{sealed:?}");

    assert_eq!(
        debug,
        format!(
            "Encrypted {{ key_id: 1, len: {} }}",
            sealed.as_bytes().len()
        )
    );
    assert!(!debug.contains("ada"));
}

#[test]
fn each_seal_is_different() {
    let keyring = Keyring::generate().expect("generate keyring");
    let value = "same".to_owned();

    let first = Encrypted::seal(&keyring, &value, &email_context(1)).expect("seal");
    let second = Encrypted::seal(&keyring, &value, &email_context(1)).expect("seal");

    assert_ne!(first, second);
}

#[test]
fn encrypted_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Encrypted<std::rc::Rc<String>>>();
}
