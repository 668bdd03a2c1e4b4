//! HTTPS clients for the tests: reqwest with a private CA and TLS 1.3 only, and `curl` for
//! requests that must reach the server byte for byte as written.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use super::{Server, client_scratch_dir, run};

/// An HTTP response, fully read.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Parses the body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body of the {} response is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Returns the body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

/// A reqwest client with its own runtime, trusting one CA, speaking TLS 1.3 only.
pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Http {
    /// Builds a client for the server at `base` (`https://host:port`) whose certificate
    /// `ca_file` signed.
    pub fn new(base: &str, ca_file: &Path) -> Http {
        Self::with_alpn(base, ca_file, Vec::new())
    }

    /// Builds a client like [`Http::new`] that offers only HTTP/2 in ALPN, so every request
    /// uses HTTP/2.
    pub fn new_http2(base: &str, ca_file: &Path) -> Http {
        Self::with_alpn(base, ca_file, vec![b"h2".to_vec()])
    }

    fn with_alpn(base: &str, ca_file: &Path, alpn: Vec<Vec<u8>>) -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime");

        let mut roots = rustls::RootCertStore::empty();
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
            .and_then(|iter| iter.collect::<Result<_, _>>())
            .unwrap_or_else(|error| panic!("cannot read CA file {}: {error}", ca_file.display()));
        for certificate in certificates {
            roots.add(certificate).expect("CA certificate is valid");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = alpn;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client");

        Http {
            runtime,
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Returns the runtime that drives this client's connections.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Returns the underlying client. Its requests must run on [`Http::runtime`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Returns the URL of API path `path` (given without `/v1/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.base)
    }

    /// Sends a request to `/v1/<path>`; `body` is sent as JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        self.try_request(method, path, token, body)
            .unwrap_or_else(|error| panic!("{method} {path} failed: {error}"))
    }

    /// Sends a request like [`Http::request`], but returns transport errors instead of
    /// panicking.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(send(request))
    }

    /// GET `/v1/<path>`.
    pub fn get(&self, path: &str, token: &str) -> Response {
        self.request("GET", path, Some(token), None)
    }

    /// PUT `/v1/<path>` with a JSON body.
    pub fn put(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request("PUT", path, Some(token), Some(body))
    }

    /// Writes `data` as a new version of secret `path` and returns the new version number.
    pub fn write_secret(&self, path: &str, token: &str, data: &Value) -> u64 {
        let response = self.put(
            &format!("secret/data/{path}"),
            token,
            &serde_json::json!({ "data": data }),
        );
        assert_eq!(response.status, 200, "write of {path} failed: {response:?}");
        response.json()["data"]["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("write of {path} returned no version: {response:?}"))
    }
}

/// Sends a request and reads the whole response.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Response, String> {
    let response = request.send().await.map_err(|error| error_chain(&error))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|error| error_chain(&error))?
        .to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Joins an error's messages with those of its sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A `curl` response: status, lowercase header names and body.
pub struct CurlResponse {
    /// The final status code.
    pub status: u16,
    /// Headers of the final response, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl CurlResponse {
    /// Returns the first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Parses the body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "body of the {} response is not JSON ({error}): {}",
                self.status, self.body
            )
        })
    }
}

impl fmt::Debug for CurlResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// Runs `curl` against `server` with the server's CA and `--path-as-is`, so that `..` reaches
/// the server as sent. The last of `args` is usually the URL.
///
/// Requests with a body use HTTP/1.1. The server may respond to such a request before reading
/// its body, and over HTTP/2 it then ends the stream with RST_STREAM(NO_ERROR) after the
/// response, as RFC 9113 section 8.1 allows. curl 7.88 reports that as error 92 and drops
/// the response. `bad_input::oversized_body_over_http2_gets_413` covers HTTP/2 with reqwest.
pub fn curl(server: &Server, args: &[&str]) -> CurlResponse {
    let scratch = client_scratch_dir();
    let headers_file = scratch.path().join("headers");
    let body_file = scratch.path().join("body");
    let has_body = args
        .iter()
        .any(|arg| arg.starts_with("--data") || *arg == "-d");
    let mut command = Command::new("curl");
    if has_body {
        command.arg("--http1.1");
    }
    let output = run(command
        .args([
            "--silent",
            "--show-error",
            "--path-as-is",
            "--max-time",
            "30",
        ])
        .arg("--cacert")
        .arg(&server.ca_file)
        .arg("--dump-header")
        .arg(&headers_file)
        .arg("--output")
        .arg(&body_file)
        .args(args));
    assert!(output.success(), "curl {args:?} failed:\n{output}");

    let raw_headers = std::fs::read_to_string(&headers_file).unwrap_or_default();
    // With `Expect: 100-continue` curl records an interim response first: keep the last one.
    let last_block = raw_headers
        .split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty())
        .last()
        .unwrap_or_default();
    let mut lines = last_block.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("curl printed no status line:\n{raw_headers}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    CurlResponse {
        status,
        headers,
        body: std::fs::read_to_string(&body_file).unwrap_or_default(),
    }
}
