//! Checks of the configuration's network and request settings: the listen address, the rate
//! limits, the lockout threshold, the body size limit and the request timeout.

use std::net::SocketAddr;

use super::Check;
use crate::config::Limits;

/// Rate above which a limit no longer slows an attacker down, in requests per second.
const MAX_RATE: u32 = 100_000;

/// Failed authentications per minute above which the lockout no longer slows guessing.
const MAX_LOCKOUT_THRESHOLD: u32 = 1000;

/// Largest body size that passes, in bytes (16 MiB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Maximum request timeout that passes, in seconds.
const MAX_REQUEST_TIMEOUT_SECS: u64 = 300;

/// Warns when the server listens on an address that other hosts can reach without requiring
/// client certificates, so that any host that can connect may try tokens.
pub fn check_listen(listen: SocketAddr, client_cert_required: bool) -> Check {
    let name = "listen address";
    if listen.ip().is_loopback() {
        return Check::pass(name, format!("listening on loopback {listen}"));
    }
    if client_cert_required {
        return Check::pass(
            name,
            format!("listening on {listen}; clients need a certificate from the client CA"),
        );
    }
    Check::warn(
        name,
        format!("listening on {listen} reachable from other hosts without client certificates"),
        "set client_ca and require_client_cert = true in [tls], or put Keyward behind a firewall or restrict the address",
    )
}

/// Checks the per-token and per-address rate limits and the lockout threshold.
pub fn check_rate_limits(limits: &Limits) -> Vec<Check> {
    vec![
        check_rate(
            "per-token rate limit",
            "per_token_per_second",
            limits.per_token_per_second,
            Limits::default().per_token_per_second,
        ),
        check_rate(
            "per-address rate limit",
            "per_address_per_second",
            limits.per_address_per_second,
            Limits::default().per_address_per_second,
        ),
        check_lockout(limits.lockout_threshold),
    ]
}

fn check_rate(name: &str, field: &str, value: u32, default: u32) -> Check {
    let fix = format!("set {field} in [limits] to a real limit, such as the default {default}");
    if value == 0 {
        // The server raises a zero rate to one request per second rather than disabling it.
        return Check::warn(
            name,
            format!("{field} = 0, which the server treats as 1 request per second"),
            fix,
        );
    }
    if value > MAX_RATE {
        return Check::warn(
            name,
            format!("{field} = {value}, above {MAX_RATE}, which hardly limits anything"),
            fix,
        );
    }
    Check::pass(name, format!("{field} = {value}"))
}

fn check_lockout(threshold: u32) -> Check {
    let name = "lockout threshold";
    let default = Limits::default().lockout_threshold;
    let fix = format!("set lockout_threshold in [limits] to a value such as the default {default}");
    if threshold == 0 {
        // The lockout counts a failure before comparing, so 0 behaves as 1.
        return Check::warn(
            name,
            "lockout_threshold = 0, which locks an address out after its first failed authentication",
            fix,
        );
    }
    if threshold > MAX_LOCKOUT_THRESHOLD {
        return Check::warn(
            name,
            format!(
                "lockout_threshold = {threshold}, above {MAX_LOCKOUT_THRESHOLD}, which allows token guessing"
            ),
            fix,
        );
    }
    Check::pass(name, format!("lockout_threshold = {threshold}"))
}

