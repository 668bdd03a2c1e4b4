//! Maps a request's raw path and method onto a route and an operation.
//!
//! The path is taken from the URI exactly as sent, never percent-decoded or normalised.
//! Before any route matches, every segment is checked: an empty segment (other than a trailing
//! slash), a `.` or `..` segment, a `%` escape or a character outside `[A-Za-z0-9._-]` rejects
//! the request with 400. The secret part of a KV path is then parsed into a `SecretPath` or
//! `FolderPath`, which apply the same rules plus length limits.

use keyward_store::{FolderPath, PathError, SecretPath};

use crate::errors::Rejection;

/// Prefix of every API path.
pub(crate) const API_PREFIX: &str = "/v1/";

/// Operation a request performs, derived from its method and `?list=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// GET.
    Read,
    /// HEAD.
    Head,
    /// LIST, or GET with `?list=true`.
    List,
    /// PUT or POST.
    Write,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Operation {
    /// Derives the operation; `None` for a method Vault does not use.
    pub fn from_method(method: &str, list: bool) -> Option<Self> {
        Some(match method {
            "GET" if list => Operation::List,
            "GET" => Operation::Read,
            "HEAD" => Operation::Head,
            "LIST" => Operation::List,
            "PUT" | "POST" => Operation::Write,
            "PATCH" => Operation::Patch,
            "DELETE" => Operation::Delete,
            _ => return None,
        })
    }
}

/// Kind of version operation of a `secret/{delete,undelete,destroy}/` path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionAction {
    /// `secret/delete/<path>`.
    Delete,
    /// `secret/undelete/<path>`.
    Undelete,
    /// `secret/destroy/<path>`.
    Destroy,
}

/// A resolved API route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `sys/health`.
    Health,
    /// `sys/seal-status`.
    SealStatus,
    /// `sys/leader`.
    Leader,
    /// `sys/internal/ui/mounts[/<path>]`; the path without its trailing slash.
    Mounts(String),
    /// `secret/data/<path>`.
    KvData(SecretPath),
    /// `secret/{delete,undelete,destroy}/<path>`.
    KvVersions(VersionAction, SecretPath),
    /// `secret/metadata[/<path>]`: a secret for read/write/delete, a folder for list.
    KvMetadata(String),
    /// `auth/token/lookup-self`.
    TokenLookupSelf,
    /// `auth/token/create` or `auth/token/create-orphan` (`orphan` true).
    TokenCreate { orphan: bool },
    /// `auth/token/revoke-self`.
    TokenRevokeSelf,
    /// `auth/token/revoke-accessor`.
    TokenRevokeAccessor,
    /// `auth/token/renew-self`.
    TokenRenewSelf,
    /// `sys/policies/acl`.
    PolicyList,
    /// `sys/policies/acl/<name>`.
    Policy(String),
    /// `sys/policy` (Vault's older API).
    LegacyPolicyList,
    /// `sys/policy/<name>` (Vault's older API).
    LegacyPolicy(String),
    /// `sys/keys`: data key status.
    KeysStatus,
    /// `sys/keys/rotate`: a new active data key.
    KeysRotate,
    /// `sys/keys/rewrap`: one batch of re-encryption onto the active key.
    KeysRewrap,
    /// `sys/keys/rotate-root`: seal the keyring under a new root key.
    KeysRotateRoot,
    /// `sys/keys/<id>`: one data key, for retirement.
    Key(u32),
    /// `sys/keyward/watch`: change notifications as server-sent events.
    Watch,
    /// `sys/metrics`: Prometheus metrics.
    Metrics,
    /// `sys/rotation/policy/<path>`: a secret's rotation policy.
    RotationPolicy(SecretPath),
    /// `sys/rotation/status/<path>`: a secret's rotation state.
    RotationStatus(SecretPath),
    /// `sys/rotate/<path>`: rotate a secret now.
    Rotate(SecretPath),
    /// `sys/keyward/compromised`: a leak report, which triggers an emergency rotation.
    Compromised,
    /// No route serves the path.
    Unknown,
}

