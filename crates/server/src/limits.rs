//! Transport limits: request head size, per-address and per-token rates, concurrent requests
//! (in total and per address) and the request deadline.
//!
//! All of them run before the caller is authenticated, so a flood of bad tokens costs the
//! server no lookups. Each rejection gets an audit entry through `record_rejected` and a
//! Vault-shaped error. The body size limit and body read timeout are applied where the body is
//! read (the API dispatcher), and the TLS handshake and header read timeouts in the connection
//! setup.
//!
//! The per-address limits key IPv6 clients by their /64 prefix, because one host usually owns
//! a whole /64. Addresses come from the TCP connection only; `X-Forwarded-For` is never read.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::Semaphore;

use crate::config::{RateLimit, ServerConfig};
use crate::errors::Rejection;
use crate::request::{AppState, BodyProgress, RequestInfo, reject};
use crate::telemetry::RATE_LIMITED_REQUESTS_TOTAL;
use crate::vault::request_token;

/// How many limiter checks pass between two sweeps of idle keys.
const SWEEP_INTERVAL: u64 = 4096;

/// The limits of one server, shared by all its connections.
pub(crate) struct Limits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Option<DefaultKeyedRateLimiter<u64>>,
    /// Keys the token hash with a per-process random key, so the limiter's map contains no token
    /// and its keys cannot be computed from outside.
    token_hasher: RandomState,
    concurrency: Arc<Semaphore>,
    per_address_in_flight: Arc<InFlight>,
    max_header_bytes: usize,
    request_timeout: Duration,
    checks: AtomicU64,
}

