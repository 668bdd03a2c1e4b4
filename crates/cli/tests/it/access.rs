//! Access control end to end: a token limited by a Vault-style policy reads what the policy
//! grants, is refused everything else with one indistinguishable 403, changes nothing, and
//! every refusal leaves an audit entry.

use serde_json::{Value, json};

use crate::harness::{Http, Server, temp_dir};

const READ_APP_POLICY: &str = "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n";

/// A dev server with two secrets and a token that may only read `secret/data/app/*`.
struct Fixture {
    server: Server,
    http: Http,
    token: String,
    accessor: String,
}

fn fixture() -> Fixture {
    let server = Server::dev();
    let http = server.http();
    let root = server.root_token.clone();
    http.write_secret("app/x", &root, &json!({ "v": "app-value" }));
    http.write_secret("other", &root, &json!({ "v": "other-value" }));

    let work = temp_dir();
    let policy_file = work.path().join("app-read.hcl");
    std::fs::write(&policy_file, READ_APP_POLICY).expect("write the policy file");
    let policy_file = policy_file.display().to_string();
    let output = server.cli(&root, &["policy", "write", "app-read", &policy_file]);
    assert!(output.success(), "keyward policy write failed:\n{output}");

    let output = server.cli(
        &root,
        &[
            "token", "create", "--policy", "app-read", "--ttl", "1h", "--format", "json",
        ],
    );
    assert!(output.success(), "keyward token create failed:\n{output}");
    let auth = output.json();
    let token = auth["client_token"]
        .as_str()
        .expect("token in output")
        .to_owned();
    let accessor = auth["accessor"]
        .as_str()
        .expect("accessor in output")
        .to_owned();

    Fixture {
        server,
        http,
        token,
        accessor,
    }
}

/// Returns the response entries of `accessor` for `operation` on `path`.
fn response_entries(server: &Server, accessor: &str, operation: &str, path: &str) -> Vec<Value> {
    server
        .audit_lines()
        .into_iter()
        .map(|line| line["entry"].clone())
        .filter(|entry| {
            entry["type"] == "response"
                && entry["accessor"] == accessor
                && entry["operation"] == operation
                && entry["path"] == path
        })
        .collect()
}

fn assert_denial_audited(fixture: &Fixture, operation: &str, path: &str) {
    let entries = response_entries(&fixture.server, &fixture.accessor, operation, path);
    assert_eq!(
        entries.len(),
        1,
        "expected one audited refusal of {operation} on {path}, found {entries:?}"
    );
    assert_eq!(entries[0]["outcome"], "error", "{:?}", entries[0]);
    assert_eq!(entries[0]["error"], "permission_denied", "{:?}", entries[0]);
}

#[test]
fn limited_token_reads_granted_path() {
    let fixture = fixture();

    let response = fixture.http.get("secret/data/app/x", &fixture.token);

    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["data"]["data"]["v"], "app-value");
}

#[test]
fn forbidden_reads_look_the_same() {
    let fixture = fixture();

    let existing = fixture.http.get("secret/data/other", &fixture.token);
    let missing = fixture.http.get("secret/data/nothing-here", &fixture.token);

    assert_eq!(existing.status, 403, "{existing:?}");
    assert_eq!(missing.status, 403, "{missing:?}");
    assert_eq!(existing.json(), json!({ "errors": ["permission denied"] }));
    assert_eq!(
        existing.body, missing.body,
        "a refusal must not tell whether the secret exists"
    );
    assert!(!existing.text().contains("other-value"));

    assert_denial_audited(&fixture, "kv.read", "secret/data/other");
    assert_denial_audited(&fixture, "kv.read", "secret/data/nothing-here");
}

#[test]
fn read_only_token_cannot_write() {
    let fixture = fixture();
    let root = fixture.server.root_token.clone();

    let response = fixture.http.put(
        "secret/data/app/x",
        &fixture.token,
        &json!({ "data": { "v": "overwritten" } }),
    );

    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.json(), json!({ "errors": ["permission denied"] }));
    let metadata = fixture.http.get("secret/metadata/app/x", &root).json();
    assert_eq!(metadata["data"]["current_version"], 1, "{metadata}");
    let read = fixture.http.get("secret/data/app/x", &root).json();
    assert_eq!(read["data"]["data"]["v"], "app-value");
    assert_denial_audited(&fixture, "kv.write", "secret/data/app/x");
}

#[test]
fn read_only_token_cannot_list() {
    let fixture = fixture();

    let root_list = fixture.http.request(
        "GET",
        "secret/metadata/?list=true",
        Some(&fixture.token),
        None,
    );
    let app_list = fixture
        .http
        .request("LIST", "secret/metadata/app", Some(&fixture.token), None);

    assert_eq!(root_list.status, 403, "{root_list:?}");
    assert_eq!(app_list.status, 403, "{app_list:?}");
    assert_eq!(root_list.json(), json!({ "errors": ["permission denied"] }));
    assert_eq!(app_list.json(), json!({ "errors": ["permission denied"] }));
    assert_denial_audited(&fixture, "kv.list", "secret/metadata/");
    assert_denial_audited(&fixture, "kv.list", "secret/metadata/app/");
}

#[test]
fn limited_token_cannot_delete_or_destroy() {
    let fixture = fixture();
    let root = fixture.server.root_token.clone();

    let delete = fixture
        .http
        .request("DELETE", "secret/data/app/x", Some(&fixture.token), None);
    let destroy = fixture.http.request(
        "PUT",
        "secret/destroy/app/x",
        Some(&fixture.token),
        Some(&json!({ "versions": [1] })),
    );

    assert_eq!(delete.status, 403, "{delete:?}");
    assert_eq!(destroy.status, 403, "{destroy:?}");
    let read = fixture.http.get("secret/data/app/x", &root).json();
    assert_eq!(
        read["data"]["data"]["v"], "app-value",
        "the secret is intact: {read}"
    );
    assert_denial_audited(&fixture, "kv.delete", "secret/data/app/x");
    assert_denial_audited(&fixture, "kv.destroy", "secret/destroy/app/x");
}

#[test]
fn limited_token_cannot_create_wider_token() {
    let fixture = fixture();

    let response = fixture.http.request(
        "POST",
        "auth/token/create",
        Some(&fixture.token),
        Some(&json!({ "policies": ["root"] })),
    );

    assert_eq!(response.status, 403, "{response:?}");
    assert!(response.json()["auth"].is_null(), "{response:?}");
}
