//! Outbound notification webhooks for rotation events.
//!
//! Each event of a secret whose policy lists webhooks is POSTed as JSON to every webhook,
//! signed as described in [`crate::sign`]. Deliveries run in background tasks, retry with
//! exponential backoff, and are recorded in the rotation database (`pending`, `delivered` or
//! `failed`, with attempts and the last error). Events hold no secret values, so neither does a
//! notification.
//!
//! Not done here: deliveries still pending when the process stops are not resent after a
//! restart; their rows stay `pending`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::db::RotationDb;
use crate::events::RotationEvent;
use crate::policy::NotifySpec;
use crate::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::target::SecretSource;

/// Sends signed notifications and records their delivery.
pub struct Notifier {
    http: reqwest::Client,
    source: Arc<dyn SecretSource>,
    db: RotationDb,
    clock: Arc<dyn Clock>,
    max_attempts: u32,
    first_delay: Duration,
    tasks: Mutex<JoinSet<()>>,
}

struct Delivery {
    id: i64,
    url: String,
    signing_key_secret: String,
    body: Arc<Vec<u8>>,
}

impl Notifier {
    /// Creates a notifier that tries each delivery up to `max_attempts` times, waiting
    /// `first_delay`, then twice as long after each failure.
    pub fn new(
        db: RotationDb,
        source: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        max_attempts: u32,
        first_delay: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            source,
            db,
            clock,
            max_attempts: max_attempts.max(1),
            first_delay,
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Records and starts the delivery of `event` to every webhook in `webhooks`.
    pub async fn notify(&self, webhooks: &[NotifySpec], event: &RotationEvent) {
        if webhooks.is_empty() {
            return;
        }
        let body = match serde_json::to_vec(event) {
            Ok(body) => Arc::new(body),
            Err(error) => {
                tracing::error!(path = %event.path, %error, "failed to serialize a rotation event");
                return;
            }
        };
        let name = serde_json::to_value(&event.kind)
            .ok()
            .and_then(|value| {
                value
                    .get("event")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();

        for webhook in webhooks {
            let id = match self
                .db
                .insert_delivery(&event.path, &webhook.url, &name, self.clock.now())
                .await
            {
                Ok(id) => id,
                Err(error) => {
                    tracing::error!(path = %event.path, url = %webhook.url, %error, "failed to record a notification");
                    continue;
                }
            };
            let delivery = Delivery {
                id,
                url: webhook.url.clone(),
                signing_key_secret: webhook.signing_key_secret.clone(),
                body: body.clone(),
            };
            let task = deliver(
                self.http.clone(),
                self.source.clone(),
                self.db.clone(),
                self.clock.clone(),
                self.max_attempts,
                self.first_delay,
                delivery,
            );
            self.tasks.lock().await.spawn(task);
        }
    }

    /// Waits until every delivery started so far has succeeded or run out of attempts.
    pub async fn wait_idle(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().await);
        while tasks.join_next().await.is_some() {}
    }
}

async fn deliver(
    http: reqwest::Client,
    source: Arc<dyn SecretSource>,
    db: RotationDb,
    clock: Arc<dyn Clock>,
    max_attempts: u32,
    first_delay: Duration,
    delivery: Delivery,
) {
    let mut delay = first_delay;
    for attempt in 1..=max_attempts {
        let result = send_once(&http, source.as_ref(), &delivery).await;
        let (status, error, delivered_at) = match &result {
            Ok(()) => ("delivered", None, Some(clock.now())),
            Err(_) if attempt == max_attempts => ("failed", result.as_ref().err(), None),
            Err(_) => ("pending", result.as_ref().err(), None),
        };
        if let Err(db_error) = db
            .update_delivery(
                delivery.id,
                status,
                attempt,
                error.map(String::as_str),
                delivered_at,
            )
            .await
        {
            tracing::error!(delivery = delivery.id, error = %db_error, "failed to record a notification attempt");
        }
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(delivery = delivery.id, url = %delivery.url, attempt, %error, "notification failed");
            }
        }
        if attempt < max_attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

async fn send_once(
    http: &reqwest::Client,
    source: &dyn SecretSource,
    delivery: &Delivery,
) -> Result<(), String> {
    let key = source
        .read_current(&delivery.signing_key_secret)
        .await
        .map_err(|error| format!("reading the signing key failed: {error}"))?;
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = sign(key.expose_secret().as_bytes(), timestamp, &delivery.body);
    let response = http
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(delivery.body.as_ref().clone())
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}
