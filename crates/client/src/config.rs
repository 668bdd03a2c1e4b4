//! Client configuration: the builder, the environment variables it reads and the TLS setup.
//!
//! TLS is rustls with the aws-lc-rs provider set explicitly, TLS 1.3 only, trusting only the
//! configured CA. The token is kept in a zeroizing buffer and never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::breaker::BreakerConfig;
use crate::client::Client;
use crate::error::Error;

/// Variable with the server address, e.g. `https://127.0.0.1:8200`.
pub const ADDR_VAR: &str = "KEYWARD_ADDR";
/// Variable with the token.
pub const TOKEN_VAR: &str = "KEYWARD_TOKEN";
/// Variable with the path of a file that contains the token (used when `KEYWARD_TOKEN` is unset).
pub const TOKEN_FILE_VAR: &str = "KEYWARD_TOKEN_FILE";
/// Variable with the path of the PEM file of the CA that signed the server's certificate.
pub const CACERT_VAR: &str = "KEYWARD_CACERT";

/// Default time a fetched secret is served from the cache without asking the server.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default maximum age of a cached secret that is served while the server is unavailable.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(15 * 60);

/// Source of the token.
enum TokenSource {
    Value(Zeroizing<String>),
    File(PathBuf),
}

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn example() -> Result<(), keyward_client::Error> {
/// let client = keyward_client::ClientBuilder::from_env()?
///     .cache_ttl(std::time::Duration::from_secs(30))
///     .env_fallback("app/openai", "api_key", "OPENAI_API_KEY")
///     .build()?;
/// let key = client.get_field("app/openai", "api_key").await?;
/// # let _ = key;
/// # Ok(())
/// # }
/// ```
pub struct ClientBuilder {
    addr: Option<String>,
    token: Option<TokenSource>,
    ca_file: Option<PathBuf>,
    ca_pem: Option<Vec<u8>>,
    pub(crate) cache_ttl: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) breaker: BreakerConfig,
    pub(crate) fallback: BTreeMap<String, BTreeMap<String, String>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addr", &self.addr)
            .field("ca_file", &self.ca_file)
            .field("cache_ttl", &self.cache_ttl)
            .field("max_stale", &self.max_stale)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// Starts an empty configuration with the default cache and breaker settings.
    pub fn new() -> Self {
        Self {
            addr: None,
            token: None,
            ca_file: None,
            ca_pem: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            max_stale: DEFAULT_MAX_STALE,
            breaker: BreakerConfig::default(),
            fallback: BTreeMap::new(),
        }
    }

    /// Starts from `KEYWARD_ADDR`, `KEYWARD_TOKEN` (or `KEYWARD_TOKEN_FILE`) and
    /// `KEYWARD_CACERT`. Missing variables are reported by [`ClientBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        let mut builder = Self::new();
        if let Ok(addr) = std::env::var(ADDR_VAR) {
            builder = builder.addr(addr);
        }
        match std::env::var(TOKEN_VAR) {
            Ok(token) if !token.is_empty() => builder = builder.token(token),
            _ => {
                if let Some(path) = std::env::var_os(TOKEN_FILE_VAR) {
                    builder = builder.token_file(path);
                }
            }
        }
        if let Some(path) = std::env::var_os(CACERT_VAR) {
            builder = builder.ca_file(path);
        }
        Ok(builder)
    }

    /// Sets the server address, `https://HOST:PORT`.
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// Sets the token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenSource::Value(Zeroizing::new(token.into())));
        self
    }

    /// Reads the token from a file at build time (surrounding whitespace is ignored).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Some(TokenSource::File(path.into()));
        self
    }

    /// Trusts the CA certificates in a PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Trusts the CA certificates in PEM text.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Sets how long a fetched secret is served from the cache without asking the server.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets the maximum age of a cached secret served while the server is unavailable. Values
    /// below the cache TTL are raised to it.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// Sets the circuit breaker's threshold and backoff.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Serves field `field` of secret `path` from environment variable `var` when the server
    /// is unavailable and no cached value is usable.
    pub fn env_fallback(
        mut self,
        path: impl Into<String>,
        field: impl Into<String>,
        var: impl Into<String>,
    ) -> Self {
        self.fallback
            .entry(path.into())
            .or_default()
            .insert(field.into(), var.into());
        self
    }

    /// Checks the configuration and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let addr = parse_addr(
            self.addr
                .as_deref()
                .ok_or_else(|| Error::Config(format!("no server address: set {ADDR_VAR}")))?,
        )?;
        let token = match &self.token {
            Some(TokenSource::Value(token)) => token.clone(),
            Some(TokenSource::File(path)) => read_token_file(path)?,
            None => {
                return Err(Error::Config(format!(
                    "no token: set {TOKEN_VAR} or {TOKEN_FILE_VAR}"
                )));
            }
        };
        if token.trim().is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        let pem = match (&self.ca_pem, &self.ca_file) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "cannot read CA file {}: {e} (check {CACERT_VAR})",
                    path.display()
                ))
            })?,
            (None, None) => {
                return Err(Error::Config(format!(
                    "no CA certificate: set {CACERT_VAR} to the server's CA file"
                )));
            }
        };
        let tls = tls_config(&pem)?;
        Client::from_parts(self, addr, token, tls)
    }
}

fn read_token_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "cannot read token file {}: {e} (check {TOKEN_FILE_VAR})",
            path.display()
        ))
    })?);
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// Checks the server address and returns it without a trailing slash.
fn parse_addr(raw: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::Config(format!("invalid {ADDR_VAR} {raw:?}: {why}"));
    let url = reqwest::Url::parse(raw).map_err(|_| invalid("expected https://HOST:PORT"))?;
    if url.scheme() != "https" {
        return Err(invalid("Keyward serves HTTPS only (use https://HOST:PORT)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(format!(
            "invalid {ADDR_VAR}: expected https://HOST:PORT without a user name or password"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "expected https://HOST:PORT without a query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Builds the TLS 1.3 configuration that trusts only the certificates in `pem`.
pub(crate) fn tls_config(pem: &[u8]) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for item in CertificateDer::pem_slice_iter(pem) {
        let certificate =
            item.map_err(|e| Error::Config(format!("invalid PEM in the CA certificate: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| Error::Config(format!("invalid CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Config(
            "no certificate found in the CA file (expected PEM)".into(),
        ));
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Config(format!("cannot configure TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_must_be_https() {
        assert!(parse_addr("http://127.0.0.1:8200").is_err());
        assert!(parse_addr("https://u:p@127.0.0.1:8200").is_err());
        assert_eq!(
            parse_addr("https://127.0.0.1:8200/").ok().as_deref(),
            Some("https://127.0.0.1:8200")
        );
    }

    #[test]
    fn missing_settings_name_the_variable() {
        let error = ClientBuilder::new().build().expect_err("no address");
        assert!(error.to_string().contains(ADDR_VAR), "{error}");

        let error = ClientBuilder::new()
            .addr("https://127.0.0.1:1")
            .build()
            .expect_err("no token");
        assert!(error.to_string().contains(TOKEN_VAR), "{error}");

        let error = ClientBuilder::new()
            .addr("https://127.0.0.1:1")
            .token("kwt.x")
            .build()
            .expect_err("no CA");
        assert!(error.to_string().contains(CACERT_VAR), "{error}");
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let builder = ClientBuilder::new()
            .addr("https://127.0.0.1:1")
            .token("kw-canary-token-debug");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("kw-canary"), "{shown}");
    }

    #[test]
    fn ca_without_certificates_is_rejected() {
        assert!(tls_config(b"not a certificate").is_err());
    }
}
