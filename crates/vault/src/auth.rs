//! Authentication: a fixed token or an AppRole login, token renewal before expiry, and a
//! background task that keeps the session alive.
//!
//! The renewal task renews the token at two thirds of its TTL. When Vault refuses the renewal
//! (the token expired or was revoked) or caps it (the token reached its `max_ttl`), an AppRole
//! client logs in again; a fixed-token client cannot, and logs an error instead. Requests that
//! find an AppRole token already expired by the local clock log in before they are sent, so a
//! late renewal task delays a request instead of failing it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::client::{VaultClient, check_segments, decode_error};
use crate::error::VaultError;
use crate::secret::{SecretId, VaultToken};

/// Shortest wait between two renewal attempts, so a tiny TTL cannot make the task spin.
const MIN_RENEWAL_DELAY: Duration = Duration::from_millis(100);

/// Maximum wait after a failed renewal before the next attempt.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Authentication method of the client.
#[derive(Clone)]
pub enum Auth {
    /// A token issued elsewhere. It is renewed when renewable, but cannot be replaced.
    Token(VaultToken),
    /// An AppRole login, repeated whenever the token cannot be renewed.
    AppRole {
        /// Mount path of the AppRole auth method, usually `approle`.
        mount: String,
        /// The role's `role_id` (an identifier, not a secret on its own).
        role_id: String,
        /// The role's `secret_id`.
        secret_id: SecretId,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token([REDACTED])"),
            Auth::AppRole { mount, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .finish_non_exhaustive(),
        }
    }
}