impl Limits {
    /// Builds the limiters from the server configuration.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            per_address: config.per_address_rate.map(keyed_limiter),
            per_token: config.per_token_rate.map(keyed_limiter),
            token_hasher: RandomState::new(),
            concurrency: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            per_address_in_flight: Arc::new(InFlight::new(
                config.max_concurrent_requests_per_address,
            )),
            max_header_bytes: config.max_header_bytes,
            request_timeout: config.request_timeout,
            checks: AtomicU64::new(0),
        }
    }

    /// Checks head size and rates; the first limit exceeded rejects the request.
    fn admit(&self, request: &Request, remote_addr: IpAddr) -> Result<(), Rejection> {
        if head_size(request) > self.max_header_bytes {
            return Err(Rejection::headers_too_large(self.max_header_bytes));
        }
        self.sweep_idle_keys();

        if let Some(limiter) = &self.per_address
            && let Err(not_until) = limiter.check_key(&address_key(remote_addr))
        {
            let wait = not_until.wait_time_from(limiter.clock().now());
            metrics::counter!(RATE_LIMITED_REQUESTS_TOTAL, "limit" => "address").increment(1);
            return Err(Rejection::rate_limited(
                "rate_limited_address",
                ceil_secs(wait),
            ));
        }

        if let Some(limiter) = &self.per_token
            && let Some(token) = request_token(request.headers())
        {
            let key = self.token_hasher.hash_one(token.as_str());
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(limiter.clock().now());
                metrics::counter!(RATE_LIMITED_REQUESTS_TOTAL, "limit" => "token").increment(1);
                return Err(Rejection::rate_limited(
                    "rate_limited_token",
                    ceil_secs(wait),
                ));
            }
        }
        Ok(())
    }

    /// Drops limiter state of keys that have been idle long enough to be back at full burst.
    fn sweep_idle_keys(&self) {
        let count = self.checks.fetch_add(1, Ordering::Relaxed);
        if count % SWEEP_INTERVAL != SWEEP_INTERVAL - 1 {
            return;
        }
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_token {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Requests in flight per address key, so that one client cannot take every request slot.
struct InFlight {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One request slot of an address; gives it back when dropped.
struct InFlightSlot {
    in_flight: Arc<InFlight>,
    key: IpAddr,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for `addr`, or returns `None` if its address key has `limit` in flight.
    fn try_acquire(self: &Arc<Self>, addr: IpAddr) -> Option<InFlightSlot> {
        let key = address_key(addr);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(InFlightSlot {
            in_flight: Arc::clone(self),
            key,
        })
    }
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Idle addresses are removed, so the map holds only addresses with requests in flight.
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn keyed_limiter<K: Clone + std::hash::Hash + Eq>(rate: RateLimit) -> DefaultKeyedRateLimiter<K> {
    DefaultKeyedRateLimiter::keyed(Quota::per_second(rate.per_second).allow_burst(rate.burst))
}

/// Returns the rate-limit key of an address: IPv4 as is, IPv6 reduced to its /64 prefix.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Bytes of the request line and headers as sent (names, values and separators).
fn head_size(request: &Request) -> usize {
    let line = request.method().as_str().len() + uri_len(request.uri()) + 12;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    line + headers
}

/// Length of `uri` as `Display` writes it, without building the string.
fn uri_len(uri: &axum::http::Uri) -> usize {
    let scheme = uri
        .scheme_str()
        .map_or(0, |scheme| scheme.len() + "://".len());
    let authority = uri
        .authority()
        .map_or(0, |authority| authority.as_str().len());
    let query = uri.query().map_or(0, |query| query.len() + 1);
    scheme + authority + uri.path().len() + query
}

/// Middleware: applies the limits, keeps a slot of the client's address and a global slot
/// while the request runs, and enforces the request deadline.
pub(crate) async fn enforce(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(info) = request.extensions().get::<RequestInfo>().cloned() else {
        return Rejection::internal("missing_request_context").to_response();
    };
    let ctx = info.ctx;
    let method = request.method().as_str().to_owned();
    let raw_path = request.uri().path().to_owned();
    let limits = &state.limits;

    if let Err(rejection) = limits.admit(&request, ctx.remote_addr) {
        return reject(&state, &ctx, &method, &raw_path, &rejection).await;
    }

    // The address's own slot comes first, so that an address at its limit gets the
    // per-address rejection even while the server as a whole still has room.
    let Some(_address_slot) = limits.per_address_in_flight.try_acquire(ctx.remote_addr) else {
        let rejection = Rejection::overloaded_address();
        return reject(&state, &ctx, &method, &raw_path, &rejection).await;
    };
    let Ok(_permit) = Arc::clone(&limits.concurrency).try_acquire_owned() else {
        return reject(&state, &ctx, &method, &raw_path, &Rejection::overloaded()).await;
    };

    let progress = BodyProgress::default();
    request.extensions_mut().insert(progress.clone());
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            let rejection = if progress.is_finished() {
                Rejection::request_timeout()
            } else {
                Rejection::body_timeout()
            };
            reject(&state, &ctx, &method, &raw_path, &rejection).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("valid");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("valid");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("valid");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
    }

    #[test]
    fn ipv4_addresses_are_their_own_key() {
        let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(address_key(addr), addr);
    }

    #[test]
    fn wait_rounds_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }

    #[test]
    fn address_limit_rejects_after_burst() {
        let mut config = ServerConfig::new(
            crate::config::DEFAULT_LISTEN_ADDR,
            "cert.pem".into(),
            "key.pem".into(),
        );
        config.per_address_rate = Some(RateLimit::new(1, 2));
        let limits = Limits::new(&config);
        let addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let request = || Request::new(axum::body::Body::empty());

        assert!(limits.admit(&request(), addr).is_ok());
        assert!(limits.admit(&request(), addr).is_ok());
        let rejection = limits
            .admit(&request(), addr)
            .expect_err("third request is over the burst");
        assert_eq!(rejection.reason, "rate_limited_address");
        assert!(
            limits
                .admit(&request(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
                .is_ok()
        );
    }

    #[test]
    fn token_limit_counts_each_token_separately() {
        let mut config = ServerConfig::new(
            crate::config::DEFAULT_LISTEN_ADDR,
            "cert.pem".into(),
            "key.pem".into(),
        );
        config.per_address_rate = None;
        config.per_token_rate = Some(RateLimit::new(1, 1));
        let limits = Limits::new(&config);
        let addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let with_token = |token: &str| {
            Request::builder()
                .header("x-vault-token", token)
                .body(axum::body::Body::empty())
                .expect("valid request")
        };

        assert!(limits.admit(&with_token("kwt.a"), addr).is_ok());
        let rejection = limits
            .admit(&with_token("kwt.a"), addr)
            .expect_err("over the rate");
        assert_eq!(rejection.reason, "rate_limited_token");
        assert!(limits.admit(&with_token("kwt.b"), addr).is_ok());
    }

    #[test]
    fn address_slots_are_limited_and_returned() {
        let in_flight = Arc::new(InFlight::new(2));
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("valid");
        let same_slash_64: IpAddr = "2001:db8:1:2::ffff".parse().expect("valid");
        let other = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let one = in_flight.try_acquire(first).expect("first slot");
        let two = in_flight.try_acquire(same_slash_64).expect("second slot");
        assert!(in_flight.try_acquire(first).is_none());
        assert!(in_flight.try_acquire(other).is_some());

        drop(one);
        let three = in_flight.try_acquire(first).expect("slot given back");
        drop(two);
        drop(three);
        let counts = in_flight.counts.lock().expect("not poisoned");
        assert!(counts.is_empty(), "{counts:?}");
    }

    #[test]
    fn uri_length_matches_its_display() {
        for raw in [
            "/v1/secret/data/app/db",
            "/v1/secret/metadata/app?list=true",
            "https://127.0.0.1:8200/v1/sys/health?standbyok=true",
            "*",
            "/",
        ] {
            let uri: axum::http::Uri = raw.parse().expect("valid uri");
            assert_eq!(uri_len(&uri), uri.to_string().len(), "{raw}");
        }
    }

    #[test]
    fn oversized_head_is_rejected() {
        let config = ServerConfig::new(
            crate::config::DEFAULT_LISTEN_ADDR,
            "cert.pem".into(),
            "key.pem".into(),
        );
        let limits = Limits::new(&config);
        let request = Request::builder()
            .header("x-padding", "a".repeat(config.max_header_bytes))
            .body(axum::body::Body::empty())
            .expect("valid request");
        let rejection = limits
            .admit(&request, IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect_err("head too large");
        assert_eq!(rejection.reason, "headers_too_large");
    }
}
