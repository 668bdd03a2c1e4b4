//! A real Keyward server on 127.0.0.1 with a fresh data dir, a development certificate and a
//! root token, plus two clients for it. One is reqwest (TLS 1.3, trusting only the dev CA). The
//! other is a raw HTTP/1.1-over-TLS connection that sends paths exactly as written.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyward_audit::{AuditKey, AuditLog};
use keyward_crypto::{Keyring, RootKey, WrappedKeyring};
use keyward_manager::{KeyManagement, KeyringSink, ManagerConfig, RequestContext, SecretsManager};
use keyward_server::{CertificateReloader, DevCertificate, Server, ServerConfig};
use keyward_store::SqliteStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Root key that seals the test server's `keyring.json`.
pub const ROOT_KEY_BYTES: [u8; 32] = [0x24; 32];

/// Saves the wrapped keyring to a file, as `keyward` does (without its crash safety).
struct KeyringFile(PathBuf);

impl KeyringSink for KeyringFile {
    fn save(&self, wrapped: &WrappedKeyring) -> Result<(), String> {
        std::fs::write(&self.0, wrapped.to_json()).map_err(|error| error.to_string())
    }
}

/// A running server and what a test needs to reach it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub root_token: String,
    pub cert: DevCertificate,
    pub reloader: CertificateReloader,
    pub audit_path: PathBuf,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with default limits.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` changed its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = keyward_server::generate_dev_certificate(dir.path(), &[]).expect("dev cert");

        let keyring = Arc::new(Keyring::generate().expect("keyring"));
        let store = SqliteStore::open(&dir.path().join("keyward.db"), keyring)
            .await
            .expect("store opens");
        let audit_path = dir.path().join("audit.log");
        let audit =
            AuditLog::open(&audit_path, AuditKey::from_bytes([9; 32])).expect("audit opens");
        let keys = KeyManagement {
            keyring: store.keyring_handle(),
            root_key: RootKey::from_bytes(&ROOT_KEY_BYTES).expect("root key"),
            sink: Arc::new(KeyringFile(dir.path().join("keyring.json"))),
        };
        let manager =
            SecretsManager::new(Arc::new(store), audit, [5; 32], ManagerConfig::default())
                .await
                .expect("manager starts")
                .with_key_management(keys);
        let bootstrap = RequestContext {
            request_id: "bootstrap".into(),
            remote_addr: "127.0.0.1".parse().expect("valid address"),
        };
        let root = manager
            .create_root_token(&bootstrap)
            .await
            .expect("root token");

        let mut config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("valid address"),
            cert.cert_path.clone(),
            cert.key_path.clone(),
        );
        adjust(&mut config);
        let server = Server::bind(Arc::new(manager), config)
            .await
            .expect("server binds");
        let addr = server.local_addr();
        let reloader = server.certificate_reloader();

        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(async move {
            let result = server
                .run(async move {
                    let _ = stop.await;
                })
                .await;
            result.expect("server runs");
        });

        TestServer {
            addr,
            root_token: root.token.expose().to_owned(),
            cert,
            reloader,
            audit_path,
            dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Requests shutdown and waits until the server has stopped.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("server stops in time")
                .expect("server task ends cleanly");
        }
    }

    /// `https://localhost:<port>/v1/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}/v1/{path}", self.addr.port())
    }

    /// Builds a reqwest client that speaks TLS 1.3 only and trusts only the dev CA.
    pub fn client(&self) -> reqwest::Client {
        client_for(&self.cert.ca_pem)
    }

    /// Builds a client like [`TestServer::client`] whose connections come from `local`, a
    /// loopback address such as 127.0.0.2.
    pub fn client_from(&self, local: IpAddr) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.cert.ca_pem.as_bytes()).expect("CA parses");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .tls_version_min(reqwest::tls::Version::TLS_1_3)
            .timeout(Duration::from_secs(20))
            .local_address(local)
            .build()
            .expect("client builds")
    }

    /// Sends `method` to `path` with the root token and an optional JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.call_as(&self.root_token, method, path, body).await
    }

    /// Sends `method` to `path` with `token` and an optional JSON body.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut request = self.client().request(method, self.url(path));
        if !token.is_empty() {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request completes");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body reads");
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("body is JSON")
        };
        (status, value)
    }

    /// Opens a raw HTTP/1.1 connection over TLS 1.3 that trusts `ca_pem`.
    pub async fn raw_connection(&self, ca_pem: &str) -> std::io::Result<RawConnection> {
        RawConnection::open(self.addr, ca_pem).await
    }

    /// Opens a raw connection like [`TestServer::raw_connection`] from the local address
    /// `local`, trusting the dev CA.
    pub async fn raw_connection_from(&self, local: IpAddr) -> std::io::Result<RawConnection> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(local, 0))?;
        let tcp = socket.connect(self.addr).await?;
        RawConnection::over(tcp, &self.cert.ca_pem).await
    }

    /// Returns the keyring the server saved last, from `keyring.json` in its data dir.
    pub fn saved_keyring(&self) -> WrappedKeyring {
        let json = std::fs::read_to_string(self.dir.path().join("keyring.json"))
            .expect("keyring.json was saved");
        WrappedKeyring::from_json(&json).expect("keyring.json parses")
    }

    /// Counts audit entries of type `rejected` whose reason is `reason`.
    pub fn rejected_entries(&self, reason: &str) -> usize {
        let log = std::fs::read_to_string(&self.audit_path).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["entry"]["type"] == "rejected" && line["entry"]["reason"] == reason)
            .count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Builds a reqwest client restricted to TLS 1.3 that trusts only `ca_pem`.
