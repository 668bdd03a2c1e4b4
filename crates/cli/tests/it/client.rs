//! The `keyward-client` crate against a real `keyward` server: change notifications, the
//! OpenAI helper across key rotations (with a local fake of the chat completions endpoint),
//! and behaviour while the server is down.
//!
//! A rotation here is what it looks like to a client: a new current version of the secret,
//! written through the API, while the fake provider accepts the new key and later rejects the
//! old one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use keyward_client::openai::OpenAiClient;
use keyward_client::{BreakerConfig, ClientBuilder, WatchEvent};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{InitDir, Server, random_hex, temp_dir};

/// Time within which a client must be on a new key after a rotation.
const SWITCH_DEADLINE: Duration = Duration::from_secs(1);

/// A writer of secrets, policies and tokens for async tests.
struct Admin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin {
    fn new(server: &Server, token: &str) -> Admin {
        let pem = std::fs::read(&server.ca_file).expect("read the CA file");
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(certificate.expect("valid PEM"))
                .expect("valid CA certificate");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Admin {
            http: reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .build()
                .expect("build reqwest client"),
            url: server.url.clone(),
            token: token.to_owned(),
        }
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("request to {path} failed: {error}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path} returned {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Writes a new version and returns its number.
    async fn put(&self, path: &str, data: Value) -> u64 {
        let body = self
            .request(
                reqwest::Method::PUT,
                &format!("secret/data/{path}"),
                json!({ "data": data }),
            )
            .await;
        body["data"]["version"].as_u64().expect("version number")
    }

    /// Creates a policy and a token that has only it.
    async fn token_with_policy(&self, name: &str, policy: &str) -> String {
        self.request(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": policy }),
        )
        .await;
        let body = self
            .request(
                reqwest::Method::POST,
                "auth/token/create",
                json!({ "policies": [name] }),
            )
            .await;
        body["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned()
    }
}

fn client_for(server: &Server, addr: &str, token: &str) -> ClientBuilder {
    ClientBuilder::new()
        .addr(addr)
        .token(token)
        .ca_file(&server.ca_file)
}

/// Waits for the watch task's first `Connected` event.
async fn wait_connected(events: &mut tokio::sync::broadcast::Receiver<WatchEvent>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(events.recv().await, Ok(WatchEvent::Connected)) {}
    })
    .await
    .expect("change notifications connect within 10 s");
}

/// A fake of OpenAI's chat completions endpoint that accepts only the keys in `valid`.
#[derive(Default)]
struct FakeOpenAi {
    valid: Mutex<Vec<String>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl FakeOpenAi {
    fn allow(&self, key: &str) {
        self.valid.lock().expect("lock").push(key.to_owned());
    }

    fn revoke(&self, key: &str) {
        self.valid.lock().expect("lock").retain(|k| k != key);
    }
}

async fn chat_completions(
    State(fake): State<Arc<FakeOpenAi>>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let valid = key.is_some_and(|key| fake.valid.lock().expect("lock").iter().any(|k| k == key));
    if !valid {
        fake.rejected.fetch_add(1, Ordering::Relaxed);
        // OpenAI's error body; like OpenAI, it does not echo the key back.
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }})),
        );
    }
    fake.accepted.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::OK,
        Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": request["model"],
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": "pong" },
                "finish_reason": "stop",
            }],
        })),
    )
}

