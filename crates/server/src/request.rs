//! Per-request plumbing shared by the middleware and the routes: the application state, the
//! request context (id and peer address), the completion log line, and the recording of
//! rejected requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use keyward_manager::{RequestContext, SecretsManager};
use tracing::Instrument;
use tracing::field::Empty;

use crate::errors::{Rejection, manager_error_response};
use crate::limits::Limits;
use crate::telemetry::REJECTED_REQUESTS_TOTAL;
use crate::tls::CertificateExpiry;

/// Shared state of the router, reachable from every handler.
pub(crate) struct AppState {
    /// The manager behind every operation.
    pub manager: Arc<SecretsManager>,
    /// Rate, concurrency, size and time limits.
    pub limits: Limits,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Time allowed for reading a request body.
    pub body_read_timeout: Duration,
    /// A random id for this server process, reported as `cluster_id` by `sys/health`.
    pub cluster_id: String,
    /// Expiry of the served certificate, for the metrics route; unknown without TLS.
    pub certificate_expiry: CertificateExpiry,
    /// The rotation scheduler behind the rotation routes; `None` disables those routes.
    pub rotation: Option<Arc<keyward_rotation::Scheduler>>,
}

/// The request's context, inserted into its extensions by [`request_context`].
#[derive(Clone, Debug)]
pub(crate) struct RequestInfo {
    /// Request id and peer address.
    pub ctx: RequestContext,
}

/// Whether the request body has been read completely; lets a timeout tell a slow client
/// (408) from a slow server (503).
#[derive(Clone, Debug, Default)]
pub(crate) struct BodyProgress(Arc<AtomicBool>);

impl BodyProgress {
    /// Marks the body as read.
    pub fn finish(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Returns whether the body has been read.
    pub fn is_finished(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Middleware: gives the request an id and its peer address, runs it inside a tracing span and
/// logs its outcome.
///
/// The span records method, route template, accessor, status and latency; never the token,
/// headers or body. The outcome line is logged at `debug` for responses below 500 and at
/// `info` for server errors. A line per request written to standard error costs a system
/// call and its formatting on every request, and the audit log and the metrics already
/// record each request. `RUST_LOG=keyward_server=debug` brings the line back for all.
pub(crate) async fn request_context(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let Some(remote_addr) = peer_address(&request) else {
        tracing::error!("request without a peer address: serve the router with connect info");
        return Rejection::internal("missing_peer_address").to_response();
    };
    let ctx = RequestContext {
        request_id: new_request_id(),
        remote_addr,
    };
    let span = tracing::info_span!(
        "request",
        request_id = %ctx.request_id,
        method = %request.method(),
        route = Empty,
        accessor = Empty,
        remote_addr = %remote_addr,
    );
    request.extensions_mut().insert(RequestInfo { ctx });

    async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::info!(status, latency_ms, "request finished");
        } else {
            tracing::debug!(status, latency_ms, "request finished");
        }
        response
    }
    .instrument(span)
    .await
}

/// Returns the peer IP address of the TCP connection, with IPv4-mapped IPv6 addresses unmapped.
/// Returns a random (version 4) UUID for a request. `Uuid::new_v4` reads its 16 bytes from the
/// kernel on every call. The thread's generator, seeded from the kernel, avoids that system
/// call.
fn new_request_id() -> String {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_owned()
}

fn peer_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Records a rejected request in the audit log and builds its response.
///
/// If the audit entry cannot be written, the client gets the audit failure (503) instead: the
/// server fails closed.
pub(crate) async fn reject(
    state: &AppState,
    ctx: &RequestContext,
    method: &str,
    raw_path: &str,
    rejection: &Rejection,
) -> Response {
    tracing::warn!(
        reason = rejection.reason,
        status = rejection.status.as_u16(),
        "request rejected"
    );
    metrics::counter!(REJECTED_REQUESTS_TOTAL, "reason" => rejection.reason).increment(1);
    let recorded = state
        .manager
        .record_rejected(
            ctx,
            method,
            raw_path,
            rejection.reason,
            rejection.status.as_u16(),
        )
        .await;
    match recorded {
        Ok(()) => rejection.to_response(),
        Err(error) => manager_error_response(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let first = new_request_id();
        let second = new_request_id();

        assert_ne!(first, second);
        for id in [first, second] {
            let parsed = uuid::Uuid::parse_str(&id).expect("a request id parses as a UUID");
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
            assert_eq!(parsed.hyphenated().to_string(), id);
        }
    }
}
