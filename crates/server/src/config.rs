//! Server settings: listen address, certificate files and the transport limits.
//!
//! Every limit has a default chosen for a single node serving applications. All of them are
//! plain public fields, so the CLI can map its flags onto them. This module does not read
//! configuration files or environment variables.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address: loopback only, Vault's port.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8200);

/// Default maximum request body size: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default maximum size of the request line and headers together: 16 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// A token-bucket rate: `per_second` requests per second on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Requests allowed at once after a quiet period.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// Creates a rate; a zero argument is raised to 1.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Client certificate (mutual TLS) mode: whether the server requests a certificate, and
/// which CAs it trusts to sign one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificate is requested; the token alone authenticates a request.
    #[default]
    None,
    /// A certificate is requested but not required. A client without one connects and its
    /// token decides; a client that presents one not signed by a CA in `ca_path` fails the
    /// handshake.
    Optional {
        /// PEM file with the CA certificates that sign client certificates.
        ca_path: PathBuf,
    },
    /// Every client must present a certificate signed by a CA in `ca_path`; a client without
    /// one fails the handshake. The token is still checked on every request.
    Required {
        /// PEM file with the CA certificates that sign client certificates.
        ca_path: PathBuf,
    },
}

impl ClientAuth {
    /// Returns the client CA file, if client certificates are requested.
    pub fn ca_path(&self) -> Option<&Path> {
        match self {
            ClientAuth::None => None,
            ClientAuth::Optional { ca_path } | ClientAuth::Required { ca_path } => Some(ca_path),
        }
    }
}

/// Settings of the HTTPS API server.
///
/// Build it with [`ServerConfig::new`], which fills in the defaults documented on each field,
/// then change the fields you need.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address and port to listen on; port 0 picks a free port (see
    /// [`Server::local_addr`](crate::Server::local_addr)). Default: `127.0.0.1:8200`.
    pub listen_addr: SocketAddr,
    /// PEM file with the server certificate, followed by any intermediate certificates.
    pub cert_path: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// Client certificate authentication; reloaded with the certificate. Default:
    /// [`ClientAuth::None`].
    pub client_auth: ClientAuth,
    /// Largest accepted request body in bytes; larger requests get 413. Default: 1 MiB.
    pub max_body_bytes: usize,
    /// Largest accepted request line plus headers in bytes; larger requests get 431.
    /// Default: 16 KiB.
    pub max_header_bytes: usize,
    /// Time allowed for a whole request, body included; a request still running then gets 408
    /// (body not yet received) or 503. Default: 30 s.
    pub request_timeout: Duration,
    /// Time a connection may take to send a complete request head, and to send its first
    /// request after the TLS handshake; slower connections are closed. Default: 10 s.
    pub header_read_timeout: Duration,
    /// Time allowed for the TLS handshake. Default: 10 s.
    pub tls_handshake_timeout: Duration,
    /// Time a client gets to send a request body, counted from when the server starts reading
    /// it, which is after the token is authenticated. A slower body gets 408. Default: 10 s.
    pub body_read_timeout: Duration,
    /// Requests processed at the same time; more get 503 at once. Default: 256.
    pub max_concurrent_requests: usize,
    /// Requests processed at the same time for one client address, with IPv6 clients counted
    /// by their /64 prefix. More from that address get 503 at once, so one address cannot
    /// take every slot. Clients behind one NAT or proxy share this limit. 0 is raised to 1.
    /// Default: 64.
    pub max_concurrent_requests_per_address: usize,
    /// Rate per token (counted before the token is looked up, so unknown tokens count too).
    /// `None` disables it. Default: 50/s, bursts of 100.
    pub per_token_rate: Option<RateLimit>,
    /// Rate per client IP address, taken from the TCP connection; `X-Forwarded-For` is never
    /// read. `None` disables it. Default: 100/s, bursts of 200.
    pub per_address_rate: Option<RateLimit>,
    /// Time open requests get to finish after shutdown is requested. Default: 10 s.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// Creates a configuration with the default limits for the given certificate and key.
    pub fn new(listen_addr: SocketAddr, cert_path: PathBuf, key_path: PathBuf) -> Self {
        Self {
            listen_addr,
            cert_path,
            key_path,
            client_auth: ClientAuth::None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 256,
            max_concurrent_requests_per_address: 64,
            per_token_rate: Some(RateLimit::new(50, 100)),
            per_address_rate: Some(RateLimit::new(100, 200)),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