impl Route {
    /// Returns the route's template for logs, which contains no path parameters.
    pub fn template(&self) -> &'static str {
        match self {
            Route::Health => "sys/health",
            Route::SealStatus => "sys/seal-status",
            Route::Leader => "sys/leader",
            Route::Mounts(_) => "sys/internal/ui/mounts/{path}",
            Route::KvData(_) => "secret/data/{path}",
            Route::KvVersions(VersionAction::Delete, _) => "secret/delete/{path}",
            Route::KvVersions(VersionAction::Undelete, _) => "secret/undelete/{path}",
            Route::KvVersions(VersionAction::Destroy, _) => "secret/destroy/{path}",
            Route::KvMetadata(_) => "secret/metadata/{path}",
            Route::TokenLookupSelf => "auth/token/lookup-self",
            Route::TokenCreate { orphan: false } => "auth/token/create",
            Route::TokenCreate { orphan: true } => "auth/token/create-orphan",
            Route::TokenRevokeSelf => "auth/token/revoke-self",
            Route::TokenRevokeAccessor => "auth/token/revoke-accessor",
            Route::TokenRenewSelf => "auth/token/renew-self",
            Route::PolicyList => "sys/policies/acl",
            Route::Policy(_) => "sys/policies/acl/{name}",
            Route::LegacyPolicyList => "sys/policy",
            Route::LegacyPolicy(_) => "sys/policy/{name}",
            Route::KeysStatus => "sys/keys",
            Route::KeysRotate => "sys/keys/rotate",
            Route::KeysRewrap => "sys/keys/rewrap",
            Route::KeysRotateRoot => "sys/keys/rotate-root",
            Route::Key(_) => "sys/keys/{id}",
            Route::Watch => "sys/keyward/watch",
            Route::Metrics => "sys/metrics",
            Route::RotationPolicy(_) => "sys/rotation/policy/{path}",
            Route::RotationStatus(_) => "sys/rotation/status/{path}",
            Route::Rotate(_) => "sys/rotate/{path}",
            Route::Compromised => "sys/keyward/compromised",
            Route::Unknown => "unknown",
        }
    }

    /// Returns whether the route is served without a token, as in Vault.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Route::Health | Route::SealStatus | Route::Leader)
    }

    /// Returns whether the route serves `operation`.
    pub fn supports(&self, operation: Operation) -> bool {
        use Operation::*;
        match self {
            Route::Health => matches!(operation, Read | Head),
            Route::SealStatus | Route::Leader => operation == Read,
            Route::Mounts(_) => operation == Read,
            Route::KvData(_) => matches!(operation, Read | Write | Patch | Delete),
            Route::KvVersions(..) => operation == Write,
            Route::KvMetadata(_) => matches!(operation, Read | List | Write | Delete),
            Route::TokenLookupSelf => matches!(operation, Read | Write),
            Route::TokenCreate { .. }
            | Route::TokenRevokeSelf
            | Route::TokenRevokeAccessor
            | Route::TokenRenewSelf => operation == Write,
            Route::PolicyList => operation == List,
            Route::Policy(_) | Route::LegacyPolicy(_) => matches!(operation, Read | Write | Delete),
            Route::LegacyPolicyList => matches!(operation, Read | List),
            Route::KeysStatus => operation == Read,
            Route::KeysRotate | Route::KeysRewrap | Route::KeysRotateRoot => operation == Write,
            Route::Key(_) => operation == Delete,
            Route::Watch => operation == Read,
            Route::Metrics => operation == Read,
            Route::RotationPolicy(_) => matches!(operation, Read | Write | Delete),
            Route::RotationStatus(_) => operation == Read,
            Route::Rotate(_) | Route::Compromised => operation == Write,
            Route::Unknown => false,
        }
    }
}

