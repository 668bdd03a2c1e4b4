//! TLS behaviour: protocol versions, ALPN and certificate reload.

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{RawConnection, TestServer, client_for, rustls_client_config};

#[tokio::test]
async fn tls12_client_fails_handshake() {
    let server = TestServer::start().await;

    let config = rustls_client_config(&server.cert.ca_pem, &[&rustls::version::TLS12]);
    let tcp = TcpStream::connect(server.addr).await.expect("tcp connects");
    let name = ServerName::try_from("localhost").expect("valid name");
    let handshake = TlsConnector::from(config).connect(name, tcp).await;
    assert!(handshake.is_err(), "a TLS 1.2 handshake succeeded");
}

#[tokio::test]
async fn reqwest_limited_to_tls12_fails() {
    let server = TestServer::start().await;
    let ca = reqwest::Certificate::from_pem(server.cert.ca_pem.as_bytes()).expect("CA parses");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client builds");

    let result = client.get(server.url("sys/health")).send().await;
    assert!(result.is_err(), "a TLS 1.2 client got a response");
}

#[tokio::test]
async fn tls13_client_negotiates_http2() {
    let server = TestServer::start().await;

    let response = server
        .client()
        .get(server.url("sys/health"))
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn untrusted_ca_fails_handshake() {
    let server = TestServer::start().await;
    let other = tempfile::tempdir().expect("temp dir");
    let stranger = keyward_server::generate_dev_certificate(other.path(), &[]).expect("dev cert");

    let result = RawConnection::open(server.addr, &stranger.ca_pem).await;
    assert!(result.is_err(), "a client trusting another CA connected");
}

#[tokio::test]
async fn reload_serves_new_certificate_and_keeps_old_connections() {
    let server = TestServer::start().await;
    let old_ca = server.cert.ca_pem.clone();
    let mut old_connection = server.raw_connection(&old_ca).await.expect("connects");
    let first = old_connection
        .request("GET", "/v1/sys/health", &[], b"")
        .await;
    assert_eq!(first.status, 200);
    let old_certificate = old_connection.peer_certificate();

    // New files with a new CA in the same place, then a reload.
    let renewed =
        keyward_server::generate_dev_certificate(server.dir.path(), &[]).expect("dev cert");
    server.reloader.reload().expect("reload succeeds");

    let mut new_connection = server
        .raw_connection(&renewed.ca_pem)
        .await
        .expect("new CA is trusted after reload");
    assert_ne!(new_connection.peer_certificate(), old_certificate);
    let response = new_connection
        .request("GET", "/v1/sys/health", &[], b"")
        .await;
    assert_eq!(response.status, 200);

    assert!(
        server.raw_connection(&old_ca).await.is_err(),
        "new handshakes still use the old certificate"
    );

    let again = old_connection
        .request("GET", "/v1/sys/health", &[], b"")
        .await;
    assert_eq!(
        again.status, 200,
        "the open connection was dropped by the reload"
    );
}

#[tokio::test]
async fn failed_reload_keeps_old_certificate() {
    let server = TestServer::start().await;
    std::fs::write(&server.cert.cert_path, "not a certificate\n").expect("overwrite cert");

    let result = server.reloader.reload();
    assert!(result.is_err(), "reload of a broken certificate succeeded");

    let response = client_for(&server.cert.ca_pem)
        .get(server.url("sys/health"))
        .send()
        .await
        .expect("old certificate still served");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sighup_reloads_certificate() {
    use tokio::signal::unix::{SignalKind, signal};

    let server = TestServer::start().await;
    let renewed =
        keyward_server::generate_dev_certificate(server.dir.path(), &[]).expect("dev cert");

    // Installing a handler first means a SIGHUP can never take the default action and end
    // the test process, even if the server's own handler is not registered yet.
    let _handler = signal(SignalKind::hangup()).expect("SIGHUP handler installs");

    let mut connected = None;
    for _ in 0..50 {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;

        if let Ok(connection) = server.raw_connection(&renewed.ca_pem).await {
            connected = Some(connection);
            break;
        }
    }
    let mut connection = connected.expect("new certificate served after SIGHUP");
    let response = connection.request("GET", "/v1/sys/health", &[], b"").await;
    assert_eq!(response.status, 200);
}
