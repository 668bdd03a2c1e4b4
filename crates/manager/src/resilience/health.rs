//! Whether the manager runs degraded, for `sys/health` and the `keyward_degraded` gauge.

use std::sync::atomic::{AtomicBool, Ordering};

use super::metrics;

/// The two conditions that make the manager degraded.
#[derive(Debug, Default)]
pub(crate) struct DegradedState {
    breaker_not_closed: AtomicBool,
    serving_stale: AtomicBool,
}

impl DegradedState {
    /// Records whether the breaker is anything but closed.
    pub(crate) fn set_breaker_not_closed(&self, value: bool) {
        if self.breaker_not_closed.swap(value, Ordering::SeqCst) != value {
            metrics::record_degraded(self.is_degraded());
        }
    }

    /// Records whether the latest reads were served without the backend (stale cache or
    /// environment fallback); a successful backend call clears it.
    pub(crate) fn set_serving_stale(&self, value: bool) {
        // Loading first keeps the hot path (a healthy backend) free of writes to shared memory.
        if self.serving_stale.load(Ordering::Relaxed) != value
            && self.serving_stale.swap(value, Ordering::SeqCst) != value
        {
            metrics::record_degraded(self.is_degraded());
        }
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.breaker_not_closed.load(Ordering::SeqCst) || self.serving_stale.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_condition_makes_degraded() {
        let state = DegradedState::default();
        assert!(!state.is_degraded());

        state.set_serving_stale(true);
        assert!(state.is_degraded());
        state.set_breaker_not_closed(true);
        state.set_serving_stale(false);
        assert!(state.is_degraded());

        state.set_breaker_not_closed(false);
        assert!(!state.is_degraded());
    }
}
