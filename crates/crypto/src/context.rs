//! The context that binds an encrypted field to the table, column and row it belongs to.
//!
//! The context is not stored with the value: the caller gives it again when opening, from
//! the row being read. This module only encodes it into associated data and contains no key.

/// Label at the start of the associated data, so that a field context cannot produce the same
/// bytes as any other use of the keyring, such as a secret's path and version.
const CONTEXT_LABEL: &[u8] = b"keyward-crypto encrypted field v1\0";

/// The location of an encrypted value: table, column and row id, all chosen by the caller.
///
/// [`crate::Encrypted`] binds each value to its context, so a value copied to another row or
/// column, or a whole row moved to another table, fails to open with
/// [`crate::CryptoError::WrongContext`]. The row id should be the row's primary key or another
/// value that never changes for the row; changing it means re-encrypting the value.
///
/// None of the three parts is secret, and `Debug` prints them.
///
/// ```
/// use keyward_crypto::EncryptionContext;
///
/// let row_id: i64 = 42;
/// let context = EncryptionContext::new("users", "email", row_id.to_string());
/// assert_eq!(context.row_id(), "42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    table: String,
    column: String,
    row_id: String,
}

impl EncryptionContext {
    /// Creates the context of the value in `column` of the row `row_id` of `table`.
    pub fn new(
        table: impl Into<String>,
        column: impl Into<String>,
        row_id: impl Into<String>,
    ) -> EncryptionContext {
        EncryptionContext {
            table: table.into(),
            column: column.into(),
            row_id: row_id.into(),
        }
    }

    /// Returns the table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Returns the column name.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Returns the row id.
    pub fn row_id(&self) -> &str {
        &self.row_id
    }

    /// Encodes the context as the associated data passed to the keyring.
    ///
    /// The encoding is a fixed label, then table, column and row id, each preceded by its
    /// length as a big-endian `u32`. The length prefixes make it unambiguous: table `"ab"` with
    /// column `"c"` and table `"a"` with column `"bc"` encode differently. Use this only to
    /// call [`crate::Keyring::decrypt`] directly on an [`crate::Encrypted`] value's bytes.
    pub fn associated_data(&self) -> Vec<u8> {
        let parts = [&self.table, &self.column, &self.row_id];
        let parts_len: usize = parts.iter().map(|part| 4 + part.len()).sum();

        let mut out = Vec::with_capacity(CONTEXT_LABEL.len() + parts_len);
        out.extend_from_slice(CONTEXT_LABEL);
        for part in parts {
            out.extend_from_slice(&length_prefix(part));
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// Encodes a part's length, saturating at `u32::MAX`.
///
/// Saturation cannot make two encodings equal: a part that long is over 4 GiB, and the
/// bytes that follow the prefix still differ.
fn length_prefix(part: &str) -> [u8; 4] {
    u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_is_label_then_prefixed_parts() {
        let encoded = EncryptionContext::new("users", "email", "7").associated_data();

        let mut expected = CONTEXT_LABEL.to_vec();
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"users");
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"email");
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(b"7");
        assert_eq!(encoded, expected);
    }

    #[test]
    fn shifted_boundaries_encode_differently() {
        let cases = [
            (("ab", "c", "1"), ("a", "bc", "1")),
            (("a", "b1", ""), ("a", "b", "1")),
            (("", "", "x"), ("x", "", "")),
        ];

        for ((t1, c1, r1), (t2, c2, r2)) in cases {
            let first = EncryptionContext::new(t1, c1, r1).associated_data();
            let second = EncryptionContext::new(t2, c2, r2).associated_data();
            assert_ne!(first, second, "{t1}/{c1}/{r1} against {t2}/{c2}/{r2}");
        }
    }

    #[test]
    fn debug_names_all_parts() {
        let debug = format!("{:?}", EncryptionContext::new("users", "email", "7"));
        assert_eq!(
            debug,
            r#"EncryptionContext { table: "users", column: "email", row_id: "7" }"#
        );
    }
}
