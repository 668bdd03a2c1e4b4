//! AppRole login, renewal and re-login against OpenBao, and how refusals map to errors.

use std::time::Duration;

use keyward_vault::{
    AppRoleSettings, Auth, RenewalOutcome, SecretId, VaultClient, VaultConfig, VaultError,
};
use serde_json::json;

use crate::support::{Bao, bao, kv_mount, unique};

/// Enables AppRole at a unique mount with a role whose policy allows `policy_hcl`, and returns
/// the client auth for it.
async fn approle(bao: &Bao, policy_hcl: &str, ttl_secs: u64, max_ttl_secs: u64) -> Auth {
    let mount = unique("approle");
    let role = unique("role");
    let policy = unique("policy");
    bao.root
        .enable_auth_method(&mount, "approle")
        .await
        .expect("approle is enabled");
    bao.root
        .write_policy(&policy, policy_hcl)
        .await
        .expect("policy is written");
    let settings = AppRoleSettings {
        token_policies: vec![policy],
        token_ttl_secs: ttl_secs,
        token_max_ttl_secs: max_ttl_secs,
    };
    bao.root
        .write_approle_role(&mount, &role, &settings)
        .await
        .expect("role is written");
    let role_id = bao
        .root
        .approle_role_id(&mount, &role)
        .await
        .expect("role id reads");
    let secret_id = bao
        .root
        .approle_generate_secret_id(&mount, &role)
        .await
        .expect("secret id is issued");
    Auth::AppRole {
        mount,
        role_id,
        secret_id,
    }
}

fn kv_policy(mount: &str) -> String {
    format!("path \"{mount}/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"list\"] }}")
}

#[tokio::test]
async fn approle_client_survives_renewals_and_relogin() {
    let Some(bao) = bao("approle_client_survives_renewals_and_relogin") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    let auth = approle(&bao, &kv_policy(&mount), 2, 6).await;
    let client = VaultClient::new(VaultConfig::new(bao.addr.clone()), auth).expect("client builds");
    client.login().await.expect("approle login succeeds");
    let value =
        keyward_vault::SecretJson::from_map(json!({"k": "v"}).as_object().expect("object literal"));
    client
        .kv_write(&mount, "renew/me", &value, None)
        .await
        .expect("write with the first token succeeds");
    let renewal = client.spawn_renewal();

    // 9 s is past the 6 s max_ttl of the first token, so the client must log in again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    let mut reads = 0;
    while tokio::time::Instant::now() < deadline {
        let read = client.kv_read(&mount, "renew/me", None).await;
        assert!(read.is_ok(), "read {reads} failed: {read:?}");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = client.auth_stats();
    renewal.stop();

    assert!(stats.renewals >= 2, "expected several renewals: {stats:?}");
    assert!(
        stats.logins >= 2,
        "expected a re-login after max_ttl: {stats:?}"
    );
}

#[tokio::test]
async fn refused_renewal_logs_in_again() {
    let Some(bao) = bao("refused_renewal_logs_in_again") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    let auth = approle(&bao, &kv_policy(&mount), 60, 120).await;
    let client = VaultClient::new(VaultConfig::new(bao.addr.clone()), auth).expect("client builds");
    client.login().await.expect("approle login succeeds");
    client.revoke_self().await.expect("token is revoked");

    let denied = client.kv_list(&mount, "").await;
    let outcome = client.renew_or_login().await;
    let list = client.kv_list(&mount, "").await;

    assert!(
        matches!(denied, Err(VaultError::PermissionDenied { .. })),
        "{denied:?}"
    );
    assert_eq!(
        outcome.expect("renewal step succeeds"),
        RenewalOutcome::LoggedIn
    );
    assert!(list.is_ok(), "{list:?}");
    assert_eq!(client.auth_stats().logins, 2);
}

#[tokio::test]
async fn expired_token_triggers_login_on_request() {
    let Some(bao) = bao("expired_token_triggers_login_on_request") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    let auth = approle(&bao, &kv_policy(&mount), 1, 1).await;
    let client = VaultClient::new(VaultConfig::new(bao.addr.clone()), auth).expect("client builds");
    client.login().await.expect("approle login succeeds");

    // No renewal task: the token expires, and the next request logs in by itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let list = client.kv_list(&mount, "").await;

    assert!(list.is_ok(), "{list:?}");
    assert_eq!(client.auth_stats().logins, 2);
}

#[tokio::test]
async fn wrong_secret_id_is_permission_denied() {
    let Some(bao) = bao("wrong_secret_id_is_permission_denied") else {
        return;
    };
    let auth = approle(
        &bao,
        "path \"nothing/*\" { capabilities = [\"read\"] }",
        60,
        120,
    )
    .await;
    let Auth::AppRole { mount, role_id, .. } = auth else {
        unreachable!("approle() returns AppRole auth");
    };
    let wrong = Auth::AppRole {
        mount,
        role_id,
        secret_id: SecretId::new("not-the-secret-id"),
    };
    let client =
        VaultClient::new(VaultConfig::new(bao.addr.clone()), wrong).expect("client builds");

    let login = client.login().await;

    let err = login.expect_err("a wrong secret id must be rejected");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("not-the-secret-id"), "{err}");
}

#[tokio::test]
async fn policy_denial_is_permission_denied() {
    let Some(bao) = bao("policy_denial_is_permission_denied") else {
        return;
    };
    let mount = kv_mount(&bao).await;
    let auth = approle(
        &bao,
        "path \"elsewhere/*\" { capabilities = [\"read\"] }",
        60,
        120,
    )
    .await;
    let client = VaultClient::new(VaultConfig::new(bao.addr.clone()), auth).expect("client builds");

    let read = client.kv_read(&mount, "secret", None).await;

    assert!(
        matches!(read, Err(VaultError::PermissionDenied { .. })),
        "{read:?}"
    );
}
