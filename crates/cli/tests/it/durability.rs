//! Durability and storage safety of a real data dir. Acknowledged writes survive a graceful
//! stop and a SIGKILL in the middle of a write burst, and a wrong passphrase changes nothing.
//! The SQLite files contain no plaintext value, and a ciphertext moved to another row does not
//! decrypt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Http, InitDir, Server, random_hex, run, run_with_timeout, send, temp_dir};

/// Sets a high `max_versions` so that no version written by a test is pruned.
fn keep_all_versions(http: &Http, token: &str, path: &str) {
    let response = http.request(
        "POST",
        &format!("secret/metadata/{path}"),
        Some(token),
        Some(&json!({ "max_versions": 1000 })),
    );
    assert!(
        response.status == 204 || response.status == 200,
        "metadata write failed: {response:?}"
    );
}

#[test]
fn restart_keeps_acknowledged_writes() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "restart passphrase");
    let server = Server::start(&init, work.path());
    let http = server.http();
    let root = init.root_token.clone();
    keep_all_versions(&http, &root, "app/db");

    for version in 1..=20u64 {
        let written = http.write_secret(
            "app/db",
            &root,
            &json!({ "pass": format!("value-{version}") }),
        );
        assert_eq!(written, version);
    }
    drop(http);
    let status = server.terminate();
    assert!(
        status.success(),
        "SIGTERM should stop the server cleanly: {status}"
    );

    let server = Server::start(&init, work.path());
    let http = server.http();
    for version in 1..=20u64 {
        let response = http.get(&format!("secret/data/app/db?version={version}"), &root);
        assert_eq!(response.status, 200, "version {version}: {response:?}");
        assert_eq!(
            response.json()["data"]["data"]["pass"],
            format!("value-{version}"),
            "version {version}"
        );
    }
    let metadata = http.get("secret/metadata/app/db", &root).json();
    assert_eq!(metadata["data"]["current_version"], 20);
}

#[test]
fn sigkill_during_burst_loses_no_acknowledged_write() {
    const TASKS: usize = 8;
    const PATHS: usize = 4;
    const BURST: Duration = Duration::from_secs(2);
    // A pause after each write keeps the burst at a few hundred writes, so that reading them
    // all back stays quick on a small machine.
    const PAUSE: Duration = Duration::from_millis(20);

    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "burst passphrase");
    let server = Server::start(&init, work.path());
    let http = server.http();
    let root = init.root_token.clone();
    for path in 0..PATHS {
        keep_all_versions(&http, &root, &format!("burst/p{path}"));
    }

    // Eight writers on four secrets, two per secret so that versions interleave. Each records
    // the (path, version, value) of every write the server acknowledged with 200, and counts
    // the others.
    let deadline = Instant::now() + BURST;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = http.client().clone();
        let url = http.url(&format!("secret/data/burst/p{}", task % PATHS));
        let root = root.clone();
        tasks.push(http.runtime().spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed = 0usize;
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                sequence += 1;
                let value = format!("task{task}-write{sequence}");
                let request = client
                    .put(&url)
                    .header("X-Vault-Token", &root)
                    .json(&json!({ "data": { "value": value } }));
                match send(request).await {
                    Ok(response) if response.status == 200 => {
                        if let Some(version) = response.json()["data"]["version"].as_u64() {
                            acknowledged.push((task % PATHS, version, value));
                        }
                    }
                    // Refused or cut off by the kill: not acknowledged.
                    _ => failed += 1,
                }
                tokio::time::sleep(PAUSE).await;
            }
            (acknowledged, failed)
        }));
    }

    // Kill the server while the writers are still running.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(BURST - Duration::from_millis(300));
        server.crash();
    });
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (task_acknowledged, task_failed) =
            http.runtime().block_on(task).expect("writer task finished");
        acknowledged.extend(task_acknowledged);
        failed += task_failed;
    }
    killer.join().expect("killer thread finished");
    assert!(
        failed > 0,
        "no write failed, so the kill came after the burst"
    );
    assert!(
        acknowledged.len() >= 50,
        "the burst acknowledged only {} writes; the test needs more to mean anything",
        acknowledged.len()
    );

    // Two acknowledged writes must never share a version of one secret.
    let mut seen = BTreeMap::new();
    for (path, version, value) in &acknowledged {
        if let Some(other) = seen.insert((path, version), value) {
            panic!("p{path} version {version} was acknowledged twice: {other} and {value}");
        }
    }

    let server = Server::start(&init, work.path());
    let http = server.http();
    for (path, version, value) in &acknowledged {
        let response = http.get(
            &format!("secret/data/burst/p{path}?version={version}"),
            &root,
        );
        assert_eq!(
            response.status, 200,
            "p{path} version {version} lost: {response:?}"
        );
        assert_eq!(
            response.json()["data"]["data"]["value"],
            *value,
            "p{path} version {version} has the wrong value"
        );
    }
    eprintln!(
        "{} acknowledged writes survived SIGKILL ({failed} writes were not acknowledged)",
        acknowledged.len()
    );
}

