//! A bench-only HTTPS server that responds to every request with one recorded response, held
//! in memory: the ceiling that `bench/kv-read.sh` measures Keyward's read throughput against.
//!
//! It uses the TLS settings of Keyward's API (rustls with the aws-lc-rs provider, TLS 1.3
//! only, ALPN `h2` and `http/1.1`) and the same HTTP stack (hyper 1 through hyper-util's
//! automatic HTTP/1 and HTTP/2 connection builder on a multi-threaded tokio runtime). It does
//! no routing, authentication, storage, audit or logging. It is not part of Keyward and must
//! never serve anything real.
//!
//! ```text
//! keyward-bench-ceiling --listen 127.0.0.1:8300 --cert cert.pem --key key.pem --response FILE
//! ```
//!
//! FILE holds a response as `curl --include` prints it: the status line, the headers, an empty
//! line and the body. `Date`, `Content-Length`, `Connection` and `Transfer-Encoding` are
//! dropped from it because hyper writes its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const USAGE: &str =
    "usage: keyward-bench-ceiling --listen ADDR --cert PEM --key PEM --response FILE";

/// Headers that hyper writes itself for every response.
const DROPPED_HEADERS: [&str; 4] = ["date", "content-length", "connection", "transfer-encoding"];

/// Command-line options.
struct Options {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    response: PathBuf,
}

/// The response replayed for every request.
struct Recorded {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

fn main() -> ExitCode {
    let result = parse_options(std::env::args().skip(1)).and_then(|options| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?
            .block_on(serve(options))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keyward-bench-ceiling: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut listen = None;
    let mut cert = None;
    let mut key = None;
    let mut response = None;

    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("missing value after {flag}\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => {
                let addr = value
                    .parse()
                    .map_err(|e| format!("invalid --listen address {value:?}: {e}"))?;
                listen = Some(addr);
            }
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            "--response" => response = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }

    let missing = |name: &str| format!("missing {name}\n{USAGE}");
    Ok(Options {
        listen: listen.ok_or_else(|| missing("--listen"))?,
        cert: cert.ok_or_else(|| missing("--cert"))?,
        key: key.ok_or_else(|| missing("--key"))?,
        response: response.ok_or_else(|| missing("--response"))?,
    })
}

async fn serve(options: Options) -> Result<(), String> {
    let raw = std::fs::read(&options.response)
        .map_err(|e| format!("cannot read {}: {e}", options.response.display()))?;
    let recorded = Arc::new(
        parse_response(&raw)
            .map_err(|e| format!("invalid response file {}: {e}", options.response.display()))?,
    );
    let acceptor = TlsAcceptor::from(tls_config(&options.cert, &options.key)?);

    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("listening on https://{local}");

    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("keyward-bench-ceiling: accept failed: {error}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let recorded = Arc::clone(&recorded);

        tokio::spawn(async move {
            // A failed handshake or a connection the client dropped ends only that connection.
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |_request| {
                let response = recorded.to_response();
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Builds a TLS 1.3-only configuration with the aws-lc-rs provider, as Keyward's API does.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("invalid TLS certificate or key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Parses a response as `curl --include` prints it.
fn parse_response(raw: &[u8]) -> Result<Recorded, String> {
    let (head, body) = split_head(raw).ok_or("no empty line between the headers and the body")?;
    let head = std::str::from_utf8(head).map_err(|_| "the headers are not UTF-8")?;
    let mut lines = head.lines();

    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("invalid status line {status_line:?}"))?;

    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("invalid header line {line:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
        if DROPPED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("invalid value of header {name}: {e}"))?;
        headers.append(name, value);
    }

    Ok(Recorded {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

/// Splits a response at its first empty line, written as CRLF CRLF or LF LF.
fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let (index, separator_len) = match (crlf, lf) {
        (Some(crlf), Some(lf)) => std::cmp::min_by_key(crlf, lf, |(index, _)| *index),
        (found, None) | (None, found) => found?,
    };
    Some((&raw[..index], &raw[index + separator_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_response_parses_without_hop_headers() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
                    date: Fri, 04 Dec 2026 22:00:00 GMT\r\nstrict-transport-security: max-age=63072000\r\n\r\n{}";
        let recorded = parse_response(raw).expect("parses");

        assert_eq!(recorded.status, StatusCode::OK);
        assert_eq!(recorded.body.as_ref(), b"{}");
        assert_eq!(recorded.headers.len(), 2);
        assert_eq!(recorded.headers["content-type"], "application/json");
        assert!(recorded.headers.get("date").is_none());
        assert!(recorded.headers.get("content-length").is_none());
    }

    #[test]
    fn http2_status_line_parses() {
        let recorded = parse_response(b"HTTP/2 404\n\nnot found").expect("parses");

        assert_eq!(recorded.status, StatusCode::NOT_FOUND);
        assert_eq!(recorded.body.as_ref(), b"not found");
    }

    #[test]
    fn response_without_empty_line_is_rejected() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain").is_err());
    }

    #[test]
    fn unknown_option_is_rejected() {
        let args = ["--port", "1"].map(String::from);
        assert!(parse_options(args.into_iter()).is_err());
    }
}
