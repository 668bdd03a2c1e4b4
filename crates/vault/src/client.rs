//! The HTTP core: client configuration, TLS, one request with its timeout, and the mapping of
//! Vault's status codes and error bodies to [`VaultError`].
//!
//! Every operation module (`kv`, `transit`, `auth`, `health`, `sys`) builds on
//! [`VaultClient::call`]. This module does not retry: a caller that wants a retry looks at
//! [`VaultError::is_retryable`].

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::auth::{Auth, Session};
use crate::error::VaultError;
use crate::secret::VaultToken;

/// Default time allowed for one request, from connecting to the end of the response.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed to open a connection, within the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum length of Vault error text copied into a [`VaultError`].
const MAX_MESSAGE_LEN: usize = 300;

/// Connection settings for a Vault or OpenBao server: address, CA, timeout and namespace.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// Base address such as `https://vault.example:8200`, without `/v1`.
    pub address: String,
    /// PEM file with the CA certificates that sign the server's certificate. Without it, an
    /// `https` address is checked against the operating system's trust store.
    pub ca_cert: Option<PathBuf>,
    /// Time allowed for one request.
    pub request_timeout: Duration,
    /// Vault Enterprise or OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
}

impl VaultConfig {
    /// Builds a configuration for `address` with the default timeout, no namespace and the
    /// system trust store.
    pub fn new(address: impl Into<String>) -> VaultConfig {
        VaultConfig {
            address: address.into(),
            ca_cert: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            namespace: None,
        }
    }
}

/// A Vault or OpenBao client. Clones share one connection pool and one login session.
#[derive(Clone)]
pub struct VaultClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    pub(crate) address: String,
    timeout: Duration,
    namespace: Option<String>,
    pub(crate) auth: Auth,
    pub(crate) session: RwLock<Option<Arc<Session>>>,
    /// Serialises logins, so concurrent requests that find the token expired log in once.
    pub(crate) login_lock: tokio::sync::Mutex<()>,
    pub(crate) logins: AtomicU64,
    pub(crate) renewals: AtomicU64,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.inner.address)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// A response's status and body. The body stays in a zeroizing buffer because it may carry
/// secret data or a token.
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

/// Whether a request carries the client's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Authenticated {
    Yes,
    No,
}

