//! Client certificates (mutual TLS): a required certificate must chain to the configured CA,
//! an optional one lets the token decide, and the client CA file is reloaded with the
//! server certificate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyward_server::ClientAuth;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{RawConnection, TestServer};

/// A CA that issues client certificates.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key, in PEM.
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// Creates a self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("valid params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a client certificate for `name`.
    pub fn issue(&self, name: &str) -> ClientIdentity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("valid params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/name` and returns the path.
    pub fn write(&self, dir: &std::path::Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write the CA file");
        path
    }
}

/// Builds a TLS 1.3 client configuration that trusts `server_ca_pem` and presents `identity`.
fn client_config(
    server_ca_pem: &str,
    identity: Option<&ClientIdentity>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots.add(cert.expect("CA parses")).expect("CA is usable");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate parses");
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
                .expect("client key parses");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity is usable")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Sends `GET sys/health`-style requests over a fresh connection and returns the status, or
/// the error that ended the connection.
///
/// In TLS 1.3 the server checks the client certificate after the client has finished its
/// side of the handshake, so a rejected certificate can surface at the first read instead of
/// at connect time.
pub async fn try_get(
    server: &TestServer,
    identity: Option<&ClientIdentity>,
    path: &str,
    token: Option<&str>,
) -> Result<u16, String> {
    let config = client_config(&server.cert.ca_pem, identity);
    let tcp = TcpStream::connect(server.addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;

    let token_header = token
        .map(|token| format!("X-Vault-Token: {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /v1/{path} HTTP/1.1\r\nHost: localhost\r\n{token_header}Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| "no response within 10 s".to_owned())?
        .map_err(|e| format!("read: {e}"))?;

    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))
}

/// Starts a server that requires certificates from `ca`; the returned dir contains the CA file.
async fn server_requiring(ca: &TestCa) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.write(dir.path(), "clients.pem");
    let server = TestServer::start_with(|config| {
        config.client_auth = ClientAuth::Required { ca_path };
    })
    .await;
    (server, dir)
}

#[tokio::test]
async fn required_mode_rejects_missing_certificate() {
    let ca = TestCa::new("clients");
    let (server, _ca_dir) = server_requiring(&ca).await;

    let result = try_get(&server, None, "sys/health", None).await;
    let error = result.expect_err("a client without a certificate got a response");
    assert!(
        error.contains("CertificateRequired") || error.contains("certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn required_mode_rejects_other_ca() {
    let ca = TestCa::new("clients");
    let stranger = TestCa::new("strangers").issue("mallory");
    let (server, _ca_dir) = server_requiring(&ca).await;

    let result = try_get(&server, Some(&stranger), "sys/health", None).await;
    assert!(
        result.is_err(),
        "a certificate from another CA got a response: {result:?}"
    );
}

#[tokio::test]
async fn required_mode_still_checks_token() {
    let ca = TestCa::new("clients");
    let alice = ca.issue("alice");
    let (server, _ca_dir) = server_requiring(&ca).await;

    let with_token = try_get(
        &server,
        Some(&alice),
        "auth/token/lookup-self",
        Some(&server.root_token),
    )
    .await;
    assert_eq!(with_token, Ok(200));
    let without_token = try_get(&server, Some(&alice), "auth/token/lookup-self", None).await;
    assert_eq!(without_token, Ok(403));
}

#[tokio::test]
async fn optional_mode_lets_token_decide() {
    let ca = TestCa::new("clients");
    let alice = ca.issue("alice");
    let stranger = TestCa::new("strangers").issue("mallory");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.write(dir.path(), "clients.pem");
    let server = TestServer::start_with(|config| {
        config.client_auth = ClientAuth::Optional { ca_path };
    })
    .await;
    let root = server.root_token.clone();

    assert_eq!(
        try_get(&server, None, "auth/token/lookup-self", Some(&root)).await,
        Ok(200)
    );
    assert_eq!(
        try_get(&server, None, "auth/token/lookup-self", None).await,
        Ok(403)
    );
    assert_eq!(
        try_get(&server, Some(&alice), "auth/token/lookup-self", Some(&root)).await,
        Ok(200)
    );
    let result = try_get(&server, Some(&stranger), "sys/health", None).await;
    assert!(
        result.is_err(),
        "an untrusted certificate was accepted in optional mode: {result:?}"
    );
}

#[tokio::test]
async fn reload_replaces_client_ca() {
    let first = TestCa::new("first clients");
    let second = TestCa::new("second clients");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = first.write(dir.path(), "clients.pem");
    let server = TestServer::start_with(|config| {
        config.client_auth = ClientAuth::Required {
            ca_path: ca_path.clone(),
        };
    })
    .await;

    // A connection opened before the reload keeps working afterwards.
    let tcp = TcpStream::connect(server.addr).await.expect("tcp connects");
    let mut old_connection = RawConnection::with_config(
        tcp,
        client_config(&server.cert.ca_pem, Some(&first.issue("old"))),
    )
    .await
    .expect("handshake with the first CA's certificate");
    let response = old_connection
        .request("GET", "/v1/sys/health", &[], b"")
        .await;
    assert_eq!(response.status, 200);

    second.write(dir.path(), "clients.pem");
    server.reloader.reload().expect("reload succeeds");

    let new_client = second.issue("new");
    assert_eq!(
        try_get(&server, Some(&new_client), "sys/health", None).await,
        Ok(200)
    );
    let old_client = first.issue("old");
    assert!(
        try_get(&server, Some(&old_client), "sys/health", None)
            .await
            .is_err(),
        "the first CA is still trusted after the reload"
    );
    let response = old_connection
        .request("GET", "/v1/sys/health", &[], b"")
        .await;
    assert_eq!(response.status, 200, "the open connection broke");
}
