//! Associated data that binds a secret version's ciphertext to its path and version.
//!
//! Every backend encrypts a version's data with this associated data, so a ciphertext copied to
//! another path or version fails to decrypt instead of returning the wrong secret. It does not
//! encrypt anything itself: the keyring does.

use crate::path::SecretPath;

/// Domain label for key/value secret data, format 1. A new format gets a new label, so the
/// ciphertexts of the two never decrypt as each other.
const KV_AAD_LABEL: &[u8] = b"keyward/kv/v1\0";

/// Builds the associated data for version `version` of the secret at `path`:
/// `keyward/kv/v1 NUL path NUL version`, with the version in decimal.
///
/// A valid path never contains NUL, so no two (path, version) pairs give the same bytes.
pub fn secret_aad(path: &SecretPath, version: u64) -> Vec<u8> {
    let path = path.as_str().as_bytes();
    let version = version.to_string();

    let mut aad = Vec::with_capacity(KV_AAD_LABEL.len() + path.len() + 1 + version.len());
    aad.extend_from_slice(KV_AAD_LABEL);
    aad.extend_from_slice(path);
    aad.push(0);
    aad.extend_from_slice(version.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> SecretPath {
        SecretPath::parse(raw).expect("test path is valid")
    }

    #[test]
    fn aad_layout_is_label_path_version() {
        assert_eq!(
            secret_aad(&path("team/db"), 12),
            b"keyward/kv/v1\0team/db\x0012".to_vec()
        );
    }

    #[test]
    fn aad_differs_by_path_and_version() {
        let base = secret_aad(&path("a/b"), 1);
        assert_ne!(base, secret_aad(&path("a/c"), 1));
        assert_ne!(base, secret_aad(&path("a/b"), 2));
        assert_ne!(secret_aad(&path("a1"), 1), secret_aad(&path("a"), 11));
    }
}
