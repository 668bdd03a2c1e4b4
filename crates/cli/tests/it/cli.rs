//! The `keyward` client commands against a dev server, parsed from `--format json`, and the
//! exit codes scripts rely on: 2 usage, 3 auth, 4 not found, 5 connection, 6 audit.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{InitDir, Output, PASSPHRASE_VAR, Server, free_port, keyward, run, temp_dir};

fn assert_ok(output: &Output, case: &str) {
    assert!(output.success(), "{case} failed:\n{output}");
}

fn assert_exit(output: &Output, code: i32, case: &str) {
    assert_eq!(output.code, Some(code), "{case}:\n{output}");
    assert!(output.stderr.starts_with("error: "), "{case}: {output}");
}

#[test]
fn cli_kv_commands_round_trip() {
    let server = Server::dev();
    let root = server.root_token.clone();
    let kv = |args: &[&str]| server.cli(&root, &[&["kv"], args, &["--format", "json"]].concat());

    let first = kv(&["put", "app/db", "user=alice", "pass=one"]);
    assert_ok(&first, "kv put");
    assert_eq!(first.json()["version"], 1);
    let second = kv(&["put", "app/db", "user=alice", "pass=two=with=equals"]);
    assert_ok(&second, "kv put");
    assert_eq!(second.json()["version"], 2);
    kv(&["put", "app/api", "key=k"]);

    let current = kv(&["get", "app/db"]);
    assert_ok(&current, "kv get");
    assert_eq!(
        current.json()["data"],
        json!({ "user": "alice", "pass": "two=with=equals" })
    );
    assert_eq!(current.json()["metadata"]["version"], 2);
    let old = kv(&["get", "app/db", "--version", "1"]);
    assert_eq!(old.json()["data"]["pass"], "one", "{old}");
    let field = server.cli(&root, &["kv", "get", "app/db", "--field", "pass"]);
    assert_ok(&field, "kv get --field");
    assert_eq!(field.stdout, "two=with=equals\n");

    let list = kv(&["list", "app"]);
    assert_ok(&list, "kv list");
    assert_eq!(list.json(), json!(["api", "db"]));
    let root_list = kv(&["list"]);
    assert_eq!(root_list.json(), json!(["app/"]), "{root_list}");

    let history = kv(&["history", "app/db"]);
    assert_ok(&history, "kv history");
    let history = history.json();
    assert_eq!(history["current_version"], 2);
    assert_eq!(history["versions"].as_object().map(|v| v.len()), Some(2));

    assert_ok(
        &kv(&["delete", "app/db", "--versions", "1"]),
        "kv delete --versions",
    );
    let history = kv(&["history", "app/db"]).json();
    assert_ne!(history["versions"]["1"]["deletion_time"], "", "{history}");
    assert_eq!(history["versions"]["2"]["deletion_time"], "", "{history}");
    assert_ok(&kv(&["delete", "app/db"]), "kv delete");
    let deleted = kv(&["get", "app/db"]);
    assert_exit(&deleted, 4, "reading a deleted secret");
}

#[test]
fn cli_table_output_is_readable() {
    let server = Server::dev();
    let root = server.root_token.clone();

    let put = server.cli(&root, &["kv", "put", "app/db", "user=alice"]);
    assert_ok(&put, "kv put");
    assert!(put.stdout.contains("version"), "{put}");
    let get = server.cli(&root, &["kv", "get", "app/db"]);
    assert_ok(&get, "kv get");
    assert!(get.stdout.starts_with("== Version 1 =="), "{get}");
    assert!(
        get.stdout
            .lines()
            .any(|line| line.split_whitespace().eq(["user", "alice"])),
        "{get}"
    );
    let history = server.cli(&root, &["kv", "history", "app/db"]);
    assert!(
        history
            .stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("current")),
        "{history}"
    );
}

