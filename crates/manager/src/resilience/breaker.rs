//! A circuit breaker (closed, open, half-open) around one backend.
//!
//! Closed lets every call through and counts consecutive backend failures; at the threshold
//! the breaker opens. Open turns calls away without touching the backend until its backoff
//! ends. The backoff doubles with each open that follows another without a successful probe
//! in between, up to a maximum, and is jittered so that several nodes do not probe in step.
//! Half-open lets exactly one probe through while every other caller is turned away; the
//! probe's success closes the breaker and its failure opens it again.
//!
//! Only [`StoreError::Backend`](keyward_store::StoreError) counts as a failure: a `not found`
//! or a check-and-set mismatch means the backend responded. This module does not retry calls.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clock::Clock;
use super::health::DegradedState;
use super::metrics;
use crate::events::{EventBus, SecurityEvent};

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are turned away until the backoff ends.
    Open,
    /// One probe call is allowed through; its result closes or reopens the breaker.
    HalfOpen,
}

impl CircuitState {
    /// Returns the state's name for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Settings of one breaker.
#[derive(Clone, Debug)]
pub(crate) struct BreakerSettings {
    pub(crate) backend: String,
    pub(crate) failure_threshold: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    consecutive_failures: u32,
    /// Opens since the breaker last closed; sets the backoff's exponent.
    opens: u32,
    open_until: Instant,
    probe_in_flight: bool,
}

/// A circuit breaker around one backend.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    events: EventBus,
    degraded: Arc<DegradedState>,
    inner: Mutex<Inner>,
    jitter_counter: AtomicU64,
    jitter_hasher: RandomState,
}

/// The right to make one backend call; report its outcome with [`Permit::finish`].
///
/// A probe permit dropped unfinished (its call was cancelled) frees the probe slot, so the
/// next caller probes instead.
#[must_use]
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    finished: bool,
}

impl Permit<'_> {
    /// Records the call's outcome: `true` if the backend failed.
    pub(crate) fn finish(mut self, backend_failed: bool) {
        self.finished = true;
        self.breaker.record(self.probe, backend_failed);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.finished {
            let mut inner = self.breaker.lock();
            inner.probe_in_flight = false;
        }
    }
}

/// A call turned away by an open breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// Time until the breaker lets a probe through; zero while a probe is in flight.
    pub(crate) retry_after: Duration,
}

enum Transition {
    Opened { failures: u32, backoff: Duration },
    HalfOpen,
    Closed,
    FirstFailure,
}

