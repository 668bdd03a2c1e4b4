//! `keyward doctor` on a data dir made by `keyward init`: a fresh deployment passes, a
//! world-readable keyring fails with the file and the fix, and a root token in
//! `KEYWARD_TOKEN` gets a warning from the running server.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{InitDir, Output, PASSPHRASE_VAR, Server, keyward, run, temp_dir};

/// Long and mixed enough to pass the passphrase check.
const PASSPHRASE: &str = "Doctor passphrase 2024";

fn doctor(init: &InitDir, args: &[&str]) -> Output {
    run(keyward(&["doctor", "--config"])
        .arg(&init.config)
        .args(args)
        .env(PASSPHRASE_VAR, PASSPHRASE))
}

/// Returns the lines of a table that do not start with `PASS` and are not the summary.
fn non_pass_lines(output: &Output) -> Vec<&str> {
    output
        .stdout
        .lines()
        .filter(|line| !line.starts_with("PASS  ") && !line.contains(" checks: "))
        .collect()
}

#[test]
fn fresh_init_passes_doctor() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", PASSPHRASE);

    let output = doctor(&init, &[]);

    assert_eq!(output.code, Some(0), "{output}");
    assert_eq!(
        non_pass_lines(&output),
        ["SKIP  root token: KEYWARD_TOKEN is not set, so no token can be checked"],
        "{output}"
    );
    assert!(
        output.stdout.contains("PASS  data dir permissions"),
        "{output}"
    );
    assert!(output.stdout.contains("PASS  audit log chain"), "{output}");
    assert!(
        output.stdout.contains("0 warnings, 0 failed, 1 skipped"),
        "{output}"
    );
    assert!(!output.stdout.contains(PASSPHRASE), "{output}");
}

#[test]
fn readable_keyring_fails_doctor() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", PASSPHRASE);
    let keyring = init.dir.join("keyring.json");
    std::fs::set_permissions(&keyring, Permissions::from_mode(0o644)).expect("chmod keyring");

    let output = doctor(&init, &[]);

    assert_eq!(output.code, Some(1), "{output}");
    let expected = format!(
        "FAIL  {path} mode 0644 lets other users read or change it: run chmod 600 {path}",
        path = keyring.display()
    );
    assert!(
        output.stdout.lines().any(|line| line == expected),
        "no line {expected:?}:\n{output}"
    );
    assert!(output.stderr.contains("1 of "), "{output}");

    let json = doctor(&init, &["--format", "json"]);
    assert_eq!(json.code, Some(1), "{json}");
    let report = json.json();
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["warnings"], 0, "{report}");
    let failed: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .filter(|check| check["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["name"], "keyring.json permissions", "{report}");
    assert_eq!(
        failed[0]["fix"],
        format!("run chmod 600 {}", keyring.display()),
        "{report}"
    );
}

#[test]
fn root_token_in_use_warns() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", PASSPHRASE);
    let server = Server::start(&init, work.path());

    let output = run(keyward(&["doctor", "--config"])
        .arg(&init.config)
        .envs(server.cli_env(&init.root_token))
        .env(PASSPHRASE_VAR, PASSPHRASE));

    assert_eq!(output.code, Some(0), "{output}");
    assert_eq!(
        non_pass_lines(&output),
        [
            "WARN  a root token is in use: create a narrower token for applications and revoke \
             this one (keyward token revoke)"
        ],
        "{output}"
    );
    assert!(!output.stdout.contains(&init.root_token), "{output}");
    assert!(!output.stderr.contains(&init.root_token), "{output}");
}