/// Resolves the raw URI path (with its `/v1/` prefix) to a route.
pub(crate) fn resolve(raw_path: &str) -> Result<Route, Rejection> {
    let Some(rest) = raw_path.strip_prefix(API_PREFIX) else {
        return Ok(Route::Unknown);
    };
    check_segments(rest).map_err(|error| Rejection::bad_path(&error))?;

    // A trailing slash is allowed on folders and lists, but never part of a name.
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    let bad_path = |error: PathError| Rejection::bad_path(&error);

    let route = if let Some(path) = trimmed.strip_prefix("secret/data/") {
        Route::KvData(secret_path(path, rest).map_err(bad_path)?)
    } else if let Some(path) = trimmed.strip_prefix("secret/delete/") {
        Route::KvVersions(
            VersionAction::Delete,
            secret_path(path, rest).map_err(bad_path)?,
        )
    } else if let Some(path) = trimmed.strip_prefix("secret/undelete/") {
        Route::KvVersions(
            VersionAction::Undelete,
            secret_path(path, rest).map_err(bad_path)?,
        )
    } else if let Some(path) = trimmed.strip_prefix("secret/destroy/") {
        Route::KvVersions(
            VersionAction::Destroy,
            secret_path(path, rest).map_err(bad_path)?,
        )
    } else if trimmed == "secret/metadata" {
        Route::KvMetadata(String::new())
    } else if let Some(path) = trimmed.strip_prefix("secret/metadata/") {
        metadata_folder(path)?;
        // Keep the trailing slash: it marks a folder.
        Route::KvMetadata(rest["secret/metadata/".len()..].to_owned())
    } else if trimmed == "sys/health" {
        Route::Health
    } else if trimmed == "sys/seal-status" {
        Route::SealStatus
    } else if trimmed == "sys/leader" {
        Route::Leader
    } else if trimmed == "sys/metrics" {
        Route::Metrics
    } else if trimmed == "sys/internal/ui/mounts" {
        Route::Mounts(String::new())
    } else if let Some(path) = trimmed.strip_prefix("sys/internal/ui/mounts/") {
        Route::Mounts(path.to_owned())
    } else if trimmed == "sys/policies/acl" {
        Route::PolicyList
    } else if let Some(name) = trimmed.strip_prefix("sys/policies/acl/") {
        Route::Policy(policy_name(name)?)
    } else if trimmed == "sys/policy" {
        Route::LegacyPolicyList
    } else if let Some(name) = trimmed.strip_prefix("sys/policy/") {
        Route::LegacyPolicy(policy_name(name)?)
    } else if let Some(path) = trimmed.strip_prefix("sys/rotation/policy/") {
        Route::RotationPolicy(secret_path(path, rest).map_err(bad_path)?)
    } else if let Some(path) = trimmed.strip_prefix("sys/rotation/status/") {
        Route::RotationStatus(secret_path(path, rest).map_err(bad_path)?)
    } else if let Some(path) = trimmed.strip_prefix("sys/rotate/") {
        Route::Rotate(secret_path(path, rest).map_err(bad_path)?)
    } else if trimmed == "sys/keys" {
        Route::KeysStatus
    } else if let Some(name) = trimmed.strip_prefix("sys/keys/") {
        key_route(name)
    } else {
        match trimmed {
            "auth/token/lookup-self" => Route::TokenLookupSelf,
            "auth/token/create" => Route::TokenCreate { orphan: false },
            "auth/token/create-orphan" => Route::TokenCreate { orphan: true },
            "auth/token/revoke-self" => Route::TokenRevokeSelf,
            "auth/token/revoke-accessor" => Route::TokenRevokeAccessor,
            "auth/token/renew-self" => Route::TokenRenewSelf,
            "sys/keyward/watch" => Route::Watch,
            "sys/keyward/compromised" => Route::Compromised,
            _ => Route::Unknown,
        }
    };
    Ok(route)
}

/// Resolves `sys/keys/<name>`: an action, or a key id in decimal without leading zeros.
fn key_route(name: &str) -> Route {
    match name {
        "rotate" => Route::KeysRotate,
        "rewrap" => Route::KeysRewrap,
        "rotate-root" => Route::KeysRotateRoot,
        id if id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0') => {
            id.parse().map(Route::Key).unwrap_or(Route::Unknown)
        }
        _ => Route::Unknown,
    }
}

