//! Token creation rules.

use std::collections::BTreeMap;

use keyward_manager::{Caller, ManagerConfig, ManagerError, TokenCreateRequest};

use crate::common::{Harness, config, ctx};

const CREATOR: &str = r#"
path "auth/token/create" {
  capabilities = ["update"]
}
"#;

#[tokio::test]
async fn child_gets_default_policy_added() {
    let h = Harness::new().await;
    h.manager
        .policy_write(
            &h.root,
            &ctx(),
            "app",
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
        )
        .await
        .expect("policy");
    let issued = h
        .manager
        .token_create(
            &h.root,
            &ctx(),
            TokenCreateRequest {
                policies: vec!["app".into()],
                ..Default::default()
            },
        )
        .await
        .expect("creates");
    assert_eq!(
        issued.record.policies,
        vec!["app".to_owned(), "default".to_owned()]
    );
    assert!(issued.record.expire_time.is_some());
}

#[tokio::test]
async fn child_policies_must_be_subset_of_parent() {
    let h = Harness::new().await;
    let (creator, _) = h.caller_with_policy("creator", CREATOR).await;

    for policies in [vec!["root".to_owned()], vec!["someone-else".to_owned()]] {
        let result = h
            .manager
            .token_create(
                &creator,
                &ctx(),
                TokenCreateRequest {
                    policies: policies.clone(),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(result, Err(ManagerError::Invalid(_))),
            "{policies:?}: {result:?}"
        );
    }

    let inherited = h
        .manager
        .token_create(&creator, &ctx(), TokenCreateRequest::default())
        .await
        .expect("inherits the creator's policies");
    assert_eq!(
        inherited.record.policies,
        vec!["creator".to_owned(), "default".to_owned()]
    );
}

#[tokio::test]
async fn token_without_create_capability_cannot_create() {
    let h = Harness::new().await;
    let (caller, _) = h
        .caller_with_policy(
            "reader",
            r#"path "secret/data/*" { capabilities = ["read"] }"#,
        )
        .await;
    let result = h
        .manager
        .token_create(&caller, &ctx(), TokenCreateRequest::default())
        .await;
    assert!(
        matches!(result, Err(ManagerError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn every_token_may_look_itself_up() {
    let h = Harness::new().await;
    let (caller, _) = h
        .caller_with_policy("nothing", r#"path "none/*" { capabilities = ["deny"] }"#)
        .await;
    let record = h
        .manager
        .token_lookup_self(&caller, &ctx())
        .await
        .expect("lookup-self allowed");
    assert_eq!(record.accessor, caller.accessor());
}

#[tokio::test]
async fn ttl_is_capped_at_maximum() {
    let h = Harness::new().await;
    let issued = h
        .manager
        .token_create(
            &h.root,
            &ctx(),
            TokenCreateRequest {
                ttl_secs: Some(10 * 365 * 24 * 3600),
                ..Default::default()
            },
        )
        .await
        .expect("creates");
    assert_eq!(issued.record.creation_ttl_secs, 768 * 3600);
}

/// Lets a token create children, and orphans with `sudo`.
const PARENT: &str = r#"
path "auth/token/create" {
  capabilities = ["update"]
}
path "auth/token/create-orphan" {
  capabilities = ["update", "sudo"]
}
path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}
"#;

/// Creates a token as `creator` and authenticates with it.
async fn create_as(h: &Harness, creator: &Caller, request: TokenCreateRequest) -> (Caller, String) {
    let issued = h
        .manager
        .token_create(creator, &ctx(), request)
        .await
        .expect("token creates");
    let token = issued.token.expose().to_owned();
    let caller = h
        .manager
        .authenticate(Some(&token), &ctx())
        .await
        .expect("new token authenticates");
    (caller, token)
}

fn with_ttl(ttl_secs: u64) -> TokenCreateRequest {
    TokenCreateRequest {
        ttl_secs: Some(ttl_secs),
        ..Default::default()
    }
}

#[tokio::test]
async fn revoked_parent_takes_descendants_along() {
    let h = Harness::new().await;
    let (parent, _) = h.caller_with_policy("parent", PARENT).await;
    let (child, child_token) = create_as(&h, &parent, TokenCreateRequest::default()).await;
    let (_, grandchild_token) = create_as(&h, &child, TokenCreateRequest::default()).await;
    let (_, sibling_token) = create_as(&h, &parent, TokenCreateRequest::default()).await;
    let (_, orphan_token) = create_as(
        &h,
        &child,
        TokenCreateRequest {
            no_parent: true,
            ..Default::default()
        },
    )
    .await;

    h.manager
        .token_revoke_accessor(&h.root, &ctx(), child.accessor())
        .await
        .expect("revokes the child");

    for (name, token) in [("child", &child_token), ("grandchild", &grandchild_token)] {
        let result = h.manager.authenticate(Some(token), &ctx()).await;
        assert!(
            matches!(result, Err(ManagerError::PermissionDenied)),
            "{name}: {result:?}"
        );
    }
    for (name, token) in [("sibling", &sibling_token), ("orphan", &orphan_token)] {
        let result = h.manager.authenticate(Some(token), &ctx()).await;
        assert!(result.is_ok(), "{name} was revoked: {result:?}");
    }
    let revoked = h
        .audit_entries()
        .into_iter()
        .rfind(|entry| entry["operation"] == "token.revoke_accessor")
        .expect("revocation audited");
    assert_eq!(revoked["revoked_count"], 2);
}

#[tokio::test]
async fn revoke_self_revokes_children() {
    let h = Harness::new().await;
    let (parent, _) = h.caller_with_policy("parent", PARENT).await;
    let (_, child_token) = create_as(&h, &parent, TokenCreateRequest::default()).await;

    h.manager
        .token_revoke_self(&parent, &ctx())
        .await
        .expect("revokes itself");

    let result = h.manager.authenticate(Some(&child_token), &ctx()).await;
    assert!(
        matches!(result, Err(ManagerError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn child_expiry_is_capped_at_parent() {
    let h = Harness::new().await;
    h.manager
        .policy_write(&h.root, &ctx(), "parent", PARENT)
        .await
        .expect("policy");
    let (parent, _) = create_as(
        &h,
        &h.root,
        TokenCreateRequest {
            policies: vec!["parent".into()],
            ttl_secs: Some(60),
            ..Default::default()
        },
    )
    .await;
    let parent_expiry = parent.token.expire_time.expect("parent expires");

    let (child, _) = create_as(&h, &parent, with_ttl(3600)).await;
    let child_expiry = child.token.expire_time.expect("child expires");
    assert!(
        child_expiry <= parent_expiry,
        "{child_expiry} > {parent_expiry}"
    );
    assert!(
        child.token.creation_ttl_secs <= 60,
        "{}",
        child.token.creation_ttl_secs
    );

    let (by_default, _) = create_as(&h, &parent, TokenCreateRequest::default()).await;
    assert!(by_default.token.expire_time <= Some(parent_expiry));

    // An orphan has no parent to outlive, but still gets a TTL.
    let (orphan, _) = create_as(
        &h,
        &parent,
        TokenCreateRequest {
            no_parent: true,
            ..with_ttl(3600)
        },
    )
    .await;
    let orphan_expiry = orphan.token.expire_time.expect("orphan expires");
    assert!(orphan_expiry > parent_expiry);
    assert_eq!(orphan.token.creation_ttl_secs, 3600);
}

#[tokio::test]
async fn child_renewal_stops_at_parent_expiry() {
    let h = Harness::new().await;
    h.manager
        .policy_write(&h.root, &ctx(), "parent", PARENT)
        .await
        .expect("policy");
    let (parent, _) = create_as(
        &h,
        &h.root,
        TokenCreateRequest {
            policies: vec!["parent".into()],
            ttl_secs: Some(60),
            ..Default::default()
        },
    )
    .await;
    let (child, _) = create_as(&h, &parent, with_ttl(30)).await;

    let renewed = h
        .manager
        .token_renew_self(&child, &ctx(), Some(3600))
        .await
        .expect("renews");
    assert_eq!(renewed.expire_time, parent.token.expire_time);
}

#[tokio::test]
async fn huge_renew_increment_is_clamped() {
    let h = Harness::new().await;
    let (token, _) = create_as(&h, &h.root, with_ttl(3600)).await;

    let renewed = h
        .manager
        .token_renew_self(&token, &ctx(), Some(300_000_000_000))
        .await
        .expect("renews without overflow");

    let limit = token.token.created_time + time::Duration::hours(768);
    let expiry = renewed.expire_time.expect("still expires");
    assert!(expiry <= limit, "{expiry} is past {limit}");
    let stored = h
        .manager
        .authenticate(Some(&h.root_token), &ctx())
        .await
        .expect("root still works");
    assert!(stored.token.expire_time.is_none());
}

#[tokio::test]
async fn ttl_past_time_range_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let config = ManagerConfig {
        max_token_ttl: std::time::Duration::MAX,
        ..config()
    };
    let h = Harness::with_config(dir, audit_path, config).await;

    let created = h
        .manager
        .token_create(&h.root, &ctx(), with_ttl(u64::MAX))
        .await;
    assert!(
        matches!(created, Err(ManagerError::Invalid(_))),
        "{created:?}"
    );

    let (token, _) = create_as(&h, &h.root, with_ttl(3600)).await;
    let renewed = h
        .manager
        .token_renew_self(&token, &ctx(), Some(u64::MAX))
        .await;
    assert!(
        matches!(renewed, Err(ManagerError::Invalid(_))),
        "{renewed:?}"
    );
}

#[tokio::test]
async fn oversized_token_meta_is_rejected() {
    let h = Harness::new().await;
    let cases = [
        ("team".to_owned(), "x".repeat(1024 * 1024)),
        ("k".repeat(129), "v".to_owned()),
        ("team".to_owned(), "a\nb".to_owned()),
    ];
    for (key, value) in cases {
        let result = h
            .manager
            .token_create(
                &h.root,
                &ctx(),
                TokenCreateRequest {
                    meta: BTreeMap::from([(key.clone(), value.clone())]),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(result, Err(ManagerError::Invalid(_))),
            "{} byte key, {} byte value: {result:?}",
            key.len(),
            value.len()
        );
    }
}

#[tokio::test]
async fn display_name_characters_are_replaced() {
    let h = Harness::new().await;
    let (token, _) = create_as(
        &h,
        &h.root,
        TokenCreateRequest {
            display_name: Some("ci job\u{1b}[2J/42".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(token.token.display_name, "token-ci-job--2J-42");
}