impl VaultClient {
    /// Builds a client. Nothing is sent yet: call [`VaultClient::login`] before the first
    /// authenticated request, or let the first request log in.
    ///
    /// Fails with [`VaultError::Config`] when the address is not an `http` or `https` URL or
    /// the CA file cannot be read.
    pub fn new(config: VaultConfig, auth: Auth) -> Result<VaultClient, VaultError> {
        let address = config.address.trim_end_matches('/').to_owned();
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(VaultError::Config(format!(
                "address {address:?} must start with http:// or https://"
            )));
        }
        auth.validate()?;

        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(config.ca_cert.as_ref())?)
            .timeout(config.request_timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.request_timeout))
            .build()
            .map_err(|err| VaultError::Config(format!("cannot build HTTP client: {err}")))?;

        let session = auth.initial_session();
        Ok(VaultClient {
            inner: Arc::new(Inner {
                http,
                address,
                timeout: config.request_timeout,
                namespace: config.namespace,
                auth,
                session: RwLock::new(session),
                login_lock: tokio::sync::Mutex::new(()),
                logins: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
            }),
        })
    }

    /// Returns the server address the client talks to.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Sends one request to `/v1/<path>` and returns its status and body, whatever the status.
    ///
    /// `operation` names the call in errors, such as `read kv/data/app/db`. The body, when
    /// given, is serialised JSON. An authenticated request logs in first when an AppRole
    /// client has no valid token.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Zeroizing<Vec<u8>>>,
        authenticated: Authenticated,
        operation: &str,
    ) -> Result<RawResponse, VaultError> {
        let session = match authenticated {
            Authenticated::Yes => Some(self.current_session().await?),
            Authenticated::No => None,
        };
        let token = session.as_ref().map(|session| &session.token);
        self.send_as(method, path, query, body, token, operation)
            .await
    }

    /// Sends a request and fails unless the status is 2xx.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Zeroizing<Vec<u8>>>,
        authenticated: Authenticated,
        operation: &str,
    ) -> Result<RawResponse, VaultError> {
        let response = self
            .send(method, path, query, body, authenticated, operation)
            .await?;
        check_status(&response, operation)?;
        Ok(response)
    }

    /// Sends a request with the given token (or none) and fails unless the status is 2xx.
    /// Logins use it, because they must not trigger another login.
    pub(crate) async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        token: Option<&VaultToken>,
        operation: &str,
    ) -> Result<RawResponse, VaultError> {
        let response = self
            .send_as(method, path, &[], body, token, operation)
            .await?;
        check_status(&response, operation)?;
        Ok(response)
    }

    async fn send_as(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Zeroizing<Vec<u8>>>,
        token: Option<&VaultToken>,
        operation: &str,
    ) -> Result<RawResponse, VaultError> {
        let mut url = format!("{}/v1/{path}", self.inner.address);
        // Every query value this crate sends is a number, `true`/`false` or a status code, so
        // none needs percent-encoding.
        for (index, (key, value)) in query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(value);
        }
        let mut request = self.inner.http.request(method, url);
        if let Some(namespace) = &self.inner.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(token) = token {
            let mut value =
                reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    VaultError::Config("the vault token contains invalid characters".into())
                })?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(body) = body {
            // NOTE: reqwest takes ownership of the body bytes and does not zeroize them after
            // sending; the copy lives until the allocator reuses it.
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }

        let response = request
            .send()
            .await
            .map_err(|err| self.transport_error(operation, &err))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(operation, &err))?;
        Ok(RawResponse {
            status,
            body: Zeroizing::new(bytes.to_vec()),
        })
    }

    fn transport_error(&self, operation: &str, err: &reqwest::Error) -> VaultError {
        if err.is_timeout() {
            return VaultError::Timeout {
                operation: operation.to_owned(),
                timeout_secs: self.inner.timeout.as_secs(),
            };
        }
        VaultError::Unreachable {
            address: self.inner.address.clone(),
            operation: operation.to_owned(),
            reason: error_chain(err),
        }
    }
}