/// Starts the fake on a loopback port and returns its base URL (`http://127.0.0.1:PORT/v1`).
async fn start_fake_openai(fake: Arc<FakeOpenAi>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake OpenAI server");
    let addr = listener.local_addr().expect("local address");
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(fake);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// Outcomes of the request loop.
#[derive(Default)]
struct LoopStats {
    total: u64,
    failures: u64,
    consecutive: u64,
    max_consecutive: u64,
    errors: Vec<String>,
}

/// A buffer that collects the test's own log output.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// Runs `test` on a single-threaded runtime with the crate's logs captured at trace level,
/// and returns the captured log text.
fn with_captured_logs(test: impl std::future::Future<Output = ()>) -> String {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build runtime")
        .block_on(test);
    logs.text()
}

#[test]
fn openai_client_follows_three_rotations() {
    let server = Server::dev();
    let keys: Vec<String> = (1..=4)
        .map(|n| format!("kw-canary-openai-{n}-{}", random_hex(8)))
        .collect();
    let debug_output = Arc::new(Mutex::new(String::new()));
    let seen_debug = Arc::clone(&debug_output);
    let server_ref = &server;
    let keys_ref = &keys;

    let logs = with_captured_logs(async move {
        let server = server_ref;
        let keys = keys_ref;
        let admin = Admin::new(server, &server.root_token);
        let mut version = admin.put("app/openai", json!({ "api_key": keys[0] })).await;

        let fake = Arc::new(FakeOpenAi::default());
        fake.allow(&keys[0]);
        let base_url = start_fake_openai(Arc::clone(&fake)).await;

        let keyward = client_for(server, &server.url, &server.root_token)
            .build()
            .expect("client builds");
        let mut events = keyward.subscribe();
        keyward.watch("app/").expect("watch starts");
        wait_connected(&mut events).await;
        let openai = OpenAiClient::builder(keyward.clone(), "app/openai", "api_key")
            .base_url(&base_url)
            .build()
            .await
            .expect("OpenAI client builds");
        assert_eq!(openai.key_version(), version);

        // The request loop runs through all three rotations.
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LoopStats::default()));
        let requests = {
            let (openai, stop, stats) = (openai.clone(), Arc::clone(&stop), Arc::clone(&stats));
            tokio::spawn(async move {
                let request = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "ping" }] });
                while !stop.load(Ordering::Relaxed) {
                    let outcome = openai.chat_completions(&request).await;
                    let ok = matches!(&outcome, Ok(response) if response.status().is_success());
                    {
                        let mut stats = stats.lock().expect("lock");
                        stats.total += 1;
                        if ok {
                            stats.consecutive = 0;
                        } else {
                            stats.failures += 1;
                            stats.consecutive += 1;
                            stats.max_consecutive = stats.max_consecutive.max(stats.consecutive);
                            stats.errors.push(match outcome {
                                Ok(response) => format!("status {}", response.status()),
                                Err(error) => format!("{error} / {error:?}"),
                            });
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Two rotations with a grace period: both keys work for a while, then the old one
        // is revoked. The third is an emergency rotation: the old key is revoked at once.
        for (round, grace) in [
            (1, Some(Duration::from_millis(700))),
            (2, Some(Duration::from_millis(700))),
            (3, None),
        ] {
            let (old, new) = (&keys[round - 1], &keys[round]);
            fake.allow(new);
            let started = Instant::now();
            version = admin.put("app/openai", json!({ "api_key": new })).await;
            if grace.is_none() {
                fake.revoke(old);
            }

            while openai.key_version() != version {
                assert!(
                    started.elapsed() < SWITCH_DEADLINE,
                    "rotation {round}: the client was not on version {version} within {SWITCH_DEADLINE:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Some(grace) = grace {
                tokio::time::sleep(grace).await;
                fake.revoke(old);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;

            let direct = reqwest::Client::new()
                .post(format!("{base_url}/chat/completions"))
                .bearer_auth(old)
                .json(&json!({ "model": "m", "messages": [] }))
                .send()
                .await
                .expect("direct request to the fake");
            assert_eq!(
                direct.status(),
                401,
                "rotation {round}: the old key must be rejected after revocation"
            );
        }

        stop.store(true, Ordering::Relaxed);
        requests.await.expect("request loop ends");
        let stats = std::mem::take(&mut *stats.lock().expect("lock"));
        eprintln!(
            "request loop: {} requests, {} failed, at most {} in a row",
            stats.total, stats.failures, stats.max_consecutive
        );
        assert!(stats.total > 50, "only {} requests ran", stats.total);
        assert!(
            stats.max_consecutive <= 1,
            "{} requests failed in a row ({} failures of {}): {:?}",
            stats.max_consecutive,
            stats.failures,
            stats.total,
            stats.errors
        );
        assert!(fake.accepted.load(Ordering::Relaxed) >= stats.total - stats.failures);

        let read = keyward.get("app/openai").await;
        let field = keyward.get_field("app/openai", "api_key").await;
        let shown = format!(
            "{openai:?} {keyward:?} {:?} {read:?} {field:?}",
            stats.errors
        );
        seen_debug.lock().expect("lock").push_str(&shown);
    });

    let debug_output = debug_output.lock().expect("lock").clone();
    assert!(
        logs.contains("switched to a new OpenAI key"),
        "the client's logs were not captured:\n{logs}"
    );
    for key in &keys {
        assert!(
            !logs.contains(key.as_str()),
            "a key appears in the client's logs"
        );
        assert!(
            !debug_output.contains(key.as_str()),
            "a key appears in Debug output: {debug_output}"
        );
        assert!(
            !server.stderr().contains(key.as_str()),
            "a key appears in the server's log"
        );
        let audit = std::fs::read_to_string(server.audit_log()).expect("read the audit log");
        assert!(
            !audit.contains(key.as_str()),
            "a key appears in the audit log"
        );
    }
}

#[test]
fn watch_reports_only_readable_secrets() {
    let server = Server::dev();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let admin = Admin::new(&server, &server.root_token);
            let token = admin
                .token_with_policy(
                    "app-reader",
                    r#"path "secret/data/app/*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["read"] }"#,
                )
                .await;
            let client = client_for(&server, &server.url, &token)
                .build()
                .expect("client builds");
            let mut events = client.subscribe();
            client.watch("").expect("watch starts");
            wait_connected(&mut events).await;

            let written_at = Instant::now();
            admin
                .put("other/hidden", json!({ "k": "kw-canary-hidden" }))
                .await;
            let version = admin.put("app/visible", json!({ "k": "v" })).await;

            let change = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    if let Ok(WatchEvent::Changed(change)) = events.recv().await {
                        return change;
                    }
                }
            })
            .await
            .expect("a change event arrives");
            assert!(written_at.elapsed() < Duration::from_secs(1));
            assert_eq!(
                change.path, "app/visible",
                "the first event must be the readable secret"
            );
            assert_eq!(change.version, Some(version));
            assert_eq!(change.kind, "write");
        });
}

