//! TLS for the API: a rustls server configuration that allows TLS 1.3 only, certificate reload
//! without a restart, and development certificates.
//!
//! The configuration names the aws-lc-rs provider explicitly instead of relying on a
//! process-wide default, and offers ALPN `h2` and `http/1.1`. A reload reads the certificate
//! and key from disk again and swaps them in for new handshakes. Connections already open keep
//! the certificate they were established with. A failed reload keeps the old certificate.
//!
//! This module does not do client certificate authentication or OCSP stapling.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

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

/// Loads a certificate chain and key and builds a TLS 1.3-only rustls configuration.
pub fn load_server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certificates(cert_path)?;
    let key = read_private_key(key_path)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
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

/// Reloads the server certificate from its files into a running server.
///
/// Cloning is cheap; every clone reloads the same server.
#[derive(Clone)]
pub struct CertificateReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    config: RustlsConfig,
}

impl std::fmt::Debug for CertificateReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertificateReloader {
    /// Loads the certificate and key for the first time.
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let config = load_server_config(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            config: RustlsConfig::from_config(config),
        })
    }

    /// Returns the configuration handle the TLS acceptor reads on every handshake.
    pub(crate) fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Reads the certificate and key again and uses them for new handshakes.
    ///
    /// On failure the server keeps serving the previous certificate; the error is logged and
    /// returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match load_server_config(&self.cert_path, &self.key_path) {
            Ok(config) => {
                self.config.reload_from_config(config);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
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

/// Files written by [`generate_dev_certificate`].
#[derive(Clone, Debug)]
pub struct DevCertificate {
    /// The CA certificate that clients should trust (`ca.pem`).
    pub ca_path: PathBuf,
    /// The server certificate signed by the CA (`cert.pem`).
    pub cert_path: PathBuf,
    /// The server's private key (`key.pem`, mode 0600).
    pub key_path: PathBuf,
    /// The CA certificate in PEM, for clients configured in-process.
    pub ca_pem: String,
}

/// Default names of a development certificate.
const DEV_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Days a development server certificate is valid.
const DEV_CERT_DAYS: i64 = 90;

/// Generates a development CA and a server certificate signed by it in `dir`.
///
/// The server certificate covers `localhost`, `127.0.0.1`, `::1` and every name in `hosts`
/// (DNS names or IP addresses), and is valid for 90 days. The CA's private key is never
/// written, so the CA cannot sign anything else. Existing files are replaced.
pub fn generate_dev_certificate(dir: &Path, hosts: &[&str]) -> Result<DevCertificate, TlsError> {
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(DEV_CERT_DAYS);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = distinguished_name("Keyward development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = DEV_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    for host in hosts {
        if !names.iter().any(|n| n == host) {
            names.push((*host).to_owned());
        }
    }
    let mut server_params = CertificateParams::new(names)?;
    server_params.distinguished_name = distinguished_name("Keyward development server");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    server_params.not_before = not_before;
    server_params.not_after = not_after;
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let ca_pem = ca_cert.pem();
    let files = DevCertificate {
        ca_path: dir.join("ca.pem"),
        cert_path: dir.join("cert.pem"),
        key_path: dir.join("key.pem"),
        ca_pem: ca_pem.clone(),
    };
    write_file(&files.ca_path, ca_pem.as_bytes(), 0o644)?;
    write_file(&files.cert_path, server_cert.pem().as_bytes(), 0o644)?;
    let key_pem = Zeroizing::new(server_key.serialize_pem());
    write_file(&files.key_path, key_pem.as_bytes(), 0o600)?;
    Ok(files)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Keyward");
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `bytes` through a temporary file created with `mode`, then renames it into place,
/// so a reader never sees a half-written file and a key file is never briefly world-readable.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);

    let _ = fs::remove_file(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dev_certificate_loads_as_server_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &["keyward.test"]).expect("generates");

        let config = load_server_config(&files.cert_path, &files.key_path).expect("loads");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(files.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn dev_key_file_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("generates");

        let mode = fs::metadata(&files.key_path)
            .expect("key exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let first = tempfile::tempdir().expect("temp dir");
        let second = tempfile::tempdir().expect("temp dir");
        let a = generate_dev_certificate(first.path(), &[]).expect("generates");
        let b = generate_dev_certificate(second.path(), &[]).expect("generates");

        let result = load_server_config(&a.cert_path, &b.key_path);
        assert!(matches!(result, Err(TlsError::Rustls(_))), "{result:?}");
    }

    #[test]
    fn missing_certificate_block_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("generates");
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "not a certificate\n").expect("writes");

        let result = load_server_config(&empty, &files.key_path);
        assert!(
            matches!(result, Err(TlsError::NoCertificate(_))),
            "{result:?}"
        );
    }
}