pub fn client_for(ca_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA parses");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .tls_version_min(reqwest::tls::Version::TLS_1_3)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client builds")
}

/// Builds a rustls client configuration trusting `ca_pem`, limited to `versions`.
pub fn rustls_client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA parses")).expect("CA is usable");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions are supported")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTP/1.1 response read from a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Returns the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A keep-alive HTTP/1.1 connection over TLS that writes requests byte for byte.
pub struct RawConnection {
    stream: TlsStream<TcpStream>,
    buffer: Vec<u8>,
}

impl RawConnection {
    /// Connects to `addr` as `localhost`, trusting `ca_pem`, with TLS 1.3 only.
    pub async fn open(addr: SocketAddr, ca_pem: &str) -> std::io::Result<RawConnection> {
        let tcp = TcpStream::connect(addr).await?;
        Self::over(tcp, ca_pem).await
    }

    /// Runs the TLS 1.3 handshake as `localhost` over an open TCP connection.
    pub async fn over(tcp: TcpStream, ca_pem: &str) -> std::io::Result<RawConnection> {
        let config = rustls_client_config(ca_pem, &[&rustls::version::TLS13]);
        Self::with_config(tcp, config).await
    }

    /// Runs the handshake as `localhost` with a caller-built client configuration, for
    /// example one that presents a client certificate.
    pub async fn with_config(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<RawConnection> {
        let name = ServerName::try_from("localhost").expect("valid name");
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(RawConnection {
            stream,
            buffer: Vec::new(),
        })
    }

    /// Returns the certificate the server presented.
    pub fn peer_certificate(&self) -> CertificateDer<'static> {
        let (_, connection) = self.stream.get_ref();
        connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .expect("server sent a certificate")
            .clone()
            .into_owned()
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write succeeds");
        self.stream.flush().await.expect("flush succeeds");
    }

    /// Sends `method path` with `headers` and `body`, keeping the connection open, and reads
    /// the response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes).await;
        self.read_response().await
    }

    /// Reads one response (with a `Content-Length` body or none).
    pub async fn read_response(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);

        let body_start = head_end + 4;
        while self.buffer.len() < body_start + length {
            self.fill().await;
        }
        let body = self.buffer[body_start..body_start + length].to_vec();
        self.buffer.drain(..body_start + length);
        RawResponse {
            status,
            headers,
            body,
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
            .await
            .expect("response arrives in time")
            .expect("read succeeds");
        assert!(read > 0, "connection closed before a full response");
        self.buffer.extend_from_slice(&chunk[..read]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
