//! Names and recording helpers of the resilience layer's metrics, through the `metrics`
//! facade. Whatever exporter the process installs renders them; without one they cost a
//! no-op call. Labels carry the backend's name only, never a path or a value.

use super::breaker::CircuitState;

/// Gauge: the breaker's state, 0 closed, 1 half-open, 2 open. Label `backend`.
pub const CIRCUIT_STATE: &str = "keyward_circuit_state";
/// Counter: breaker transitions. Labels `backend` and `state` (the state entered).
pub const CIRCUIT_TRANSITIONS: &str = "keyward_circuit_transitions_total";
/// Counter: backend calls turned away by an open breaker. Label `backend`.
pub const CIRCUIT_REJECTED: &str = "keyward_circuit_rejected_total";
/// Counter: reads served without the backend. Labels `backend` and `source` (`stale_cache`
/// or `env_fallback`).
pub const DEGRADED_READS: &str = "keyward_degraded_reads_total";
/// Gauge: 1 while the manager runs degraded (a breaker not closed, or reads served stale).
pub const DEGRADED: &str = "keyward_degraded";

pub(crate) fn record_state(backend: &str, state: CircuitState) {
    let value = match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
    };
    metrics::gauge!(CIRCUIT_STATE, "backend" => backend.to_owned()).set(value);
}

pub(crate) fn record_transition(backend: &str, state: CircuitState) {
    metrics::counter!(CIRCUIT_TRANSITIONS, "backend" => backend.to_owned(), "state" => state.as_str())
        .increment(1);
    record_state(backend, state);
}

pub(crate) fn record_rejected(backend: &str) {
    metrics::counter!(CIRCUIT_REJECTED, "backend" => backend.to_owned()).increment(1);
}

pub(crate) fn record_degraded_read(backend: &str, source: &'static str) {
    metrics::counter!(DEGRADED_READS, "backend" => backend.to_owned(), "source" => source)
        .increment(1);
}

pub(crate) fn record_degraded(degraded: bool) {
    metrics::gauge!(DEGRADED).set(if degraded { 1.0 } else { 0.0 });
}
