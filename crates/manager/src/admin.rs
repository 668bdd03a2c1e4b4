//! Token and policy administration: create, look up, renew and revoke tokens; write, read,
//! list and delete policies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyward_store::{PolicyRecord, StoreError, TokenRecord};
use serde_json::{Map, json};
use time::OffsetDateTime;

use crate::events::SecurityEvent;
use crate::manager::{Caller, DEFAULT_POLICY, Operation, RequestContext};
use crate::policy::{Capability, Policy, ROOT_POLICY, validate_policy_name};
use crate::token::{
    self, IssuedToken, TokenCreateRequest, display_name, expiry_after, validate_meta,
};
use crate::{ManagerError, SecretsManager};

/// Most policies a token may carry.
const MAX_TOKEN_POLICIES: usize = 64;

impl SecretsManager {
    /// Creates the first token of a data dir: `root` policy, no expiry. Audited as a
    /// bootstrap action; not reachable over the API.
    pub async fn create_root_token(
        &self,
        ctx: &RequestContext,
    ) -> Result<IssuedToken, ManagerError> {
        let (secret, accessor) = token::generate()?;
        let record = TokenRecord {
            token_hash: self.hash_token(secret.expose()),
            accessor,
            policies: vec![ROOT_POLICY.to_owned()],
            display_name: "root".to_owned(),
            created_time: OffsetDateTime::now_utc(),
            expire_time: None,
            creation_ttl_secs: 0,
            renewable: false,
            parent_accessor: None,
            meta: BTreeMap::new(),
        };

        let op = Operation {
            ctx,
            accessor: "bootstrap",
            name: "token.create_root",
            path: "auth/token/root".to_owned(),
        };
        self.audit_request(&op).await?;
        let result = self
            .store
            .create_token(&record)
            .await
            .map_err(ManagerError::from);
        let mut extra = Map::new();
        extra.insert("new_accessor".into(), json!(record.accessor));
        self.audit_response(&op, &result, extra).await?;
        result?;

        Ok(IssuedToken {
            token: secret,
            record,
        })
    }

