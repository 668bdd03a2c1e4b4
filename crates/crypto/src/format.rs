//! The versioned ciphertext formats produced by [`crate::Keyring::encrypt`] (format 1) and
//! [`crate::Keyring::encrypt_with_checks`] (format 2).
//!
//! Format 1, byte by byte:
//!
//! | bytes        | content                                           |
//! |--------------|---------------------------------------------------|
//! | 0            | format version, `0x01`                            |
//! | 1..5         | data key id, `u32` big-endian                     |
//! | 5..17        | 96-bit random nonce                               |
//! | 17..len-16   | AES-256-GCM ciphertext (same length as plaintext) |
//! | len-16..len  | 128-bit GCM tag                                   |
//!
//! Format 2 adds two 4-byte checks to the header, so that decryption can report a wrong key
//! or a wrong context before it tries the tag:
//!
//! | bytes        | content                                           |
//! |--------------|---------------------------------------------------|
//! | 0            | format version, `0x02`                            |
//! | 1..5         | data key id, `u32` big-endian                     |
//! | 5..9         | key check: HMAC-SHA256(data key, key check label), first 4 bytes |
//! | 9..13        | context check: HMAC-SHA256(context check key, context), first 4 bytes |
//! | 13..25       | 96-bit random nonce                               |
//! | 25..len-16   | AES-256-GCM ciphertext (same length as plaintext) |
//! | len-16..len  | 128-bit GCM tag                                   |
//!
//! In both formats the AEAD associated data is the whole header followed by the caller's
//! context bytes, so the header is authenticated and a value sealed for one context does not
//! open in another. The checks are diagnostics, not security: the tag alone decides whether a
//! value opens, and anyone who can edit the bytes can also edit a check to choose which error
//! a decryption reports. This module only parses and builds headers and contains no keys.

use crate::KeyId;
use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;

/// Format version of [`crate::Keyring::encrypt`]: header, nonce, ciphertext, tag.
pub const FORMAT_V1: u8 = 0x01;

/// Format version of [`crate::Keyring::encrypt_with_checks`] and [`crate::Encrypted`]: format 1
/// with a key check and a context check in the header.
pub const FORMAT_V2: u8 = 0x02;

/// Length of the format 1 header: format version byte and key id.
pub const HEADER_LEN: usize = 5;

/// Length of each check in the format 2 header, in bytes.
pub const CHECK_LEN: usize = 4;

/// Length of the format 2 header: format version byte, key id, key check and context check.
pub const HEADER_V2_LEN: usize = HEADER_LEN + 2 * CHECK_LEN;

/// Bytes a format 1 ciphertext adds to its plaintext: header, nonce and tag (33).
pub const CIPHERTEXT_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Bytes a format 2 ciphertext adds to its plaintext: header with checks, nonce and tag (41).
pub const CIPHERTEXT_V2_OVERHEAD: usize = HEADER_V2_LEN + NONCE_LEN + TAG_LEN;

/// The two checks of a format 2 header.
#[derive(Clone, Copy)]
pub(crate) struct Checks {
    pub key: [u8; CHECK_LEN],
    pub context: [u8; CHECK_LEN],
}

/// A ciphertext split into its parts, borrowing from the input.
pub(crate) struct Parsed<'a> {
    /// The whole header, which is the start of the associated data.
    pub header: &'a [u8],
    pub key_id: KeyId,
    /// Present for format 2 only.
    pub checks: Option<Checks>,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by tag.
    pub sealed: &'a [u8],
}

/// Builds the format 1 header for a value sealed under `key_id`.
pub(crate) fn header(key_id: KeyId) -> [u8; HEADER_LEN] {
    let id = key_id.to_be_bytes();
    [FORMAT_V1, id[0], id[1], id[2], id[3]]
}

/// Builds the format 2 header for a value sealed under `key_id` with the given checks.
pub(crate) fn header_v2(key_id: KeyId, checks: &Checks) -> [u8; HEADER_V2_LEN] {
    let mut out = [0u8; HEADER_V2_LEN];
    out[0] = FORMAT_V2;
    out[1..HEADER_LEN].copy_from_slice(&key_id.to_be_bytes());
    out[HEADER_LEN..HEADER_LEN + CHECK_LEN].copy_from_slice(&checks.key);
    out[HEADER_LEN + CHECK_LEN..].copy_from_slice(&checks.context);
    out
}