#[test]
fn change_invalidates_cached_secret() {
    let server = Server::dev();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let admin = Admin::new(&server, &server.root_token);
            admin
                .put("app/db", json!({ "password": "one", "port": 5432 }))
                .await;
            let client = client_for(&server, &server.url, &server.root_token)
                .cache_ttl(Duration::from_secs(3600))
                .build()
                .expect("client builds");
            let mut events = client.subscribe();
            client.watch("app/").expect("watch starts");
            wait_connected(&mut events).await;

            let first = client.get("app/db").await.expect("first read");
            assert_eq!(first.field("password").map(|v| v.expose()), Some("one"));
            #[derive(serde::Deserialize)]
            struct Db {
                port: u16,
            }
            let typed: Db = client.get_json("app/db").await.expect("typed read");
            assert_eq!(typed.port, 5432);

            let written_at = Instant::now();
            let version = admin.put("app/db", json!({ "password": "two" })).await;
            loop {
                let secret = client.get("app/db").await.expect("read");
                if secret.version() == version {
                    assert_eq!(secret.field("password").map(|v| v.expose()), Some("two"));
                    break;
                }
                assert!(
                    written_at.elapsed() < SWITCH_DEADLINE,
                    "the cached copy was still served {SWITCH_DEADLINE:?} after the change"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }

            let missing = client
                .get_field("app/db", "nope")
                .await
                .expect_err("no such field");
            assert!(missing.to_string().contains("nope"), "{missing}");
        });
}