/// Checks the body size limit and the request timeout.
pub fn check_request_limits(limits: &Limits) -> Vec<Check> {
    let defaults = Limits::default();
    let body = if limits.max_body_bytes > MAX_BODY_BYTES {
        Check::warn(
            "request body limit",
            format!(
                "max_body_bytes = {}, above 16 MiB, which lets a client tie up memory",
                limits.max_body_bytes
            ),
            format!(
                "set max_body_bytes in [limits] to at most {MAX_BODY_BYTES}, such as the default {}",
                defaults.max_body_bytes
            ),
        )
    } else {
        Check::pass(
            "request body limit",
            format!("max_body_bytes = {}", limits.max_body_bytes),
        )
    };

    let timeout = if limits.request_timeout_secs > MAX_REQUEST_TIMEOUT_SECS {
        Check::warn(
            "request timeout",
            format!(
                "request_timeout_secs = {}, above {MAX_REQUEST_TIMEOUT_SECS}, which lets slow clients hold connections",
                limits.request_timeout_secs
            ),
            format!(
                "set request_timeout_secs in [limits] to at most {MAX_REQUEST_TIMEOUT_SECS}, such as the default {}",
                defaults.request_timeout_secs
            ),
        )
    } else {
        Check::pass(
            "request timeout",
            format!("request_timeout_secs = {}", limits.request_timeout_secs),
        )
    };
    vec![body, timeout]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn statuses(checks: &[Check]) -> Vec<Status> {
        checks.iter().map(|check| check.status).collect()
    }

    #[test]
    fn loopback_listen_passes() {
        for addr in ["127.0.0.1:8200", "[::1]:8200"] {
            let check = check_listen(addr.parse().expect("address"), false);
            assert_eq!(check.status, Status::Pass, "{addr}: {check:?}");
        }
    }

    #[test]
    fn public_listen_warns() {
        for addr in ["0.0.0.0:8200", "[::]:8200", "192.0.2.10:8200"] {
            let check = check_listen(addr.parse().expect("address"), false);
            assert_eq!(check.status, Status::Warn, "{addr}: {check:?}");
            assert!(check.message.contains(addr), "{check:?}");
        }
        let check = check_listen("0.0.0.0:8200".parse().expect("address"), false);
        assert!(
            check
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("require_client_cert")),
            "{check:?}"
        );
    }

    #[test]
    fn public_listen_with_client_certificates_passes() {
        let check = check_listen("0.0.0.0:8200".parse().expect("address"), true);
        assert_eq!(check.status, Status::Pass, "{check:?}");
    }

    #[test]
    fn default_limits_pass() {
        let limits = Limits::default();
        let checks: Vec<Check> = check_rate_limits(&limits)
            .into_iter()
            .chain(check_request_limits(&limits))
            .collect();
        assert_eq!(statuses(&checks), [Status::Pass; 5], "{checks:?}");
    }

    #[test]
    fn zero_and_huge_rates_warn() {
        for rate in [0, MAX_RATE + 1] {
            let limits = Limits {
                per_token_per_second: rate,
                per_address_per_second: rate,
                ..Limits::default()
            };
            let checks = check_rate_limits(&limits);
            assert_eq!(
                statuses(&checks),
                [Status::Warn, Status::Warn, Status::Pass],
                "{rate}: {checks:?}"
            );
        }
    }

    #[test]
    fn rate_at_maximum_passes() {
        let limits = Limits {
            per_token_per_second: MAX_RATE,
            ..Limits::default()
        };
        assert_eq!(check_rate_limits(&limits)[0].status, Status::Pass);
    }

    #[test]
    fn extreme_lockout_threshold_warns() {
        for threshold in [0, MAX_LOCKOUT_THRESHOLD + 1] {
            let check = check_lockout(threshold);
            assert_eq!(check.status, Status::Warn, "{threshold}: {check:?}");
        }
        assert_eq!(check_lockout(MAX_LOCKOUT_THRESHOLD).status, Status::Pass);
    }

    #[test]
    fn large_body_and_timeout_warn() {
        let limits = Limits {
            max_body_bytes: MAX_BODY_BYTES + 1,
            request_timeout_secs: MAX_REQUEST_TIMEOUT_SECS + 1,
            ..Limits::default()
        };
        let checks = check_request_limits(&limits);
        assert_eq!(
            statuses(&checks),
            [Status::Warn, Status::Warn],
            "{checks:?}"
        );
    }

    #[test]
    fn body_and_timeout_at_maximum_pass() {
        let limits = Limits {
            max_body_bytes: MAX_BODY_BYTES,
            request_timeout_secs: MAX_REQUEST_TIMEOUT_SECS,
            ..Limits::default()
        };
        let checks = check_request_limits(&limits);
        assert_eq!(
            statuses(&checks),
            [Status::Pass, Status::Pass],
            "{checks:?}"
        );
    }
}
