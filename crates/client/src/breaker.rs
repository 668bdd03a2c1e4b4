//! A circuit breaker around the server, shared by all reads of one client.
//!
//! After `failure_threshold` consecutive failures the breaker opens: reads stop contacting the
//! server and are served from the cache or fail fast. When the open period ends, one request
//! (the probe) goes through. Success closes the breaker, and failure opens it again for twice
//! as long, up to `max_backoff`. Each open period is randomised between half and all of its length
//! so that many clients restarted together do not probe in lockstep.
//!
//! It does not retry on its own: callers decide what to do with a rejection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// Time after which a probe that never reported its outcome is presumed lost.
const PROBE_TIMEOUT: Duration = crate::client::REQUEST_TIMEOUT;

/// Settings of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Length of the first open period.
    pub base_backoff: Duration,
    /// Upper bound of an open period.
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        backoff: Duration,
    },
    /// One probe is in flight since `since`; everyone else waits for its outcome.
    HalfOpen {
        since: Instant,
        backoff: Duration,
    },
}

/// The breaker's decision for one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Send the request.
    Allowed,
    /// Do not contact the server; the breaker lets a request through again after this long.
    Rejected(Duration),
}

/// A consecutive-failure circuit breaker with exponential, jittered open periods.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Decides whether a request may go to the server now.
    pub(crate) fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until, backoff } if now >= until => {
                *state = State::HalfOpen {
                    since: now,
                    backoff,
                };
                Admission::Allowed
            }
            State::Open { until, .. } => Admission::Rejected(until - now),
            // A probe whose caller gave up (its future was dropped) never reports back, so
            // another probe may go after the request timeout.
            State::HalfOpen { since, backoff } if now.duration_since(since) >= PROBE_TIMEOUT => {
                *state = State::HalfOpen {
                    since: now,
                    backoff,
                };
                Admission::Allowed
            }
            // The probe has not finished yet, so try again shortly.
            State::HalfOpen { backoff, .. } => {
                Admission::Rejected(backoff.min(Duration::from_secs(1)))
            }
        }
    }

    /// Records a successful request: the breaker closes.
    pub(crate) fn record_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Closed { failures: 0 }) {
            tracing::info!("keyward server reachable again; circuit closed");
        }
        *state = State::Closed { failures: 0 };
    }

    /// Records a failed request; returns the open period when this failure opened the breaker.
    pub(crate) fn record_failure(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let backoff = match *state {
            State::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                return None;
            }
            State::Closed { .. } => self.config.base_backoff,
            State::HalfOpen { backoff, .. } | State::Open { backoff, .. } => {
                (backoff * 2).min(self.config.max_backoff)
            }
        };

        let open_for = jitter(backoff);
        *state = State::Open {
            until: now + open_for,
            backoff,
        };
        tracing::warn!(
            open_ms = open_for.as_millis() as u64,
            "keyward server failing; circuit open"
        );
        Some(open_for)
    }

    /// Returns whether the breaker is currently letting requests through.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Closed { .. }
        )
    }
}

/// Picks a duration uniformly between half of `backoff` and all of it.
pub(crate) fn jitter(backoff: Duration) -> Duration {
    let nanos = backoff.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos < 2 {
        return backoff;
    }
    Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 2,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
        })
    }

    #[test]
    fn opens_after_consecutive_failures() {
        let breaker = breaker();
        let now = Instant::now();
        assert_eq!(breaker.record_failure(now), None);
        assert!(breaker.is_closed());

        let open_for = breaker.record_failure(now).expect("second failure opens");
        assert!(open_for >= Duration::from_millis(500), "{open_for:?}");
        assert!(open_for <= Duration::from_secs(1), "{open_for:?}");
        assert!(matches!(breaker.admit(now), Admission::Rejected(_)));
    }

    #[test]
    fn one_probe_after_open_period() {
        let breaker = breaker();
        let now = Instant::now();
        breaker.record_failure(now);
        breaker.record_failure(now);

        let later = now + Duration::from_secs(2);
        assert_eq!(breaker.admit(later), Admission::Allowed);
        assert!(matches!(breaker.admit(later), Admission::Rejected(_)));
    }

    #[test]
    fn failed_probe_doubles_backoff_up_to_max() {
        let breaker = breaker();
        let mut now = Instant::now();
        breaker.record_failure(now);
        breaker.record_failure(now);

        let mut longest = Duration::ZERO;
        for _ in 0..6 {
            now += Duration::from_secs(10);
            assert_eq!(breaker.admit(now), Admission::Allowed);
            let open_for = breaker.record_failure(now).expect("failed probe reopens");
            assert!(open_for <= Duration::from_secs(4), "{open_for:?}");
            longest = longest.max(open_for);
        }
        assert!(longest >= Duration::from_secs(2), "{longest:?}");
    }

    #[test]
    fn success_closes_the_breaker() {
        let breaker = breaker();
        let now = Instant::now();
        breaker.record_failure(now);
        breaker.record_failure(now);
        assert_eq!(
            breaker.admit(now + Duration::from_secs(2)),
            Admission::Allowed
        );
        breaker.record_success();
        assert!(breaker.is_closed());
        assert_eq!(breaker.admit(now), Admission::Allowed);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let value = jitter(Duration::from_millis(100));
            assert!(value >= Duration::from_millis(50), "{value:?}");
            assert!(value <= Duration::from_millis(100), "{value:?}");
        }
    }
}
