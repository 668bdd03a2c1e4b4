//! `sys/health` codes: active, sealed, uninitialised, and an unreachable server.

use std::time::Duration;

use keyward_vault::{Auth, HealthState, VaultClient, VaultConfig, VaultError, VaultToken};

use crate::support::{bao, bao_bin, run_bao, start_dev_server, start_uninitialized_server};

fn client(addr: &str) -> VaultClient {
    VaultClient::new(
        VaultConfig::new(addr),
        Auth::Token(VaultToken::new("unused-for-health")),
    )
    .expect("client builds")
}

/// Polls health until it is not `Unreachable`, for servers that are still starting.
async fn health_when_up(client: &VaultClient) -> keyward_vault::Health {
    for _ in 0..100 {
        match client.health().await {
            Ok(health) => return health,
            Err(VaultError::Unreachable { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("health failed: {err}"),
        }
    }
    panic!("server did not answer sys/health within 10 s");
}

#[tokio::test]
async fn active_server_reports_active() {
    let Some(bao) = bao("active_server_reports_active") else {
        return;
    };

    let health = client(&bao.addr).health().await.expect("health reads");

    assert_eq!(health.state, HealthState::Active);
    assert!(health.version.is_some());
}

#[tokio::test]
async fn sealed_server_reports_sealed() {
    let Some(bin) = bao_bin("sealed_server_reports_sealed") else {
        return;
    };
    let server = start_dev_server(&bin, "seal-test-root");
    let client = client(&server.addr);
    assert_eq!(health_when_up(&client).await.state, HealthState::Active);

    run_bao(&bin, &server.addr, "seal-test-root", &["operator", "seal"]);
    let health = client.health().await.expect("health reads while sealed");

    assert_eq!(health.state, HealthState::Sealed);
    assert!(!health.state.is_active());
}

#[tokio::test]
async fn uninitialized_server_reports_uninitialized() {
    let Some(bin) = bao_bin("uninitialized_server_reports_uninitialized") else {
        return;
    };
    let server = start_uninitialized_server(&bin);

    let health = health_when_up(&client(&server.addr)).await;

    assert_eq!(health.state, HealthState::Uninitialized);
}

#[tokio::test]
async fn unreachable_server_is_retryable() {
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let mut config = VaultConfig::new("http://127.0.0.1:9");
    config.request_timeout = Duration::from_secs(2);
    let client =
        VaultClient::new(config, Auth::Token(VaultToken::new("t"))).expect("client builds");

    let result = client.kv_read("secret", "any", None).await;

    let err = result.expect_err("nothing listens on port 9");
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, VaultError::Unreachable { .. }), "{err}");
}