#[test]
fn cli_token_create_and_revoke() {
    let server = Server::dev();
    let root = server.root_token.clone();
    server.cli(&root, &["kv", "put", "app/db", "k=v"]);
    let work = temp_dir();
    let policy = work.path().join("reader.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/app/*\" { capabilities = [\"read\"] }\n",
    )
    .expect("write the policy file");
    let policy = policy.display().to_string();
    assert_ok(
        &server.cli(&root, &["policy", "write", "reader", &policy]),
        "policy write",
    );

    let create = |ttl: &str| -> (String, String) {
        let output = server.cli(
            &root,
            &[
                "token", "create", "--policy", "reader", "--ttl", ttl, "--format", "json",
            ],
        );
        assert_ok(&output, "token create");
        let auth = output.json();
        assert_eq!(auth["policies"], json!(["default", "reader"]), "{auth}");
        (
            auth["client_token"].as_str().expect("token").to_owned(),
            auth["accessor"].as_str().expect("accessor").to_owned(),
        )
    };
    let (first, first_accessor) = create("1h");
    let (second, _) = create("30m");

    let read = server.cli(&first, &["kv", "get", "app/db", "--field", "k"]);
    assert_ok(&read, "read with the new token");
    assert_eq!(read.stdout.trim(), "v");
    let write = server.cli(&first, &["kv", "put", "app/db", "k=x"]);
    assert_exit(&write, 3, "write with a read-only token");

    assert_ok(
        &server.cli(&root, &["token", "revoke", "--accessor", &first_accessor]),
        "revoke by accessor",
    );
    assert_exit(
        &server.cli(&first, &["kv", "get", "app/db"]),
        3,
        "revoked token",
    );

    assert_ok(&server.cli(&second, &["token", "revoke"]), "revoke self");
    assert_exit(
        &server.cli(&second, &["kv", "get", "app/db"]),
        3,
        "self-revoked token",
    );
}

