//! Key rotation on a real data dir with the `keyward keys` commands: a data-key rotation whose
//! rewrap survives repeated SIGKILLs of the server, and root-key rotation with restarts under
//! the old and the new passphrase.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    InitDir, Output, Server, free_port, keyward, random_hex, run_with_timeout, temp_dir,
};

/// Secrets written before the rotation; each gets [`VERSIONS`] versions.
const SECRETS: usize = 20;

/// Versions per secret; the server's default `max_versions` keeps all ten.
const VERSIONS: u64 = 10;

/// Rewrap runs interrupted by a SIGKILL of the server.
const KILLS: usize = 20;

/// Records per rewrap batch: small, so a run spans many transactions.
const BATCH_SIZE: &str = "2";

/// Variable that carries a new passphrase to `keys rotate-root`.
const NEW_PASSPHRASE_VAR: &str = "KEYWARD_TEST_NEW_PASSPHRASE";

/// A random number below `bound`.
fn random_below(bound: u64) -> u64 {
    u64::from_str_radix(&random_hex(8), 16).expect("hex parses") % bound
}

fn assert_ok(output: &Output, case: &str) {
    assert!(output.success(), "{case} failed:\n{output}");
}

/// Reads `keys status --format json` and returns each key's (state, records).
fn key_states(server: &Server, token: &str) -> BTreeMap<u64, (String, u64)> {
    let output = server.cli(token, &["keys", "status", "--format", "json"]);
    assert_ok(&output, "keys status");
    output.json()["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|key| {
            let id = key["id"].as_u64().expect("id");
            let state = key["state"].as_str().expect("state").to_owned();
            (id, (state, key["records"].as_u64().expect("records")))
        })
        .collect()
}

/// Starts `keys rewrap --format json` against `server` without waiting for it.
fn spawn_rewrap(server: &Server, token: &str) -> Child {
    keyward(&[
        "keys",
        "rewrap",
        "--batch-size",
        BATCH_SIZE,
        "--format",
        "json",
    ])
    .envs(server.cli_env(token))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start keyward keys rewrap")
}

/// Waits up to 30 seconds for a child to exit, then kills it.
fn reap(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("keyward keys rewrap did not exit after the server was killed");
}

#[test]
fn rewrap_survives_server_kills() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "rewrap kill passphrase");
    let root = init.root_token.clone();
    let mut server = Server::start(&init, work.path());

    let http = server.http();
    let mut expected = Vec::new();
    for secret in 0..SECRETS {
        let path = format!("fleet/s{secret}");
        for _ in 0..VERSIONS {
            let value = format!("{path}-{}", random_hex(8));
            let version = http.write_secret(&path, &root, &json!({ "value": value }));
            expected.push((path.clone(), version, value));
        }
    }
    drop(http);
    let total = expected.len() as u64;

    let rotate = server.cli(&root, &["keys", "rotate", "--format", "json"]);
    assert_ok(&rotate, "keys rotate");
    assert_eq!(rotate.json(), json!({ "key_id": 2, "previous_key_id": 1 }));

    let early = server.cli(&root, &["keys", "retire", "1"]);
    assert_eq!(early.code, Some(2), "retire before rewrap:\n{early}");
    assert!(
        early.stderr.contains(&format!(
            "key 1 still protects {total} records: run `keyward keys rewrap` first"
        )),
        "{early}"
    );

    // Kill the server after a random number of acknowledged batches, plus a random delay of
    // up to a few milliseconds, so the kill also lands inside later batches.
    let mut interrupted = 0;
    let mut left = total;
    for _ in 0..KILLS {
        let mut rewrap = spawn_rewrap(&server, &root);
        let mut stdout = BufReader::new(rewrap.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        for _ in 0..=random_below(6) {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(random_below(4_000)));
        server.crash();
        // Read the rest so the command never fails on a closed pipe.
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        reap(rewrap);

        server = Server::start(&init, work.path());
        let states = key_states(&server, &root);
        let records: u64 = states.values().map(|(_, records)| records).sum();
        assert_eq!(records, total, "records lost or duplicated: {states:?}");
        assert!(
            states.values().all(|(state, _)| state != "missing"),
            "{states:?}"
        );
        let now_left = states.get(&1).map_or(0, |(_, records)| *records);
        assert!(now_left <= left, "rewrap went backwards: {states:?}");
        if now_left > 0 && now_left < left {
            interrupted += 1;
        }
        left = now_left;
    }
    eprintln!("{interrupted} of {KILLS} kills interrupted the rewrap; {left} records were left");
    assert!(
        interrupted >= KILLS / 2,
        "only {interrupted} of {KILLS} kills interrupted a rewrap that had made progress"
    );

    let finish = server.cli(
        &root,
        &["keys", "rewrap", "--batch-size", "50", "--format", "json"],
    );
    assert_ok(&finish, "final keys rewrap");
    let last: Value = finish
        .stdout
        .lines()
        .last()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .expect("rewrap printed a line per batch");
    assert_eq!(last["remaining"], 0, "{finish}");

    let http = server.http();
    for (path, version, value) in &expected {
        let response = http.get(&format!("secret/data/{path}?version={version}"), &root);
        assert_eq!(response.status, 200, "{path} v{version}: {response:?}");
        assert_eq!(
            response.json()["data"]["data"]["value"],
            value.as_str(),
            "{path} v{version}"
        );
    }

    let states = key_states(&server, &root);
    assert_eq!(states[&2], ("active".to_owned(), total), "{states:?}");
    assert_eq!(states[&1], ("decrypt-only".to_owned(), 0), "{states:?}");
    let retire = server.cli(&root, &["keys", "retire", "1"]);
    assert_ok(&retire, "keys retire after rewrap");
    let states = key_states(&server, &root);
    assert_eq!(states.keys().copied().collect::<Vec<_>>(), vec![2]);

    let table = server.cli(&root, &["keys", "status"]);
    assert_ok(&table, "keys status table");
    let header = table.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["ID", "CREATED", "STATE", "RECORDS", "ENCRYPTIONS"]
    );
}

