//! A small HTTPS client for the CLI's commands: TLS 1.3 only, the configured CA only, the
//! token in `X-Vault-Token`, Vault's JSON envelope and error shape.
//!
//! The address, the token and the CA file are checked before anything is sent, so a mistake
//! in the environment fails with a usage error that names the variable to fix. Transport
//! failures are explained by the `failure` module.

mod failure;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cli::ClientArgs;
use crate::error::CliError;

/// Time allowed for one request, from connecting to the end of the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Error text of the server's lockout of an address with repeated authentication failures.
const LOCKOUT_MESSAGE: &str = "too many failed authentication attempts";

/// A connection to a Keyward server.
pub struct Client {
    http: reqwest::Client,
    addr: String,
    cacert: PathBuf,
    token: Zeroizing<String>,
}

impl Client {
    /// Builds a client from the command's connection options. Fails with a usage error when
    /// the address is not an `https://` URL, no token is given, or the CA file contains no
    /// certificate.
    pub fn new(args: &ClientArgs) -> Result<Self, CliError> {
        let addr = parse_addr(&args.addr)?;
        let token = match &args.token {
            Some(token) if !token.is_empty() => Zeroizing::new(token.clone()),
            _ => {
                return Err(CliError::Usage(
                    "no token: set KEYWARD_TOKEN or pass --token".into(),
                ));
            }
        };
        let cacert = args.cacert.clone().ok_or_else(|| {
            CliError::Usage(
                "no CA certificate: set KEYWARD_CACERT or --cacert to the server's CA file".into(),
            )
        })?;
        let roots = load_roots(&cacert)?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CliError::Other(format!("cannot configure TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CliError::Other(format!("cannot build HTTP client: {e}")))?;

        Ok(Self {
            http,
            addr,
            cacert,
            token,
        })
    }

    /// Sends a request to `/v1/<path>` and returns the JSON body, or `Value::Null` for 204.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}/v1/{}", self.addr, path);
        let mut request = self
            .http
            .request(method, &url)
            .header("X-Vault-Token", self.token.as_str());
        if let Some(body) = body {
            request = request.json(body);
        }

        let response = request
            .send()
            .await
            .map_err(|e| failure::describe(&self.addr, &self.cacert, REQUEST_TIMEOUT, &e))?;
        let status = response.status();
        let retry_after_secs = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let bytes = response.bytes().await.map_err(|e| {
            CliError::Connection(format!(
                "reading the response from {} failed: {}",
                self.addr,
                failure::error_chain(&e)
            ))
        })?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                CliError::Other(format!("server sent invalid JSON (status {status}): {e}"))
            })?
        };

        if status.is_success() {
            return Ok(body);
        }
        Err(status_error(status, path, &body, retry_after_secs))
    }
}

/// Checks a server address (`KEYWARD_ADDR` or `--addr`) and returns it without a trailing
/// slash. A path is kept, for a server behind a proxy under a prefix.
fn parse_addr(raw: &str) -> Result<String, CliError> {
    let invalid = |why: &str| CliError::Usage(format!("invalid KEYWARD_ADDR {raw:?}: {why}"));
    let expected = "expected https://HOST:PORT";

    let url = reqwest::Url::parse(raw).map_err(|_| invalid(expected))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            return Err(invalid("Keyward serves HTTPS only (use https://HOST:PORT)"));
        }
        _ => return Err(invalid(expected)),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(expected));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The value is not echoed: it may hold a password.
        return Err(CliError::Usage(
            "invalid KEYWARD_ADDR: expected https://HOST:PORT without a user name or password"
                .into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "expected https://HOST:PORT without a query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Reads the CA file's PEM certificates into a root store.
fn load_roots(path: &Path) -> Result<rustls::RootCertStore, CliError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read CA file {}: {e} (check KEYWARD_CACERT)",
            path.display()
        ))
    })?;

    let mut roots = rustls::RootCertStore::empty();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let certificate = item.map_err(|e| {
            CliError::Usage(format!("invalid PEM in CA file {}: {e}", path.display()))
        })?;
        roots.add(certificate).map_err(|e| {
            CliError::Usage(format!(
                "invalid certificate in CA file {}: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(CliError::Usage(format!(
            "no certificate found in {} (expected a PEM file)",
            path.display()
        )));
    }
    Ok(roots)
}

