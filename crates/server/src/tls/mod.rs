//! TLS for the API: a rustls server configuration that allows TLS 1.3 only, optional or
//! required client certificates, certificate reload without a restart, an expiry check, and
//! development certificates.
//!
//! The configuration names the aws-lc-rs provider explicitly instead of relying on a
//! process-wide default, and offers ALPN `h2` and `http/1.1`. A reload reads the certificate,
//! key and client CA file from disk again and swaps them in for new handshakes. Connections
//! already open keep the certificate they were established with. A failed reload keeps the old
//! configuration.
//!
//! This module does not do OCSP stapling or client certificate revocation (CRLs).

mod dev;
mod expiry;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use zeroize::Zeroizing;

use crate::config::ClientAuth;
pub use dev::{DevCertificate, generate_dev_certificate};
pub(crate) use expiry::CertificateExpiry;

/// Error loading or generating certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A PEM file is malformed.
    #[error("invalid PEM in {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate found in {0} (expected a PEM 'CERTIFICATE' block)")]
    NoCertificate(PathBuf),
    /// The key file holds no private key block.
    #[error("no private key found in {0} (expected a PEM PKCS#8, PKCS#1 or SEC1 key)")]
    NoPrivateKey(PathBuf),
    /// rustls rejected the certificate or key, for example because they do not match.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA file contains a certificate that cannot be used as a trust anchor.
    #[error("invalid client CA certificate in {path}: {source}")]
    ClientCa {
        /// The client CA file.
        path: PathBuf,
        /// rustls's error.
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built from the client CA file.
    #[error("cannot verify client certificates with the CAs in {path}: {source}")]
    ClientVerifier {
        /// The client CA file.
        path: PathBuf,
        /// rustls's error.
        source: rustls::server::VerifierBuilderError,
    },
    /// Generating a development certificate failed.
    #[error("failed to generate a development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A generated file could not be written.
    #[error("failed to write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

/// ALPN protocols offered, in order of preference.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Loads a certificate chain, its key and, for `client_auth` other than
/// [`ClientAuth::None`], the client CA file, and builds a TLS 1.3-only rustls configuration.
pub fn load_server_config(
    cert_path: &Path,
    key_path: &Path,
    client_auth: &ClientAuth,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    load(cert_path, key_path, client_auth).map(|(config, _)| config)
}

/// Builds the configuration and returns it with the certificate chain it serves.
fn load(
    cert_path: &Path,
    key_path: &Path,
    client_auth: &ClientAuth,
) -> Result<(Arc<rustls::ServerConfig>, Vec<CertificateDer<'static>>), TlsError> {
    let certs = read_certificates(cert_path)?;
    let key = read_private_key(key_path)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional { ca_path } => {
            builder.with_client_cert_verifier(client_verifier(ca_path, provider, false)?)
        }
        ClientAuth::Required { ca_path } => {
            builder.with_client_cert_verifier(client_verifier(ca_path, provider, true)?)
        }
    };
    let mut config = builder.with_single_cert(certs.clone(), key)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(config), certs))
}

