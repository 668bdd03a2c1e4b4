//! Transit against OpenBao: encrypt and decrypt, key rotation, rewrap.

use crate::support::{bao, transit_mount};

#[tokio::test]
async fn transit_encrypt_decrypt_round_trip() {
    let Some(bao) = bao("transit_encrypt_decrypt_round_trip") else {
        return;
    };
    let mount = transit_mount(&bao).await;
    bao.root
        .transit_create_key(&mount, "root-key")
        .await
        .expect("key is created");
    let plaintext = [0u8, 1, 2, 250, 255, b'k', b'w'];

    let ciphertext = bao
        .root
        .transit_encrypt(&mount, "root-key", &plaintext)
        .await
        .expect("encrypts");
    let opened = bao
        .root
        .transit_decrypt(&mount, "root-key", &ciphertext)
        .await
        .expect("decrypts");

    assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
    assert_eq!(opened.as_slice(), plaintext);
}

#[tokio::test]
async fn transit_rotate_then_rewrap_uses_new_version() {
    let Some(bao) = bao("transit_rotate_then_rewrap_uses_new_version") else {
        return;
    };
    let mount = transit_mount(&bao).await;
    bao.root
        .transit_create_key(&mount, "k")
        .await
        .expect("key is created");
    let old = bao
        .root
        .transit_encrypt(&mount, "k", b"root key bytes")
        .await
        .expect("encrypts");

    bao.root
        .transit_rotate_key(&mount, "k")
        .await
        .expect("key rotates");
    let fresh = bao
        .root
        .transit_encrypt(&mount, "k", b"other")
        .await
        .expect("encrypts after rotation");
    let rewrapped = bao
        .root
        .transit_rewrap(&mount, "k", &old)
        .await
        .expect("rewraps");
    let opened_old = bao
        .root
        .transit_decrypt(&mount, "k", &old)
        .await
        .expect("old ciphertext still decrypts");
    let opened_rewrapped = bao
        .root
        .transit_decrypt(&mount, "k", &rewrapped)
        .await
        .expect("rewrapped ciphertext decrypts");

    assert!(fresh.starts_with("vault:v2:"), "{fresh}");
    assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    assert_eq!(opened_old.as_slice(), b"root key bytes");
    assert_eq!(opened_rewrapped.as_slice(), b"root key bytes");
}

#[tokio::test]
async fn transit_decrypt_with_wrong_key_fails() {
    let Some(bao) = bao("transit_decrypt_with_wrong_key_fails") else {
        return;
    };
    let mount = transit_mount(&bao).await;
    for name in ["a", "b"] {
        bao.root
            .transit_create_key(&mount, name)
            .await
            .expect("key is created");
    }
    let sealed = bao
        .root
        .transit_encrypt(&mount, "a", b"value")
        .await
        .expect("encrypts");

    let result = bao.root.transit_decrypt(&mount, "b", &sealed).await;

    let err = result.expect_err("another key must not decrypt");
    assert!(!err.is_retryable(), "{err}");
}