/// Asserts that `server` still serves the secrets written by [`root_rotation_changes_key`].
fn assert_secrets_intact(server: &Server, token: &str) {
    let http = server.http();
    for index in 0..3 {
        let response = http.get(&format!("secret/data/app/s{index}"), token);
        assert_eq!(response.status, 200, "app/s{index}: {response:?}");
        assert_eq!(
            response.json()["data"]["data"]["value"],
            format!("value-{index}")
        );
    }
}

/// Starts the server of `init` with `passphrase` and expects it to exit with the
/// wrong-passphrase error.
fn assert_passphrase_rejected(init: &InitDir, passphrase: &str) {
    let mut command = Server::config_command(init, passphrase, free_port());
    let output = run_with_timeout(&mut command, Duration::from_secs(30))
        .expect("a server with a wrong passphrase must exit, not serve");
    assert_eq!(output.code, Some(3), "{output}");
    assert!(output.stderr.contains("wrong passphrase"), "{output}");
    assert!(
        !output.stderr.contains(passphrase),
        "passphrase leaked: {output}"
    );
}

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;

    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn root_rotation_changes_key() {
    let old_passphrase = "old root passphrase 41f";
    let new_passphrase = format!("new root passphrase {}", random_hex(8));
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", old_passphrase);
    let root = init.root_token.clone();
    let server = Server::start(&init, work.path());
    let http = server.http();
    for index in 0..3 {
        http.write_secret(
            &format!("app/s{index}"),
            &root,
            &json!({ "value": format!("value-{index}") }),
        );
    }
    drop(http);

    let rotated = crate::harness::run(
        keyward(&[
            "keys",
            "rotate-root",
            "--new-passphrase-env",
            NEW_PASSPHRASE_VAR,
            "--format",
            "json",
        ])
        .envs(server.cli_env(&root))
        .env(NEW_PASSPHRASE_VAR, &new_passphrase),
    );
    assert_ok(&rotated, "keys rotate-root --new-passphrase-env");
    assert_eq!(rotated.json()["kdf"], "pbkdf2-hmac-sha256");
    let status = server.terminate();
    assert!(status.success(), "{status}");

    assert_passphrase_rejected(&init, old_passphrase);
    let renewed = InitDir {
        passphrase: new_passphrase.clone(),
        dir: init.dir.clone(),
        config: init.config.clone(),
        ca_file: init.ca_file.clone(),
        root_token: root.clone(),
    };
    let server = Server::start(&renewed, work.path());
    assert_secrets_intact(&server, &root);

    // Switch to a key file and let the command point the configuration at it. The server
    // is then killed, not stopped, to show the new keyring was saved at once.
    let key_file = work.path().join("root.key");
    let switched = server.cli(
        &root,
        &[
            "keys",
            "rotate-root",
            "--new-key-file",
            &key_file.display().to_string(),
            "--config",
            &init.config.display().to_string(),
            "--format",
            "json",
        ],
    );
    assert_ok(&switched, "keys rotate-root --new-key-file --config");
    assert_eq!(
        switched.json(),
        json!({ "kdf": "raw", "previous_kdf": "pbkdf2-hmac-sha256", "config_updated": true })
    );
    assert_eq!(file_mode(&key_file), 0o600);
    server.crash();

    let server = Server::start(&renewed, work.path());
    assert_secrets_intact(&server, &root);
    let audit = std::fs::read_to_string(server.audit_log()).expect("audit log");
    assert!(
        !audit.contains(&new_passphrase),
        "passphrase in the audit log"
    );
    for entry in std::fs::read_dir(work.path()).expect("list the test dir") {
        let log = entry.expect("dir entry").path();
        if log.extension().is_some_and(|ext| ext == "stderr") {
            let text = std::fs::read_to_string(&log).expect("read server log");
            assert!(
                !text.contains(&new_passphrase),
                "passphrase in {}",
                log.display()
            );
        }
    }
}

