//! Property tests: round trips for any input, and rejection of any single-bit change or
//! truncation, in both ciphertext formats.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use keyward_crypto::{CryptoError, Encrypted, EncryptionContext, Keyring};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

static KEYRING: LazyLock<Keyring> =
    LazyLock::new(|| Keyring::generate().expect("generate keyring"));

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Seals with format 1 or 2, chosen by the test case.
fn seal(checked: bool, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    if checked {
        KEYRING.encrypt_with_checks(plaintext, aad)
    } else {
        KEYRING.encrypt(plaintext, aad)
    }
    .expect("encrypt")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_round_trip(
        checked in any::<bool>(),
        plaintext in vec(any::<u8>(), 0..2048),
        aad in vec(any::<u8>(), 0..256),
    ) {
        let sealed = seal(checked, &plaintext, &aad);

        let opened = KEYRING.decrypt(&sealed, &aad).expect("decrypt");

        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
    }

    #[test]
    fn any_bit_flip_is_rejected(
        checked in any::<bool>(),
        plaintext in vec(any::<u8>(), 0..512),
        aad in vec(any::<u8>(), 0..64),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut sealed = seal(checked, &plaintext, &aad);
        let index = position.index(sealed.len());
        sealed[index] ^= 1 << bit;

        let result = KEYRING.decrypt(&sealed, &aad);

        prop_assert!(result.is_err(), "flipping bit {} of byte {} was accepted", bit, index);
    }

    #[test]
    fn any_truncation_is_rejected(
        checked in any::<bool>(),
        plaintext in vec(any::<u8>(), 0..512),
        aad in vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let sealed = seal(checked, &plaintext, &aad);
        let len = cut.index(sealed.len());

        let result = KEYRING.decrypt(&sealed[..len], &aad);

        prop_assert!(result.is_err(), "a cut to {} of {} bytes was accepted", len, sealed.len());
    }

    #[test]
    fn other_aad_is_rejected(
        checked in any::<bool>(),
        plaintext in vec(any::<u8>(), 0..64),
        aad in vec(any::<u8>(), 0..64),
        other in vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(aad != other);
        let sealed = seal(checked, &plaintext, &aad);

        let result = KEYRING.decrypt(&sealed, &other);

        if checked {
            prop_assert!(matches!(result, Err(CryptoError::WrongContext | CryptoError::Modified)));
        } else {
            prop_assert!(matches!(result, Err(CryptoError::DecryptionFailed)));
        }
    }

    #[test]
    fn any_string_field_round_trips(
        value in any::<String>(),
        table in any::<String>(),
        column in any::<String>(),
        row in any::<String>(),
    ) {
        let context = EncryptionContext::new(table, column, row);

        let sealed = Encrypted::seal(&KEYRING, &value, &context).expect("seal");

        prop_assert_eq!(sealed.open(&KEYRING, &context).expect("open"), value);
    }

    #[test]
    fn any_map_field_round_trips(
        value in btree_map(any::<String>(), vec(any::<i64>(), 0..8), 0..8),
        row in any::<u64>(),
    ) {
        let context = EncryptionContext::new("settings", "limits", row.to_string());

        let sealed = Encrypted::seal(&KEYRING, &value, &context).expect("seal");
        let opened: BTreeMap<String, Vec<i64>> = sealed.open(&KEYRING, &context).expect("open");

        prop_assert_eq!(opened, value);
    }

    #[test]
    fn field_in_other_row_is_rejected(
        value in any::<String>(),
        row in any::<String>(),
        other_row in any::<String>(),
    ) {
        prop_assume!(row != other_row);
        let sealed = Encrypted::seal(&KEYRING, &value, &EncryptionContext::new("t", "c", row))
            .expect("seal");

        let result = sealed.open(&KEYRING, &EncryptionContext::new("t", "c", other_row));

        // About one context in 2^32 passes the 32-bit check and is reported as modified.
        prop_assert!(matches!(result, Err(CryptoError::WrongContext | CryptoError::Modified)));
    }
}
