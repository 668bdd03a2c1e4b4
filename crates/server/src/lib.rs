//! Keyward's HTTPS API: Vault KV v2–compatible routes over axum and rustls.
//!
//! The server maps HTTP requests onto [`SecretsManager`] calls and back; policy checks, audit
//! entries, events, token hashing and lockout all happen in the manager. What the server adds
//! is transport. It allows TLS 1.3 only, so TLS 1.2 and older fail the handshake. It can ask
//! for client certificates from a configured CA, optionally or as a requirement
//! ([`ClientAuth`]). It reloads the certificate and client CA file on SIGHUP or through
//! [`Server::reload_certificate`], and logs a warning when the certificate expires within 14
//! days. It sets HSTS and `Cache-Control: no-store` on every response it generates. It
//! exports Prometheus metrics at `sys/metrics`. It enforces body and header size
//! limits, a body read timeout, a request deadline, per-token and per-address rate limits, and
//! concurrency limits in total and per client address.
//! Every request turned away before it reached an operation gets an audit entry through
//! `SecretsManager::record_rejected`.
//!
//! Existing Vault clients work unchanged: the `bao`/`vault` CLIs' `kv`, `token` and `policy`
//! commands, and libraries that speak KV v2 at `secret/`. Tokens are read from `X-Vault-Token`
//! or `Authorization: Bearer`.
//!
//! # Routes (all under `/v1/`)
//!
//! | path | methods |
//! |---|---|
//! | `secret/data/<path>` | GET (`?version=N`), PUT/POST, PATCH (merge patch), DELETE |
//! | `secret/{delete,undelete,destroy}/<path>` | PUT/POST `{"versions":[...]}` |
//! | `secret/metadata/<path>` | GET, PUT/POST, DELETE; LIST or `GET ?list=true` on folders |
//! | `sys/health` | GET, HEAD (no token needed) |
//! | `sys/metrics?format=prometheus` | GET (any valid token) |
//! | `sys/internal/ui/mounts/<path>` | GET |
//! | `auth/token/{create,create-orphan,lookup-self,renew-self,revoke-self,revoke-accessor}` | as in Vault |
//! | `sys/policies/acl[/<name>]`, `sys/policy[/<name>]` | as in Vault |
//! | `sys/rotation/policy/<path>` | GET, PUT/POST (JSON rotation policy), DELETE |
//! | `sys/rotation/status/<path>` | GET |
//! | `sys/rotate/<path>` | PUT/POST `{"emergency": bool}` |
//! | `sys/keyward/compromised` | PUT/POST `{"path": ..., "reason": ...}` |
//!
//! # Not supported
//!
//! Other secret engines and auth methods (a client certificate is checked at the handshake
//! but never replaces the token), CORS (no CORS headers are ever sent),
//! `X-HTTP-Method-Override`, and token options such as `num_uses` or periodic tokens
//! (rejected with 400). Response wrapping is not implemented either: a request
//! with `X-Vault-Wrap-TTL` or `X-Vault-Wrap-Format` gets 400 before any operation runs, rather
//! than an unwrapped response. Errors that hyper generates before a request reaches the router
//! (malformed HTTP, a request head over 64 KiB, or more than 100 header fields, which get 431)
//! carry no HSTS header and no audit entry.
//!
//! # Example
//!
//! ```
//! use keyward_server::{ServerConfig, generate_dev_certificate};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let files = generate_dev_certificate(dir.path(), &[])?;
//! let config = ServerConfig::new("127.0.0.1:0".parse()?, files.cert_path, files.key_path);
//! assert_eq!(config.max_body_bytes, 1024 * 1024);
//! // With a manager: `keyward_server::serve(manager, config, shutdown_signal).await?`.
//! # Ok(())
//! # }
//! ```