    /// Creates a child token. Its policies must be a subset of the caller's unless the caller
    /// is root; `root` itself can only be handed out by root.
    pub async fn token_create(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        request: TokenCreateRequest,
    ) -> Result<IssuedToken, ManagerError> {
        let api_path = if request.no_parent {
            "auth/token/create-orphan"
        } else {
            "auth/token/create"
        };
        let op = self.operation(caller, ctx, "token.create", api_path.to_owned());
        let prepared = self.prepare_token(caller, &op, request);
        let (secret, record) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let failed = Err(error);
                self.audit_response(&op, &failed, Map::new()).await?;
                return failed;
            }
        };
        self.audit_request(&op).await?;

        let result = self
            .store
            .create_token(&record)
            .await
            .map_err(ManagerError::from);
        let mut extra = Map::new();
        extra.insert("new_accessor".into(), json!(record.accessor));
        extra.insert("policies".into(), json!(record.policies));
        self.audit_response(&op, &result, extra).await?;
        result?;

        self.events.publish(SecurityEvent::TokenCreated {
            accessor: caller.accessor().to_owned(),
            new_accessor: record.accessor.clone(),
        });
        Ok(IssuedToken {
            token: secret,
            record,
        })
    }

    fn prepare_token(
        &self,
        caller: &Caller,
        op: &Operation<'_>,
        request: TokenCreateRequest,
    ) -> Result<(token::TokenSecret, TokenRecord), ManagerError> {
        self.require(caller, &op.path, &[Capability::Create, Capability::Update])?;
        if request.no_parent {
            self.require(caller, &op.path, &[Capability::Sudo])?;
        }

        let caller_is_root = caller.policies.is_root();
        let mut policies = if request.policies.is_empty() {
            caller.token.policies.clone()
        } else {
            request.policies
        };
        for name in &policies {
            validate_policy_name(name).map_err(|e| ManagerError::Invalid(e.to_string()))?;
        }
        if !policies
            .iter()
            .any(|p| p == DEFAULT_POLICY || p == ROOT_POLICY)
        {
            policies.insert(0, DEFAULT_POLICY.to_owned());
        }
        policies.sort();
        policies.dedup();
        if policies.len() > MAX_TOKEN_POLICIES {
            return Err(ManagerError::Invalid(format!(
                "a token may carry at most {MAX_TOKEN_POLICIES} policies"
            )));
        }
        if !caller_is_root {
            let outside = policies
                .iter()
                .find(|p| *p != DEFAULT_POLICY && !caller.token.policies.contains(p));
            if let Some(outside) = outside {
                return Err(ManagerError::Invalid(format!(
                    "child policies must be a subset of the parent's: {outside:?} is not held by the caller"
                )));
            }
        }

        let display_name = display_name(request.display_name.as_deref())?;
        validate_meta(&request.meta)?;

        let requested_ttl = request
            .ttl_secs
            .map(Duration::from_secs)
            .unwrap_or(self.config.default_token_ttl)
            .min(self.config.max_token_ttl);
        if requested_ttl.is_zero() {
            return Err(ManagerError::Invalid("ttl must be positive".into()));
        }
        let now = OffsetDateTime::now_utc();
        let mut expire_time = expiry_after(now, requested_ttl)?;
        // A child never outlives its parent, as in Vault. An orphan has no parent and keeps
        // its own TTL, which still comes from the request or the default.
        if !request.no_parent
            && let Some(parent_expiry) = caller.token.expire_time
        {
            expire_time = expire_time.min(parent_expiry);
        }
        let ttl_secs = u64::try_from((expire_time - now).whole_seconds()).unwrap_or(0);
        if ttl_secs == 0 {
            return Err(ManagerError::Invalid(
                "the parent token expires in less than a second: renew it or create an orphan \
                 token"
                    .into(),
            ));
        }

        let (secret, accessor) = token::generate()?;
        let record = TokenRecord {
            token_hash: self.hash_token(secret.expose()),
            accessor,
            policies,
            display_name,
            created_time: now,
            expire_time: Some(expire_time),
            creation_ttl_secs: ttl_secs,
            renewable: request.renewable.unwrap_or(true),
            parent_accessor: (!request.no_parent).then(|| caller.accessor().to_owned()),
            meta: request.meta,
        };
        Ok((secret, record))
    }

    /// Returns the caller's own token record (`auth/token/lookup-self`).
    pub async fn token_lookup_self(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Result<TokenRecord, ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "token.lookup_self",
            "auth/token/lookup-self".into(),
        );
        let result = self
            .require(caller, &op.path, &[Capability::Read])
            .map(|()| caller.token.clone());
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Revokes the caller's own token and every token descended from it.
    pub async fn token_revoke_self(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Result<(), ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "token.revoke_self",
            "auth/token/revoke-self".into(),
        );
        self.revoke(caller, &op, caller.accessor()).await
    }

    /// Revokes a token by accessor, and every token descended from it.
    pub async fn token_revoke_accessor(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        accessor: &str,
    ) -> Result<(), ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "token.revoke_accessor",
            "auth/token/revoke-accessor".into(),
        );
        self.revoke(caller, &op, accessor).await
    }

    async fn revoke(
        &self,
        caller: &Caller,
        op: &Operation<'_>,
        accessor: &str,
    ) -> Result<(), ManagerError> {
        let mut extra = Map::new();
        extra.insert("revoked_accessor".into(), json!(accessor));
        if let Err(error) = self.require(caller, &op.path, &[Capability::Update]) {
            let failed = Err(error);
            self.audit_response(op, &failed, extra).await?;
            return failed;
        }
        self.audit_request(op).await?;

        // The store revokes the token's descendants with it, so no child outlives its parent.
        let result = self
            .store
            .revoke_token(accessor)
            .await
            .map_err(ManagerError::from);
        self.forget_cached_tokens();
        self.forget_tokens().await;
        if let Ok(count) = &result {
            extra.insert("revoked_count".into(), json!(count));
        }
        self.audit_response(op, &result, extra).await?;
        if result.is_ok() {
            self.events.publish(SecurityEvent::TokenRevoked {
                accessor: caller.accessor().to_owned(),
                revoked_accessor: accessor.to_owned(),
            });
        }
        result.map(|_| ())
    }

    /// Extends the caller's token by `increment_secs` (or its creation TTL), never past the
    /// maximum TTL counted from its creation nor past its parent's expiry. An increment above
    /// the maximum TTL is lowered to it.
    pub async fn token_renew_self(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        increment_secs: Option<u64>,
    ) -> Result<TokenRecord, ManagerError> {
        let op = self.operation(
            caller,
            ctx,
            "token.renew_self",
            "auth/token/renew-self".into(),
        );
        let result = async {
            self.require(caller, &op.path, &[Capability::Update])?;
            if !caller.token.renewable || caller.token.expire_time.is_none() {
                return Err(ManagerError::Invalid("token is not renewable".into()));
            }
            let increment = increment_secs
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(caller.token.creation_ttl_secs))
                .min(self.config.max_token_ttl);
            let now = OffsetDateTime::now_utc();
            let mut expire_time = expiry_after(now, increment)?;
            // A maximum TTL too large to add to the creation time sets no limit.
            if let Ok(limit) = expiry_after(caller.token.created_time, self.config.max_token_ttl) {
                expire_time = expire_time.min(limit);
            }
            if let Some(parent_expiry) = self.parent_expiry(caller).await? {
                expire_time = expire_time.min(parent_expiry);
            }

            self.audit_request(&op).await?;
            let renewed = self
                .store
                .set_token_expiry(caller.accessor(), Some(expire_time))
                .await;
            self.forget_cached_token(&caller.token.token_hash);
            renewed?;
            let mut record = caller.token.clone();
            record.expire_time = Some(expire_time);
            Ok(record)
        }
        .await;
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Returns the expiry of the caller's parent token, or `None` for an orphan or a parent
    /// without expiry. A parent that no longer exists has been revoked, and the caller with it.
    async fn parent_expiry(&self, caller: &Caller) -> Result<Option<OffsetDateTime>, ManagerError> {
        let Some(parent) = &caller.token.parent_accessor else {
            return Ok(None);
        };
        match self.store.token_by_accessor(parent).await {
            Ok(parent) => Ok(parent.expire_time),
            Err(StoreError::NotFound) => Err(ManagerError::PermissionDenied),
            Err(other) => Err(other.into()),
        }
    }

    /// Creates or replaces a policy after validating it.
    pub async fn policy_write(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        name: &str,
        text: &str,
    ) -> Result<(), ManagerError> {
        let op = self.operation(caller, ctx, "policy.write", policy_path(name));
        let checked = self
            .require(caller, &op.path, &[Capability::Create, Capability::Update])
            .and_then(|()| {
                validate_policy_name(name).map_err(|e| ManagerError::Invalid(e.to_string()))
            })
            .and_then(|()| {
                if name == ROOT_POLICY {
                    return Err(ManagerError::Invalid(
                        "cannot update the root policy".into(),
                    ));
                }
                Policy::parse(text).map_err(|e| ManagerError::Invalid(e.to_string()))
            });
        let policy = match checked {
            Ok(policy) => policy,
            Err(error) => {
                let failed = Err(error);
                self.audit_response(&op, &failed, Map::new()).await?;
                return failed;
            }
        };
        self.audit_request(&op).await?;

        let result = self
            .store
            .put_policy(&PolicyRecord {
                name: name.to_owned(),
                text: text.to_owned(),
            })
            .await
            .map_err(ManagerError::from);
        if result.is_ok() {
            self.policies
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned(), Arc::new(policy));
        }
        self.finish_policy_change(caller, &op, name, result).await
    }

    /// Reads a policy's source text.
    pub async fn policy_read(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<String, ManagerError> {
        let op = self.operation(caller, ctx, "policy.read", policy_path(name));
        let result = async {
            self.require(caller, &op.path, &[Capability::Read])?;
            if name == ROOT_POLICY {
                return Ok(String::new());
            }
            Ok(self.store.get_policy(name).await?.text)
        }
        .await;
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Lists policy names, `root` included.
    pub async fn policy_list(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Result<Vec<String>, ManagerError> {
        let op = self.operation(caller, ctx, "policy.list", "sys/policies/acl".into());
        let result = async {
            self.require(caller, &op.path, &[Capability::List, Capability::Read])?;
            let mut names: Vec<String> = self
                .store
                .all_policies()
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect();
            names.push(ROOT_POLICY.to_owned());
            names.sort();
            Ok(names)
        }
        .await;
        self.audit_response(&op, &result, Map::new()).await?;
        result
    }

    /// Deletes a policy; `root` and `default` cannot be deleted.
    pub async fn policy_delete(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<(), ManagerError> {
        let op = self.operation(caller, ctx, "policy.delete", policy_path(name));
        let checked = self
            .require(caller, &op.path, &[Capability::Delete])
            .and_then(|()| {
                if name == ROOT_POLICY || name == DEFAULT_POLICY {
                    return Err(ManagerError::Invalid(format!(
                        "cannot delete the {name} policy"
                    )));
                }
                Ok(())
            });
        if let Err(error) = checked {
            let failed = Err(error);
            self.audit_response(&op, &failed, Map::new()).await?;
            return failed;
        }
        self.audit_request(&op).await?;

        let result = match self.store.delete_policy(name).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(other) => Err(ManagerError::from(other)),
        };
        if result.is_ok() {
            self.policies
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
        }
        self.finish_policy_change(caller, &op, name, result).await
    }

    async fn finish_policy_change(
        &self,
        caller: &Caller,
        op: &Operation<'_>,
        name: &str,
        result: Result<(), ManagerError>,
    ) -> Result<(), ManagerError> {
        self.audit_response(op, &result, Map::new()).await?;
        if result.is_ok() {
            self.refresh_remembered_policies().await;
            self.events.publish(SecurityEvent::PolicyChanged {
                accessor: caller.accessor().to_owned(),
                name: name.to_owned(),
            });
        }
        result
    }
}

fn policy_path(name: &str) -> String {
    format!("sys/policies/acl/{name}")
}
