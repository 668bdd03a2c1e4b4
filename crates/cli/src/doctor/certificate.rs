//! Checks of the server certificate: its validity period, whether it is the self-signed
//! development certificate on a non-loopback address, and the size of its public key.
//!
//! Only the first certificate in the PEM file, the server's own, is checked. The chain's
//! signatures are not verified: clients do that against their CA file.

use std::net::SocketAddr;
use std::path::Path;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{OID_SIG_ED448, OID_SIG_ED25519};
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;

use super::Check;

const FILE: &str = "certificate file";
const EXPIRY: &str = "certificate expiry";
const ISSUER: &str = "certificate issuer";
const KEY_SIZE: &str = "certificate key size";

/// Days before expiry from which a certificate gets a warning.
const RENEW_WITHIN_DAYS: i64 = 14;

/// Smallest accepted RSA modulus, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Smallest accepted elliptic curve, in bits of its field (P-256).
const MIN_EC_BITS: usize = 256;

/// Common-name prefix of the certificates that `keyward init` and `server --dev` generate.
const DEV_ISSUER: &str = "Keyward development";

const RENEW_FIX: &str = "renew it, replace the certificate file and send SIGHUP to the server";

/// Checks the certificate in `cert_file` at time `now`: one check each for expiry, issuer
/// and key size, or a single failure when the file cannot be read or parsed.
pub fn check(cert_file: &Path, listen: SocketAddr, now: OffsetDateTime) -> Vec<Check> {
    let display = cert_file.display();
    let fix = "check [tls] cert_file in the configuration, or put a PEM certificate at this path";
    let pem = match std::fs::read(cert_file) {
        Ok(bytes) => first_certificate(&bytes),
        Err(error) => Err(error.to_string()),
    };
    let pem = match pem {
        Ok(pem) => pem,
        Err(reason) => {
            return vec![Check::fail(
                FILE,
                format!("cannot read certificate {display}: {reason}"),
                fix,
            )];
        }
    };
    let certificate = match pem.parse_x509() {
        Ok(certificate) => certificate,
        Err(error) => {
            return vec![Check::fail(
                FILE,
                format!("invalid certificate in {display}: {error}"),
                fix,
            )];
        }
    };

    vec![
        check_expiry(&certificate, now),
        check_issuer(&certificate, listen),
        check_key_size(&certificate),
    ]
}

fn first_certificate(bytes: &[u8]) -> Result<Pem, String> {
    for item in Pem::iter_from_buffer(bytes) {
        let pem = item.map_err(|e| format!("invalid PEM: {e}"))?;
        if pem.label == "CERTIFICATE" {
            return Ok(pem);
        }
    }
    Err("no PEM CERTIFICATE block found".to_owned())
}

/// Fails an expired or not yet valid certificate, and warns within [`RENEW_WITHIN_DAYS`] of
/// its expiry.
fn check_expiry(certificate: &X509Certificate<'_>, now: OffsetDateTime) -> Check {
    let validity = certificate.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let now = now.unix_timestamp();

    if now > not_after {
        return Check::fail(
            EXPIRY,
            format!("certificate expired on {}", date(not_after)),
            RENEW_FIX,
        );
    }
    if now < not_before {
        return Check::fail(
            EXPIRY,
            format!("certificate is not valid until {}", date(not_before)),
            "check the system clock, or use a certificate that is valid now",
        );
    }

    let days_left = (not_after - now) / 86_400;
    if days_left < RENEW_WITHIN_DAYS {
        return Check::warn(
            EXPIRY,
            format!(
                "certificate expires in {days_left} days, on {}",
                date(not_after)
            ),
            RENEW_FIX,
        );
    }
    Check::pass(
        EXPIRY,
        format!("certificate valid until {}", date(not_after)),
    )
}

/// Formats a Unix timestamp as a UTC date.
fn date(timestamp: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(timestamp) {
        Ok(time) => time.date().to_string(),
        Err(_) => format!("Unix time {timestamp}"),
    }
}

/// Warns when a development certificate serves a non-loopback address, where clients would
/// have to trust a CA that no one manages.
fn check_issuer(certificate: &X509Certificate<'_>, listen: SocketAddr) -> Check {
    let is_dev = certificate
        .issuer()
        .iter_common_name()
        .filter_map(|name| name.as_str().ok())
        .any(|name| name.starts_with(DEV_ISSUER));
    if !is_dev {
        return Check::pass(ISSUER, format!("issued by {}", certificate.issuer()));
    }
    if listen.ip().is_loopback() {
        return Check::pass(
            ISSUER,
            "self-signed development certificate, served on loopback only",
        );
    }
    Check::warn(
        ISSUER,
        format!("a self-signed development certificate is served on {listen}"),
        "replace the certificate and key with ones from your CA, then send SIGHUP to the server",
    )
}