mod config;
mod errors;
mod limits;
mod request;
mod telemetry;
mod tls;
mod vault;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use keyward_manager::SecretsManager;
use tokio::net::TcpListener;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{
    ClientAuth, DEFAULT_LISTEN_ADDR, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, RateLimit,
    ServerConfig,
};
pub use errors::ServerError;
pub use telemetry::install_metrics_recorder;
pub use tls::{
    CertificateReloader, DevCertificate, TlsError, generate_dev_certificate, load_server_config,
};
pub use vault::params::parse_go_duration as parse_duration;
#[doc(hidden)]
pub use vault::parse_kv_request_parts;

use limits::Limits;
use request::AppState;
use telemetry::HandshakeMetrics;
use tls::CertificateExpiry;

/// HSTS for two years on the host and its subdomains, eligible for browser preload lists.
const HSTS: &str = "max-age=63072000; includeSubDomains; preload";

/// Smallest read buffer hyper accepts for HTTP/1 connections.
const MIN_HYPER_BUFFER: usize = 64 * 1024;

/// Builds the API router over `manager` with the limits from `config`.
///
/// The router reads the client address from axum's `ConnectInfo<SocketAddr>`: serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, or add a
/// `MockConnectInfo` layer in tests. A request without it gets 500.
///
/// It also installs the metrics recorder (see [`install_metrics_recorder`]). Without a TLS
/// server around it, `sys/metrics` reports no certificate expiry.
pub fn router(manager: Arc<SecretsManager>, config: &ServerConfig) -> Router {
    build_router(manager, config, CertificateExpiry::default(), None)
}

fn build_router(
    manager: Arc<SecretsManager>,
    config: &ServerConfig,
    certificate_expiry: CertificateExpiry,
    rotation: Option<Arc<keyward_rotation::Scheduler>>,
) -> Router {
    telemetry::install_metrics_recorder();
    let state = Arc::new(AppState {
        manager,
        limits: Limits::new(config),
        max_body_bytes: config.max_body_bytes,
        body_read_timeout: config.body_read_timeout,
        cluster_id: uuid::Uuid::new_v4().to_string(),
        certificate_expiry,
        rotation,
    });
    let sensitive: Arc<[HeaderName]> = Arc::new([
        header::AUTHORIZATION,
        HeaderName::from_static(vault::VAULT_TOKEN_HEADER),
    ]);

    Router::new()
        .fallback(vault::dispatch)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            limits::enforce,
        ))
        .layer(axum::middleware::from_fn(request::request_context))
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .layer(SetSensitiveRequestHeadersLayer::from_shared(sensitive))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

/// Builds the acceptor of every connection. It sets TCP_NODELAY on the socket, then runs the
/// TLS handshake with the reloader's certificate within `handshake_timeout` and counts failures.
///
/// Without TCP_NODELAY, the first response on a new connection waited for the client's delayed
/// ACK of the session tickets written just before it. That added about 40 ms to one request
/// in two of a client that connects anew each time, such as curl or the CLI.
fn tls_acceptor(
    reloader: &CertificateReloader,
    handshake_timeout: std::time::Duration,
) -> HandshakeMetrics<RustlsAcceptor<NoDelayAcceptor>> {
    HandshakeMetrics(
        RustlsAcceptor::new(reloader.rustls_config())
            .handshake_timeout(handshake_timeout)
            .acceptor(NoDelayAcceptor::new()),
    )
}

