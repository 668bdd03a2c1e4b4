//! Integration tests of keyward-crypto's public API.

mod argon2_kdf;
mod blind_index;
mod checked_format;
mod ciphertext;
mod encrypted_field;
mod known_answers;
mod properties;
mod redaction;
mod rotation;
#[cfg(feature = "sqlx-sqlite")]
mod sqlx_sqlite;
mod subkeys;
mod wrapping;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_crypto::{KdfParams, random_bytes};

/// PBKDF2 parameters with a fresh salt and few iterations, so tests stay fast.
pub fn fast_pbkdf2() -> KdfParams {
    let salt: [u8; 16] = random_bytes().expect("system rng");
    KdfParams::Pbkdf2HmacSha256 {
        iterations: 10,
        salt: BASE64.encode(salt),
    }
}
