//! `sys/health`: whether the server is initialised, unsealed and active.
//!
//! The client asks for an explicit status code for every state (`standbyok=false`,
//! `sealedcode=503`, ...), so the result does not depend on the server's defaults, and maps the
//! code to a [`HealthState`]. The call needs no token.

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Authenticated, VaultClient, check_status};
use crate::error::VaultError;

/// The server's state, from the status code of `sys/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// Initialised, unsealed and active (200).
    Active,
    /// Unsealed standby node (429).
    Standby,
    /// Performance standby node (473).
    PerformanceStandby,
    /// Disaster-recovery secondary (472).
    DrSecondary,
    /// Not initialised (501).
    Uninitialized,
    /// Sealed (503).
    Sealed,
}

impl HealthState {
    /// Returns whether the node serves reads and writes itself.
    pub fn is_active(self) -> bool {
        self == HealthState::Active
    }

    fn from_status(status: u16) -> Option<HealthState> {
        Some(match status {
            200 => HealthState::Active,
            429 => HealthState::Standby,
            472 => HealthState::DrSecondary,
            473 => HealthState::PerformanceStandby,
            501 => HealthState::Uninitialized,
            503 => HealthState::Sealed,
            _ => return None,
        })
    }
}

/// Result of a `sys/health` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The state the status code names.
    pub state: HealthState,
    /// The server's version, such as `2.7.2`, when it sent one.
    pub version: Option<String>,
}

/// The status code the server should send for each state.
const HEALTH_QUERY: &[(&str, &str)] = &[
    ("standbyok", "false"),
    ("perfstandbyok", "false"),
    ("activecode", "200"),
    ("standbycode", "429"),
    ("drsecondarycode", "472"),
    ("performancestandbycode", "473"),
    ("uninitcode", "501"),
    ("sealedcode", "503"),
];

impl VaultClient {
    /// Reads `sys/health`. Fails only when the server cannot be reached or responds with a
    /// status that names no state.
    pub async fn health(&self) -> Result<Health, VaultError> {
        let operation = "read sys/health";
        let response = self
            .send(
                Method::GET,
                "sys/health",
                HEALTH_QUERY,
                None,
                Authenticated::No,
                operation,
            )
            .await?;

        let Some(state) = HealthState::from_status(response.status.as_u16()) else {
            check_status(&response, operation)?;
            return Err(VaultError::Decode {
                operation: operation.to_owned(),
                reason: format!("unexpected status {}", response.status.as_u16()),
            });
        };

        #[derive(Deserialize)]
        struct Body {
            version: Option<String>,
        }
        let version = serde_json::from_slice::<Body>(&response.body)
            .ok()
            .and_then(|body| body.version);
        Ok(Health { state, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_health_code_has_a_state() {
        assert_eq!(HealthState::from_status(200), Some(HealthState::Active));
        assert_eq!(HealthState::from_status(429), Some(HealthState::Standby));
        assert_eq!(
            HealthState::from_status(472),
            Some(HealthState::DrSecondary)
        );
        assert_eq!(
            HealthState::from_status(473),
            Some(HealthState::PerformanceStandby)
        );
        assert_eq!(
            HealthState::from_status(501),
            Some(HealthState::Uninitialized)
        );
        assert_eq!(HealthState::from_status(503), Some(HealthState::Sealed));
        assert_eq!(HealthState::from_status(500), None);
    }
}
