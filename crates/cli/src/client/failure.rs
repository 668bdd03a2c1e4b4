//! Explains a request that failed before the server sent a response: nothing listening, a CA file
//! that does not match the server's certificate, a certificate for another host or an expired
//! one, a timeout. Each message says what to check.
//!
//! The cause is found by walking the error chain for a `rustls::Error` or an `io::Error`, and
//! by the chain's text where a library hides the typed error. Every such failure exits with
//! code 5, as an unreachable server does.

use std::error::Error;
use std::io;
use std::path::Path;
use std::time::Duration;

use rustls::CertificateError;

use crate::error::CliError;

/// Cause of a request that got no response.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Nothing listens at the address.
    Refused,
    /// The certificate chain does not lead to the CA in the CA file.
    Untrusted,
    /// The certificate does not name the host in the address.
    WrongName(String),
    /// The certificate has expired or is not valid yet.
    OutsideValidity(String),
    /// Another TLS failure, such as a peer that does not speak TLS.
    OtherTls(String),
    /// No response within the request timeout.
    TimedOut,
    /// Anything else, such as a host name that does not resolve.
    Other(String),
}

/// Builds the error for a request to `addr` that got no response.
pub(super) fn describe(
    addr: &str,
    cacert: &Path,
    timeout: Duration,
    error: &reqwest::Error,
) -> CliError {
    let failure = if error.is_timeout() {
        Failure::TimedOut
    } else {
        classify(error)
    };
    CliError::Connection(message(addr, cacert, timeout, failure))
}

fn message(addr: &str, cacert: &Path, timeout: Duration, failure: Failure) -> String {
    let handshake = format!("TLS handshake with {addr} failed");
    match failure {
        Failure::Refused => {
            format!("cannot connect to {addr}: is the server running? (check KEYWARD_ADDR)")
        }
        Failure::Untrusted => format!(
            "{handshake}: the server's certificate is not trusted by KEYWARD_CACERT ({}); \
             point KEYWARD_CACERT at the CA file of this server (tls/ca.pem in its data dir)",
            cacert.display()
        ),
        Failure::WrongName(detail) => format!(
            "{handshake}: the server's certificate does not name the host in KEYWARD_ADDR \
             ({detail}); use a host that the certificate names"
        ),
        Failure::OutsideValidity(detail) => format!(
            "{handshake}: the server's certificate is outside its validity period ({detail}); \
             renew it (SIGHUP reloads it) or check the system clock"
        ),
        Failure::OtherTls(detail) => format!(
            "{handshake}: {detail} (check that KEYWARD_ADDR names a Keyward server, which \
             serves TLS 1.3)"
        ),
        Failure::TimedOut => format!(
            "no response from {addr} within {} s: check that the server is running and \
             KEYWARD_ADDR is right",
            timeout.as_secs()
        ),
        Failure::Other(detail) => format!(
            "cannot connect to {addr}: {detail} (check KEYWARD_ADDR and that the server is \
             running)"
        ),
    }
}

/// Finds the cause of a transport error.
fn classify(error: &(dyn Error + 'static)) -> Failure {
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return from_rustls(tls);
        }
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            if io_error.kind() == io::ErrorKind::ConnectionRefused {
                return Failure::Refused;
            }
            // `io::Error::source` skips the error an `io::Error` wraps, and the HTTP client
            // nests a TLS error two `io::Error`s deep, so step into the wrapped error instead.
            if let Some(inner) = io_error.get_ref() {
                current = Some(inner as &(dyn Error + 'static));
                continue;
            }
        }
        current = cause.source();
    }
    from_text(&error_chain(error))
}

fn from_rustls(error: &rustls::Error) -> Failure {
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return Failure::OtherTls(error.to_string());
    };
    match certificate {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => Failure::Untrusted,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Failure::WrongName(certificate.to_string())
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            Failure::OutsideValidity(certificate.to_string())
        }
        _ => Failure::OtherTls(error.to_string()),
    }
}

/// Recognises the causes from the error's text, for chains that carry no typed error.
fn from_text(chain: &str) -> Failure {
    let lower = chain.to_ascii_lowercase();
    let untrusted = [
        "unknownissuer",
        "unknown issuer",
        "badsignature",
        "bad signature",
    ];
    if untrusted.iter().any(|needle| lower.contains(needle)) {
        Failure::Untrusted
    } else if lower.contains("connection refused") {
        Failure::Refused
    } else if lower.contains("invalid peer certificate") {
        Failure::OtherTls(chain.to_owned())
    } else {
        Failure::Other(chain.to_owned())
    }
}

/// Joins an error and its sources with `: `.
pub(super) fn error_chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as HTTP client libraries wrap their causes.
    #[derive(Debug)]
    struct Wrapper(Box<dyn Error + Send + Sync>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    /// Wraps a rustls error the way the HTTP client reports it: in an `io::Error` of kind
    /// `InvalidData` inside one of kind `Other`.
    fn tls_failure(error: rustls::Error) -> Wrapper {
        let invalid_data = io::Error::new(io::ErrorKind::InvalidData, error);
        Wrapper(Box::new(io::Error::other(invalid_data)))
    }

    #[test]
    fn unknown_issuer_means_untrusted_ca() {
        let error = tls_failure(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(classify(&error), Failure::Untrusted);
        let error = tls_failure(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ));
        assert_eq!(classify(&error), Failure::Untrusted);
    }

    #[test]
    fn name_mismatch_is_told_apart() {
        let error = tls_failure(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert!(matches!(classify(&error), Failure::WrongName(_)));
    }

    #[test]
    fn expired_certificate_is_told_apart() {
        let error = tls_failure(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert!(matches!(classify(&error), Failure::OutsideValidity(_)));
    }

    #[test]
    fn refused_connection_is_found_in_chain() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let error = Wrapper(Box::new(io::Error::other(refused)));
        assert_eq!(classify(&error), Failure::Refused);
    }

    #[test]
    fn untyped_chain_is_read_as_text() {
        assert_eq!(
            from_text("error sending request: invalid peer certificate: UnknownIssuer"),
            Failure::Untrusted
        );
        assert_eq!(
            from_text("tcp connect error: Connection refused (os error 111)"),
            Failure::Refused
        );
        assert!(matches!(
            from_text("dns error: failed to lookup address information"),
            Failure::Other(_)
        ));
    }

    #[test]
    fn messages_say_what_to_check() {
        let addr = "https://127.0.0.1:8200";
        let cacert = Path::new("tls/ca.pem");
        let timeout = Duration::from_secs(30);

        let refused = message(addr, cacert, timeout, Failure::Refused);
        assert_eq!(
            refused,
            "cannot connect to https://127.0.0.1:8200: is the server running? (check KEYWARD_ADDR)"
        );
        let untrusted = message(addr, cacert, timeout, Failure::Untrusted);
        assert!(
            untrusted.starts_with(
                "TLS handshake with https://127.0.0.1:8200 failed: the server's certificate is \
                 not trusted by KEYWARD_CACERT (tls/ca.pem)"
            ),
            "{untrusted}"
        );
        let timed_out = message(addr, cacert, timeout, Failure::TimedOut);
        assert!(timed_out.contains("within 30 s"), "{timed_out}");
    }
}