/// Joins the header and the caller's context into the AEAD associated data.
pub(crate) fn associated_data(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + aad.len());
    out.extend_from_slice(header);
    out.extend_from_slice(aad);
    out
}

/// Splits a ciphertext of either format into header, checks, nonce and sealed body.
///
/// The version byte is checked before the length, so a value of an unknown format reports
/// that rather than a misleading length error.
pub(crate) fn parse(ciphertext: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    let Some(&version) = ciphertext.first() else {
        return Err(CryptoError::Truncated);
    };
    let header_len = match version {
        FORMAT_V1 => HEADER_LEN,
        FORMAT_V2 => HEADER_V2_LEN,
        other => return Err(CryptoError::UnsupportedFormat(other)),
    };
    if ciphertext.len() < header_len + NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }

    let (header, rest) = ciphertext.split_at(header_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let key_id = KeyId::from_be_bytes(array(&header[1..HEADER_LEN]));
    let checks = (version == FORMAT_V2).then(|| Checks {
        key: array(&header[HEADER_LEN..HEADER_LEN + CHECK_LEN]),
        context: array(&header[HEADER_LEN + CHECK_LEN..]),
    });

    Ok(Parsed {
        header,
        key_id,
        checks,
        nonce: array(nonce),
        sealed,
    })
}

/// Copies a slice whose length the caller has already fixed into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_encodes_key_id_big_endian() {
        assert_eq!(header(0x0102_0304), [0x01, 0x01, 0x02, 0x03, 0x04]);
    }

    #[test]
    fn header_v2_places_checks_after_key_id() {
        let checks = Checks {
            key: [0xA1, 0xA2, 0xA3, 0xA4],
            context: [0xC1, 0xC2, 0xC3, 0xC4],
        };

        assert_eq!(
            header_v2(0x0102_0304, &checks),
            [
                0x02, 0x01, 0x02, 0x03, 0x04, 0xA1, 0xA2, 0xA3, 0xA4, 0xC1, 0xC2, 0xC3, 0xC4
            ]
        );
    }

    #[test]
    fn parse_splits_regions() {
        let mut bytes = header(7).to_vec();
        bytes.extend_from_slice(&[0xAA; NONCE_LEN]);
        bytes.extend_from_slice(&[0xBB; TAG_LEN + 3]);

        let parsed = parse(&bytes).expect("well-formed");
        assert_eq!(parsed.header, &header(7));
        assert_eq!(parsed.key_id, 7);
        assert!(parsed.checks.is_none());
        assert_eq!(parsed.nonce, [0xAA; NONCE_LEN]);
        assert_eq!(parsed.sealed.len(), TAG_LEN + 3);
    }

    #[test]
    fn parse_v2_splits_regions() {
        let checks = Checks {
            key: [1; CHECK_LEN],
            context: [2; CHECK_LEN],
        };
        let mut bytes = header_v2(9, &checks).to_vec();
        bytes.extend_from_slice(&[0xAA; NONCE_LEN]);
        bytes.extend_from_slice(&[0xBB; TAG_LEN]);

        let parsed = parse(&bytes).expect("well-formed");
        assert_eq!(parsed.header.len(), HEADER_V2_LEN);
        assert_eq!(parsed.key_id, 9);
        let found = parsed.checks.expect("format 2 has checks");
        assert_eq!(found.key, [1; CHECK_LEN]);
        assert_eq!(found.context, [2; CHECK_LEN]);
        assert_eq!(parsed.nonce, [0xAA; NONCE_LEN]);
        assert_eq!(parsed.sealed, &[0xBB; TAG_LEN]);
    }

    #[test]
    fn short_v2_input_is_truncated() {
        let short = [FORMAT_V2; CIPHERTEXT_V2_OVERHEAD - 1];
        assert!(matches!(parse(&short), Err(CryptoError::Truncated)));
    }

    #[test]
    fn empty_input_is_truncated() {
        assert!(matches!(parse(&[]), Err(CryptoError::Truncated)));
    }

    #[test]
    fn unknown_version_is_reported_before_length() {
        assert!(matches!(
            parse(&[0x03, 0, 0]),
            Err(CryptoError::UnsupportedFormat(0x03))
        ));
    }
}
