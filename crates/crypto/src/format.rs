//! The versioned ciphertext format produced by [`crate::Keyring::encrypt`].
//!
//! Format version 1, byte by byte:
//!
//! | bytes        | content                                         |
//! |--------------|-------------------------------------------------|
//! | 0            | format version, `0x01`                          |
//! | 1..5         | data key id, `u32` big-endian                   |
//! | 5..17        | 96-bit random nonce                             |
//! | 17..len-16   | AES-256-GCM ciphertext (same length as plaintext) |
//! | len-16..len  | 128-bit GCM tag                                 |
//!
//! The AEAD associated data is the 5 header bytes followed by the caller's context bytes, so
//! the header is authenticated and a value sealed for one context does not open in another.
//! This module only parses and builds headers and contains no keys.

use crate::KeyId;
use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;

/// The only format version this crate writes and reads.
pub const FORMAT_V1: u8 = 0x01;

/// Length of the header: format version byte and key id.
pub const HEADER_LEN: usize = 5;

/// Bytes a ciphertext adds to its plaintext: header, nonce and tag (33).
pub const CIPHERTEXT_OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// A ciphertext split into its parts, borrowing from the input.
pub(crate) struct Parsed<'a> {
    pub header: [u8; HEADER_LEN],
    pub key_id: KeyId,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by tag.
    pub sealed: &'a [u8],
}

/// Builds the header for a value sealed under `key_id`.
pub(crate) fn header(key_id: KeyId) -> [u8; HEADER_LEN] {
    let id = key_id.to_be_bytes();
    [FORMAT_V1, id[0], id[1], id[2], id[3]]
}

/// Joins the header and the caller's context into the AEAD associated data.
pub(crate) fn associated_data(header: &[u8; HEADER_LEN], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + aad.len());
    out.extend_from_slice(header);
    out.extend_from_slice(aad);
    out
}

/// Splits a ciphertext into header, nonce and sealed body.
///
/// The version byte is checked before the length, so a value of an unknown format reports
/// that rather than a misleading length error.
pub(crate) fn parse(ciphertext: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    let Some(&version) = ciphertext.first() else {
        return Err(CryptoError::Truncated);
    };
    if version != FORMAT_V1 {
        return Err(CryptoError::UnsupportedFormat(version));
    }
    if ciphertext.len() < CIPHERTEXT_OVERHEAD {
        return Err(CryptoError::Truncated);
    }

    let (head, rest) = ciphertext.split_at(HEADER_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);

    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(head);
    let key_id = KeyId::from_be_bytes([header[1], header[2], header[3], header[4]]);

    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);

    Ok(Parsed {
        header,
        key_id,
        nonce: nonce_bytes,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_encodes_key_id_big_endian() {
        assert_eq!(header(0x0102_0304), [0x01, 0x01, 0x02, 0x03, 0x04]);
    }

    #[test]
    fn parse_splits_regions() {
        let mut bytes = header(7).to_vec();
        bytes.extend_from_slice(&[0xAA; NONCE_LEN]);
        bytes.extend_from_slice(&[0xBB; TAG_LEN + 3]);

        let parsed = parse(&bytes).expect("well-formed");
        assert_eq!(parsed.key_id, 7);
        assert_eq!(parsed.nonce, [0xAA; NONCE_LEN]);
        assert_eq!(parsed.sealed.len(), TAG_LEN + 3);
    }

    #[test]
    fn empty_input_is_truncated() {
        assert!(matches!(parse(&[]), Err(CryptoError::Truncated)));
    }

    #[test]
    fn unknown_version_is_reported_before_length() {
        assert!(matches!(
            parse(&[0x02, 0, 0]),
            Err(CryptoError::UnsupportedFormat(0x02))
        ));
    }
}
