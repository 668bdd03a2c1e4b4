//! Token creation rules.

use keyward_manager::{ManagerError, TokenCreateRequest};

use crate::common::{Harness, ctx};

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
