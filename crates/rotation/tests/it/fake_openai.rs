//! A local fake of the OpenAI endpoints the rotator uses: create a service-account key, list
//! models, delete a project key. Deleted keys are rejected with 401, as OpenAI does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

pub(crate) const ADMIN_KEY: &str = "sk-admin-test-key";
pub(crate) const PROJECT: &str = "proj_test";
pub(crate) const SERVICE_ACCOUNT: &str = "svc_acct_test";

#[derive(Clone, Default)]
pub(crate) struct FakeOpenAi {
    /// Key value → (key id, deleted).
    keys: Arc<Mutex<HashMap<String, (String, bool)>>>,
    next_id: Arc<Mutex<u32>>,
    pub(crate) base_url: String,
}

impl FakeOpenAi {
    pub(crate) async fn start() -> Self {
        let mut fake = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        fake.base_url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .route(
                "/v1/organization/projects/{project}/service_accounts/{account}/api_keys",
                post(create_key),
            )
            .route(
                "/v1/organization/projects/{project}/api_keys/{key_id}",
                delete(delete_key),
            )
            .route("/v1/models", get(list_models))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake OpenAI server");
        });
        fake
    }

    /// Adds a key as if created in the OpenAI dashboard; returns its value.
    pub(crate) fn seed_key(&self, id: &str, value: &str) {
        self.keys
            .lock()
            .expect("keys lock")
            .insert(value.to_owned(), (id.to_owned(), false));
    }

    /// Calls `GET /v1/models` with `key`, as an application would; returns the HTTP status.
    pub(crate) async fn models_status(&self, key: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("{}/v1/models", self.base_url))
            .bearer_auth(key)
            .send()
            .await
            .expect("request to fake OpenAI")
            .status()
            .as_u16()
    }

    pub(crate) fn live_keys(&self) -> usize {
        self.keys
            .lock()
            .expect("keys lock")
            .values()
            .filter(|(_, deleted)| !deleted)
            .count()
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn unauthorized() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
        ),
    )
}

async fn create_key(
    State(fake): State<FakeOpenAi>,
    Path((project, account)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if bearer(&headers).as_deref() != Some(ADMIN_KEY) {
        return unauthorized();
    }
    if project != PROJECT || account != SERVICE_ACCOUNT {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "not found"}})),
        );
    }
    let number = {
        let mut next = fake.next_id.lock().expect("id lock");
        *next += 1;
        *next
    };
    let id = format!("key_{number:04}");
    let value = format!("sk-svcacct-{}", uuid::Uuid::new_v4().simple());
    fake.seed_key(&id, &value);
    (
        StatusCode::OK,
        Json(json!({
            "object": "organization.project.service_account.api_key",
            "id": id,
            "name": body.get("name").cloned().unwrap_or(Value::Null),
            "created_at": 1_700_000_000,
            "value": value,
            "expires_at": null,
        })),
    )
}

async fn delete_key(
    State(fake): State<FakeOpenAi>,
    Path((project, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if bearer(&headers).as_deref() != Some(ADMIN_KEY) {
        return unauthorized();
    }
    if project != PROJECT {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "not found"}})),
        );
    }
    let mut keys = fake.keys.lock().expect("keys lock");
    match keys
        .values_mut()
        .find(|(id, deleted)| *id == key_id && !*deleted)
    {
        Some(entry) => {
            entry.1 = true;
            (
                StatusCode::OK,
                Json(
                    json!({"object": "organization.project.api_key.deleted", "id": key_id, "deleted": true}),
                ),
            )
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "no such key"}})),
        ),
    }
}

async fn list_models(
    State(fake): State<FakeOpenAi>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let Some(key) = bearer(&headers) else {
        return unauthorized();
    };
    let live = fake
        .keys
        .lock()
        .expect("keys lock")
        .get(&key)
        .is_some_and(|(_, deleted)| !deleted);
    if !live {
        return unauthorized();
    }
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})),
    )
}