/// Builds the TLS configuration: aws-lc-rs as the provider, TLS 1.3 and 1.2 (Vault's default
/// listener still allows 1.2), and either the given CA file or the system trust store.
fn tls_config(ca_cert: Option<&PathBuf>) -> Result<rustls::ClientConfig, VaultError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| VaultError::Config(format!("cannot configure TLS: {err}")))?;

    let config = match ca_cert {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|err| {
                VaultError::Config(format!("cannot read CA file {}: {err}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|err| {
                    VaultError::Config(format!("invalid PEM in CA file {}: {err}", path.display()))
                })?;
                roots.add(cert).map_err(|err| {
                    VaultError::Config(format!(
                        "invalid certificate in CA file {}: {err}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(VaultError::Config(format!(
                    "CA file {} contains no certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|err| {
                    VaultError::Config(format!("cannot load the system trust store: {err}"))
                })?
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// Maps a non-2xx status to an error. Vault sends its reasons as `{"errors": [...]}`.
pub(crate) fn check_status(response: &RawResponse, operation: &str) -> Result<(), VaultError> {
    let status = response.status;
    if status.is_success() {
        return Ok(());
    }
    let message = error_message(&response.body);
    let operation = operation.to_owned();

    Err(match status.as_u16() {
        400 if message.contains("check-and-set parameter did not match") => {
            VaultError::CasMismatch { operation }
        }
        400 if message.contains("check-and-set parameter required") => {
            VaultError::CasRequired { operation }
        }
        403 => VaultError::PermissionDenied { operation },
        404 => VaultError::NotFound { operation },
        // 429 is Vault's response when it sheds load (and a standby's health code): the request
        // may succeed later, so it counts with the 5xx family.
        429 | 500..=599 => VaultError::Server {
            operation,
            status: status.as_u16(),
            message,
        },
        code => VaultError::Invalid {
            operation,
            status: code,
            message,
        },
    })
}

/// Extracts Vault's error strings, joined and shortened. A body that is not Vault's error
/// shape gives an empty message instead of being echoed.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }

    let Ok(parsed) = serde_json::from_slice::<Errors>(body) else {
        return String::new();
    };
    let mut message = parsed.errors.join("; ").replace('\n', " ");
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// Builds the error for a response body that did not parse.
pub(crate) fn decode_error(operation: &str, err: impl fmt::Display) -> VaultError {
    VaultError::Decode {
        operation: operation.to_owned(),
        reason: err.to_string(),
    }
}

/// Joins an error and its sources, without the URL (reqwest puts it in the message).
fn error_chain(err: &reqwest::Error) -> String {
    let mut message = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    if source.is_none() {
        return err.to_string();
    }
    while let Some(current) = source {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&current.to_string());
        source = current.source();
    }
    message
}

/// Checks a mount name or path before it goes into a URL: segments of `[A-Za-z0-9._-]`, none
/// empty, `.` or `..`. `allow_empty` admits the empty string (a mount's root folder).
pub(crate) fn check_segments(kind: &str, raw: &str, allow_empty: bool) -> Result<(), VaultError> {
    if raw.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(VaultError::Config(format!("{kind} must not be empty")))
        };
    }
    for segment in raw.split('/') {
        let valid_chars = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if segment.is_empty() || segment == "." || segment == ".." || !valid_chars {
            return Err(VaultError::Config(format!(
                "{kind} {raw:?} is invalid: use segments of letters, digits, '.', '_' and '-' \
                 separated by '/'"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::from_u16(status).expect("valid status"),
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let op = "write kv/data/a";
        let cas = r#"{"errors":["check-and-set parameter did not match the current version"]}"#;
        let cas_required = r#"{"errors":["check-and-set parameter required for this call"]}"#;

        assert!(check_status(&response(204, ""), op).is_ok());
        assert!(matches!(
            check_status(&response(400, cas), op),
            Err(VaultError::CasMismatch { .. })
        ));
        assert!(matches!(
            check_status(&response(400, cas_required), op),
            Err(VaultError::CasRequired { .. })
        ));
        assert!(matches!(
            check_status(&response(403, r#"{"errors":["permission denied"]}"#), op),
            Err(VaultError::PermissionDenied { .. })
        ));
        assert!(matches!(
            check_status(&response(404, r#"{"errors":[]}"#), op),
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            check_status(&response(503, r#"{"errors":["Vault is sealed"]}"#), op),
            Err(VaultError::Server { status: 503, .. })
        ));
        assert!(matches!(
            check_status(&response(400, r#"{"errors":["bad"]}"#), op),
            Err(VaultError::Invalid { status: 400, .. })
        ));
    }

    #[test]
    fn error_message_ignores_other_bodies() {
        assert_eq!(error_message(br#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(error_message(b"<html>proxy error</html>"), "");
        let long = format!(r#"{{"errors":["{}"]}}"#, "x".repeat(1000));
        assert!(error_message(long.as_bytes()).len() <= MAX_MESSAGE_LEN + 3);
    }

    #[test]
    fn path_segments_are_checked() {
        assert!(check_segments("path", "team/app-1/db_v2", false).is_ok());
        assert!(check_segments("path", "", true).is_ok());
        for bad in ["", "a//b", "../x", "a/./b", "a b", "a?b", "a%2f"] {
            assert!(
                check_segments("path", bad, false).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn address_needs_http_scheme() {
        let result = VaultClient::new(
            VaultConfig::new("vault.example:8200"),
            Auth::Token(crate::VaultToken::new("t")),
        );
        assert!(matches!(result, Err(VaultError::Config(_))));
    }
}