/// Reads every file under `dir` (relative path to bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read data dir") {
            let path = entry.expect("read dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read data file");
                let relative = path.strip_prefix(dir).expect("inside data dir").to_owned();
                files.insert(relative, bytes);
            }
        }
    }
    files
}

#[test]
fn wrong_passphrase_fails_and_changes_nothing() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "the right passphrase");
    let server = Server::start(&init, work.path());
    server
        .http()
        .write_secret("app/db", &init.root_token, &json!({ "k": "v" }));
    server.terminate();
    let before = snapshot(&init.dir);

    let mut command =
        Server::config_command(&init, "the wrong passphrase", crate::harness::free_port());
    let output = run_with_timeout(&mut command, Duration::from_secs(30))
        .expect("a server with a wrong passphrase must exit, not serve");

    assert_eq!(
        output.code,
        Some(3),
        "wrong passphrase exit code:\n{output}"
    );
    let message = output.stderr.trim();
    assert_eq!(
        message.lines().count(),
        1,
        "expected a one-line error:\n{output}"
    );
    assert!(
        message.contains("wrong passphrase"),
        "unclear error: {message}"
    );
    assert!(
        !message.contains("the wrong passphrase"),
        "the passphrase leaked: {message}"
    );
    assert!(
        !message.contains("the right passphrase"),
        "the passphrase leaked: {message}"
    );
    let after = snapshot(&init.dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the set of files changed"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Returns the bytes of the database and its WAL, with the WAL's name for messages.
fn database_files(init: &InitDir) -> Vec<(PathBuf, Vec<u8>)> {
    let database = init.database();
    let mut wal = database.clone().into_os_string();
    wal.push("-wal");
    [database, PathBuf::from(wal)]
        .into_iter()
        .filter(|path| path.exists())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read database file");
            (path, bytes)
        })
        .collect()
}

#[test]
fn database_files_hold_no_plaintext() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "canary passphrase");
    let server = Server::start(&init, work.path());
    let http = server.http();
    let canary = format!("canary-{}", random_hex(16));
    for round in 0..5 {
        http.write_secret(
            &format!("app/canary{round}"),
            &init.root_token,
            &json!({ "value": canary, "round": round.to_string() }),
        );
    }
    let read = http.get("secret/data/app/canary0", &init.root_token).json();
    assert_eq!(read["data"]["data"]["value"], canary.as_str());

    let files = database_files(&init);
    assert!(
        files
            .iter()
            .any(|(path, _)| path.to_string_lossy().ends_with("-wal")),
        "expected a WAL file while the server runs"
    );
    for (path, bytes) in &files {
        assert!(!bytes.is_empty() || path.to_string_lossy().ends_with("-wal"));
        assert!(
            !contains(bytes, canary.as_bytes()),
            "{} holds the plaintext",
            path.display()
        );
        assert!(
            !contains(bytes, init.root_token.as_bytes()),
            "{} holds the root token",
            path.display()
        );
    }

    drop(http);
    server.terminate();
    for (path, bytes) in database_files(&init) {
        assert!(
            !contains(&bytes, canary.as_bytes()),
            "{} holds the plaintext",
            path.display()
        );
        assert!(
            !contains(&bytes, init.root_token.as_bytes()),
            "{} holds the root token",
            path.display()
        );
    }
}

/// Runs a Python script with the standard library's sqlite3 module against `database`.
fn python_sqlite(database: &Path, script: &str) -> String {
    let output = run(Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\n{script}"
        ))
        .arg(database));
    assert!(output.success(), "python3 sqlite3 script failed:\n{output}");
    output.stdout
}

#[test]
fn moved_ciphertext_does_not_decrypt() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "swap passphrase");
    let server = Server::start(&init, work.path());
    let http = server.http();
    let root = init.root_token.clone();
    http.write_secret("swap/source", &root, &json!({ "value": "source-secret" }));
    http.write_secret("swap/target", &root, &json!({ "value": "target-secret" }));
    drop(http);
    server.terminate();

    let changed = python_sqlite(
        &init.database(),
        "cur = db.execute(\"UPDATE secret_versions SET ciphertext = \
         (SELECT ciphertext FROM secret_versions WHERE path = 'swap/source' AND version = 1) \
         WHERE path = 'swap/target' AND version = 1\")\n\
         db.commit()\nprint(cur.rowcount)",
    );
    assert_eq!(changed.trim(), "1", "expected to change one row");

    let server = Server::start(&init, work.path());
    let http = server.http();
    let response = http.get("secret/data/swap/target", &root);
    assert!(
        (500..600).contains(&response.status),
        "a moved ciphertext must not decrypt: {response:?}"
    );
    let body = response.text();
    assert!(!body.contains("source-secret"), "{body}");
    assert!(
        !body.contains("swap/source"),
        "the error leaks details: {body}"
    );
    assert_eq!(
        response.json()["errors"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );

    // The server keeps serving: the untouched row reads, and new writes work.
    let response = http.get("secret/data/swap/source", &root);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["data"]["data"]["value"], "source-secret");
    let version = http.write_secret("swap/target", &root, &json!({ "value": "repaired" }));
    assert_eq!(version, 2);
    let response = http.get("secret/data/swap/target", &root);
    assert_eq!(response.json()["data"]["data"]["value"], "repaired");
}
