//! Secret rotation through the real binary. Policies are set with `keyward rotation set`, and
//! `keyward rotate` runs with a grace period. The `key compromised` route runs an emergency
//! rotation against a local fake of the OpenAI admin API. The server is killed with SIGKILL
//! while a webhook rotator's step hangs.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::{InitDir, Output, Server, keyward, random_hex, temp_dir};

#[allow(dead_code)]
#[path = "../../../rotation/tests/it/fake_openai.rs"]
mod fake_openai;

use fake_openai::{ADMIN_KEY, FakeOpenAi, PROJECT, SERVICE_ACCOUNT};

/// Engine settings for tests: a one-second tick, no jitter, and a short lease so that a
/// restarted server takes over a killed one's rotation within seconds.
const ROTATION_SETTINGS: &str = "
[rotation]
tick_interval_secs = 1
jitter_window_secs = 0
step_timeout_secs = 3
lease_secs = 6
";

fn assert_ok(output: &Output, case: &str) {
    assert!(output.success(), "{case} failed:\n{output}");
}

/// Makes a data dir whose configuration has [`ROTATION_SETTINGS`], and starts its server.
fn start_server(parent: &Path) -> (InitDir, Server) {
    let init = InitDir::create(parent, "data", &random_hex(16));
    let mut config = std::fs::read_to_string(&init.config).expect("read keyward.toml");
    config.push_str(ROTATION_SETTINGS);
    std::fs::write(&init.config, config).expect("write keyward.toml");
    let server = Server::start(&init, parent);
    (init, server)
}

fn read_value(server: &Server, path: &str, version: Option<u64>) -> (u16, Option<String>) {
    let query = version.map_or(String::new(), |v| format!("?version={v}"));
    let response = server
        .http()
        .get(&format!("secret/data/{path}{query}"), &server.root_token);
    let value = response
        .json()
        .pointer("/data/data/value")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (response.status, value)
}

