//! Debug output and error messages never contain key material.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use keyward_crypto::{KdfParams, Keyring, RootKey};

/// Renderings of `bytes` that a leak would most likely take.
fn encodings(bytes: &[u8]) -> Vec<String> {
    vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        BASE64.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        format!("{bytes:?}"),
    ]
}

fn assert_absent(text: &str, secret: &[u8]) {
    for encoding in encodings(secret) {
        assert!(
            !text.contains(&encoding),
            "output contains key bytes as {encoding}"
        );
    }
}

#[test]
fn root_key_debug_is_redacted() {
    let root = RootKey::generate().expect("root");

    let debug = format!("{root:?}");
    let pretty = format!("{root:#?}");

    assert_eq!(debug, "RootKey([REDACTED])");
    assert_absent(&debug, root.expose_bytes());
    assert_absent(&pretty, root.expose_bytes());
}

#[test]
fn keyring_debug_shows_only_ids() {
    let mut keyring = Keyring::generate().expect("generate keyring");
    keyring.rotate().expect("rotate");

    let debug = format!("{keyring:?}");

    assert!(debug.contains("active: 2"), "{debug}");
    assert!(debug.contains("[1, 2]"), "{debug}");
    // Data keys are not reachable from outside; a unit test beside `Keyring` checks them.
    assert_absent(&debug, &keyring.derive_subkey("audit-hmac"));
    assert!(debug.len() < 80, "unexpectedly long Debug output: {debug}");
}

#[test]
fn wrapped_json_contains_no_clear_key() {
    let keyring = Keyring::generate().expect("generate keyring");
    let root = RootKey::from_passphrase(b"pw", &crate::fast_pbkdf2()).expect("derive");

    let json = keyring.wrap(&root).expect("wrap").to_json();

    assert_absent(&json, root.expose_bytes());
    assert!(!json.contains("pw\""), "{json}");
}

#[test]
fn kdf_errors_do_not_echo_passphrase() {
    let kdf = KdfParams::Pbkdf2HmacSha256 {
        iterations: 0,
        salt: BASE64.encode([1u8; 16]),
    };

    let error = RootKey::from_passphrase(b"hunter2-passphrase", &kdf).expect_err("rejected");

    assert!(!error.to_string().contains("hunter2"));
    assert!(!format!("{error:?}").contains("hunter2"));
}
