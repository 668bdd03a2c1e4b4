//! Lockout of addresses that fail authentication repeatedly.
//!
//! Guessing tokens is hopeless at 256 bits, but a flood of failures is still an attack worth
//! stopping and reporting. After `threshold` failures within `window`, an address is locked for
//! `duration`; while locked, even a valid token is refused, so the lockout cannot be used to
//! test guesses. State is in memory, per process.

use std::collections::HashMap;
use std::net::IpAddr;
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

impl Lockout {
    /// Creates an empty tracker.
    pub fn new(config: LockoutConfig) -> Self {
        Self {
            config,
            entries: RwLock::new(HashMap::new()),
            any_failure: AtomicBool::new(false),
        }
    }

    /// Whether `addr` is locked at `now`.
    pub fn is_locked(&self, addr: IpAddr, now: Instant) -> bool {
        if !self.any_failure.load(Ordering::Acquire) {
            return false;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&addr)
            .and_then(|e| e.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Records a failure; returns true if this failure locked the address.
    pub fn record_failure(&self, addr: IpAddr, now: Instant) -> bool {
        self.any_failure.store(true, Ordering::Release);
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
        assert!(!lockout.is_locked(addr, now));
        assert!(lockout.record_failure(addr, now));
        assert!(lockout.is_locked(addr, now));
        assert!(!lockout.is_locked([127, 0, 0, 2].into(), now));
    }

    #[test]
    fn lock_expires_after_duration() {
        let lockout = lockout();
        let addr: IpAddr = [127, 0, 0, 1].into();
        let now = Instant::now();
        for _ in 0..3 {
            lockout.record_failure(addr, now);
        }
        assert!(lockout.is_locked(addr, now + Duration::from_secs(59)));
        assert!(!lockout.is_locked(addr, now + Duration::from_secs(61)));
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
        assert!(!lockout.is_locked(addr, later));
    }
}