fn rotation_status(server: &Server, path: &str) -> Value {
    let output = server.cli(
        &server.root_token,
        &["rotation", "status", path, "--format", "json"],
    );
    assert_ok(&output, "rotation status");
    output.json()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write test file");
    file.display().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Audit entries (the `entry` of each line) written after line `from`.
fn audit_entries(server: &Server, from: usize) -> Vec<Value> {
    server.audit_lines()[from..]
        .iter()
        .map(|line| line["entry"].clone())
        .collect()
}

#[test]
fn rotate_keeps_old_version_during_grace() {
    let dir = temp_dir();
    let (_init, server) = start_server(dir.path());
    let token = server.root_token.clone();
    let http = server.http();
    http.write_secret("app/api-key", &token, &json!({ "value": "sk-initial" }));
    let premature = server.cli(&token, &["rotate", "app/api-key"]);
    assert!(
        !premature.success(),
        "rotate without a policy:\n{premature}"
    );
    assert!(
        premature.stderr.contains("no rotation policy")
            && premature.stderr.contains("keyward rotation set"),
        "{premature}"
    );

    let output = server.cli(
        &token,
        &[
            "rotation",
            "set",
            "app/api-key",
            "--schedule",
            "monthly",
            "--grace",
            "4s",
            "--generator",
            "random",
            "--prefix",
            "sk-",
            "--length",
            "32",
        ],
    );
    assert_ok(&output, "rotation set");
    let shown = server.cli(
        &token,
        &["rotation", "show", "app/api-key", "--format", "json"],
    );
    assert_ok(&shown, "rotation show");
    assert_eq!(shown.json()["schedule"], "monthly");
    assert_eq!(shown.json()["generator"]["prefix"], "sk-");

    let rotated = server.cli(&token, &["rotate", "app/api-key", "--format", "json"]);
    assert_ok(&rotated, "rotate");
    assert_eq!(rotated.json()["result"], "finished");
    assert_eq!(rotated.json()["current_version"], 2);

    let (status, current) = read_value(&server, "app/api-key", None);
    assert_eq!(status, 200);
    let current = current.expect("current value");
    assert!(current.starts_with("sk-"), "generated key has the prefix");
    assert_eq!(current.len(), 3 + 32);
    assert_ne!(current, "sk-initial");

    // During the grace period the old version is readable by number.
    let (status, old) = read_value(&server, "app/api-key", Some(1));
    assert_eq!(status, 200);
    assert_eq!(old.as_deref(), Some("sk-initial"));
    let state = rotation_status(&server, "app/api-key");
    assert_eq!(state["versions"]["1"], "previous");
    assert_eq!(state["versions"]["2"], "current");
    assert_eq!(state["pending_revocations"][0]["version"], 1);

    // After it, reads of the old version are refused with 404, as for a destroyed version.
    std::thread::sleep(Duration::from_secs(5));
    let (status, old) = read_value(&server, "app/api-key", Some(1));
    assert_eq!(status, 404);
    assert_eq!(old, None);
    let (_, still) = read_value(&server, "app/api-key", None);
    assert_eq!(still.as_deref(), Some(current.as_str()));

    // The scheduler revokes it soon after the deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rotation_status(&server, "app/api-key")["versions"]["1"] != "revoked" {
        assert!(Instant::now() < deadline, "version 1 was not revoked");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A policy declared in keyward.toml is applied at start, and a restart with the same
/// policy leaves its due time where it was.
#[test]
fn configured_policy_keeps_due_time_across_restart() {
    let dir = temp_dir();
    let init = InitDir::create(dir.path(), "data", &random_hex(16));
    let mut config = std::fs::read_to_string(&init.config).expect("read keyward.toml");
    config.push_str(ROTATION_SETTINGS);
    config.push_str(
        "[rotation.policies.\"app/configured\"]\nschedule = \"daily\"\ngrace = \"1h\"\n\
         [rotation.policies.\"app/configured\".generator]\ntype = \"random\"\nlength = 32\n",
    );
    std::fs::write(&init.config, config).expect("write keyward.toml");

    let server = Server::start(&init, dir.path());
    let shown = server.cli(
        &server.root_token,
        &["rotation", "show", "app/configured", "--format", "json"],
    );
    assert_ok(&shown, "rotation show");
    assert_eq!(shown.json()["schedule"], "daily");
    let due = rotation_status(&server, "app/configured")["next_due"].clone();
    assert!(due.is_string(), "a due time: {due}");
    drop(server);

    // Later than the first start, so a re-applied policy would count a new period from now.
    std::thread::sleep(Duration::from_millis(1100));
    let server = Server::start(&init, dir.path());
    let again = rotation_status(&server, "app/configured")["next_due"].clone();
    assert_eq!(again, due, "the restart kept the due time");
}

#[test]
fn rotate_needs_rotate_capability() {
    let dir = temp_dir();
    let (_init, server) = start_server(dir.path());
    let token = server.root_token.clone();
    let http = server.http();
    http.write_secret("app/api-key", &token, &json!({ "value": "sk-initial" }));
    let set = server.cli(
        &token,
        &[
            "rotation",
            "set",
            "app/api-key",
            "--schedule",
            "daily",
            "--grace",
            "1h",
        ],
    );
    assert_ok(&set, "rotation set");

    let policy = json!({ "policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }" });
    let written = http.put("sys/policies/acl/reader", &token, &policy);
    assert_eq!(written.status, 204, "{written:?}");
    let created = http.request(
        "POST",
        "auth/token/create",
        Some(&token),
        Some(&json!({ "policies": ["reader"] })),
    );
    let reader = created.json()["auth"]["client_token"]
        .as_str()
        .expect("client token")
        .to_owned();

    // A policy decides the secret's future values, so `rotate` alone may run rotations but not
    // set a policy; `rotate` with `update` may set a plain one, but not one whose webhook reads
    // another secret.
    let make_token = |name: &str, capabilities: &str| {
        let acl = json!({
            "policy": format!("path \"secret/data/app/*\" {{ capabilities = [{capabilities}] }}")
        });
        let written = http.put(&format!("sys/policies/acl/{name}"), &token, &acl);
        assert_eq!(written.status, 204, "{written:?}");
        let created = http.request(
            "POST",
            "auth/token/create",
            Some(&token),
            Some(&json!({ "policies": [name] })),
        );
        created.json()["auth"]["client_token"]
            .as_str()
            .expect("client token")
            .to_owned()
    };
    let rotate_only = make_token("rotate-only", "\"rotate\"");
    let rotator = make_token("rotator", "\"rotate\", \"update\"");
    let openai = json!({
        "schedule": "daily",
        "grace": "0s",
        "generator": { "type": "random" },
        "rotator": {
            "type": "openai",
            "base_url": "http://127.0.0.1:9",
            "project_id": "proj_x",
            "service_account_id": "svc_x",
            "admin_key_secret": "app/api-key"
        }
    });
    let refused = http.put("sys/rotation/policy/app/api-key", &rotate_only, &openai);
    assert_eq!(refused.status, 403, "{refused:?}");
    let plain = json!({ "schedule": "weekly", "grace": "1h", "generator": { "type": "random" } });
    let refused = http.put("sys/rotation/policy/app/api-key", &rotate_only, &plain);
    assert_eq!(refused.status, 403, "{refused:?}");
    let accepted = http.put("sys/rotation/policy/app/api-key", &rotator, &plain);
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let webhook = json!({
        "schedule": "weekly",
        "grace": "1h",
        "generator": { "type": "random" },
        "rotator": {
            "type": "webhook",
            "url": "http://127.0.0.1:9/set",
            "verify_url": "http://127.0.0.1:9/verify",
            "signing_key_secret": "ops/hook-key"
        }
    });
    let rejected = http.put("sys/rotation/policy/app/api-key", &rotator, &webhook);
    assert_eq!(rejected.status, 403, "{rejected:?}");

    let refused = server.cli(&reader, &["rotate", "app/api-key"]);
    assert!(
        !refused.success(),
        "rotate without the capability:\n{refused}"
    );
    let response = http.request(
        "POST",
        "sys/rotate/app/api-key",
        Some(&reader),
        Some(&json!({})),
    );
    assert_eq!(response.status, 403);
    let (_, value) = read_value(&server, "app/api-key", None);
    assert_eq!(value.as_deref(), Some("sk-initial"));
}

#[test]
fn compromised_route_revokes_openai_key() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeOpenAi::start());
    let dir = temp_dir();
    let (_init, server) = start_server(dir.path());
    let token = server.root_token.clone();
    let http = server.http();
    http.write_secret("ops/openai-admin", &token, &json!({ "value": ADMIN_KEY }));
    http.write_secret(
        "app/openai",
        &token,
        &json!({ "value": "sk-created-by-hand" }),
    );

    let rotator = format!(
        "type = \"openai\"\nbase_url = \"{}\"\nproject_id = \"{PROJECT}\"\n\
         service_account_id = \"{SERVICE_ACCOUNT}\"\nadmin_key_secret = \"ops/openai-admin\"\n",
        fake.base_url
    );
    let rotator_file = write_file(dir.path(), "openai.toml", &rotator);
    let set = server.cli(
        &token,
        &[
            "rotation",
            "set",
            "app/openai",
            "--schedule",
            "quarterly",
            "--grace",
            "1h",
            "--rotator-file",
            &rotator_file,
        ],
    );
    assert_ok(&set, "rotation set");

    // A first rotation makes a key at the fake, so the engine records its id.
    assert_ok(&server.cli(&token, &["rotate", "app/openai"]), "rotate");
    let (_, leaked) = read_value(&server, "app/openai", None);
    let leaked = leaked.expect("current key");
    assert_eq!(runtime.block_on(fake.models_status(&leaked)), 200);

    let before = server.audit_lines().len();
    let started = Instant::now();
    let response = http.request(
        "POST",
        "sys/keyward/compromised",
        Some(&token),
        Some(&json!({ "path": "app/openai", "reason": "found in a public repository" })),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["data"]["result"], "finished");
    assert_eq!(runtime.block_on(fake.models_status(&leaked)), 401);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "revocation took {elapsed:?}"
    );

    let (_, replacement) = read_value(&server, "app/openai", None);
    let replacement = replacement.expect("new key");
    assert_ne!(replacement, leaked);
    assert_eq!(runtime.block_on(fake.models_status(&replacement)), 200);
    let (status, _) = read_value(&server, "app/openai", Some(2));
    assert_eq!(status, 404, "the leaked version is refused");

    let entries = audit_entries(&server, before);
    let has = |kind: &str, field: &str, value: &str| {
        entries
            .iter()
            .any(|entry| entry["type"] == kind && entry[field] == value)
    };
    assert!(has("request", "operation", "rotation.compromised"));
    assert!(has("response", "operation", "rotation.compromised"));
    for event in [
        "started",
        "pending_created",
        "installed",
        "tested",
        "finished",
        "revoked",
    ] {
        assert!(
            has("rotation", "event", event),
            "no audit entry for {event}"
        );
    }
    for operation in [
        "rotation.write_pending",
        "rotation.promote",
        "rotation.revoke",
    ] {
        assert!(
            has("response", "operation", operation),
            "no audit entry for {operation}"
        );
    }
    let text = entries.iter().map(Value::to_string).collect::<String>();
    assert!(!text.contains(&leaked), "the audit log holds no key");
    assert!(!text.contains(&replacement), "the audit log holds no key");
}

