//! Fuzzes the ciphertext decoder: arbitrary bytes given to `Keyring::decrypt`,
//! `Keyring::key_id_of`, `Encrypted::from_bytes` and the wrapped-keyring JSON parser must yield
//! an error, never a panic. Bytes that are encrypted first must decrypt to themselves, and
//! only under their own associated data.

#![no_main]

use std::sync::OnceLock;

use keyward_crypto::{Encrypted, EncryptionContext, Keyring, RootKey, WrappedKeyring};
use libfuzzer_sys::fuzz_target;

/// A keyring with two data keys, so ids 1 (retired from writing) and 2 (active) both decrypt.
fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let mut keyring = Keyring::generate().expect("generate a keyring");
        keyring.rotate().expect("rotate the keyring");
        keyring
    })
}

fuzz_target!(|data: &[u8]| {
    let keyring = keyring();

    // The first byte splits the input into associated data and ciphertext.
    let (aad, ciphertext) = match data.split_first() {
        Some((&split, rest)) => rest.split_at(usize::from(split).min(rest.len())),
        None => (&[][..], data),
    };
    assert!(
        keyring.decrypt(ciphertext, aad).is_err(),
        "forged ciphertext decrypted"
    );
    let _ = Keyring::key_id_of(ciphertext);

    let context = EncryptionContext::new("fuzz", "column", "1");
    if let Ok(encrypted) = Encrypted::<String>::from_bytes(ciphertext.to_vec()) {
        assert!(
            encrypted.open(keyring, &context).is_err(),
            "forged field value opened"
        );
    }

    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(wrapped) = WrappedKeyring::from_json(text)
    {
        let root = RootKey::from_bytes(&[7; 32]).expect("a 32-byte root key");
        let _ = Keyring::unwrap(&wrapped, &root);
    }

    // Round trip: the input as plaintext decrypts to itself, and not under other data.
    let sealed = keyring.encrypt(data, b"fuzz/path#1").expect("encrypt");
    let opened = keyring.decrypt(&sealed, b"fuzz/path#1").expect("decrypt");
    assert_eq!(opened.as_slice(), data);
    assert!(keyring.decrypt(&sealed, b"fuzz/path#2").is_err());
});
