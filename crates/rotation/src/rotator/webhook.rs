//! A rotator that hands new credentials to an HTTP endpoint of the owning service.
//!
//! `set` POSTs `{"event":"set","path","version","value"}` to the URL, `test` POSTs the same
//! fields with `"event":"verify"` to the verify URL, and `revoke` POSTs
//! `{"event":"revoke","path","version"}` to the revoke URL when one is configured. Every request
//! is signed as described in [`crate::sign`]; any 2xx status is success. Redirects are not
//! followed, so a credential never travels to a URL the policy does not name.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use zeroize::Zeroizing;

use super::{Credential, RollBack, Rotator, RotatorError, VersionRef, read_own_secret};
use crate::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::target::SecretSource;

const NAME: &str = "webhook";

/// Installs credentials by POSTing them to the owning service.
pub struct WebhookRotator {
    http: reqwest::Client,
    source: Arc<dyn SecretSource>,
    url: String,
    verify_url: String,
    revoke_url: Option<String>,
    signing_key_secret: String,
}

impl WebhookRotator {
    /// Creates a rotator; the signing key is read from `signing_key_secret` on every call, so
    /// rotating it takes effect at once.
    pub fn new(
        http: reqwest::Client,
        source: Arc<dyn SecretSource>,
        url: String,
        verify_url: String,
        revoke_url: Option<String>,
        signing_key_secret: String,
    ) -> Self {
        Self {
            http,
            source,
            url,
            verify_url,
            revoke_url,
            signing_key_secret,
        }
    }

    async fn post(
        &self,
        operation: &'static str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), RotatorError> {
        let key = read_own_secret(self.source.as_ref(), NAME, &self.signing_key_secret).await?;
        let body = Zeroizing::new(
            serde_json::to_vec(body)
                .map_err(|error| RotatorError::new(NAME, operation, error.to_string()))?,
        );
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(key.expose_secret().as_bytes(), timestamp, &body);

        // NOTE: reqwest takes an owned copy of the body, which is not zeroized after sending.
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|error| RotatorError::new(NAME, operation, error.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RotatorError::new(
                NAME,
                operation,
                format!("{url} returned HTTP {status}"),
            ));
        }
        Ok(())
    }
}

fn credential_body(event: &str, path: &str, credential: Credential<'_>) -> serde_json::Value {
    json!({
        "event": event,
        "path": path,
        "version": credential.version,
        "value": credential.value.expose_secret(),
    })
}

#[async_trait]
impl Rotator for WebhookRotator {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn set(&self, path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        let body = credential_body("set", path, new);
        self.post("install the new credential", &self.url, &body)
            .await
    }

    async fn test(&self, path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        let body = credential_body("verify", path, new);
        self.post("verify the new credential", &self.verify_url, &body)
            .await
    }

    async fn revoke(&self, path: &str, old: &VersionRef) -> Result<(), RotatorError> {
        let Some(url) = &self.revoke_url else {
            return Ok(());
        };
        let body = json!({"event": "revoke", "path": path, "version": old.version});
        self.post("revoke the old credential", url, &body).await
    }

    async fn roll_back(&self, path: &str, undo: RollBack<'_>) -> Result<(), RotatorError> {
        // Only a started `set` can have replaced the service's credential.
        match (undo.set_attempted, undo.current) {
            (true, Some(current)) => {
                let body = credential_body("set", path, current);
                self.post("reinstall the current credential", &self.url, &body)
                    .await
            }
            _ => Ok(()),
        }
    }
}
