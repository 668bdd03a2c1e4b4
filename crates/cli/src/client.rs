//! A small HTTPS client for the CLI's commands: TLS 1.3 only, the configured CA only, the
//! token in `X-Vault-Token`, Vault's JSON envelope and error shape.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cli::ClientArgs;
use crate::error::CliError;

/// A connection to a Keyward server.
pub struct Client {
    http: reqwest::Client,
    addr: String,
    token: Option<Zeroizing<String>>,
}

impl Client {
    /// Builds a client from the command's connection options.
    pub fn new(args: &ClientArgs) -> Result<Self, CliError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &args.cacert {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<_, _>>())
                .map_err(|e| {
                    CliError::Usage(format!("cannot read CA file {}: {e}", path.display()))
                })?;
            for certificate in certificates {
                roots.add(certificate).map_err(|e| {
                    CliError::Usage(format!("invalid certificate in {}: {e}", path.display()))
                })?;
            }
        }
        if roots.is_empty() {
            return Err(CliError::Usage(
                "no CA certificate: set KEYWARD_CACERT or --cacert to the server's CA file".into(),
            ));
        }

        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CliError::Other(format!("cannot configure TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Other(format!("cannot build HTTP client: {e}")))?;

        Ok(Self {
            http,
            addr: args.addr.trim_end_matches('/').to_owned(),
            token: args.token.clone().map(Zeroizing::new),
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
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token.as_str());
        }
        if let Some(body) = body {
            request = request.json(body);
        }

        let response = request.send().await.map_err(|e| {
            CliError::Connection(format!("cannot reach {}: {}", self.addr, error_chain(&e)))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::Connection(format!("reading the response failed: {e}")))?;
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
        Err(status_error(status, path, &body))
    }
}

fn status_error(status: StatusCode, path: &str, body: &Value) -> CliError {
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

    match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => CliError::Auth(format!(
            "permission denied on {path}{detail} (check KEYWARD_TOKEN and the token's policies)"
        )),
        StatusCode::NOT_FOUND => CliError::NotFound(format!("no value found at {path}")),
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::METHOD_NOT_ALLOWED => {
            CliError::Usage(format!("request rejected ({status}){detail}"))
        }
        _ => CliError::Other(format!("server error ({status}){detail}")),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