/// Builds a verifier that accepts client certificates chaining to a CA in `ca_path`.
///
/// With `required` false, a client that sends no certificate still completes the handshake,
/// but one that sends a certificate the CAs did not sign fails it.
fn client_verifier(
    ca_path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca_path)? {
        roots
            .add(certificate)
            .map_err(|source| TlsError::ClientCa {
                path: ca_path.to_owned(),
                source,
            })?;
    }

    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|source| TlsError::ClientVerifier {
        path: ca_path.to_owned(),
        source,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = Zeroizing::new(fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        PemError::NoItemsFound => TlsError::NoPrivateKey(path.to_owned()),
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

/// Reloads the server certificate and the client CA file into a running server.
///
/// Cloning is cheap; every clone reloads the same server.
#[derive(Clone)]
pub struct CertificateReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    client_auth: ClientAuth,
    config: RustlsConfig,
    expiry: CertificateExpiry,
}

impl std::fmt::Debug for CertificateReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl CertificateReloader {
    /// Loads the certificate, key and client CA file for the first time and checks the
    /// certificate's expiry.
    pub(crate) fn load(
        cert_path: &Path,
        key_path: &Path,
        client_auth: &ClientAuth,
    ) -> Result<Self, TlsError> {
        let (config, chain) = load(cert_path, key_path, client_auth)?;
        let expiry = CertificateExpiry::default();
        expiry.update(cert_path, &chain);
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            client_auth: client_auth.clone(),
            config: RustlsConfig::from_config(config),
            expiry,
        })
    }

    /// Returns the configuration handle the TLS acceptor reads on every handshake.
    pub(crate) fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Returns the expiry of the certificate currently served, shared with the reloader.
    pub(crate) fn expiry(&self) -> CertificateExpiry {
        self.expiry.clone()
    }

    /// Reads the certificate, key and client CA file again and uses them for new handshakes,
    /// then checks the new certificate's expiry.
    ///
    /// On failure the server keeps serving the previous configuration; the error is logged and
    /// returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match load(&self.cert_path, &self.key_path, &self.client_auth) {
            Ok((config, chain)) => {
                self.config.reload_from_config(config);
                // Checked before the reload is logged, so the reload line comes last and marks
                // the end of the reload in the log.
                self.expiry.update(&self.cert_path, &chain);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    client_ca = ?self.client_auth.ca_path().map(Path::display),
                    %error,
                    "TLS certificate reload failed; keeping the previous certificate"
                );
                Err(error)
            }
        }
    }

    /// Reloads the certificate on every SIGHUP until the task is aborted.
    pub(crate) async fn reload_on_sighup(self) {
        use tokio::signal::unix::{SignalKind, signal};

        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; certificate reload by signal is off");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            // The error is logged inside `reload`.
            let _ = self.reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// Writes a CA certificate to `dir/name` and returns the path.
    fn write_ca(dir: &Path, name: &str) -> PathBuf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("valid params");
        params
            .distinguished_name
            .push(DnType::CommonName, "test client CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        let path = dir.join(name);
        fs::write(&path, cert.pem()).expect("write CA");
        path
    }

    #[test]
    fn dev_certificate_loads_as_server_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &["keyward.test"]).expect("generates");

        let config = load_server_config(&files.cert_path, &files.key_path, &ClientAuth::None)
            .expect("loads");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(files.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let first = tempfile::tempdir().expect("temp dir");
        let second = tempfile::tempdir().expect("temp dir");
        let a = generate_dev_certificate(first.path(), &[]).expect("generates");
        let b = generate_dev_certificate(second.path(), &[]).expect("generates");

        let result = load_server_config(&a.cert_path, &b.key_path, &ClientAuth::None);
        assert!(matches!(result, Err(TlsError::Rustls(_))), "{result:?}");
    }

    #[test]
    fn missing_certificate_block_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("generates");
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "not a certificate\n").expect("writes");

        let result = load_server_config(&empty, &files.key_path, &ClientAuth::None);
        assert!(
            matches!(result, Err(TlsError::NoCertificate(_))),
            "{result:?}"
        );
    }

    #[test]
    fn client_ca_without_certificate_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("generates");
        let empty = dir.path().join("clients.pem");
        fs::write(&empty, "").expect("writes");
        let missing = dir.path().join("absent.pem");

        let result = load_server_config(
            &files.cert_path,
            &files.key_path,
            &ClientAuth::Required {
                ca_path: empty.clone(),
            },
        );
        assert!(
            matches!(&result, Err(TlsError::NoCertificate(path)) if *path == empty),
            "{result:?}"
        );
        let result = load_server_config(
            &files.cert_path,
            &files.key_path,
            &ClientAuth::Optional { ca_path: missing },
        );
        assert!(matches!(result, Err(TlsError::Read { .. })), "{result:?}");
    }

    #[test]
    fn reload_picks_up_new_client_ca() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("generates");
        let ca_path = write_ca(dir.path(), "clients.pem");
        let reloader = CertificateReloader::load(
            &files.cert_path,
            &files.key_path,
            &ClientAuth::Required {
                ca_path: ca_path.clone(),
            },
        )
        .expect("loads");
        let before = reloader.rustls_config().get_inner();

        write_ca(dir.path(), "clients.pem");
        reloader.reload().expect("reloads");
        let after = reloader.rustls_config().get_inner();
        assert!(!Arc::ptr_eq(&before, &after));

        fs::write(&ca_path, "broken\n").expect("writes");
        assert!(reloader.reload().is_err());
        assert!(Arc::ptr_eq(&after, &reloader.rustls_config().get_inner()));
    }
}