impl CircuitBreaker {
    pub(crate) fn new(
        settings: BreakerSettings,
        clock: Arc<dyn Clock>,
        events: EventBus,
        degraded: Arc<DegradedState>,
    ) -> Self {
        let now = clock.now();
        metrics::record_state(&settings.backend, CircuitState::Closed);
        Self {
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                ..settings
            },
            clock,
            events,
            degraded,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                opens: 0,
                open_until: now,
                probe_in_flight: false,
            }),
            jitter_counter: AtomicU64::new(0),
            jitter_hasher: RandomState::new(),
        }
    }

    /// Returns the backend's name.
    pub(crate) fn backend(&self) -> &str {
        &self.settings.backend
    }

    /// Returns the current state.
    pub(crate) fn state(&self) -> CircuitState {
        self.lock().state
    }

    /// Asks to make one backend call.
    pub(crate) fn admit(&self) -> Result<Permit<'_>, Rejected> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let admitted = match inner.state {
            CircuitState::Closed => Ok((false, None)),
            CircuitState::Open if now >= inner.open_until => {
                inner.state = CircuitState::HalfOpen;
                inner.probe_in_flight = true;
                Ok((true, Some(Transition::HalfOpen)))
            }
            CircuitState::Open => Err(Rejected {
                retry_after: inner.open_until - now,
            }),
            CircuitState::HalfOpen if inner.probe_in_flight => Err(Rejected {
                retry_after: Duration::ZERO,
            }),
            CircuitState::HalfOpen => {
                inner.probe_in_flight = true;
                Ok((true, None))
            }
        };
        drop(inner);

        match admitted {
            Ok((probe, transition)) => {
                if let Some(transition) = transition {
                    self.announce(transition);
                }
                Ok(Permit {
                    breaker: self,
                    probe,
                    finished: false,
                })
            }
            Err(rejected) => {
                metrics::record_rejected(self.backend());
                Err(rejected)
            }
        }
    }

    fn record(&self, probe: bool, backend_failed: bool) {
        let now = self.clock.now();
        let mut inner = self.lock();
        let mut first_failure = false;
        let transition = if probe {
            inner.probe_in_flight = false;
            if backend_failed {
                Some(self.open(&mut inner, now))
            } else {
                inner.state = CircuitState::Closed;
                inner.consecutive_failures = 0;
                inner.opens = 0;
                Some(Transition::Closed)
            }
        } else if inner.state != CircuitState::Closed {
            // A call admitted before the breaker opened: the probe decides from here on.
            None
        } else if backend_failed {
            inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
            first_failure = inner.consecutive_failures == 1;
            (inner.consecutive_failures >= self.settings.failure_threshold)
                .then(|| self.open(&mut inner, now))
        } else {
            inner.consecutive_failures = 0;
            None
        };
        drop(inner);

        if first_failure {
            self.announce(Transition::FirstFailure);
        }
        if let Some(transition) = transition {
            self.announce(transition);
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) -> Transition {
        inner.opens = inner.opens.saturating_add(1);
        let backoff = backoff_delay(
            self.settings.backoff_base,
            self.settings.backoff_max,
            inner.opens,
            self.jitter_unit(),
        );
        inner.state = CircuitState::Open;
        inner.open_until = now + backoff;
        Transition::Opened {
            failures: inner.consecutive_failures,
            backoff,
        }
    }

    /// Publishes the event, metric and log line of a transition, outside the lock.
    fn announce(&self, transition: Transition) {
        let backend = self.backend().to_owned();
        let (state, event) = match transition {
            Transition::Opened { failures, backoff } => {
                let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(%backend, consecutive_failures = failures, backoff_ms, "circuit breaker opened");
                let event = SecurityEvent::CircuitOpened {
                    backend,
                    consecutive_failures: failures,
                    backoff_ms,
                };
                (CircuitState::Open, event)
            }
            Transition::HalfOpen => {
                tracing::info!(%backend, "circuit breaker half-open: probing the backend");
                (
                    CircuitState::HalfOpen,
                    SecurityEvent::CircuitHalfOpen { backend },
                )
            }
            Transition::Closed => {
                tracing::info!(%backend, "circuit breaker closed: backend responded to the probe");
                (
                    CircuitState::Closed,
                    SecurityEvent::CircuitClosed { backend },
                )
            }
            Transition::FirstFailure => {
                tracing::warn!(%backend, "storage backend failed");
                self.events
                    .publish(SecurityEvent::BackendUnavailable { backend });
                return;
            }
        };
        metrics::record_transition(self.backend(), state);
        self.degraded
            .set_breaker_not_closed(state != CircuitState::Closed);
        self.events.publish(event);
    }

    /// Returns a number in `[0, 1)` that differs between calls and between processes.
    fn jitter_unit(&self) -> f64 {
        // Jitter only has to spread nodes apart, not be unpredictable: a randomly keyed
        // SipHash of a counter is enough.
        let count = self.jitter_counter.fetch_add(1, Ordering::Relaxed);
        let bits = self.jitter_hasher.hash_one(count) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Returns how long the breaker stays open after its `opens`-th open in a row (from 1).
///
/// The ceiling is `base * 2^(opens-1)`, capped at `max`. Half of it is fixed and the other
/// half is scaled by `unit` (in `[0, 1]`), so the delay lies between half the ceiling and
/// the ceiling.
pub(crate) fn backoff_delay(base: Duration, max: Duration, opens: u32, unit: f64) -> Duration {
    let exponent = opens.saturating_sub(1).min(31);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let fixed = ceiling / 2;
    let jittered = (ceiling - fixed).mul_f64(unit.clamp(0.0, 1.0));
    fixed + jittered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::ManualClock;

    struct Fixture {
        clock: Arc<ManualClock>,
        breaker: CircuitBreaker,
        events: tokio::sync::broadcast::Receiver<SecurityEvent>,
    }

    fn fixture(threshold: u32) -> Fixture {
        let clock = Arc::new(ManualClock::new());
        let bus = EventBus::default();
        let events = bus.subscribe();
        let breaker = CircuitBreaker::new(
            BreakerSettings {
                backend: "test".into(),
                failure_threshold: threshold,
                backoff_base: Duration::from_secs(1),
                backoff_max: Duration::from_secs(8),
            },
            clock.clone(),
            bus,
            Arc::new(DegradedState::default()),
        );
        Fixture {
            clock,
            breaker,
            events,
        }
    }

    fn fail(breaker: &CircuitBreaker) {
        breaker.admit().expect("admitted").finish(true);
    }

    fn drain(events: &mut tokio::sync::broadcast::Receiver<SecurityEvent>) -> Vec<SecurityEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[test]
    fn opens_after_threshold_failures() {
        let mut f = fixture(3);
        fail(&f.breaker);
        fail(&f.breaker);
        assert_eq!(f.breaker.state(), CircuitState::Closed);

        fail(&f.breaker);

        assert_eq!(f.breaker.state(), CircuitState::Open);
        assert!(f.breaker.admit().is_err());
        let events = drain(&mut f.events);
        assert!(matches!(
            events.as_slice(),
            [
                SecurityEvent::BackendUnavailable { .. },
                SecurityEvent::CircuitOpened {
                    consecutive_failures: 3,
                    ..
                }
            ]
        ));
    }

    #[test]
    fn success_resets_failure_count() {
        let f = fixture(2);
        fail(&f.breaker);
        f.breaker.admit().expect("admitted").finish(false);
        fail(&f.breaker);
        assert_eq!(f.breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn half_open_admits_exactly_one_probe() {
        let f = fixture(1);
        fail(&f.breaker);
        f.clock.advance(Duration::from_secs(2));

        let probe = f.breaker.admit().expect("probe admitted");
        assert_eq!(f.breaker.state(), CircuitState::HalfOpen);
        for _ in 0..5 {
            assert_eq!(
                f.breaker.admit().err(),
                Some(Rejected {
                    retry_after: Duration::ZERO
                })
            );
        }

        probe.finish(false);
        assert_eq!(f.breaker.state(), CircuitState::Closed);
        assert!(f.breaker.admit().is_ok());
    }

    #[test]
    fn failed_probe_reopens_with_longer_backoff() {
        let f = fixture(1);
        fail(&f.breaker);
        let first = f.breaker.admit().expect_err("open").retry_after;
        f.clock.advance(first);

        fail(&f.breaker);

        assert_eq!(f.breaker.state(), CircuitState::Open);
        let second = f.breaker.admit().expect_err("open again").retry_after;
        // First open: 0.5-1 s; second: 1-2 s.
        assert!(first <= Duration::from_secs(1), "{first:?}");
        assert!(second >= Duration::from_secs(1), "{second:?}");
    }

    #[test]
    fn open_breaker_waits_out_its_backoff() {
        let f = fixture(1);
        fail(&f.breaker);
        f.clock.advance(Duration::from_millis(400));
        assert!(f.breaker.admit().is_err());

        f.clock.advance(Duration::from_millis(700));
        assert!(f.breaker.admit().is_ok());
    }

    #[test]
    fn cancelled_probe_frees_the_slot() {
        let f = fixture(1);
        fail(&f.breaker);
        f.clock.advance(Duration::from_secs(2));
        drop(f.breaker.admit().expect("probe admitted"));

        assert_eq!(f.breaker.state(), CircuitState::HalfOpen);
        assert!(f.breaker.admit().is_ok());
    }

    #[test]
    fn close_publishes_events_in_order() {
        let mut f = fixture(1);
        fail(&f.breaker);
        f.clock.advance(Duration::from_secs(2));
        f.breaker.admit().expect("probe").finish(false);

        let events = drain(&mut f.events);
        assert!(matches!(
            events.as_slice(),
            [
                SecurityEvent::BackendUnavailable { .. },
                SecurityEvent::CircuitOpened { .. },
                SecurityEvent::CircuitHalfOpen { .. },
                SecurityEvent::CircuitClosed { .. },
            ]
        ));
    }

    #[test]
    fn backoff_stays_within_jitter_bounds() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for opens in 1..=40 {
            let ceiling = base.saturating_mul(1u32 << (opens - 1).min(31)).min(max);
            for unit in [0.0, 0.25, 0.5, 0.999, 1.0] {
                let delay = backoff_delay(base, max, opens, unit);
                assert!(delay >= ceiling / 2, "opens {opens} unit {unit}: {delay:?}");
                assert!(delay <= ceiling, "opens {opens} unit {unit}: {delay:?}");
            }
        }
    }

    #[test]
    fn backoff_doubles_until_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let at = |opens| backoff_delay(base, max, opens, 1.0);
        assert_eq!(at(1), Duration::from_secs(1));
        assert_eq!(at(2), Duration::from_secs(2));
        assert_eq!(at(6), Duration::from_secs(32));
        assert_eq!(at(7), Duration::from_secs(60));
        assert_eq!(at(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_unit_is_in_range() {
        let f = fixture(1);
        for _ in 0..1000 {
            let unit = f.breaker.jitter_unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }
}
