//! The webhook rotator and notification webhooks against a local receiver that checks
//! signatures.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use keyward_rotation::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use serde_json::Value;
use time::Duration;

use crate::{Harness, secret};

const PATH: &str = "team/shop/payment-webhook";
const SIGNING_KEY: &str = "hook-signing-key-for-tests";

#[derive(Default)]
struct Received {
    installed: Option<String>,
    verified: u32,
    revoked: Vec<u64>,
    notifications: Vec<Value>,
    notify_calls: u32,
    bad_signatures: u32,
}

#[derive(Clone)]
struct Receiver {
    state: Arc<Mutex<Received>>,
    base_url: String,
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(Received::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .route("/install", post(install))
            .route("/verify", post(verify_credential))
            .route("/revoke", post(revoke))
            .route("/notify", post(notify))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("webhook receiver");
        });
        Self { state, base_url }
    }

    fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.state.lock().expect("receiver lock")
    }
}

type Shared = State<Arc<Mutex<Received>>>;

/// Checks the signature headers; returns the JSON body if they are valid.
fn checked(state: &Mutex<Received>, headers: &HeaderMap, body: &Bytes) -> Option<Value> {
    let timestamp: i64 = headers.get(TIMESTAMP_HEADER)?.to_str().ok()?.parse().ok()?;
    let signature = headers.get(SIGNATURE_HEADER)?.to_str().ok()?;
    let fresh = (time::OffsetDateTime::now_utc().unix_timestamp() - timestamp).abs() < 300;
    if !fresh || !verify(SIGNING_KEY.as_bytes(), timestamp, body, signature) {
        state.lock().expect("receiver lock").bad_signatures += 1;
        return None;
    }
    serde_json::from_slice(body).ok()
}

async fn install(State(state): Shared, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(json) = checked(&state, &headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    let value = json["value"].as_str().map(str::to_owned);
    state.lock().expect("receiver lock").installed = value;
    StatusCode::NO_CONTENT
}

async fn verify_credential(State(state): Shared, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(json) = checked(&state, &headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    let mut received = state.lock().expect("receiver lock");
    if received.installed.as_deref() == json["value"].as_str() {
        received.verified += 1;
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    }
}

async fn revoke(State(state): Shared, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(json) = checked(&state, &headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    let version = json["version"].as_u64().unwrap_or(0);
    state.lock().expect("receiver lock").revoked.push(version);
    StatusCode::OK
}

/// Fails the very first notification, so that the retry path runs.
async fn notify(State(state): Shared, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(json) = checked(&state, &headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    let mut received = state.lock().expect("receiver lock");
    received.notify_calls += 1;
    if received.notify_calls == 1 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    received.notifications.push(json);
    StatusCode::OK
}

async fn setup(with_notify: bool) -> (Harness, Receiver) {
    let receiver = Receiver::start().await;
    let harness = Harness::new().await;
    harness
        .memory
        .put_current("ops/hooks/signing", secret(SIGNING_KEY));
    harness.memory.put_current(PATH, secret("whsec-initial"));
    let base = &receiver.base_url;
    let notify = if with_notify {
        format!("[[notify]]\nurl = \"{base}/notify\"\nsigning_key_secret = \"ops/hooks/signing\"\n")
    } else {
        String::new()
    };
    let policy = format!(
        r#"
        schedule = "weekly"
        grace = "12h"
        generator = {{ type = "random", prefix = "whsec-", length = 32 }}
        rotator = {{ type = "webhook", url = "{base}/install", verify_url = "{base}/verify", revoke_url = "{base}/revoke", signing_key_secret = "ops/hooks/signing" }}
        {notify}
        "#
    );
    harness.set_policy(PATH, &policy).await;
    (harness, receiver)
}

#[tokio::test]
async fn webhook_rotator_installs_verifies_revokes() {
    let (harness, receiver) = setup(false).await;

    harness.clock.advance(Duration::weeks(1));
    let report = harness.scheduler.run_due().await.expect("rotation");
    assert_eq!(report.finished, 1, "{report:?}");
    let current = harness.current_value(PATH).expect("current");
    assert!(current.starts_with("whsec-"));
    {
        let received = receiver.received();
        assert_eq!(received.installed.as_deref(), Some(current.as_str()));
        assert_eq!(received.verified, 1);
        assert!(received.revoked.is_empty());
        assert_eq!(received.bad_signatures, 0);
    }

    harness.clock.advance(Duration::hours(12));
    let report = harness.scheduler.run_due().await.expect("revocation");
    assert_eq!(report.revoked, 1);
    assert_eq!(receiver.received().revoked, [1]);
}

#[tokio::test]
async fn rejected_verification_keeps_current() {
    let (harness, receiver) = setup(false).await;
    // The service refuses the new credential: `verify` returns 403 because `install` went to a
    // path that does not store it.
    let base = &receiver.base_url;
    let policy = format!(
        r#"
        schedule = "weekly"
        grace = "12h"
        generator = {{ type = "random" }}
        rotator = {{ type = "webhook", url = "{base}/revoke", verify_url = "{base}/verify", signing_key_secret = "ops/hooks/signing" }}
        "#
    );
    harness.set_policy(PATH, &policy).await;

    let outcome = harness
        .scheduler
        .rotate_now(PATH, false)
        .await
        .expect("attempt");
    assert_eq!(outcome.runs, [keyward_rotation::RunResult::Retrying]);
    assert_eq!(
        harness.current_value(PATH).as_deref(),
        Some("whsec-initial")
    );
    let status = harness
        .engine
        .status(PATH)
        .await
        .expect("status")
        .expect("policy");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("403")),
        "{:?}",
        status.last_error
    );
}

#[tokio::test]
async fn notifications_are_signed_retried_recorded() {
    let (harness, receiver) = setup(true).await;

    harness.clock.advance(Duration::weeks(1));
    harness.scheduler.run_due().await.expect("rotation");
    harness.engine.notifier().wait_idle().await;

    let current = harness.current_value(PATH).expect("current");
    let events: Vec<String> = {
        let received = receiver.received();
        assert_eq!(received.bad_signatures, 0);
        for notification in &received.notifications {
            assert!(
                !notification.to_string().contains(&current),
                "a notification carried the value"
            );
        }
        received
            .notifications
            .iter()
            .map(|n| n["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for expected in [
        "started",
        "pending_created",
        "installed",
        "tested",
        "finished",
    ] {
        assert!(
            events.iter().any(|event| event == expected),
            "{expected} missing from {events:?}"
        );
    }

    let deliveries = harness
        .engine
        .db()
        .deliveries(PATH)
        .await
        .expect("deliveries");
    assert_eq!(deliveries.len(), 5);
    assert!(
        deliveries
            .iter()
            .all(|delivery| delivery.status == "delivered"),
        "{deliveries:?}"
    );
    let retried = deliveries
        .iter()
        .filter(|delivery| delivery.attempts == 2)
        .count();
    assert_eq!(retried, 1, "{deliveries:?}");
}
