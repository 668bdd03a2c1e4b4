//! The time source of the resilience layer, so tests move time instead of sleeping.
//!
//! Durations (cache age, breaker backoff) are measured on the monotonic clock. The wall clock
//! only stamps sync times for headers, audit entries and the on-disk cache.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Returns the current monotonic time.
    fn now(&self) -> Instant;

    /// Returns the current wall-clock time in UTC.
    fn wall(&self) -> OffsetDateTime;
}

/// The system clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called; both of its readings move
/// together.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_wall: OffsetDateTime,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// Creates a clock that reads the system's current time until advanced.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            start_wall: OffsetDateTime::now_utc(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(|e| e.into_inner());
        *elapsed = elapsed.saturating_add(by);
    }

    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn wall(&self) -> OffsetDateTime {
        self.start_wall + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_readings() {
        let clock = ManualClock::new();
        let (instant, wall) = (clock.now(), clock.wall());

        clock.advance(Duration::from_secs(90));

        assert_eq!(clock.now() - instant, Duration::from_secs(90));
        assert_eq!(clock.wall() - wall, time::Duration::seconds(90));
    }
}
