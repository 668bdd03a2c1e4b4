//! The audit trail of a real server: one final entry per request and a `request` entry before
//! every change, no secret value or token in the file, and `keyward audit verify` finding
//! every kind of tampering on a copy of the log.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{Http, InitDir, Output, Server, keyward, random_hex, run, temp_dir};

/// What a scripted session sent and which values must never reach the log.
struct Session {
    /// Requests sent.
    requests: usize,
    /// Requests that change something and so also need a `request` entry.
    mutations: usize,
    /// Secret values and tokens used in the session.
    secrets: Vec<String>,
}

/// Entry types that close a request: exactly one per request.
const FINAL_TYPES: [&str; 3] = ["response", "rejected", "auth_failure"];

/// Sends a fixed mix of reads, writes, refusals and malformed requests.
fn scripted_session(server: &Server, http: &Http) -> Session {
    let root = server.root_token.clone();
    let value_a = format!("audit-value-a-{}", random_hex(8));
    let value_b = format!("audit-value-b-{}", random_hex(8));
    let mut requests = 0;
    let mut mutations = 0;
    let mut expect = |response: crate::harness::Response, status: u16, mutation: bool| {
        assert_eq!(response.status, status, "{response:?}");
        requests += 1;
        if mutation {
            mutations += 1;
        }
        response
    };

    let body_a = json!({ "data": { "password": value_a } });
    let body_b = json!({ "data": { "password": value_b } });
    expect(http.put("secret/data/session/a", &root, &body_a), 200, true);
    expect(http.put("secret/data/session/b", &root, &body_b), 200, true);
    expect(http.put("secret/data/session/a", &root, &body_b), 200, true);
    expect(http.get("secret/data/session/a", &root), 200, false);
    expect(
        http.get("secret/data/session/a?version=1", &root),
        200,
        false,
    );
    expect(
        http.request("LIST", "secret/metadata/session", Some(&root), None),
        200,
        false,
    );
    expect(http.get("secret/metadata/session/a", &root), 200, false);
    expect(
        http.request("DELETE", "secret/data/session/b", Some(&root), None),
        204,
        true,
    );
    expect(http.get("secret/data/no-such-secret", &root), 404, false);
    expect(
        http.request("GET", "secret/data/session/a", None, None),
        403,
        false,
    );
    expect(
        http.request(
            "GET",
            "secret/data/session/a",
            Some("not-a-real-token"),
            None,
        ),
        403,
        false,
    );
    expect(http.get("secret/data/session//a", &root), 400, false);
    let created = expect(
        http.request(
            "POST",
            "auth/token/create",
            Some(&root),
            Some(&json!({ "policies": ["default"], "ttl": "1h" })),
        ),
        200,
        true,
    );
    let child = created.json()["auth"]["client_token"]
        .as_str()
        .expect("token create returns a token")
        .to_owned();
    expect(http.get("secret/data/session/a", &child), 403, false);

    Session {
        requests,
        mutations,
        secrets: vec![value_a, value_b, root, child, "not-a-real-token".to_owned()],
    }
}

#[test]
fn every_request_has_one_final_entry() {
    let server = Server::dev();
    let http = server.http();
    let before = server.audit_lines().len();

    let session = scripted_session(&server, &http);

    let entries: Vec<Value> = server.audit_lines()[before..]
        .iter()
        .map(|line| line["entry"].clone())
        .collect();
    let finals: Vec<&Value> = entries
        .iter()
        .filter(|entry| FINAL_TYPES.iter().any(|t| entry["type"] == *t))
        .collect();
    assert_eq!(
        finals.len(),
        session.requests,
        "final entries after the session: {finals:#?}"
    );
    let request_entries: Vec<&Value> = entries.iter().filter(|e| e["type"] == "request").collect();
    assert_eq!(
        request_entries.len(),
        session.mutations,
        "{request_entries:#?}"
    );

    // Each request entry comes before the response of the same request.
    for request in &request_entries {
        let id = &request["request_id"];
        let request_index = entries
            .iter()
            .position(|e| e == *request)
            .unwrap_or(usize::MAX);
        let response_index = entries
            .iter()
            .position(|e| e["type"] == "response" && e["request_id"] == *id)
            .unwrap_or_else(|| panic!("no response entry for request {id}"));
        assert!(
            request_index < response_index,
            "request {id} logged after its response"
        );
        assert_eq!(request["operation"], entries[response_index]["operation"]);
    }

    let kinds = |kind: &str| finals.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(kinds("auth_failure"), 2, "{finals:#?}");
    assert_eq!(kinds("rejected"), 1, "{finals:#?}");
    let denied = finals
        .iter()
        .filter(|e| e["type"] == "response" && e["error"] == "permission_denied")
        .count();
    assert_eq!(denied, 1, "{finals:#?}");
}

