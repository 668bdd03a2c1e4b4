//! Prometheus metrics: one process-wide recorder, the HTTP and TLS metrics the server records,
//! and the text exposition served at `sys/metrics?format=prometheus`.
//!
//! Every crate records through the `metrics` facade, so gauges the manager sets appear in the
//! same output. Labels are bounded sets: a route template (never the raw path, which may name a
//! secret), a method from a fixed list, a status class, or a fixed reason. No token, accessor,
//! address or path is ever a label.
//!
//! This module does not serve metrics on a separate port or push them anywhere.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum_server::accept::Accept;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP responses sent, by `route`, `method` and `status` class (`2xx` …).
pub(crate) const HTTP_REQUESTS_TOTAL: &str = "keyward_http_requests_total";
/// Time from receiving a request head to sending the response head, by `route` and `method`.
pub(crate) const HTTP_REQUEST_DURATION_SECONDS: &str = "keyward_http_request_duration_seconds";
/// Requests turned away by a rate limit, by `limit` (`address` or `token`).
pub(crate) const RATE_LIMITED_REQUESTS_TOTAL: &str = "keyward_rate_limited_requests_total";
/// Requests turned away before an operation ran, by `reason`.
pub(crate) const REJECTED_REQUESTS_TOTAL: &str = "keyward_rejected_requests_total";
/// Failed authentications, by `reason` (`denied` or `locked_out`).
pub(crate) const AUTH_FAILURES_TOTAL: &str = "keyward_auth_failures_total";
/// TLS handshakes that failed, by `reason`.
pub(crate) const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "keyward_tls_handshake_failures_total";
/// Seconds until the serving certificate's `notAfter`; negative once it has expired.
pub(crate) const TLS_CERTIFICATE_EXPIRY_SECONDS: &str = "keyward_tls_certificate_expiry_seconds";

/// `route` label of a request answered before it was routed, for example by a rate limit.
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets in seconds, from a cached read to a slow key derivation.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Interval at which histogram samples are folded into their buckets between scrapes. Until
/// then each request's sample is kept: 8 bytes, which at 25,000 requests/s is 200 KB a second.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Content type of the Prometheus text exposition format.
pub(crate) const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The handle of the recorder this crate installed; `None` if another recorder was installed
/// first, in which case Keyward cannot render metrics.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs Keyward's Prometheus recorder as the process's `metrics` recorder, once.
///
/// Later calls, and servers built later in the same process, reuse it. Call this before
/// creating the `SecretsManager`, so the gauges it sets at startup are recorded: values
/// recorded before any recorder is installed are lost. Returns `false` if another recorder
/// was installed first; `sys/metrics` then returns 503.
pub fn install_metrics_recorder() -> bool {
    handle().is_some()
}

/// Returns the recorder's handle, installing the recorder on first use.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )
        .inspect_err(|error| tracing::error!(%error, "invalid latency buckets"))
        .ok()?;
    let handle = match builder.install_recorder() {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "another metrics recorder is installed; sys/metrics is unavailable");
            return None;
        }
    };
    describe();

    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("keyward-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        // Rendering also folds samples in, so metrics stay correct; only memory between
        // scrapes grows.
        tracing::warn!(%error, "cannot start the metrics upkeep thread");
    }
    Some(handle)
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests answered");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "time to answer an HTTP request"
    );
    metrics::describe_counter!(
        RATE_LIMITED_REQUESTS_TOTAL,
        "requests rejected by a rate limit"
    );
    metrics::describe_counter!(
        REJECTED_REQUESTS_TOTAL,
        "requests rejected before an operation ran"
    );
    metrics::describe_counter!(AUTH_FAILURES_TOTAL, "failed token authentications");
    metrics::describe_counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "failed TLS handshakes");
    metrics::describe_gauge!(
        TLS_CERTIFICATE_EXPIRY_SECONDS,
        metrics::Unit::Seconds,
        "seconds until the serving TLS certificate expires"
    );
}

/// The route template of a response, set by the API dispatcher for the metrics middleware.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteLabel(pub &'static str);

/// Middleware: counts every response by route template, method and status class, and records
/// its latency.
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method().as_str());

    let response = next.run(request).await;

    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or(UNMATCHED_ROUTE, |label| label.0);
    let status = status_class(response.status().as_u16());
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route, "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Returns the method as a label; methods outside Vault's set share `other`, so a client
/// cannot create new label values.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "LIST" => "LIST",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// An acceptor that counts the failures of the TLS acceptor it wraps.
#[derive(Clone, Debug)]
pub(crate) struct HandshakeMetrics<A>(pub A);

/// The future of a counted handshake.
type CountedHandshake<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, I, S> Accept<I, S> for HandshakeMetrics<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = CountedHandshake<(A::Stream, A::Service)>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.0.accept(stream, service);
        Box::pin(async move {
            let result = handshake.await;
            if let Err(error) = &result {
                let reason = handshake_failure_reason(error);
                tracing::debug!(%error, reason, "TLS handshake failed");
                metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "reason" => reason).increment(1);
            }
            result
        })
    }
}

/// Classifies a failed handshake into a fixed set of reasons.
fn handshake_failure_reason(error: &io::Error) -> &'static str {
    if error.kind() == io::ErrorKind::TimedOut {
        return "timeout";
    }
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(_) => "invalid_client_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible_client",
        rustls::Error::AlertReceived(_) => "alert_received",
        _ => "protocol",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_is_installed_once_and_reused() {
        assert!(install_metrics_recorder());
        let first = handle().expect("installed") as *const PrometheusHandle;
        assert!(install_metrics_recorder());
        let second = handle().expect("installed") as *const PrometheusHandle;
        assert_eq!(first, second);
    }

    #[test]
    fn rendered_output_contains_recorded_metrics() {
        let handle = handle().expect("installed");
        metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => "unit_test").increment(2);

        let text = handle.render();
        assert!(
            text.contains("keyward_auth_failures_total{reason=\"unit_test\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn latency_is_a_histogram_with_buckets() {
        let handle = handle().expect("installed");
        metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => "unit/test", "method" => "GET")
            .record(0.003);

        let text = handle.render();
        assert!(
            text.contains(
                "keyward_http_request_duration_seconds_bucket{route=\"unit/test\",method=\"GET\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("LIST"), "LIST");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(method_label("get"), "other");
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(403), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(101), "1xx");
    }

    #[test]
    fn handshake_failures_are_classified() {
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "handshake timed out");
        assert_eq!(handshake_failure_reason(&timeout), "timeout");

        let missing = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(handshake_failure_reason(&missing), "no_client_certificate");

        let invalid = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            handshake_failure_reason(&invalid),
            "invalid_client_certificate"
        );

        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(handshake_failure_reason(&reset), "io");
    }
}
