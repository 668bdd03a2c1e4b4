//! A rotator for OpenAI project service-account API keys, through the OpenAI Admin API.
//!
//! `prepare` creates a key with `POST /v1/organization/projects/{project}/service_accounts/
//! {service_account}/api_keys` (body `{"name": ...}`, response `{"id", "value", ...}`) and the
//! new version stores its value, with the key id as provider reference. OpenAI issues the value,
//! so the policy's generator output is unused. `set` has nothing to do (the key is live once
//! created), `test` calls `GET /v1/models` with the new key, and `revoke` deletes the old key
//! with `DELETE /v1/organization/projects/{project}/api_keys/{key}`. A 404 on delete counts as
//! done, so a repeated revoke succeeds.
//!
//! The admin key is itself a Keyward secret, read on every call. The request and response shapes
//! follow OpenAI's API reference for "Create API key for service account" and "Delete project
//! API key" as published in 2026.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Credential, Prepared, RollBack, Rotator, RotatorError, VersionRef, read_own_secret};
use crate::secret::SecretValue;
use crate::target::SecretSource;

const NAME: &str = "openai";

/// Creates, tests and deletes service-account keys of one OpenAI project.
pub struct OpenAiRotator {
    http: reqwest::Client,
    source: Arc<dyn SecretSource>,
    base_url: String,
    project_id: String,
    service_account_id: String,
    admin_key_secret: String,
}

/// The fields of OpenAI's response that the rotator uses. The value is moved into a
/// [`SecretValue`] at once.
#[derive(Deserialize)]
struct CreatedKey {
    id: String,
    value: String,
}

impl OpenAiRotator {
    /// Creates a rotator for one service account of one project.
    pub fn new(
        http: reqwest::Client,
        source: Arc<dyn SecretSource>,
        base_url: String,
        project_id: String,
        service_account_id: String,
        admin_key_secret: String,
    ) -> Self {
        Self {
            http,
            source,
            base_url: base_url.trim_end_matches('/').to_owned(),
            project_id,
            service_account_id,
            admin_key_secret,
        }
    }

    async fn admin_key(&self) -> Result<SecretValue, RotatorError> {
        read_own_secret(self.source.as_ref(), NAME, &self.admin_key_secret).await
    }

    async fn delete_key(&self, operation: &'static str, key_id: &str) -> Result<(), RotatorError> {
        if !is_safe_id(key_id) {
            return Err(RotatorError::new(
                NAME,
                operation,
                format!("key id {key_id:?} has characters an OpenAI id never has"),
            ));
        }
        let admin_key = self.admin_key().await?;
        let url = format!(
            "{}/v1/organization/projects/{}/api_keys/{key_id}",
            self.base_url, self.project_id
        );
        let response = self
            .http
            .delete(&url)
            .bearer_auth(admin_key.expose_secret())
            .send()
            .await
            .map_err(|error| RotatorError::new(NAME, operation, error.to_string()))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(RotatorError::new(
            NAME,
            operation,
            format!("DELETE {url} returned HTTP {status}"),
        ))
    }
}

/// OpenAI ids are like `key_abc123`; anything else must not be spliced into a URL path.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[async_trait]
impl Rotator for OpenAiRotator {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn prepare(
        &self,
        path: &str,
        _current: Option<&VersionRef>,
        _generated: SecretValue,
    ) -> Result<Prepared, RotatorError> {
        const OPERATION: &str = "create a service account key";
        let admin_key = self.admin_key().await?;
        let url = format!(
            "{}/v1/organization/projects/{}/service_accounts/{}/api_keys",
            self.base_url, self.project_id, self.service_account_id
        );
        let name = format!(
            "keyward {path} {}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        );
        let response = self
            .http
            .post(&url)
            .bearer_auth(admin_key.expose_secret())
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .map_err(|error| RotatorError::new(NAME, OPERATION, error.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RotatorError::new(
                NAME,
                OPERATION,
                format!("POST {url} returned HTTP {status}"),
            ));
        }

        // NOTE: the response body buffer inside reqwest is not zeroized.
        let created: CreatedKey = response.json().await.map_err(|_| {
            RotatorError::new(
                NAME,
                OPERATION,
                "the response is not a created API key object",
            )
        })?;
        if !is_safe_id(&created.id) || created.value.is_empty() {
            return Err(RotatorError::new(
                NAME,
                OPERATION,
                "the response has an invalid key id or an empty value",
            ));
        }
        Ok(Prepared {
            value: SecretValue::new(created.value),
            provider_ref: Some(created.id),
            attributes: Default::default(),
        })
    }

    async fn set(&self, _path: &str, _new: Credential<'_>) -> Result<(), RotatorError> {
        Ok(())
    }

    async fn test(&self, _path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        const OPERATION: &str = "list models with the new key";
        let url = format!("{}/v1/models", self.base_url);
        let response = self
            .http
            .get(&url)
            .bearer_auth(new.value.expose_secret())
            .send()
            .await
            .map_err(|error| RotatorError::new(NAME, OPERATION, error.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RotatorError::new(
                NAME,
                OPERATION,
                format!("GET {url} returned HTTP {status}"),
            ));
        }
        Ok(())
    }

    async fn revoke(&self, _path: &str, old: &VersionRef) -> Result<(), RotatorError> {
        const OPERATION: &str = "delete the old key";
        let Some(key_id) = &old.provider_ref else {
            return Err(RotatorError::new(
                NAME,
                OPERATION,
                format!(
                    "version {} has no recorded OpenAI key id; record it with RotationDb::set_provider_ref or delete the key in the OpenAI dashboard",
                    old.version
                ),
            ));
        };
        self.delete_key(OPERATION, key_id).await
    }

    async fn roll_back(&self, _path: &str, undo: RollBack<'_>) -> Result<(), RotatorError> {
        match undo.pending_ref {
            Some(key_id) => self.delete_key("delete the abandoned key", key_id).await,
            None => Ok(()),
        }
    }
}
