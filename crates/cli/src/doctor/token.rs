//! The root token check: warns when the token in `KEYWARD_TOKEN` has the root policy.
//!
//! Only the token in the environment can be checked, because the server stores tokens as
//! keyed hashes and cannot list which root tokens are still valid.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use super::Check;
use crate::cli::{ClientArgs, Format};
use crate::client::Client;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::shell;

const NAME: &str = "root token";

/// Looks up `KEYWARD_TOKEN` on the server. The address comes from `KEYWARD_ADDR`, else from
/// the configuration's listen address, and the CA from `KEYWARD_CACERT`, else the data dir's
/// `tls/ca.pem`. Skips when no token is set or the lookup fails.
pub async fn check(config: &Config) -> Check {
    let token = match std::env::var("KEYWARD_TOKEN") {
        Ok(token) if !token.is_empty() => token,
        _ => return Check::skip(NAME, "KEYWARD_TOKEN is not set, so no token can be checked"),
    };
    let args = ClientArgs {
        addr: env_or("KEYWARD_ADDR", || shell::client_addr(config.listen)),
        token: Some(token),
        cacert: Some(PathBuf::from(env_or("KEYWARD_CACERT", || {
            DataDir::new(&config.data_dir)
                .tls()
                .join("ca.pem")
                .display()
                .to_string()
        }))),
        format: Format::Json,
    };

    let client = match Client::new(&args) {
        Ok(client) => client,
        Err(error) => return Check::skip(NAME, format!("cannot look up KEYWARD_TOKEN: {error}")),
    };
    match client
        .request(Method::GET, "auth/token/lookup-self", None)
        .await
    {
        Ok(response) => judge_policies(&response["data"]["policies"]),
        Err(error) => Check::skip(NAME, format!("cannot look up KEYWARD_TOKEN: {error}")),
    }
}

fn env_or(name: &str, default: impl FnOnce() -> String) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => default(),
    }
}

/// Warns when the token's policies, a JSON array of names, contain `root`.
fn judge_policies(policies: &Value) -> Check {
    let names: Vec<&str> = policies
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.contains(&"root") {
        return Check::warn(
            NAME,
            "a root token is in use",
            "create a narrower token for applications and revoke this one (keyward token revoke)",
        );
    }
    Check::pass(
        NAME,
        format!("KEYWARD_TOKEN has the policies [{}]", names.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::doctor::Status;

    #[test]
    fn root_policy_warns() {
        let check = judge_policies(&json!(["root"]));
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert_eq!(check.message, "a root token is in use");
        assert!(
            check
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("keyward token revoke")),
            "{check:?}"
        );
    }

    #[test]
    fn narrow_policies_pass() {
        let check = judge_policies(&json!(["default", "app-reader"]));
        assert_eq!(check.status, Status::Pass, "{check:?}");
        assert_eq!(
            check.message,
            "KEYWARD_TOKEN has the policies [default, app-reader]"
        );
    }
}
