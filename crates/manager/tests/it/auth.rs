//! Authentication: missing, unknown and expired tokens, lockout.

use std::net::IpAddr;

use keyward_manager::{ManagerError, SecurityEvent, TokenCreateRequest};

use crate::common::{Harness, ctx, ctx_from};

#[tokio::test]
async fn missing_token_is_denied() {
    let h = Harness::new().await;
    for token in [None, Some("")] {
        let result = h.manager.authenticate(token, &ctx()).await;
        assert!(
            matches!(result, Err(ManagerError::PermissionDenied)),
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn unknown_and_malformed_tokens_are_denied() {
    let h = Harness::new().await;
    let long = "kwt.".to_owned() + &"a".repeat(500);
    let tokens = [
        "kwt.not-a-real-token",
        "hvs.something",
        "garbage",
        long.as_str(),
    ];
    for (index, token) in (1u8..).zip(tokens) {
        // One address per attempt, so the lockout does not answer instead.
        let result = h
            .manager
            .authenticate(Some(token), &ctx_from([127, 0, 1, index].into()))
            .await;
        assert!(
            matches!(result, Err(ManagerError::PermissionDenied)),
            "{token}"
        );
    }
}

#[tokio::test]
async fn auth_failure_publishes_event() {
    let h = Harness::new().await;
    let mut events = h.manager.subscribe();
    let _ = h.manager.authenticate(Some("kwt.wrong"), &ctx()).await;

    let event = events.recv().await.expect("event published");
    assert!(
        matches!(
            event,
            SecurityEvent::AuthFailure {
                reason: "unknown_token",
                ..
            }
        ),
        "{event:?}"
    );
}

#[tokio::test]
async fn repeated_failures_lock_out_the_address() {
    let h = Harness::new().await;
    let attacker: IpAddr = [127, 0, 0, 9].into();
    for _ in 0..3 {
        let _ = h
            .manager
            .authenticate(Some("kwt.guess"), &ctx_from(attacker))
            .await;
    }

    // Even the right token is refused from a locked address, so guesses cannot be confirmed.
    let locked = h
        .manager
        .authenticate(Some(&h.root_token), &ctx_from(attacker))
        .await;
    assert!(matches!(locked, Err(ManagerError::LockedOut)), "{locked:?}");

    let other = h.manager.authenticate(Some(&h.root_token), &ctx()).await;
    assert!(other.is_ok(), "{other:?}");
}

#[tokio::test]
async fn revoked_token_is_denied() {
    let h = Harness::new().await;
    let issued = h
        .manager
        .token_create(&h.root, &ctx(), TokenCreateRequest::default())
        .await
        .expect("creates");
    let token = issued.token.expose().to_owned();
    let caller = h
        .manager
        .authenticate(Some(&token), &ctx())
        .await
        .expect("valid");

    h.manager
        .token_revoke_self(&caller, &ctx())
        .await
        .expect("revokes");
    let result = h.manager.authenticate(Some(&token), &ctx()).await;
    assert!(
        matches!(result, Err(ManagerError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn expired_token_is_denied() {
    let h = Harness::new().await;
    let issued = h
        .manager
        .token_create(
            &h.root,
            &ctx(),
            TokenCreateRequest {
                ttl_secs: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("creates");
    let token = issued.token.expose().to_owned();
    assert!(h.manager.authenticate(Some(&token), &ctx()).await.is_ok());

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let result = h.manager.authenticate(Some(&token), &ctx()).await;
    assert!(
        matches!(result, Err(ManagerError::PermissionDenied)),
        "{result:?}"
    );
}