/// The webhook call that the receiver keeps open without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hang {
    Set,
    Verify,
}

/// A service that takes its credential from the webhook rotator: `set` installs a value,
/// `verify` accepts only the installed one.
#[derive(Clone, Default)]
struct Receiver {
    installed: Arc<Mutex<String>>,
    hang_on_set: Arc<AtomicBool>,
    hang_on_verify: Arc<AtomicBool>,
    hanging: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(initial: &str) -> (Receiver, String) {
        let receiver = Receiver::default();
        *receiver.installed.lock().expect("lock") = initial.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .route("/set", post(receive_set))
            .route("/verify", post(receive_verify))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("webhook receiver");
        });
        (receiver, base_url)
    }

    fn accepts(&self, value: &str) -> bool {
        *self.installed.lock().expect("lock") == value
    }
}

async fn hang(receiver: &Receiver) {
    receiver.hanging.store(true, Ordering::SeqCst);
    std::future::pending::<()>().await;
}

async fn receive_set(State(receiver): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let Some(value) = body["value"].as_str() else {
        return StatusCode::BAD_REQUEST;
    };
    // The service applies the value before it responds, so a crash during the call leaves the
    // provider with a credential the engine never saw confirmed.
    *receiver.installed.lock().expect("lock") = value.to_owned();
    if receiver.hang_on_set.load(Ordering::SeqCst) {
        hang(&receiver).await;
    }
    StatusCode::OK
}

