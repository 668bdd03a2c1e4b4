//! Development certificates: a throwaway CA and a server certificate signed by it.
//!
//! The CA's private key is never written, so the CA cannot sign anything else. This module
//! does not renew certificates.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::TlsError;

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
    fn dev_key_file_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_dev_certificate(dir.path(), &[]).expect("generates");

        let mode = fs::metadata(&files.key_path)
            .expect("key exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
