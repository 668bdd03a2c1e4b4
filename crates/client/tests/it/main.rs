//! Integration tests of keyward-client without a Keyward server: the environment fallback and
//! the circuit breaker against an address that fails every connection. Tests against a real
//! server live with the `keyward` binary's end-to-end tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyward_client::{BreakerConfig, Client, ClientBuilder, Error};
use tokio::net::TcpListener;

const TOKEN: &str = "kwt.kw-canary-token-0123456789";

fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("generate a certificate")
        .cert
        .pem()
}

/// Starts a listener that counts connections and closes each at once, so every TLS handshake
/// fails.
async fn failing_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (format!("https://{addr}"), count)
}

fn client(addr: &str, breaker: BreakerConfig) -> ClientBuilder {
    ClientBuilder::new()
        .addr(addr)
        .token(TOKEN)
        .ca_pem(ca_pem())
        .breaker(breaker)
}

#[tokio::test]
async fn env_fallback_serves_mapped_fields() {
    let (addr, _) = failing_server().await;
    // Cargo sets CARGO_PKG_NAME for the test process.
    let client = client(&addr, BreakerConfig::default())
        .env_fallback("app/meta", "name", "CARGO_PKG_NAME")
        .build()
        .expect("client builds");

    let name = client
        .get_field("app/meta", "name")
        .await
        .expect("fallback value");
    assert_eq!(name.expose(), "keyward-client");

    let error = client.get("app/other").await.expect_err("no fallback");
    assert!(error.is_unavailable(), "{error}");
    assert!(!format!("{error} {error:?} {client:?}").contains("kw-canary"));
}

#[tokio::test]
async fn open_breaker_bounds_connection_attempts() {
    let (addr, connections) = failing_server().await;
    let client = client(
        &addr,
        BreakerConfig {
            failure_threshold: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(400),
        },
    )
    .build()
    .expect("client builds");

    let started = Instant::now();
    let mut reads = 0;
    let mut circuit_open = 0;
    while started.elapsed() < Duration::from_secs(1) {
        reads += 1;
        match client.get("app/db").await {
            Err(Error::CircuitOpen { .. }) => circuit_open += 1,
            Err(error) => {
                assert!(error.is_unavailable(), "{error}");
                assert!(!format!("{error} {error:?}").contains("kw-canary"));
            }
            Ok(_) => panic!("a read succeeded against a failing server"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let attempts = connections.load(Ordering::Relaxed);
    assert!(reads > 50, "only {reads} reads ran");
    assert!(
        circuit_open > reads / 2,
        "{circuit_open} of {reads} reads were turned away"
    );
    // Three failures open the breaker; then one probe per open period of 100–400 ms.
    assert!(
        attempts <= 14,
        "{attempts} connection attempts for {reads} reads"
    );
    assert!(!client.is_server_available());
}

#[tokio::test]
async fn invalid_paths_are_rejected_locally() {
    let (addr, connections) = failing_server().await;
    let client = client(&addr, BreakerConfig::default())
        .build()
        .expect("client builds");
    for path in ["../etc", "a//b", "a b", "a?x=1"] {
        let error = client.get(path).await.expect_err(path);
        assert!(matches!(error, Error::Config(_)), "{path}: {error}");
    }
    assert_eq!(connections.load(Ordering::Relaxed), 0);
}

#[test]
fn from_env_reports_missing_settings() {
    // The KEYWARD_* variables may or may not be set here. Either way the builder must not
    // panic, and its output must not show the token.
    match Client::from_env() {
        Ok(client) => assert!(!format!("{client:?}").contains("kwt.")),
        Err(error) => assert!(matches!(error, Error::Config(_)), "{error}"),
    }
}