/// Maps an error response onto the CLI's error kinds. `retry_after_secs` is the response's
/// `Retry-After` header, which the server sends with 429.
fn status_error(
    status: StatusCode,
    path: &str,
    body: &Value,
    retry_after_secs: Option<u64>,
) -> CliError {
    let messages: Vec<&str> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let detail = if messages.is_empty() {
        String::new()
    } else {
        format!(": {}", messages.join("; "))
    };

    let wait = match retry_after_secs {
        Some(secs) => format!("retry in {secs} s"),
        None => "retry later".to_owned(),
    };

    match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => CliError::Auth(format!(
            "permission denied on {path}{detail} (check KEYWARD_TOKEN and the token's policies)"
        )),
        StatusCode::TOO_MANY_REQUESTS if messages.iter().any(|m| m.contains(LOCKOUT_MESSAGE)) => {
            CliError::Auth(format!(
                "too many failed authentication attempts: the server locks out this address \
                 for a few minutes after repeated failures; {wait} with a valid KEYWARD_TOKEN"
            ))
        }
        StatusCode::TOO_MANY_REQUESTS => CliError::Other(match retry_after_secs {
            Some(secs) => format!("rate limited: retry later (in {secs} s)"),
            None => "rate limited: retry later".to_owned(),
        }),
        StatusCode::NOT_FOUND => CliError::NotFound(format!("no value found at {path}")),
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::METHOD_NOT_ALLOWED => {
            CliError::Usage(format!("request rejected ({status}){detail}"))
        }
        _ => CliError::Other(format!("server error ({status}){detail}")),
    }
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use serde_json::json;

    use super::*;

    #[test]
    fn https_addresses_are_accepted() {
        let cases = [
            ("https://127.0.0.1:8200", "https://127.0.0.1:8200"),
            ("https://127.0.0.1:8200/", "https://127.0.0.1:8200"),
            ("https://localhost:8200", "https://localhost:8200"),
            ("https://[::1]:8200", "https://[::1]:8200"),
            (
                "https://vault.example:8200/keyward/",
                "https://vault.example:8200/keyward",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_addr(raw).ok().as_deref(), Some(expected), "{raw}");
        }
    }

    #[test]
    fn non_https_addresses_are_rejected() {
        for raw in [
            "127.0.0.1:8200",
            "localhost:8200",
            "",
            "https://",
            "ftp://127.0.0.1:8200",
            "https://127.0.0.1:8200/?x=1",
        ] {
            let error = parse_addr(raw).expect_err(raw);
            assert!(matches!(error, CliError::Usage(_)), "{raw}: {error}");
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid KEYWARD_ADDR {raw:?}: expected https://")),
                "{raw}: {message}"
            );
        }
    }

    #[test]
    fn address_password_is_not_echoed() {
        let error = parse_addr("https://user:hunter2@127.0.0.1:8200").expect_err("credentials");
        assert!(matches!(error, CliError::Usage(_)), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn http_address_says_https_only() {
        let error = parse_addr("http://127.0.0.1:8200").expect_err("plain HTTP");
        assert!(
            error.to_string().contains("Keyward serves HTTPS only"),
            "{error}"
        );
    }

    #[test]
    fn lockout_is_auth_failure() {
        let body =
            json!({ "errors": ["too many failed authentication attempts: try again later"] });
        let error = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            "secret/data/a",
            &body,
            Some(60),
        );
        assert!(matches!(error, CliError::Auth(_)), "{error}");
        assert_eq!(error.exit_code(), ExitCode::from(3));
        let message = error.to_string();
        assert!(
            message.contains("locks out this address for a few minutes"),
            "{message}"
        );
        assert!(message.contains("retry in 60 s"), "{message}");
    }

    #[test]
    fn rate_limit_is_other_failure() {
        let body = json!({ "errors": ["rate limit exceeded: slow down and retry later"] });
        let error = status_error(StatusCode::TOO_MANY_REQUESTS, "secret/data/a", &body, None);
        assert!(matches!(error, CliError::Other(_)), "{error}");
        assert_eq!(error.exit_code(), ExitCode::from(1));
        assert_eq!(error.to_string(), "rate limited: retry later");
        let timed = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            "secret/data/a",
            &body,
            Some(2),
        );
        assert_eq!(timed.to_string(), "rate limited: retry later (in 2 s)");
    }
}
