//! Expiry of the serving certificate: a log warning when it is near, and the
//! `keyward_tls_certificate_expiry_seconds` gauge.
//!
//! The check runs when the certificate is loaded and at every reload. The gauge is also
//! recomputed each time the metrics are rendered, so it keeps counting down between reloads.
//! Only the first certificate of the chain, the server's own, is checked: an intermediate
//! that expires earlier is not reported.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rustls::pki_types::CertificateDer;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::telemetry::TLS_CERTIFICATE_EXPIRY_SECONDS;

/// A certificate that expires within this time gets a warning in the log.
pub(crate) const EXPIRY_WARNING_PERIOD: Duration = Duration::days(14);

/// Stored in place of `notAfter` while it is unknown.
const UNKNOWN: i64 = i64::MIN;

/// The `notAfter` time of the certificate a server currently serves, shared between its
/// reloader and its metrics route.
#[derive(Clone, Debug)]
pub(crate) struct CertificateExpiry {
    /// Unix seconds, or [`UNKNOWN`].
    not_after: Arc<AtomicI64>,
}

impl Default for CertificateExpiry {
    fn default() -> Self {
        Self {
            not_after: Arc::new(AtomicI64::new(UNKNOWN)),
        }
    }
}

impl CertificateExpiry {
    /// Reads `notAfter` from the first certificate of `chain`, logs a warning when it is
    /// within [`EXPIRY_WARNING_PERIOD`] or past, and sets the gauge.
    pub fn update(&self, cert_path: &Path, chain: &[CertificateDer<'_>]) {
        let now = OffsetDateTime::now_utc();
        let Some(leaf) = chain.first() else {
            return;
        };
        match inspect(leaf) {
            Ok(info) => {
                self.not_after
                    .store(info.not_after.unix_timestamp(), Ordering::Relaxed);
                log_expiry(cert_path, &info, now);
                self.publish(now);
            }
            Err(error) => {
                self.not_after.store(UNKNOWN, Ordering::Relaxed);
                tracing::warn!(
                    cert = %cert_path.display(),
                    %error,
                    "cannot read the TLS certificate's expiry; it is not monitored"
                );
            }
        }
    }

    /// Returns the seconds from `now` until the certificate expires (negative once it has),
    /// or `None` if the expiry is unknown.
    pub fn seconds_left(&self, now: OffsetDateTime) -> Option<i64> {
        let not_after = self.not_after.load(Ordering::Relaxed);
        (not_after != UNKNOWN).then(|| not_after.saturating_sub(now.unix_timestamp()))
    }

    /// Sets the gauge to the seconds left at `now`; does nothing while the expiry is unknown.
    pub fn publish(&self, now: OffsetDateTime) {
        if let Some(seconds) = self.seconds_left(now) {
            // An f64 represents every whole second of a certificate's lifetime exactly.
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(TLS_CERTIFICATE_EXPIRY_SECONDS).set(seconds as f64);
        }
    }
}

/// Subject and expiry of a certificate, without any key material.
#[derive(Debug)]
struct CertificateInfo {
    subject: String,
    not_after: OffsetDateTime,
}

fn inspect(der: &CertificateDer<'_>) -> Result<CertificateInfo, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|error| format!("invalid X.509 certificate: {error}"))?;
    let timestamp = certificate.validity().not_after.timestamp();
    let not_after = OffsetDateTime::from_unix_timestamp(timestamp)
        .map_err(|error| format!("notAfter out of range: {error}"))?;
    Ok(CertificateInfo {
        subject: certificate.subject().to_string(),
        not_after,
    })
}

/// Expiry status of a certificate at a given time.
#[derive(Debug, PartialEq, Eq)]
enum ExpiryState {
    Valid,
    ExpiresSoon { days_left: i64 },
    Expired,
}

fn expiry_state(not_after: OffsetDateTime, now: OffsetDateTime) -> ExpiryState {
    let left = not_after - now;
    if left <= Duration::ZERO {
        ExpiryState::Expired
    } else if left <= EXPIRY_WARNING_PERIOD {
        ExpiryState::ExpiresSoon {
            days_left: left.whole_days(),
        }
    } else {
        ExpiryState::Valid
    }
}

fn log_expiry(cert_path: &Path, info: &CertificateInfo, now: OffsetDateTime) {
    let not_after = info
        .not_after
        .format(&Rfc3339)
        .unwrap_or_else(|_| info.not_after.to_string());
    match expiry_state(info.not_after, now) {
        ExpiryState::Valid => {}
        ExpiryState::ExpiresSoon { days_left } => tracing::warn!(
            cert = %cert_path.display(),
            subject = %info.subject,
            not_after,
            days_left,
            "TLS certificate expires within 14 days; renew it and send SIGHUP to reload it"
        ),
        ExpiryState::Expired => tracing::error!(
            cert = %cert_path.display(),
            subject = %info.subject,
            not_after,
            "TLS certificate has expired, so clients reject it; renew it and send SIGHUP to reload it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn certificate(not_after: OffsetDateTime) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "expiry test");
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = not_after;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("self-signed").der().clone()
    }

    #[test]
    fn expiry_state_warns_within_14_days() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            expiry_state(now + Duration::days(90), now),
            ExpiryState::Valid
        );
        assert_eq!(
            expiry_state(now + Duration::days(15), now),
            ExpiryState::Valid
        );
        assert_eq!(
            expiry_state(now + Duration::days(14), now),
            ExpiryState::ExpiresSoon { days_left: 14 }
        );
        assert_eq!(
            expiry_state(now + Duration::hours(5 * 24 + 3), now),
            ExpiryState::ExpiresSoon { days_left: 5 }
        );
        assert_eq!(expiry_state(now, now), ExpiryState::Expired);
        assert_eq!(
            expiry_state(now - Duration::days(1), now),
            ExpiryState::Expired
        );
    }

    #[test]
    fn inspect_reads_subject_and_not_after() {
        let not_after = OffsetDateTime::now_utc() + Duration::days(5);
        let info = inspect(&certificate(not_after)).expect("parses");

        assert!(info.subject.contains("CN=expiry test"), "{}", info.subject);
        assert_eq!(info.not_after.unix_timestamp(), not_after.unix_timestamp());
    }

    #[test]
    fn update_stores_seconds_left() {
        let expiry = CertificateExpiry::default();
        let now = OffsetDateTime::now_utc();
        assert_eq!(expiry.seconds_left(now), None);

        let not_after = now + Duration::days(5);
        expiry.update(Path::new("cert.pem"), &[certificate(not_after)]);
        let left = expiry.seconds_left(now).expect("known after update");
        assert_eq!(left, not_after.unix_timestamp() - now.unix_timestamp());

        let past = now - Duration::days(2);
        expiry.update(Path::new("cert.pem"), &[certificate(past)]);
        assert!(expiry.seconds_left(now).is_some_and(|left| left < 0));
    }

    #[test]
    fn unparsable_certificate_clears_expiry() {
        let expiry = CertificateExpiry::default();
        let now = OffsetDateTime::now_utc();
        expiry.update(
            Path::new("cert.pem"),
            &[certificate(now + Duration::days(5))],
        );

        expiry.update(
            Path::new("cert.pem"),
            &[CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff])],
        );
        assert_eq!(expiry.seconds_left(now), None);
    }
}