#[test]
fn audit_log_holds_no_secrets_or_tokens() {
    let server = Server::dev();
    let http = server.http();

    let session = scripted_session(&server, &http);

    let log = server.audit_log();
    let mut head = log.clone().into_os_string();
    head.push(".head");
    for file in [log, PathBuf::from(head)] {
        let text = std::fs::read_to_string(&file).expect("read audit file");
        for secret in &session.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} contains a secret value or token",
                file.display()
            );
        }
    }
}

/// A copy of a finished audit log and its head file.
struct LogCopy {
    _dir: tempfile::TempDir,
    log: PathBuf,
    lines: Vec<String>,
}

impl LogCopy {
    /// Writes `lines` (each without newline) as the copy's log; the head file stays as copied.
    fn write_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&self.log, text).expect("write the log copy");
    }

    fn verify(&self) -> Output {
        run(keyward(&["audit", "verify"]).arg(&self.log))
    }
}

/// Runs a session, stops the server gracefully and copies its log and head file.
fn finished_log_copy() -> LogCopy {
    // A dev server removes its data dir when it stops, so use an initialised one.
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "audit passphrase");
    let server = Server::start(&init, work.path());
    let http = server.http();
    scripted_session(&server, &http);
    drop(http);
    let log = server.audit_log();
    let head = head_of(&log);
    let status = server.terminate();
    assert!(status.success(), "server stopped with {status}");

    let dir = temp_dir();
    let copy = dir.path().join("audit.log");
    std::fs::copy(&log, &copy).expect("copy the audit log");
    std::fs::copy(&head, head_of(&copy)).expect("copy the head file");
    let text = std::fs::read_to_string(&copy).expect("read the copy");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(
        lines.len() >= 10,
        "the session should leave a long log: {} lines",
        lines.len()
    );
    LogCopy {
        _dir: dir,
        log: copy,
        lines,
    }
}

fn head_of(log: &Path) -> PathBuf {
    let mut head = log.to_owned().into_os_string();
    head.push(".head");
    PathBuf::from(head)
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).expect("line is JSON")["seq"]
        .as_u64()
        .expect("line has a seq")
}

fn assert_tamper_found(output: &Output, expected: &[String]) {
    assert_eq!(
        output.code,
        Some(6),
        "verify must fail with exit code 6:\n{output}"
    );
    for part in expected {
        assert!(
            output.stderr.contains(part.as_str()),
            "message lacks {part:?}:\n{output}"
        );
    }
}

#[test]
fn verify_accepts_intact_copy() {
    let copy = finished_log_copy();

    let output = run(keyward(&["audit", "verify", "--format", "json"]).arg(&copy.log));

    assert!(output.success(), "intact log rejected:\n{output}");
    let report = output.json();
    assert_eq!(report["valid"], true);
    assert_eq!(report["entries"], copy.lines.len());
    assert_eq!(report["head_checked"], true, "{report}");
    let last = copy.lines.last().map(|line| seq_of(line));
    assert_eq!(report["last_seq"].as_u64(), last);
}

#[test]
fn verify_finds_edited_byte() {
    let copy = finished_log_copy();
    let middle = copy.lines.len() / 2;
    let mut lines = copy.lines.clone();
    let original = lines[middle].clone();
    lines[middle] = original.replacen(
        "\"remote_addr\":\"127.0.0.1\"",
        "\"remote_addr\":\"127.0.0.2\"",
        1,
    );
    assert_ne!(
        lines[middle], original,
        "the middle entry has a remote_addr to edit"
    );
    copy.write_lines(&lines);

    let output = copy.verify();

    let seq = seq_of(&original);
    assert_tamper_found(
        &output,
        &[format!("line {}", middle + 1), format!("seq {seq}")],
    );
}

#[test]
fn verify_finds_deleted_line() {
    let copy = finished_log_copy();
    let middle = copy.lines.len() / 2;
    let mut lines = copy.lines.clone();
    let removed = lines.remove(middle);
    copy.write_lines(&lines);

    let output = copy.verify();

    let seq = seq_of(&removed);
    assert_tamper_found(
        &output,
        &[format!("line {}", middle + 1), format!("seq {seq}")],
    );
}

#[test]
fn verify_finds_swapped_lines() {
    let copy = finished_log_copy();
    let middle = copy.lines.len() / 2;
    let mut lines = copy.lines.clone();
    lines.swap(middle, middle + 1);
    copy.write_lines(&lines);

    let output = copy.verify();

    let seq = seq_of(&copy.lines[middle]);
    assert_tamper_found(
        &output,
        &[format!("line {}", middle + 1), format!("seq {seq}")],
    );
}

#[test]
fn verify_finds_cut_last_line() {
    let copy = finished_log_copy();
    let mut lines = copy.lines.clone();
    let cut = lines.pop().expect("log has lines");
    copy.write_lines(&lines);

    let output = copy.verify();

    let last_kept = lines.last().map(|line| seq_of(line)).unwrap_or(0);
    assert_tamper_found(
        &output,
        &[format!("seq {last_kept}"), format!("seq {}", seq_of(&cut))],
    );
}
