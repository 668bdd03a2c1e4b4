//! Setup calls an operator (or a test) makes once: enabling secrets engines and auth methods,
//! writing ACL policies and AppRole roles, and issuing AppRole credentials.
//!
//! These need a privileged token. Keyward itself does not call them while serving.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::client::{Authenticated, VaultClient, check_segments, decode_error};
use crate::error::VaultError;
use crate::secret::SecretId;

/// Settings of an AppRole role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppRoleSettings {
    /// Policies attached to the tokens the role issues.
    pub token_policies: Vec<String>,
    /// TTL of issued tokens and of each renewal, in seconds (0: the mount's default).
    pub token_ttl_secs: u64,
    /// Maximum lifetime of issued tokens, renewals included, in seconds (0: the default).
    pub token_max_ttl_secs: u64,
}

impl VaultClient {
    /// Enables the secrets engine `engine_type` (such as `kv` or `transit`) at `path`, with
    /// engine options such as `version = "2"`.
    pub async fn enable_secrets_engine(
        &self,
        path: &str,
        engine_type: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        check_segments("mount path", path, false)?;
        let body = serde_json::json!({ "type": engine_type, "options": options });
        self.post_json(&format!("sys/mounts/{path}"), &body, "enable")
            .await
    }

    /// Enables the auth method `method_type` (such as `approle`) at `path`.
    pub async fn enable_auth_method(
        &self,
        path: &str,
        method_type: &str,
    ) -> Result<(), VaultError> {
        check_segments("auth path", path, false)?;
        let body = serde_json::json!({ "type": method_type });
        self.post_json(&format!("sys/auth/{path}"), &body, "enable")
            .await
    }

    /// Creates or replaces the ACL policy `name` from its HCL text.
    pub async fn write_policy(&self, name: &str, hcl: &str) -> Result<(), VaultError> {
        check_segments("policy name", name, false)?;
        let body = serde_json::json!({ "policy": hcl });
        self.post_json(&format!("sys/policies/acl/{name}"), &body, "write")
            .await
    }

    /// Creates or replaces the AppRole role `role` on the auth mount `mount`.
    pub async fn write_approle_role(
        &self,
        mount: &str,
        role: &str,
        settings: &AppRoleSettings,
    ) -> Result<(), VaultError> {
        check_segments("approle mount", mount, false)?;
        check_segments("approle role", role, false)?;
        let body = serde_json::json!({
            "token_policies": settings.token_policies,
            "token_ttl": format!("{}s", settings.token_ttl_secs),
            "token_max_ttl": format!("{}s", settings.token_max_ttl_secs),
        });
        self.post_json(&format!("auth/{mount}/role/{role}"), &body, "write")
            .await
    }

    /// Reads the `role_id` of an AppRole role.
    pub async fn approle_role_id(&self, mount: &str, role: &str) -> Result<String, VaultError> {
        check_segments("approle mount", mount, false)?;
        check_segments("approle role", role, false)?;
        let path = format!("auth/{mount}/role/{role}/role-id");
        let operation = format!("read {path}");
        let response = self
            .call(
                Method::GET,
                &path,
                &[],
                None,
                Authenticated::Yes,
                &operation,
            )
            .await?;

        #[derive(Deserialize)]
        struct Envelope {
            data: RoleId,
        }
        #[derive(Deserialize)]
        struct RoleId {
            role_id: String,
        }
        let envelope: Envelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        Ok(envelope.data.role_id)
    }

    /// Issues a new `secret_id` for an AppRole role.
    pub async fn approle_generate_secret_id(
        &self,
        mount: &str,
        role: &str,
    ) -> Result<SecretId, VaultError> {
        check_segments("approle mount", mount, false)?;
        check_segments("approle role", role, false)?;
        let path = format!("auth/{mount}/role/{role}/secret-id");
        let operation = format!("write {path}");
        let response = self
            .call(
                Method::POST,
                &path,
                &[],
                Some(Zeroizing::new(b"{}".to_vec())),
                Authenticated::Yes,
                &operation,
            )
            .await?;

        #[derive(Deserialize)]
        struct Envelope {
            data: Issued,
        }
        #[derive(Deserialize)]
        struct Issued {
            secret_id: String,
        }
        let envelope: Envelope =
            serde_json::from_slice(&response.body).map_err(|err| decode_error(&operation, err))?;
        Ok(SecretId::new(envelope.data.secret_id))
    }

    async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        verb: &str,
    ) -> Result<(), VaultError> {
        let body = Zeroizing::new(serde_json::to_vec(body).unwrap_or_default());
        self.call(
            Method::POST,
            path,
            &[],
            Some(body),
            Authenticated::Yes,
            &format!("{verb} {path}"),
        )
        .await?;
        Ok(())
    }
}