/// Parses the secret part of a data or version path; a trailing slash is not a secret name.
fn secret_path(path: &str, rest: &str) -> Result<SecretPath, PathError> {
    if rest.ends_with('/') {
        return Err(PathError::EmptySegment);
    }
    SecretPath::parse(path)
}

fn policy_name(name: &str) -> Result<String, Rejection> {
    keyward_manager::policy::validate_policy_name(name)
        .map_err(|error| Rejection::bad_request("invalid_path", error.to_string()))?;
    Ok(name.to_owned())
}

/// Rejects a raw path with an empty segment (except one trailing slash), a `.`/`..` segment,
/// a percent escape or any character outside `[A-Za-z0-9._-]`.
fn check_segments(rest: &str) -> Result<(), PathError> {
    let body = rest.strip_suffix('/').unwrap_or(rest);
    if body.is_empty() {
        return Err(PathError::Empty);
    }
    for segment in body.split('/') {
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(PathError::InvalidCharacter(bad));
        }
    }
    Ok(())
}

/// Parses a metadata route's path as a secret (for read, write and delete).
pub(crate) fn metadata_secret(raw: &str) -> Result<SecretPath, Rejection> {
    if raw.ends_with('/') {
        return Err(Rejection::bad_path(&PathError::EmptySegment));
    }
    SecretPath::parse(raw).map_err(|error| Rejection::bad_path(&error))
}

