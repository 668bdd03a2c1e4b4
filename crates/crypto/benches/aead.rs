//! AES-256-GCM through the keyring API next to the bare primitive, at 64 B, 1 KiB and 64 KiB.
//!
//! Run with `cargo bench -p keyward-crypto`. Variants:
//!
//! - `keyring_v1`: [`Keyring::encrypt`] / [`Keyring::decrypt`], format 1.
//! - `keyring_v2`: [`Keyring::encrypt_with_checks`] / [`Keyring::decrypt`], format 2.
//! - `keyring_v1_bulk_wipe` (decrypt only): format 1, with the plaintext wiped in bulk before
//!   the drop, as [`Keyring::decrypt`] recommends for large values.
//! - `prepared_key`: aws-lc-rs with the key schedule done once, a fixed nonce, and a fresh
//!   output buffer per call: the floor the keyring can approach.
//! - `aes_256_gcm_seal`: this crate's bare primitive, which also expands the key every call.
//!
//! The group `nonce` measures drawing one 96-bit nonce from the system random number
//! generator, which every keyring encryption does and the other variants skip.

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use keyward_crypto::{Keyring, NONCE_LEN, TAG_LEN, aes_256_gcm_open, aes_256_gcm_seal};
use zeroize::Zeroize as _;

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
const CONTEXT: &[u8] = b"users/email/1234567";
const KEY: [u8; 32] = [7; 32];
const NONCE: [u8; NONCE_LEN] = [9; NONCE_LEN];

fn prepared_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("32-byte key"))
}

fn prepared_seal(key: &LessSafeKey, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(NONCE),
        Aad::from(CONTEXT),
        &mut out,
    )
    .expect("seal");
    out
}

fn prepared_open(key: &LessSafeKey, sealed: &[u8]) -> Vec<u8> {
    let mut buffer = sealed.to_vec();
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(NONCE),
            Aad::from(CONTEXT),
            &mut buffer,
        )
        .expect("open")
        .len();
    buffer.truncate(len);
    buffer
}

fn encrypt(c: &mut Criterion) {
    let keyring = Keyring::generate().expect("generate keyring");
    let key = prepared_key();
    let mut group = c.benchmark_group("encrypt");

    for size in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(BenchmarkId::new("keyring_v1", size), &plaintext, |b, p| {
            b.iter(|| keyring.encrypt(black_box(p), CONTEXT).expect("encrypt"));
        });
        group.bench_with_input(BenchmarkId::new("keyring_v2", size), &plaintext, |b, p| {
            b.iter(|| {
                keyring
                    .encrypt_with_checks(black_box(p), CONTEXT)
                    .expect("encrypt")
            });
        });
        group.bench_with_input(
            BenchmarkId::new("prepared_key", size),
            &plaintext,
            |b, p| {
                b.iter(|| prepared_seal(&key, black_box(p)));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("aes_256_gcm_seal", size),
            &plaintext,
            |b, p| b.iter(|| aes_256_gcm_seal(&KEY, &NONCE, CONTEXT, black_box(p)).expect("seal")),
        );
    }
    group.finish();
}

fn decrypt(c: &mut Criterion) {
    let keyring = Keyring::generate().expect("generate keyring");
    let key = prepared_key();
    let mut group = c.benchmark_group("decrypt");

    for size in SIZES {
        let plaintext = vec![0x5a; size];
        let v1 = keyring.encrypt(&plaintext, CONTEXT).expect("encrypt");
        let v2 = keyring
            .encrypt_with_checks(&plaintext, CONTEXT)
            .expect("encrypt");
        let bare = prepared_seal(&key, &plaintext);
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(BenchmarkId::new("keyring_v1", size), &v1, |b, s| {
            b.iter(|| keyring.decrypt(black_box(s), CONTEXT).expect("decrypt"));
        });
        group.bench_with_input(BenchmarkId::new("keyring_v2", size), &v2, |b, s| {
            b.iter(|| keyring.decrypt(black_box(s), CONTEXT).expect("decrypt"));
        });
        group.bench_with_input(
            BenchmarkId::new("keyring_v1_bulk_wipe", size),
            &v1,
            |b, s| {
                b.iter(|| {
                    let mut opened = keyring.decrypt(black_box(s), CONTEXT).expect("decrypt");
                    opened.as_mut_slice().zeroize();
                    opened.clear();
                    opened
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("prepared_key", size), &bare, |b, s| {
            b.iter(|| prepared_open(&key, black_box(s)));
        });
        group.bench_with_input(BenchmarkId::new("aes_256_gcm_open", size), &bare, |b, s| {
            b.iter(|| aes_256_gcm_open(&KEY, &NONCE, CONTEXT, black_box(s)).expect("open"));
        });
    }
    group.finish();
}

fn nonce(c: &mut Criterion) {
    c.bench_function("nonce/random_bytes_12", |b| {
        b.iter(|| keyward_crypto::random_bytes::<NONCE_LEN>().expect("system rng"));
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = encrypt, decrypt, nonce
}

/// Runs the criterion groups, then prints one table with Keyward's API next to the prepared
/// aws-lc-rs key at each size and the ratio between them, measured in the same run.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratio_table();
}

/// Median nanoseconds per call of `op`, over 7 rounds of `iterations` calls.
fn median_ns(iterations: u32, mut op: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..iterations {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn print_ratio_table() {
    let keyring = Keyring::generate().expect("generate keyring");
    let key = prepared_key();

    println!();
    println!("Keyward API vs prepared aws-lc-rs key (median ns/op; share = bare time / API time)");
    println!(
        "{:<8} {:>12} {:>12} {:>8} {:>12} {:>12} {:>12} {:>8}",
        "size", "enc API", "enc bare", "share", "enc MB/s", "dec API", "dec bare", "share"
    );
    for size in SIZES {
        let plaintext = vec![0x5a_u8; size];
        let iterations = if size > 4096 { 2_000 } else { 50_000 };

        let enc_api = median_ns(iterations, || {
            black_box(
                keyring
                    .encrypt(black_box(&plaintext), CONTEXT)
                    .expect("encrypt"),
            );
        });
        let enc_bare = median_ns(iterations, || {
            black_box(prepared_seal(&key, black_box(&plaintext)));
        });

        let sealed = keyring.encrypt(&plaintext, CONTEXT).expect("encrypt");
        let bare = prepared_seal(&key, &plaintext);
        let dec_api = median_ns(iterations, || {
            let mut opened = keyring
                .decrypt(black_box(&sealed), CONTEXT)
                .expect("decrypt");
            opened.as_mut_slice().zeroize();
            opened.clear();
        });
        let dec_bare = median_ns(iterations, || {
            black_box(prepared_open(&key, black_box(&bare)));
        });

        println!(
            "{:<8} {:>12.0} {:>12.0} {:>7.0}% {:>12.0} {:>12.0} {:>12.0} {:>7.0}%",
            size,
            enc_api,
            enc_bare,
            100.0 * enc_bare / enc_api,
            size as f64 / enc_api * 1000.0,
            dec_api,
            dec_bare,
            100.0 * dec_bare / dec_api,
        );
    }
    println!("For scale: openssl speed -evp aes-256-gcm");
}