impl Auth {
    pub(crate) fn validate(&self) -> Result<(), VaultError> {
        match self {
            Auth::Token(token) if token.expose_secret().is_empty() => {
                Err(VaultError::Config("the vault token is empty".into()))
            }
            Auth::Token(_) => Ok(()),
            Auth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                check_segments("approle mount", mount, false)?;
                if role_id.is_empty() || secret_id.expose_secret().is_empty() {
                    return Err(VaultError::Config(
                        "the approle role_id and secret_id must not be empty".into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// A fixed token is usable at once; its TTL is looked up by the first renewal step.
    pub(crate) fn initial_session(&self) -> Option<Arc<Session>> {
        match self {
            Auth::Token(token) => Some(Arc::new(Session {
                token: token.clone(),
                lease: None,
            })),
            Auth::AppRole { .. } => None,
        }
    }
}

/// The token in use and what is known of its lifetime.
pub(crate) struct Session {
    pub(crate) token: VaultToken,
    /// `None` for a token without TTL (such as a root token) or one not looked up yet.
    lease: Option<Lease>,
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    /// When the client last got the token's TTL.
    refreshed_at: Instant,
    /// The TTL at that time.
    ttl: Duration,
    /// When the token expires.
    expires_at: Instant,
    /// Whether `renew-self` may extend it.
    renewable: bool,
    /// The TTL a renewal gives while the token is below its `max_ttl`.
    full_ttl: Duration,
    /// Whether the last renewal got less than the full TTL, so the token is at its `max_ttl`.
    at_max_ttl: bool,
}

impl Lease {
    fn new(ttl: Duration, renewable: bool, full_ttl: Duration) -> Lease {
        let now = Instant::now();
        Lease {
            refreshed_at: now,
            ttl,
            expires_at: now + ttl,
            renewable,
            full_ttl,
            at_max_ttl: ttl < full_ttl,
        }
    }

    /// When the renewal task acts next: at two thirds of the TTL.
    fn renew_at(&self) -> Instant {
        self.refreshed_at + (self.ttl * 2 / 3).max(MIN_RENEWAL_DELAY)
    }
}

/// How many logins and renewals the client has done, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Successful logins (AppRole) and token lookups.
    pub logins: u64,
    /// Successful token renewals.
    pub renewals: u64,
}

/// Result of one renewal step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewalOutcome {
    /// The token was renewed.
    Renewed,
    /// The client logged in again and has a new token.
    LoggedIn,
    /// The token has no TTL, so there is nothing to renew.
    NotNeeded,
}

/// The background renewal task. Dropping it stops the task.
#[derive(Debug)]
pub struct RenewalTask {
    handle: JoinHandle<()>,
}

impl RenewalTask {
    /// Stops the task.
    pub fn stop(self) {
        self.handle.abort();
    }
}

impl Drop for RenewalTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[derive(Deserialize)]
struct AuthEnvelope {
    auth: AuthBlock,
}

#[derive(Deserialize)]
struct AuthBlock {
    client_token: String,
    lease_duration: u64,
    renewable: bool,
}

impl VaultClient {
    /// Logs in (AppRole) or looks up the fixed token's TTL, replacing the session.
    ///
    /// Fails with [`VaultError::PermissionDenied`] when the role or token is rejected, and
    /// with a retryable error when the server is down.
    pub async fn login(&self) -> Result<(), VaultError> {
        let _guard = self.inner.login_lock.lock().await;
        self.login_locked().await
    }

    async fn login_locked(&self) -> Result<(), VaultError> {
        let session = match &self.inner.auth {
            Auth::Token(token) => self.lookup_token(token).await?,
            Auth::AppRole {
                mount,
                role_id,
                secret_id,
            } => self.login_approle(mount, role_id, secret_id).await?,
        };
        self.set_session(session);
        self.inner.logins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn login_approle(
        &self,
        mount: &str,
        role_id: &str,
        secret_id: &SecretId,
    ) -> Result<Session, VaultError> {
        let operation = format!("login auth/{mount}");
        let body = serde_json::json!({
            "role_id": role_id,
            "secret_id": secret_id.expose_secret(),
        });
        let body = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        let response = self
            .call_as(
                Method::POST,
                &format!("auth/{mount}/login"),
                Some(body),
                None,
                &operation,
            )
            .await?;

        let envelope: AuthEnvelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        let ttl = Duration::from_secs(envelope.auth.lease_duration);
        tracing::info!(
            address = %self.inner.address,
            mount,
            ttl_secs = ttl.as_secs(),
            "logged in to vault with approle"
        );
        Ok(Session {
            token: VaultToken::new(envelope.auth.client_token),
            lease: (ttl > Duration::ZERO).then(|| Lease::new(ttl, envelope.auth.renewable, ttl)),
        })
    }

    async fn lookup_token(&self, token: &VaultToken) -> Result<Session, VaultError> {
        #[derive(Deserialize)]
        struct Lookup {
            data: LookupData,
        }
        #[derive(Deserialize)]
        struct LookupData {
            ttl: u64,
            #[serde(default)]
            creation_ttl: u64,
            #[serde(default)]
            renewable: bool,
        }

        let operation = "lookup auth/token/lookup-self";
        let response = self
            .call_as(
                Method::GET,
                "auth/token/lookup-self",
                None,
                Some(token),
                operation,
            )
            .await?;
        let lookup: Lookup =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(operation, err))?;

        let ttl = Duration::from_secs(lookup.data.ttl);
        let full = Duration::from_secs(lookup.data.creation_ttl).max(ttl);
        Ok(Session {
            token: token.clone(),
            lease: (ttl > Duration::ZERO).then(|| Lease::new(ttl, lookup.data.renewable, full)),
        })
    }

    /// Renews the token, or logs in again when it cannot be renewed: Vault refused the
    /// renewal, the token is not renewable, or it reached its `max_ttl`.
    ///
    /// A fixed token that cannot be renewed fails with the refusal; a retryable failure
    /// (server down) is returned as is, without a login attempt.
    pub async fn renew_or_login(&self) -> Result<RenewalOutcome, VaultError> {
        let _guard = self.inner.login_lock.lock().await;

        let Some(session) = self.session() else {
            self.login_locked().await?;
            return Ok(RenewalOutcome::LoggedIn);
        };
        let Some(lease) = session.lease else {
            if matches!(self.inner.auth, Auth::Token(_)) {
                // Learn the fixed token's TTL; a token without one needs no renewal.
                self.login_locked().await?;
                let has_lease = self.session().is_some_and(|s| s.lease.is_some());
                return Ok(if has_lease {
                    RenewalOutcome::LoggedIn
                } else {
                    RenewalOutcome::NotNeeded
                });
            }
            return Ok(RenewalOutcome::NotNeeded);
        };

        let can_login = matches!(self.inner.auth, Auth::AppRole { .. });
        if can_login && (!lease.renewable || lease.at_max_ttl) {
            self.login_locked().await?;
            return Ok(RenewalOutcome::LoggedIn);
        }

        match self.renew_self(&session, lease).await {
            Ok(()) => Ok(RenewalOutcome::Renewed),
            Err(err) if can_login && !err.is_retryable() => {
                tracing::warn!(
                    address = %self.inner.address,
                    error = %err,
                    "vault refused the token renewal; logging in again"
                );
                self.login_locked().await?;
                Ok(RenewalOutcome::LoggedIn)
            }
            Err(err) => Err(err),
        }
    }

    async fn renew_self(&self, session: &Session, lease: Lease) -> Result<(), VaultError> {
        let operation = "renew auth/token/renew-self";
        let response = self
            .call_as(
                Method::POST,
                "auth/token/renew-self",
                Some(Zeroizing::new(b"{}".to_vec())),
                Some(&session.token),
                operation,
            )
            .await?;
        let envelope: AuthEnvelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(operation, err))?;

        // A renewal that returns less than the full TTL has been capped by the token's max_ttl.
        let ttl = Duration::from_secs(envelope.auth.lease_duration);
        self.set_session(Session {
            token: session.token.clone(),
            lease: Some(Lease::new(ttl, envelope.auth.renewable, lease.full_ttl)),
        });
        self.inner.renewals.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            address = %self.inner.address,
            ttl_secs = ttl.as_secs(),
            "renewed vault token"
        );
        Ok(())
    }

    /// Revokes the client's current token, as a service does when it stops. The session keeps
    /// the revoked token, so an AppRole client logs in again at its next renewal or request
    /// that Vault rejects.
    pub async fn revoke_self(&self) -> Result<(), VaultError> {
        let session = self.current_session().await?;
        self.call_as(
            Method::POST,
            "auth/token/revoke-self",
            Some(Zeroizing::new(b"{}".to_vec())),
            Some(&session.token),
            "revoke auth/token/revoke-self",
        )
        .await?;
        Ok(())
    }

    /// Starts a task that renews the token before it expires and logs in again when needed,
    /// until the returned handle is dropped. Failed attempts are logged and retried with a
    /// backoff from 1 s to 30 s.
    pub fn spawn_renewal(&self) -> RenewalTask {
        let client = self.clone();
        let handle = tokio::spawn(async move { client.renewal_loop().await });
        RenewalTask { handle }
    }

    async fn renewal_loop(self) {
        let mut retry_delay = Duration::from_secs(1);
        loop {
            if let Some(session) = self.session() {
                match session.lease {
                    Some(lease) => tokio::time::sleep_until(lease.renew_at()).await,
                    // A token without TTL (a root token) needs no renewal.
                    None if self.inner.logins.load(Ordering::Relaxed) > 0 => return,
                    None => {}
                }
            }

            match self.renew_or_login().await {
                Ok(RenewalOutcome::NotNeeded) => return,
                Ok(_) => retry_delay = Duration::from_secs(1),
                Err(err) => {
                    tracing::warn!(
                        address = %self.inner.address,
                        error = %err,
                        retry_in_ms = retry_delay.as_millis() as u64,
                        "vault token renewal failed; retrying"
                    );
                    tokio::time::sleep(self.retry_delay(retry_delay)).await;
                    retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// Caps a retry delay so the next attempt comes before the token expires, when it still
    /// can.
    fn retry_delay(&self, delay: Duration) -> Duration {
        let until_expiry = self
            .session()
            .and_then(|session| session.lease)
            .map(|lease| lease.expires_at.saturating_duration_since(Instant::now()) / 2);
        match until_expiry {
            Some(limit) if limit > MIN_RENEWAL_DELAY => delay.min(limit),
            _ => delay,
        }
    }

    /// Returns the number of logins and renewals so far.
    pub fn auth_stats(&self) -> AuthStats {
        AuthStats {
            logins: self.inner.logins.load(Ordering::Relaxed),
            renewals: self.inner.renewals.load(Ordering::Relaxed),
        }
    }

    fn session(&self) -> Option<Arc<Session>> {
        let guard = self
            .inner
            .session
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.clone()
    }

    fn set_session(&self, session: Session) {
        let mut guard = self
            .inner
            .session
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(Arc::new(session));
    }

    /// Returns a session whose token has not expired by the local clock, logging in first
    /// when an AppRole client has none.
    pub(crate) async fn current_session(&self) -> Result<Arc<Session>, VaultError> {
        if let Some(session) = self.session()
            && !session_expired(&session)
        {
            return Ok(session);
        }
        if matches!(self.inner.auth, Auth::Token(_)) {
            // A fixed token cannot be replaced: send it and let Vault decide.
            return self
                .session()
                .ok_or_else(|| VaultError::Config("the vault client has no token".into()));
        }

        let _guard = self.inner.login_lock.lock().await;
        // Another request may have logged in while this one waited for the lock.
        if let Some(session) = self.session()
            && !session_expired(&session)
        {
            return Ok(session);
        }
        self.login_locked().await?;
        self.session()
            .ok_or_else(|| VaultError::Config("the vault login returned no token".into()))
    }
}

fn session_expired(session: &Session) -> bool {
    session
        .lease
        .is_some_and(|lease| Instant::now() >= lease.expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_debug_hides_credentials() {
        let token = Auth::Token(VaultToken::new("s.token-value"));
        let approle = Auth::AppRole {
            mount: "approle".into(),
            role_id: "role-id-value".into(),
            secret_id: SecretId::new("secret-id-value"),
        };

        let printed = format!("{token:?} {approle:?}");

        assert!(!printed.contains("token-value"));
        assert!(!printed.contains("secret-id-value"));
        assert!(printed.contains("approle"));
    }

    #[tokio::test]
    async fn renewal_is_due_at_two_thirds_of_ttl() {
        let lease = Lease::new(Duration::from_secs(3), true, Duration::from_secs(3));
        assert_eq!(
            lease.renew_at() - lease.refreshed_at,
            Duration::from_secs(2)
        );
        assert!(!lease.at_max_ttl);

        let tiny = Lease::new(Duration::ZERO, true, Duration::from_secs(3));
        assert_eq!(tiny.renew_at() - tiny.refreshed_at, MIN_RENEWAL_DELAY);
        assert!(tiny.at_max_ttl);
    }
}