#[test]
fn revoke_accepts_accessor_with_leading_dash() {
    let server = Server::dev();
    let root = server.root_token.clone();
    let http = server.http();

    // Accessors are base64url, so about one in 64 starts with '-', which a command-line parser
    // takes for an option unless configured otherwise. Create tokens until one does.
    let (token, accessor) = (0..1000)
        .map(|_| {
            let created = http.request(
                "POST",
                "auth/token/create",
                Some(&root),
                Some(&json!({ "policies": ["default"], "ttl": "10m" })),
            );
            assert_eq!(created.status, 200, "{created:?}");
            let auth = created.json()["auth"].clone();
            (
                auth["client_token"].as_str().unwrap_or_default().to_owned(),
                auth["accessor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .find(|(_, accessor)| accessor.starts_with('-'))
        .expect("one of 1000 accessors starts with '-'");

    let revoke = server.cli(&root, &["token", "revoke", "--accessor", &accessor]);

    assert_ok(&revoke, "revoke by an accessor starting with '-'");
    let lookup = http.request("GET", "auth/token/lookup-self", Some(&token), None);
    assert_eq!(lookup.status, 403, "the token still works: {lookup:?}");
}

#[test]
fn cli_policy_write_and_list() {
    let server = Server::dev();
    let root = server.root_token.clone();
    let work = temp_dir();
    let good = work.path().join("good.hcl");
    std::fs::write(
        &good,
        "path \"secret/data/x\" { capabilities = [\"read\", \"list\"] }\n",
    )
    .expect("write the policy file");
    let bad = work.path().join("bad.hcl");
    std::fs::write(
        &bad,
        "path \"secret/data/x\" { capabilities = [\"fly\"] }\n",
    )
    .expect("write the policy file");

    assert_ok(
        &server.cli(
            &root,
            &["policy", "write", "good", &good.display().to_string()],
        ),
        "policy write",
    );
    let rejected = server.cli(
        &root,
        &["policy", "write", "bad", &bad.display().to_string()],
    );
    assert_exit(&rejected, 2, "policy with an unknown capability");
    let missing = server.cli(
        &root,
        &["policy", "write", "none", "/nonexistent/policy.hcl"],
    );
    assert_exit(&missing, 2, "policy file that does not exist");

    let list = server.cli(&root, &["policy", "list", "--format", "json"]);
    assert_ok(&list, "policy list");
    let names: Vec<Value> = list.json().as_array().cloned().unwrap_or_default();
    assert!(names.contains(&json!("good")), "{list}");
    assert!(names.contains(&json!("default")), "{list}");
    assert!(!names.contains(&json!("bad")), "{list}");
}

#[test]
fn cli_audit_verify_accepts_server_log() {
    let server = Server::dev();
    let root = server.root_token.clone();
    server.cli(&root, &["kv", "put", "app/db", "k=v"]);
    let log = server.audit_log().display().to_string();

    let output = run(&mut keyward(&["audit", "verify", "--format", "json", &log]));

    assert_ok(&output, "audit verify of a live log");
    assert_eq!(output.json()["valid"], true);
    let table = run(&mut keyward(&["audit", "verify", &log]));
    assert_ok(&table, "audit verify");
    assert!(table.stdout.contains("is intact"), "{table}");
}

#[test]
fn wrong_token_exits_with_three() {
    let server = Server::dev();

    let output = server.cli("kw-not-a-token", &["kv", "get", "app/db"]);

    assert_exit(&output, 3, "unknown token");
    assert!(
        !output.stderr.contains("kw-not-a-token"),
        "the token leaked: {output}"
    );
}

#[test]
fn missing_secret_exits_with_four() {
    let server = Server::dev();
    let root = server.root_token.clone();

    assert_exit(
        &server.cli(&root, &["kv", "get", "app/none"]),
        4,
        "missing secret",
    );
    assert_exit(
        &server.cli(&root, &["kv", "list", "none"]),
        4,
        "missing folder",
    );
    assert_exit(
        &server.cli(&root, &["kv", "history", "app/none"]),
        4,
        "missing history",
    );
    server.cli(&root, &["kv", "put", "app/db", "k=v"]);
    assert_exit(
        &server.cli(&root, &["kv", "get", "app/db", "--field", "nothing"]),
        4,
        "missing field",
    );
}

#[test]
fn unreachable_server_exits_with_five() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "unused passphrase");
    let port = free_port();

    let output = run(keyward(&["kv", "get", "app/db"])
        .env("KEYWARD_ADDR", format!("https://127.0.0.1:{port}"))
        .env("KEYWARD_CACERT", &init.ca_file)
        .env("KEYWARD_TOKEN", &init.root_token));

    assert_exit(&output, 5, "nothing listening");
    assert!(
        output.stderr.contains(&port.to_string()),
        "the message names the address: {output}"
    );
}

#[test]
fn bad_usage_exits_with_two() {
    let server = Server::dev();
    let root = server.root_token.clone();

    let cases: [&[&str]; 5] = [
        &["kv", "put", "app/db"],
        &["kv", "put", "app/db", "no-equals-sign"],
        &["kv", "put", "app/db", "=value"],
        &["kv", "get"],
        &["frobnicate"],
    ];
    for args in cases {
        let output = server.cli(&root, args);
        assert_eq!(output.code, Some(2), "keyward {args:?}:\n{output}");
    }
    let no_ca = run(keyward(&["kv", "get", "app/db"])
        .env("KEYWARD_ADDR", &server.url)
        .env("KEYWARD_TOKEN", &root));
    assert_eq!(no_ca.code, Some(2), "missing CA file:\n{no_ca}");
}

#[test]
fn every_subcommand_prints_help() {
    let commands: [&[&str]; 12] = [
        &["server"],
        &["init"],
        &["kv", "put"],
        &["kv", "get"],
        &["kv", "list"],
        &["kv", "delete"],
        &["kv", "history"],
        &["token", "create"],
        &["token", "revoke"],
        &["policy", "write"],
        &["policy", "list"],
        &["audit", "verify"],
    ];
    for command in commands {
        let output = run(keyward(command).arg("--help"));
        assert!(output.success(), "keyward {command:?} --help:\n{output}");
        assert!(output.stdout.contains("Usage: keyward"), "{output}");
    }
}

#[test]
fn cli_rejects_dot_segments_in_paths() {
    let server = Server::dev();
    let root = server.root_token.clone();
    assert_ok(
        &server.cli(&root, &["kv", "put", "etc", "k=original"]),
        "kv put",
    );

    // An HTTP client library resolves `..` and `%2e%2e` in a URL before sending it, so the
    // CLI must reject such a path itself, or the request reaches another secret.
    for path in ["app/../etc", "app/%2e%2e/etc", "./etc", "app//etc"] {
        let write = server.cli(&root, &["kv", "put", path, "k=changed"]);
        assert_eq!(write.code, Some(2), "kv put {path}:\n{write}");
        let read = server.cli(&root, &["kv", "get", path]);
        assert_eq!(read.code, Some(2), "kv get {path}:\n{read}");
    }
    let current = server.cli(&root, &["kv", "get", "etc", "--field", "k"]);
    assert_eq!(current.stdout.trim(), "original", "{current}");
}

/// Reads every file under `dir`, sorted by path.
fn read_tree(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn init_twice_refuses_second() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "first passphrase");
    let before = read_tree(&init.dir);

    let output = run(
        keyward(&["init", "--passphrase-env", PASSPHRASE_VAR, "--data-dir"])
            .arg(&init.dir)
            .env(PASSPHRASE_VAR, "second passphrase"),
    );

    assert_eq!(output.code, Some(2), "second init:\n{output}");
    assert!(output.stderr.contains("refusing to overwrite"), "{output}");
    assert!(!output.stdout.contains("Root token"), "{output}");
    let after = read_tree(&init.dir);
    assert!(
        before == after,
        "the second init changed files in the data dir"
    );
}