/// A TCP proxy that counts the connections it accepts and forwards them to `upstream`, or
/// closes them when the upstream is down.
struct CountingProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    connections: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let proxy = CountingProxy {
            addr: listener.local_addr().expect("local address"),
            upstream: Arc::new(Mutex::new(upstream)),
            connections: Arc::new(AtomicU64::new(0)),
        };
        let (upstream, connections) = (Arc::clone(&proxy.upstream), Arc::clone(&proxy.connections));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::Relaxed);
                let target = *upstream.lock().expect("lock");
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        proxy
    }
}

#[test]
fn client_rides_out_server_outage() {
    let dir = temp_dir();
    let init = InitDir::create(dir.path(), "data", "outage passphrase 1");
    let server = Server::start(&init, dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let (proxy, client, fetched_at) = runtime.block_on(async {
        let admin = Admin::new(&server, &init.root_token);
        admin
            .put("app/db", json!({ "password": "kw-canary-outage-1" }))
            .await;

        let proxy = CountingProxy::start(server.addr).await;
        let client = client_for(
            &server,
            &format!("https://{}", proxy.addr),
            &init.root_token,
        )
        .cache_ttl(Duration::from_millis(300))
        .max_stale(Duration::from_millis(2500))
        .breaker(BreakerConfig {
            failure_threshold: 2,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
        })
        .build()
        .expect("client builds");
        let mut events = client.subscribe();
        client.watch("app/").expect("watch starts");
        wait_connected(&mut events).await;
        client
            .get("app/db")
            .await
            .expect("read while the server is up");
        (proxy, client, Instant::now())
    });

    server.crash();
    let during_outage = runtime.block_on(async {
        let connections_before = proxy.connections.load(Ordering::Relaxed);
        let mut reads = 0u64;
        let mut first_failure = None;
        while fetched_at.elapsed() < Duration::from_millis(4000) {
            reads += 1;
            match client.get("app/db").await {
                Ok(secret) => {
                    assert!(
                        fetched_at.elapsed() <= Duration::from_millis(2500),
                        "a value older than the staleness limit was served"
                    );
                    assert_eq!(
                        secret.field("password").map(|v| v.expose()),
                        Some("kw-canary-outage-1")
                    );
                }
                Err(error) => {
                    assert!(error.is_unavailable(), "{error}");
                    assert!(!format!("{error} {error:?}").contains("kw-canary"));
                    first_failure.get_or_insert(fetched_at.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first_failure = first_failure.expect("reads fail once the cached value is too old");
        assert!(
            first_failure >= Duration::from_millis(2300),
            "stale reads stopped after {first_failure:?}, before the 2.5 s limit"
        );
        let connections = proxy.connections.load(Ordering::Relaxed) - connections_before;
        (reads, connections)
    });
    let (reads, connections) = during_outage;
    eprintln!("outage: {reads} reads, {connections} connection attempts");
    assert!(reads > 100, "only {reads} reads ran during the outage");
    assert!(
        connections <= 25,
        "{connections} connection attempts for {reads} reads while the server was down"
    );

    let restarted = Server::start(&init, dir.path());
    runtime.block_on(async {
        let mut events = client.subscribe();
        *proxy.upstream.lock().expect("lock") = restarted.addr;
        let admin = Admin::new(&restarted, &init.root_token);
        let version = admin.put("app/db", json!({ "password": "after" })).await;

        let started = Instant::now();
        loop {
            if let Ok(secret) = client.get("app/db").await
                && secret.version() == version
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the client did not recover within 5 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(client.is_server_available());

        // The change notifications reconnect on their own too.
        wait_connected(&mut events).await;
        let written_at = Instant::now();
        let version = admin.put("app/db", json!({ "password": "again" })).await;
        let change = tokio::time::timeout(SWITCH_DEADLINE, async {
            loop {
                if let Ok(WatchEvent::Changed(change)) = events.recv().await {
                    return change;
                }
            }
        })
        .await
        .expect("a change notification arrives after the reconnection");
        assert_eq!(change.version, Some(version));
        assert!(written_at.elapsed() < SWITCH_DEADLINE);
    });
    assert!(!restarted.stderr().contains("kw-canary"));
}

#[test]
fn unauthorized_response_refreshes_key_once() {
    let server = Server::dev();
    let old = format!("kw-canary-old-{}", random_hex(8));
    let new = format!("kw-canary-new-{}", random_hex(8));
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let admin = Admin::new(&server, &server.root_token);
            admin.put("app/openai", json!({ "api_key": old })).await;
            let fake = Arc::new(FakeOpenAi::default());
            fake.allow(&old);
            let base_url = start_fake_openai(Arc::clone(&fake)).await;

            // Notifications follow another folder, so only the 401 can reveal the rotation.
            let keyward = client_for(&server, &server.url, &server.root_token)
                .build()
                .expect("client builds");
            let mut events = keyward.subscribe();
            keyward.watch("elsewhere/").expect("watch starts");
            wait_connected(&mut events).await;
            let openai = OpenAiClient::builder(keyward, "app/openai", "api_key")
                .base_url(&base_url)
                .build()
                .await
                .expect("OpenAI client builds");
            let request = json!({ "model": "m", "messages": [] });
            let first = openai.chat_completions(&request).await.expect("first call");
            assert_eq!(first.status(), 200);

            let version = admin.put("app/openai", json!({ "api_key": new })).await;
            fake.allow(&new);
            fake.revoke(&old);
            let rejected_before = fake.rejected.load(Ordering::Relaxed);

            let retried = openai
                .chat_completions(&request)
                .await
                .expect("second call");
            assert_eq!(
                retried.status(),
                200,
                "the call is retried with the new key"
            );
            assert_eq!(openai.key_version(), version);
            assert_eq!(
                fake.rejected.load(Ordering::Relaxed) - rejected_before,
                1,
                "exactly one request went out with the revoked key"
            );

            // A key that is rejected even after a refresh is reported, not retried forever.
            fake.revoke(&new);
            let refused = openai.chat_completions(&request).await.expect("third call");
            assert_eq!(refused.status(), 401);
            assert_eq!(fake.rejected.load(Ordering::Relaxed) - rejected_before, 2);
        });
    assert!(!server.stderr().contains("kw-canary"));
}

#[test]
fn watch_stream_carries_no_values() {
    let server = Server::dev();
    let value = format!("kw-canary-stream-{}", random_hex(8));
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let admin = Admin::new(&server, &server.root_token);
            let mut response = admin
                .http
                .get(format!("{}/v1/sys/keyward/watch?prefix=app/", server.url))
                .header("X-Vault-Token", &server.root_token)
                .send()
                .await
                .expect("open the stream");
            assert_eq!(response.status(), 200);
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                content_type.starts_with("text/event-stream"),
                "{content_type}"
            );

            let mut text = String::new();
            while !text.contains("event: ready") {
                let chunk = response.chunk().await.expect("read").expect("stream open");
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            let version = admin.put("app/streamed", json!({ "k": value })).await;
            let expected = format!("\"version\":{version}");
            tokio::time::timeout(Duration::from_secs(2), async {
                while !text.contains(&expected) {
                    let chunk = response.chunk().await.expect("read").expect("stream open");
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
            })
            .await
            .expect("the change arrives within 2 s");
            assert!(text.contains("\"path\":\"app/streamed\""), "{text}");
            assert!(
                !text.contains(&value),
                "the stream carried a secret value: {text}"
            );

            let anonymous = admin
                .http
                .get(format!("{}/v1/sys/keyward/watch", server.url))
                .send()
                .await
                .expect("request without a token");
            assert_eq!(anonymous.status(), 403);
        });
}
