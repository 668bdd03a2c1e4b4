//! The PostgreSQL rotator against a real server (`KEYWARD_TEST_POSTGRES_URL`, an admin URL).

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use time::Duration;

use crate::{Harness, secret, service_env};

const ADMIN_SECRET: &str = "ops/postgres/admin";

async fn admin_execute(admin_url: &str, statement: String) {
    let mut connection = PgConnectOptions::from_str(admin_url)
        .expect("admin URL")
        .connect()
        .await
        .expect("admin login");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut connection)
        .await
        .expect("admin statement");
}

/// Whether `role` can log in with `password`.
async fn can_log_in(admin_url: &str, role: &str, password: &str) -> bool {
    let options = PgConnectOptions::from_str(admin_url)
        .expect("admin URL")
        .username(role)
        .password(password);
    match options.connect().await {
        Ok(mut connection) => sqlx::raw_sql("SELECT 1")
            .execute(&mut connection)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

fn unique_role(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn harness_for(admin_url: &str, path: &str, rotator: &str) -> Harness {
    let harness = Harness::new().await;
    harness.memory.put_current(ADMIN_SECRET, secret(admin_url));
    let policy = format!(
        r#"
        schedule = "monthly"
        grace = "1d"
        generator = {{ type = "password", length = 24, exclude = "'\"\\" }}
        rotator = {rotator}
        "#
    );
    harness.set_policy(path, &policy).await;
    harness
}

#[tokio::test]
async fn single_role_password_rotates() {
    let Some(admin_url) = service_env("KEYWARD_TEST_POSTGRES_URL") else {
        return;
    };
    let role = unique_role("kw_app");
    admin_execute(
        &admin_url,
        format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'initial-pw'"),
    )
    .await;
    assert!(can_log_in(&admin_url, &role, "initial-pw").await);

    let path = "team/app/postgres";
    let rotator = format!(
        "{{ type = \"postgres\", admin_url_secret = \"{ADMIN_SECRET}\", role = \"{role}\" }}"
    );
    let harness = harness_for(&admin_url, path, &rotator).await;
    harness.memory.put_current(path, secret("initial-pw"));

    let outcome = harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect("rotation");
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Finished]);
    let new_password = harness.current_value(path).expect("current");
    assert!(can_log_in(&admin_url, &role, &new_password).await);
    // One role has one password: the old one stops working at `set`.
    assert!(!can_log_in(&admin_url, &role, "initial-pw").await);
    let username = harness.memory.versions(path)[1]
        .attributes
        .get("username")
        .cloned();
    assert_eq!(username.as_deref(), Some(role.as_str()));

    // Revoking the old version must not touch the role the current version uses.
    harness.clock.advance(Duration::days(1));
    let report = harness.scheduler.run_due().await.expect("revocation");
    assert_eq!(report.revoked, 1);
    assert!(can_log_in(&admin_url, &role, &new_password).await);

    admin_execute(&admin_url, format!("DROP ROLE \"{role}\"")).await;
}

#[tokio::test]
async fn alternating_roles_overlap_during_grace() {
    let Some(admin_url) = service_env("KEYWARD_TEST_POSTGRES_URL") else {
        return;
    };
    let blue = unique_role("kw_blue");
    let green = unique_role("kw_green");
    admin_execute(
        &admin_url,
        format!("CREATE ROLE \"{blue}\" LOGIN PASSWORD 'blue-initial'"),
    )
    .await;
    admin_execute(&admin_url, format!("CREATE ROLE \"{green}\" LOGIN")).await;

    let path = "team/app/postgres-pair";
    let rotator = format!(
        "{{ type = \"postgres\", admin_url_secret = \"{ADMIN_SECRET}\", role = \"{blue}\", alternate_role = \"{green}\" }}"
    );
    let harness = harness_for(&admin_url, path, &rotator).await;
    let first = harness.memory.put_current(path, secret("blue-initial"));
    harness
        .engine
        .db()
        .set_provider_ref(path, first, &blue)
        .await
        .expect("record role");

    harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect("rotation");
    let green_password = harness.current_value(path).expect("current");
    let username = harness.memory.versions(path)[1]
        .attributes
        .get("username")
        .cloned();
    assert_eq!(username.as_deref(), Some(green.as_str()));

    // During grace both roles log in.
    assert!(can_log_in(&admin_url, &green, &green_password).await);
    assert!(can_log_in(&admin_url, &blue, "blue-initial").await);

    // After grace the old role's password is gone.
    harness.clock.advance(Duration::days(1));
    let report = harness.scheduler.run_due().await.expect("revocation");
    assert_eq!(report.revoked, 1);
    assert!(!can_log_in(&admin_url, &blue, "blue-initial").await);
    assert!(can_log_in(&admin_url, &green, &green_password).await);

    // The next rotation goes back to the first role.
    harness
        .scheduler
        .rotate_now(path, false)
        .await
        .expect("second rotation");
    let blue_password = harness.current_value(path).expect("current");
    assert!(can_log_in(&admin_url, &blue, &blue_password).await);
    assert!(can_log_in(&admin_url, &green, &green_password).await);

    admin_execute(&admin_url, format!("DROP ROLE \"{blue}\"")).await;
    admin_execute(&admin_url, format!("DROP ROLE \"{green}\"")).await;
}
