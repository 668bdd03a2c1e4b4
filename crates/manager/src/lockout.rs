//! Lockout of addresses that fail authentication repeatedly.
//!
//! Guessing tokens is hopeless at 256 bits, but a flood of failures is still an attack worth
//! stopping and reporting. After `threshold` failures within `window`, an address is locked for
//! `duration`; while locked, even a valid token is refused, so the lockout cannot be used to
//! test guesses. State is in memory, per process.
//!
//! IPv6 clients are counted by their /64 prefix, because one host usually owns a whole /64 and
//! could otherwise spread its failures over 2^64 addresses. Every client behind one address
//! (a NAT gateway, a reverse proxy) shares one counter, so their failures lock them all out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Lockout settings.
#[derive(Clone, Debug)]
pub struct LockoutConfig {
    /// Failures within `window` that lock an address.
    pub threshold: u32,
    /// The window over which failures are counted.
    pub window: Duration,
    /// How long a locked address stays locked.
    pub duration: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            threshold: 20,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }
}

#[derive(Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

/// Tracks authentication failures per address.
#[derive(Debug)]
pub struct Lockout {
    config: LockoutConfig,
    entries: RwLock<HashMap<IpAddr, Entry>>,
    // Lets the common case (no failure ever recorded) skip the lock entirely.
    any_failure: AtomicBool,
}

/// Upper bound on tracked addresses, so a spray from many addresses cannot grow memory
/// without limit; past it, expired entries are swept first.
const MAX_TRACKED: usize = 100_000;

/// Maximum lock duration and failure window, applied whatever the configuration sets, so that
/// adding them to an `Instant` cannot overflow.
const MAX_LOCK_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

impl Lockout {
    /// Creates an empty tracker.
    pub fn new(mut config: LockoutConfig) -> Self {
        config.duration = config.duration.min(MAX_LOCK_DURATION);
        config.window = config.window.min(MAX_LOCK_DURATION);
        Self {
            config,
            entries: RwLock::new(HashMap::new()),
            any_failure: AtomicBool::new(false),
        }
    }

    /// Returns how long `addr` stays locked after `now`, or `None` if it is not locked.
    pub fn locked_for(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        if !self.any_failure.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&address_key(addr))
            .and_then(|e| e.locked_until)
            .filter(|until| now < *until)
            .map(|until| until - now)
    }

    /// Records a failure; returns true if this failure locked the address.
    pub fn record_failure(&self, addr: IpAddr, now: Instant) -> bool {
        self.any_failure.store(true, Ordering::Release);
        let addr = address_key(addr);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_TRACKED {
            let window = self.config.window;
            entries.retain(|_, e| {
                now.duration_since(e.window_start) < window
                    || e.locked_until.is_some_and(|until| now < until)
            });
        }

        let entry = entries.entry(addr).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        if now.duration_since(entry.window_start) >= self.config.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;

        let newly_locked = entry.failures >= self.config.threshold
            && entry.locked_until.is_none_or(|until| now >= until);
        if newly_locked {
            entry.locked_until = Some(now + self.config.duration);
        }
        newly_locked
    }
}

/// Returns the key an address is counted under: IPv4 as is, IPv6 reduced to its /64 prefix.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig {
            threshold: 3,
            window: Duration::from_secs(10),
            duration: Duration::from_secs(60),
        })
    }

    #[test]
    fn address_locks_at_threshold() {
        let lockout = lockout();
        let addr: IpAddr = [127, 0, 0, 1].into();
        let now = Instant::now();

        assert!(!lockout.record_failure(addr, now));
        assert!(!lockout.record_failure(addr, now));
        assert_eq!(lockout.locked_for(addr, now), None);
        assert!(lockout.record_failure(addr, now));
        assert_eq!(lockout.locked_for(addr, now), Some(Duration::from_secs(60)));
        assert_eq!(lockout.locked_for([127, 0, 0, 2].into(), now), None);
    }

    #[test]
    fn lock_expires_after_duration() {
        let lockout = lockout();
        let addr: IpAddr = [127, 0, 0, 1].into();
        let now = Instant::now();
        for _ in 0..3 {
            lockout.record_failure(addr, now);
        }
        assert_eq!(
            lockout.locked_for(addr, now + Duration::from_secs(59)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            lockout.locked_for(addr, now + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn failures_outside_window_do_not_add_up() {
        let lockout = lockout();
        let addr: IpAddr = [127, 0, 0, 1].into();
        let start = Instant::now();
        lockout.record_failure(addr, start);
        lockout.record_failure(addr, start);
        let later = start + Duration::from_secs(11);
        assert!(!lockout.record_failure(addr, later));
        assert_eq!(lockout.locked_for(addr, later), None);
    }

    #[test]
    fn ipv6_failures_add_up_per_slash_64() {
        let lockout = lockout();
        let now = Instant::now();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
            let addr: IpAddr = host.parse().expect("valid address");
            lockout.record_failure(addr, now);
        }

        let neighbour: IpAddr = "2001:db8:1:2:abcd::9".parse().expect("valid address");
        let other_network: IpAddr = "2001:db8:1:3::1".parse().expect("valid address");
        assert!(lockout.locked_for(neighbour, now).is_some());
        assert_eq!(lockout.locked_for(other_network, now), None);
    }

    #[test]
    fn huge_lock_duration_does_not_overflow() {
        let lockout = Lockout::new(LockoutConfig {
            threshold: 1,
            window: Duration::MAX,
            duration: Duration::MAX,
        });
        let addr: IpAddr = [127, 0, 0, 1].into();
        let now = Instant::now();
        assert!(lockout.record_failure(addr, now));
        assert_eq!(lockout.locked_for(addr, now), Some(MAX_LOCK_DURATION));
    }
}