async fn receive_verify(State(receiver): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    if receiver.hang_on_verify.load(Ordering::SeqCst) {
        hang(&receiver).await;
    }
    match body["value"].as_str() {
        Some(value) if receiver.accepts(value) => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// Starts `keyward rotate PATH` without waiting for it.
fn spawn_rotate(server: &Server, path: &str) -> Child {
    keyward(&["rotate", path])
        .envs(server.cli_env(&server.root_token))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keyward rotate")
}

fn crash_while_webhook_hangs(step: Hang) {
    let runtime = runtime();
    let (receiver, base_url) = runtime.block_on(Receiver::start("hook-initial"));
    let dir = temp_dir();
    let (init, server) = start_server(dir.path());
    let token = server.root_token.clone();
    let http = server.http();
    http.write_secret("ops/hook-key", &token, &json!({ "value": random_hex(16) }));
    http.write_secret("app/hook", &token, &json!({ "value": "hook-initial" }));

    let rotator = format!(
        "type = \"webhook\"\nurl = \"{base_url}/set\"\nverify_url = \"{base_url}/verify\"\n\
         signing_key_secret = \"ops/hook-key\"\n"
    );
    let rotator_file = write_file(dir.path(), "webhook.toml", &rotator);
    let set = server.cli(
        &token,
        &[
            "rotation",
            "set",
            "app/hook",
            "--schedule",
            "monthly",
            "--grace",
            "1h",
            "--rotator-file",
            &rotator_file,
        ],
    );
    assert_ok(&set, "rotation set");

    match step {
        Hang::Set => receiver.hang_on_set.store(true, Ordering::SeqCst),
        Hang::Verify => receiver.hang_on_verify.store(true, Ordering::SeqCst),
    }
    let mut client = spawn_rotate(&server, "app/hook");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !receiver.hanging.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the {step:?} call never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.crash();
    let _ = client.kill();
    let _ = client.wait();
    receiver.hang_on_set.store(false, Ordering::SeqCst);
    receiver.hang_on_verify.store(false, Ordering::SeqCst);

    // The restarted server takes the rotation over once the dead process's lease expires.
    let server = Server::start(&init, dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let state = rotation_status(&server, "app/hook");
        if state["active_run"].is_null() && state["pending_version"].is_null() {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "the rotation did not end after the restart: {state}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    let stages = state["versions"].as_object().expect("versions");
    let current: Vec<&String> = stages
        .iter()
        .filter(|(_, stage)| *stage == "current")
        .map(|(version, _)| version)
        .collect();
    assert_eq!(current.len(), 1, "exactly one current version: {state}");
    assert!(
        stages.values().all(|stage| *stage != "pending"),
        "no pending version: {state}"
    );
    let (status, value) = read_value(&server, "app/hook", None);
    assert_eq!(status, 200);
    let value = value.expect("current value");
    assert!(
        receiver.accepts(&value),
        "the service accepts the current version {}",
        current[0]
    );
}

#[test]
fn crash_during_webhook_set_recovers() {
    crash_while_webhook_hangs(Hang::Set);
}

#[test]
fn crash_during_webhook_verify_recovers() {
    crash_while_webhook_hangs(Hang::Verify);
}

/// Host and port of a `postgres://user:password@host:port/db` URL.
fn host_and_port(url: &str) -> (String, String) {
    let after_at = url.rsplit_once('@').expect("URL has credentials").1;
    let address = after_at.split('/').next().expect("URL has an address");
    let (host, port) = address.rsplit_once(':').expect("URL has a port");
    (host.to_owned(), port.to_owned())
}

/// Runs one statement with `psql` as `role`; returns whether the login and statement worked.
fn psql_as(admin_url: &str, role: &str, password: &str, statement: &str) -> bool {
    let (host, port) = host_and_port(admin_url);
    let output = crate::harness::run(
        std::process::Command::new("psql")
            .args([
                "-h", &host, "-p", &port, "-U", role, "-d", "postgres", "-tAc", statement,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5"),
    );
    output.success()
}

fn psql_admin(admin_url: &str, statement: &str) {
    let output = crate::harness::run(std::process::Command::new("psql").args([
        admin_url,
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        statement,
    ]));
    assert!(output.success(), "psql {statement:?} failed:\n{output}");
}

/// Counts the audit log's `rotation` entries for `event`.
fn step_entries(server: &Server, event: &str) -> usize {
    let text = std::fs::read_to_string(server.audit_log()).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["entry"]["type"] == "rotation" && line["entry"]["event"] == event)
        .count()
}

/// Waits until `path` has no unfinished rotation and no pending version.
fn wait_until_settled(server: &Server, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = rotation_status(server, path);
        if state["active_run"].is_null() && state["pending_version"].is_null() {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the rotation did not end: {state}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn postgres_role_survives_kills() {
    let Some(admin_url) = crate::harness::required_env(
        "KEYWARD_TEST_POSTGRES_URL",
        "rotation::postgres_role_survives_kills",
    ) else {
        return;
    };
    let role = format!("kw_e2e_{}", random_hex(5));
    psql_admin(
        &admin_url,
        &format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'initial-pw'"),
    );
    assert!(psql_as(&admin_url, &role, "initial-pw", "SELECT 1"));

    let dir = temp_dir();
    let (init, mut server) = start_server(dir.path());
    let token = server.root_token.clone();
    let http = server.http();
    http.write_secret("ops/pg-admin", &token, &json!({ "value": admin_url }));
    http.write_secret("app/pg", &token, &json!({ "value": "initial-pw" }));
    let rotator =
        format!("type = \"postgres\"\nadmin_url_secret = \"ops/pg-admin\"\nrole = \"{role}\"\n");
    let rotator_file = write_file(dir.path(), "postgres.toml", &rotator);
    let set = server.cli(
        &token,
        &[
            "rotation",
            "set",
            "app/pg",
            "--schedule",
            "weekly",
            "--grace",
            "0s",
            "--generator",
            "password",
            "--length",
            "24",
            "--exclude",
            "'\"\\",
            "--rotator-file",
            &rotator_file,
        ],
    );
    assert_ok(&set, "rotation set");
    assert_ok(&server.cli(&token, &["rotate", "app/pg"]), "first rotate");

    // Each round kills the server as soon as the audit log shows one step of a rotation,
    // restarts it and checks that the role logs in with the current version's password.
    for step in [
        "started",
        "pending_created",
        "installed",
        "tested",
        "finished",
    ] {
        let seen = step_entries(&server, step);
        let mut client = spawn_rotate(&server, "app/pg");
        let deadline = Instant::now() + Duration::from_secs(10);
        while step_entries(&server, step) == seen {
            assert!(
                Instant::now() < deadline,
                "no {step} entry in the audit log"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        server.crash();
        let _ = client.kill();
        let _ = client.wait();

        server = Server::start(&init, dir.path());
        let state = wait_until_settled(&server, "app/pg");
        let (status, password) = read_value(&server, "app/pg", None);
        assert_eq!(status, 200);
        let password = password.expect("current password");
        assert!(
            psql_as(&admin_url, &role, &password, "SELECT 1"),
            "after a kill at {step} the role rejects the current password: {state}"
        );
    }
}
