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
    // The harness locks for 60 s: the error carries the time left, not a fixed value.
    match locked {
        Err(ManagerError::LockedOut { retry_after_secs }) => {
            assert!((59..=60).contains(&retry_after_secs), "{retry_after_secs}");
        }
        other => panic!("expected a lockout: {other:?}"),
    }

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

#[tokio::test]
async fn ipv6_lockout_covers_the_slash_64() {
    let h = Harness::new().await;
    for host in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6::3"] {
        let addr: IpAddr = host.parse().expect("valid address");
        let _ = h
            .manager
            .authenticate(Some("kwt.guess"), &ctx_from(addr))
            .await;
    }

    let neighbour: IpAddr = "2001:db8:5:6:ffff::1".parse().expect("valid address");
    let locked = h
        .manager
        .authenticate(Some(&h.root_token), &ctx_from(neighbour))
        .await;
    assert!(
        matches!(locked, Err(ManagerError::LockedOut { .. })),
        "{locked:?}"
    );

    let other_network: IpAddr = "2001:db8:5:7::1".parse().expect("valid address");
    let allowed = h
        .manager
        .authenticate(Some(&h.root_token), &ctx_from(other_network))
        .await;
    assert!(allowed.is_ok(), "{allowed:?}");
}

#[tokio::test]
async fn renewal_is_seen_by_next_authentication() {
    let h = Harness::new().await;
    let issued = h
        .manager
        .token_create(
            &h.root,
            &ctx(),
            TokenCreateRequest {
                ttl_secs: Some(60),
                ..Default::default()
            },
        )
        .await
        .expect("creates");
    let token = issued.token.expose().to_owned();
    let caller = h
        .manager
        .authenticate(Some(&token), &ctx())
        .await
        .expect("valid");

    let renewed = h
        .manager
        .token_renew_self(&caller, &ctx(), Some(3600))
        .await
        .expect("renews");
    let again = h
        .manager
        .authenticate(Some(&token), &ctx())
        .await
        .expect("still valid");

    assert!(renewed.expire_time > caller.token.expire_time);
    assert_eq!(again.token.expire_time, renewed.expire_time);
}