/// A bound, not yet running HTTPS server.
///
/// ```no_run
/// # async fn example(manager: std::sync::Arc<keyward_manager::SecretsManager>, config: keyward_server::ServerConfig) -> Result<(), keyward_server::ServerError> {
/// let server = keyward_server::Server::bind(manager, config).await?;
/// println!("listening on https://{}", server.local_addr());
/// server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Router,
    reloader: CertificateReloader,
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads the certificate, key and client CA file, binds the listen address and builds the
    /// router.
    pub async fn bind(
        manager: Arc<SecretsManager>,
        config: ServerConfig,
    ) -> Result<Server, ServerError> {
        Self::bind_with_rotation(manager, config, None).await
    }

    /// Like [`Server::bind`], and serves the rotation routes (`sys/rotation/...`,
    /// `sys/rotate/<path>`, `sys/keyward/compromised`) through `rotation` when it is given.
    pub async fn bind_with_rotation(
        manager: Arc<SecretsManager>,
        config: ServerConfig,
        rotation: Option<Arc<keyward_rotation::Scheduler>>,
    ) -> Result<Server, ServerError> {
        let reloader =
            CertificateReloader::load(&config.cert_path, &config.key_path, &config.client_auth)?;
        let bind_error = |source| ServerError::Bind {
            addr: config.listen_addr,
            source,
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let app = build_router(manager, &config, reloader.expiry(), rotation);
        Ok(Server {
            listener,
            local_addr,
            app,
            reloader,
            config,
        })
    }

    /// Returns the bound address; with port 0 in the configuration, the port the system picked.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Reads the certificate, key and client CA files again and uses them for new connections.
    /// Open connections keep their certificate. On failure the old configuration stays in use.
    pub fn reload_certificate(&self) -> Result<(), TlsError> {
        self.reloader.reload()
    }

    /// Returns a handle that reloads this server's certificate after [`Server::run`] took it.
    pub fn certificate_reloader(&self) -> CertificateReloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting connections and gives open
    /// requests [`ServerConfig::shutdown_grace`] to finish. SIGHUP reloads the certificate.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let config = self.config;
        let handle: Handle<SocketAddr> = Handle::new();

        let shutdown_handle = handle.clone();
        let grace = config.shutdown_grace;
        let shutdown_task = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing open requests");
            shutdown_handle.graceful_shutdown(Some(grace));
        });
        let sighup_task = tokio::spawn(self.reloader.clone().reload_on_sighup());

        let acceptor = tls_acceptor(&self.reloader, config.tls_handshake_timeout);
        let mut server = axum_server::Server::from_listener(self.listener)
            .acceptor(acceptor)
            .handle(handle)
            .first_request_timeout(config.header_read_timeout);

        // hyper's own head limit stays above ours, so oversized heads normally reach the
        // middleware and get a Vault-shaped 431 with the security headers and an audit entry.
        let hyper_buffer = (config.max_header_bytes * 2).max(MIN_HYPER_BUFFER);
        server
            .http_builder()
            .http1()
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(hyper_buffer);
        server
            .http_builder()
            .http2()
            .max_header_list_size(u32::try_from(hyper_buffer).unwrap_or(u32::MAX))
            .max_concurrent_streams(128);

        let client_certificates = match &config.client_auth {
            ClientAuth::None => "off",
            ClientAuth::Optional { .. } => "optional",
            ClientAuth::Required { .. } => "required",
        };
        tracing::info!(addr = %self.local_addr, client_certificates, "listening (TLS 1.3)");
        let result = server
            .serve(self.app.into_make_service_with_connect_info::<SocketAddr>())
            .await;

        sighup_task.abort();
        shutdown_task.abort();
        tracing::info!("server stopped");
        result.map_err(ServerError::Serve)
    }
}

/// Binds and runs the server until `shutdown` completes.
pub async fn serve(
    manager: Arc<SecretsManager>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(manager, config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum_server::accept::Accept;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("dev certificate");
        let reloader =
            CertificateReloader::load(&files.cert_path, &files.key_path, &ClientAuth::None)
                .expect("certificate loads");
        let acceptor = tls_acceptor(&reloader, Duration::from_secs(10));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("local address");

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(files.ca_pem.as_bytes()) {
            roots.add(cert.expect("CA parses")).expect("CA is usable");
        }
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connects");
            let name = ServerName::try_from("localhost").expect("valid name");
            tokio_rustls::TlsConnector::from(Arc::new(client_config))
                .connect(name, tcp)
                .await
                .expect("client handshake")
        });

        let (tcp, _) = listener.accept().await.expect("accepts");
        let (stream, _service) = acceptor.accept(tcp, ()).await.expect("server handshake");
        let _client = client.await.expect("client task");

        assert!(stream.get_ref().0.nodelay().expect("reads TCP_NODELAY"));
    }
}