#[test]
fn configured_encryption_limit_rotates_key() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "encryption limit passphrase");
    let root = init.root_token.clone();

    // A tiny budget, so a handful of writes reaches it.
    let config = std::fs::read_to_string(&init.config).expect("config readable");
    let default_line = format!("data_key_rotate_after = {DEFAULT_ROTATE_AFTER}");
    assert!(
        config.contains(&default_line),
        "init wrote no default limit:\n{config}"
    );
    std::fs::write(
        &init.config,
        config.replace(&default_line, "data_key_rotate_after = 5"),
    )
    .expect("config writable");

    let server = Server::start(&init, work.path());
    for index in 0..8 {
        let value = format!("value={index}");
        assert_ok(
            &server.cli(&root, &["kv", "put", &format!("limit/s{index}"), &value]),
            "kv put",
        );
    }

    let states = key_states(&server, &root);
    assert!(
        states.len() >= 2,
        "no rotation at the configured limit: {states:?}"
    );
    let active: Vec<&u64> = states
        .iter()
        .filter(|(_, (state, _))| state == "active")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        active,
        vec![states.keys().max().expect("a key")],
        "{states:?}"
    );

    for index in 0..8 {
        let read = server.cli(
            &root,
            &["kv", "get", &format!("limit/s{index}"), "--field", "value"],
        );
        assert_ok(&read, "kv get");
        assert_eq!(read.stdout.trim(), index.to_string());
    }
}

/// The encryption limit `init` writes by default: 2^30.
const DEFAULT_ROTATE_AFTER: u64 = 1 << 30;

#[test]
fn argon2id_keyring_reopens_after_restart() {
    let work = temp_dir();
    let dir = work.path().join("data");
    let passphrase = "argon2id restart passphrase";
    let output = run_with_timeout(
        keyward(&[
            "init",
            "--format",
            "json",
            "--kdf",
            "argon2id",
            "--passphrase-env",
        ])
        .arg(crate::harness::PASSPHRASE_VAR)
        .arg("--data-dir")
        .arg(&dir)
        .env(crate::harness::PASSPHRASE_VAR, passphrase),
        Duration::from_secs(60),
    )
    .expect("init finishes");
    assert_ok(&output, "init --kdf argon2id");

    let keyring = std::fs::read_to_string(dir.join("keyring.json")).expect("keyring written");
    let keyring: Value = serde_json::from_str(&keyring).expect("keyring is JSON");
    assert_eq!(keyring["kdf"]["algorithm"], json!("argon2id"), "{keyring}");

    let printed = output.json();
    let init = InitDir {
        dir: dir.clone(),
        config: printed["config"].as_str().expect("config").into(),
        ca_file: printed["ca_file"].as_str().expect("ca_file").into(),
        root_token: printed["root_token"]
            .as_str()
            .expect("root_token")
            .to_owned(),
        passphrase: passphrase.to_owned(),
    };
    let root = init.root_token.clone();

    let server = Server::start(&init, work.path());
    assert_ok(
        &server.cli(&root, &["kv", "put", "argon/db", "password=kept"]),
        "kv put",
    );
    server.terminate();

    let server = Server::start(&init, work.path());
    let read = server.cli(&root, &["kv", "get", "argon/db", "--field", "password"]);
    assert_ok(&read, "kv get after restart");
    assert_eq!(read.stdout.trim(), "kept");
}