/// Parses a metadata route's path as a folder (for list); empty is the mount's root.
pub(crate) fn metadata_folder(raw: &str) -> Result<FolderPath, Rejection> {
    FolderPath::parse(raw).map_err(|error| Rejection::bad_path(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(raw: &str) -> SecretPath {
        SecretPath::parse(raw).expect("valid test path")
    }

    #[test]
    fn rotation_routes_resolve() {
        assert_eq!(
            resolve("/v1/sys/rotation/policy/app/x"),
            Ok(Route::RotationPolicy(secret("app/x")))
        );
        assert_eq!(
            resolve("/v1/sys/rotation/status/app/x"),
            Ok(Route::RotationStatus(secret("app/x")))
        );
        assert_eq!(
            resolve("/v1/sys/rotate/app/x"),
            Ok(Route::Rotate(secret("app/x")))
        );
        assert_eq!(
            resolve("/v1/sys/keyward/compromised"),
            Ok(Route::Compromised)
        );
        assert!(
            resolve("/v1/sys/rotate/app/").is_err(),
            "a folder is no secret"
        );
        assert!(Route::Rotate(secret("app/x")).supports(Operation::Write));
        assert!(!Route::Rotate(secret("app/x")).supports(Operation::Read));
        assert!(Route::RotationPolicy(secret("app/x")).supports(Operation::Delete));
        assert!(!Route::RotationStatus(secret("app/x")).supports(Operation::Write));
    }

    #[test]
    fn kv_routes_resolve() {
        assert_eq!(
            resolve("/v1/secret/data/app/x"),
            Ok(Route::KvData(secret("app/x")))
        );
        assert_eq!(
            resolve("/v1/secret/destroy/app/x"),
            Ok(Route::KvVersions(VersionAction::Destroy, secret("app/x")))
        );
        assert_eq!(
            resolve("/v1/secret/metadata"),
            Ok(Route::KvMetadata(String::new()))
        );
        assert_eq!(
            resolve("/v1/secret/metadata/"),
            Ok(Route::KvMetadata(String::new()))
        );
        assert_eq!(
            resolve("/v1/secret/metadata/app/"),
            Ok(Route::KvMetadata("app/".into()))
        );
    }

    #[test]
    fn sys_and_token_routes_resolve() {
        assert_eq!(resolve("/v1/sys/health"), Ok(Route::Health));
        assert_eq!(resolve("/v1/sys/seal-status"), Ok(Route::SealStatus));
        assert!(Route::Leader.is_unauthenticated());
        assert!(!Route::TokenLookupSelf.is_unauthenticated());
        assert_eq!(
            resolve("/v1/sys/internal/ui/mounts/secret/app"),
            Ok(Route::Mounts("secret/app".into()))
        );
        assert_eq!(resolve("/v1/sys/policies/acl"), Ok(Route::PolicyList));
        assert_eq!(
            resolve("/v1/sys/policies/acl/p-1"),
            Ok(Route::Policy("p-1".into()))
        );
        assert_eq!(resolve("/v1/sys/policy"), Ok(Route::LegacyPolicyList));
        assert_eq!(resolve("/v1/sys/keyward/watch"), Ok(Route::Watch));
        assert!(Route::Watch.supports(Operation::Read));
        assert!(!Route::Watch.supports(Operation::Write));
        assert_eq!(resolve("/v1/sys/metrics"), Ok(Route::Metrics));
        assert!(!Route::Metrics.is_unauthenticated());
        assert!(Route::Metrics.supports(Operation::Read));
        assert!(!Route::Metrics.supports(Operation::Write));
        assert_eq!(
            resolve("/v1/auth/token/create-orphan"),
            Ok(Route::TokenCreate { orphan: true })
        );
    }

    #[test]
    fn key_routes_resolve() {
        assert_eq!(resolve("/v1/sys/keys"), Ok(Route::KeysStatus));
        assert_eq!(resolve("/v1/sys/keys/rotate"), Ok(Route::KeysRotate));
        assert_eq!(resolve("/v1/sys/keys/rewrap"), Ok(Route::KeysRewrap));
        assert_eq!(
            resolve("/v1/sys/keys/rotate-root"),
            Ok(Route::KeysRotateRoot)
        );
        assert_eq!(resolve("/v1/sys/keys/42"), Ok(Route::Key(42)));
        for unknown in [
            "/v1/sys/keys/042",
            "/v1/sys/keys/0",
            "/v1/sys/keys/99999999999",
            "/v1/sys/keys/abc",
            "/v1/sys/keys/1/x",
        ] {
            assert_eq!(resolve(unknown), Ok(Route::Unknown), "{unknown}");
        }
        assert!(Route::KeysStatus.supports(Operation::Read));
        assert!(!Route::KeysRotate.supports(Operation::Read));
        assert!(Route::Key(1).supports(Operation::Delete));
        assert!(!Route::Key(1).supports(Operation::Write));
    }

    #[test]
    fn traversal_paths_are_rejected() {
        for raw in [
            "/v1/secret/data/app/../x",
            "/v1/secret/data/%2e%2e/x",
            "/v1/secret/data/app//x",
            "/v1/secret/data/./x",
            "/v1/sys/../secret/data/x",
            "/v1/secret/data/a%2Fb",
            "/v1/secret/data/app/x/",
            "/v1/secret/metadata/app//",
            "/v1/secret/data/caf\u{e9}",
            "/v1//secret/data/x",
        ] {
            let rejection = resolve(raw).expect_err(raw);
            assert_eq!(
                rejection.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{raw}"
            );
        }
    }

    #[test]
    fn unknown_paths_resolve_to_unknown() {
        assert_eq!(resolve("/v1/nonexistent/thing"), Ok(Route::Unknown));
        assert_eq!(resolve("/v2/secret/data/x"), Ok(Route::Unknown));
        assert_eq!(resolve("/"), Ok(Route::Unknown));
        assert_eq!(resolve("/v1/secret/data"), Ok(Route::Unknown));
    }

    #[test]
    fn methods_map_to_operations() {
        assert_eq!(Operation::from_method("GET", true), Some(Operation::List));
        assert_eq!(Operation::from_method("LIST", false), Some(Operation::List));
        assert_eq!(
            Operation::from_method("POST", false),
            Some(Operation::Write)
        );
        assert_eq!(Operation::from_method("TRACE", false), None);
    }

    #[test]
    fn routes_declare_their_operations() {
        assert!(Route::Health.supports(Operation::Head));
        assert!(!Route::Health.supports(Operation::Write));
        assert!(!Route::KvVersions(VersionAction::Delete, secret("a")).supports(Operation::Read));
        assert!(Route::PolicyList.supports(Operation::List));
        assert!(!Route::PolicyList.supports(Operation::Read));
    }
}