/// A public key's algorithm and size, as far as the key-size rule needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyKind {
    /// RSA with a modulus of this many bits.
    Rsa(usize),
    /// ECDSA on a curve whose field has this many bits.
    Ec(usize),
    /// Ed25519 or Ed448.
    Edwards(&'static str),
    /// Anything else, by algorithm OID.
    Other(String),
}

fn check_key_size(certificate: &X509Certificate<'_>) -> Check {
    judge_key(&key_kind(certificate))
}

fn key_kind(certificate: &X509Certificate<'_>) -> KeyKind {
    let info = certificate.public_key();
    let oid = &info.algorithm.algorithm;
    if *oid == OID_SIG_ED25519 {
        return KeyKind::Edwards("Ed25519");
    }
    if *oid == OID_SIG_ED448 {
        return KeyKind::Edwards("Ed448");
    }
    match info.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(unsigned_bits(rsa.modulus)),
        Ok(PublicKey::EC(point)) => KeyKind::Ec(point.key_size()),
        _ => KeyKind::Other(oid.to_id_string()),
    }
}

/// Counts the significant bits of a big-endian unsigned integer, ignoring the leading zero
/// byte that DER adds when the top bit is set.
fn unsigned_bits(bytes: &[u8]) -> usize {
    let Some(start) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let significant = &bytes[start..];
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

/// Fails RSA keys under [`MIN_RSA_BITS`] and curves under [`MIN_EC_BITS`].
fn judge_key(kind: &KeyKind) -> Check {
    let fix = "issue a new certificate with an ECDSA P-256 or RSA 2048-bit (or larger) key, then send SIGHUP to the server";
    match kind {
        KeyKind::Rsa(bits) if *bits < MIN_RSA_BITS => Check::fail(
            KEY_SIZE,
            format!("certificate has a {bits}-bit RSA key, smaller than {MIN_RSA_BITS} bits"),
            fix,
        ),
        KeyKind::Rsa(bits) => Check::pass(KEY_SIZE, format!("{bits}-bit RSA key")),
        KeyKind::Ec(bits) if *bits < MIN_EC_BITS => Check::fail(
            KEY_SIZE,
            format!("certificate has an EC key on a {bits}-bit curve, smaller than P-256"),
            fix,
        ),
        KeyKind::Ec(bits) => Check::pass(KEY_SIZE, format!("EC key on a {bits}-bit curve")),
        KeyKind::Edwards(name) => Check::pass(KEY_SIZE, format!("{name} key")),
        KeyKind::Other(oid) => Check::warn(
            KEY_SIZE,
            format!("certificate key algorithm {oid} is not one doctor can judge"),
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use time::Duration;

    use super::*;
    use crate::doctor::Status;

    fn loopback() -> SocketAddr {
        "127.0.0.1:8200".parse().expect("valid address")
    }

    /// Writes a self-signed certificate valid from `not_before` to `not_after` and returns
    /// its path.
    fn write_certificate(
        dir: &Path,
        common_name: &str,
        key: &KeyPair,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> std::path::PathBuf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.not_before = not_before;
        params.not_after = not_after;
        let certificate = params.self_signed(key).expect("self-signed certificate");

        let path = dir.join("cert.pem");
        std::fs::write(&path, certificate.pem()).expect("write certificate");
        path
    }

    fn find_check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|check| check.name == name)
            .unwrap_or_else(|| panic!("no check named {name}: {checks:?}"))
    }

    #[test]
    fn valid_certificate_passes_all_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("P-256 key");
        let path = write_certificate(
            dir.path(),
            "keyward.example",
            &key,
            now - Duration::days(1),
            now + Duration::days(90),
        );

        let checks = check(&path, "0.0.0.0:8200".parse().expect("address"), now);

        assert_eq!(checks.len(), 3, "{checks:?}");
        for check in &checks {
            assert_eq!(check.status, Status::Pass, "{check:?}");
        }
        assert_eq!(
            find_check(&checks, KEY_SIZE).message,
            "EC key on a 256-bit curve"
        );
    }

    #[test]
    fn expired_certificate_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("P-256 key");
        let path = write_certificate(
            dir.path(),
            "keyward.example",
            &key,
            now - Duration::days(100),
            now - Duration::days(10),
        );

        let checks = check(&path, loopback(), now);

        let expiry = find_check(&checks, EXPIRY);
        assert_eq!(expiry.status, Status::Fail, "{expiry:?}");
        assert!(
            expiry.message.starts_with("certificate expired on "),
            "{expiry:?}"
        );
    }

    #[test]
    fn near_expiry_certificate_warns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("P-256 key");
        let path = write_certificate(
            dir.path(),
            "keyward.example",
            &key,
            now - Duration::days(80),
            now + Duration::days(10) + Duration::hours(1),
        );

        let checks = check(&path, loopback(), now);

        let expiry = find_check(&checks, EXPIRY);
        assert_eq!(expiry.status, Status::Warn, "{expiry:?}");
        assert!(
            expiry.message.starts_with("certificate expires in 10 days"),
            "{expiry:?}"
        );
        assert_eq!(expiry.fix.as_deref(), Some(RENEW_FIX));
    }

    #[test]
    fn future_certificate_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("P-256 key");
        let path = write_certificate(
            dir.path(),
            "keyward.example",
            &key,
            now + Duration::days(2),
            now + Duration::days(90),
        );

        let checks = check(&path, loopback(), now);

        let expiry = find_check(&checks, EXPIRY);
        assert_eq!(expiry.status, Status::Fail, "{expiry:?}");
        assert!(expiry.message.contains("not valid until"), "{expiry:?}");
    }

    #[test]
    fn dev_certificate_warns_off_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("P-256 key");
        let path = write_certificate(
            dir.path(),
            "Keyward development CA",
            &key,
            now - Duration::days(1),
            now + Duration::days(90),
        );

        let public = check(&path, "0.0.0.0:8200".parse().expect("address"), now);
        let local = check(&path, loopback(), now);

        let issuer = find_check(&public, ISSUER);
        assert_eq!(issuer.status, Status::Warn, "{issuer:?}");
        assert!(issuer.message.contains("0.0.0.0:8200"), "{issuer:?}");
        assert_eq!(find_check(&local, ISSUER).status, Status::Pass);
    }

    #[test]
    fn rsa_2048_key_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("RSA key");
        let path = write_certificate(
            dir.path(),
            "keyward.example",
            &key,
            now - Duration::days(1),
            now + Duration::days(90),
        );

        let checks = check(&path, loopback(), now);

        let size = find_check(&checks, KEY_SIZE);
        assert_eq!(size.status, Status::Pass, "{size:?}");
        assert_eq!(size.message, "2048-bit RSA key");
    }

    #[test]
    fn p384_key_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let path = write_certificate(
            dir.path(),
            "keyward.example",
            &key,
            now - Duration::days(1),
            now + Duration::days(90),
        );

        let checks = check(&path, loopback(), now);

        assert_eq!(
            find_check(&checks, KEY_SIZE).message,
            "EC key on a 384-bit curve"
        );
    }

    #[test]
    fn small_keys_fail() {
        for kind in [KeyKind::Rsa(1024), KeyKind::Rsa(2047), KeyKind::Ec(224)] {
            let check = judge_key(&kind);
            assert_eq!(check.status, Status::Fail, "{kind:?}: {check:?}");
        }
        for kind in [
            KeyKind::Rsa(2048),
            KeyKind::Ec(256),
            KeyKind::Edwards("Ed25519"),
        ] {
            let check = judge_key(&kind);
            assert_eq!(check.status, Status::Pass, "{kind:?}: {check:?}");
        }
    }

    #[test]
    fn modulus_bits_ignore_leading_zeros() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x7f, 0xff]), 15);
        assert_eq!(unsigned_bits(&[0x00, 0x00]), 0);
        assert_eq!(unsigned_bits(&[]), 0);
    }

    #[test]
    fn missing_certificate_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let checks = check(
            &dir.path().join("cert.pem"),
            loopback(),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!(checks[0].status, Status::Fail, "{checks:?}");
    }

    #[test]
    fn file_without_certificate_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "not a certificate\n").expect("write file");

        let checks = check(&path, loopback(), OffsetDateTime::now_utc());

        assert_eq!(checks.len(), 1, "{checks:?}");
        assert!(
            checks[0].message.contains("no PEM CERTIFICATE block"),
            "{checks:?}"
        );
    }
}
