//! The README's first steps as a new user takes them: `init`'s text output, help texts, the
//! version flags, `token create`'s table, and the hints for paths copied from `bao kv`.

use std::process::Command;

use crate::harness::{Output, PASSPHRASE_VAR, Server, keyward, run, temp_dir};

fn assert_ok(output: &Output, case: &str) {
    assert!(output.success(), "{case} failed:\n{output}");
}

/// Returns the value after `label` on the first line that starts with it.
fn labelled<'a>(output: &'a Output, label: &str) -> &'a str {
    output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no line starts with {label:?}:\n{output}"))
}

#[test]
fn init_prints_export_lines() {
    let work = temp_dir();
    let dir = work.path().join("it's data");

    let output = run(keyward(&[
        "init",
        "--listen",
        "127.0.0.1:8300",
        "--passphrase-env",
        PASSPHRASE_VAR,
        "--data-dir",
    ])
    .arg(&dir)
    .env(PASSPHRASE_VAR, "first use passphrase"));

    assert_ok(&output, "keyward init");
    let ca_file = labelled(&output, "CA file:");
    let token = labelled(&output, "Root token:");
    let exports: Vec<&str> = output
        .stdout
        .lines()
        .filter(|line| line.starts_with("export "))
        .collect();
    assert_eq!(exports.len(), 3, "{output}");

    // A shell must read the lines back to the same values, quotes in the path included.
    let script = format!(
        "{}\nprintf '%s\\n' \"$KEYWARD_ADDR\" \"$KEYWARD_CACERT\" \"$KEYWARD_TOKEN\" \
         \"$BAO_ADDR\" \"$VAULT_CACERT\"",
        exports.join("\n")
    );
    let shell = run(Command::new("sh").args(["-c", &script]));
    assert_ok(&shell, "sh reading the export lines");
    let values: Vec<&str> = shell.stdout.lines().collect();
    assert_eq!(
        values,
        [
            "https://127.0.0.1:8300",
            ca_file,
            token,
            "https://127.0.0.1:8300",
            ca_file
        ]
    );
    assert!(
        output
            .stdout
            .contains("self-signed development certificate for localhost, 127.0.0.1, ::1 only"),
        "{output}"
    );
}

#[test]
fn init_json_includes_client_addr() {
    let work = temp_dir();
    let output = run(keyward(&[
        "init",
        "--format",
        "json",
        "--listen",
        "0.0.0.0:8301",
        "--passphrase-env",
        PASSPHRASE_VAR,
        "--data-dir",
    ])
    .arg(work.path().join("data"))
    .env(PASSPHRASE_VAR, "first use passphrase"));

    assert_ok(&output, "keyward init --format json");
    assert_eq!(output.json()["addr"], "https://127.0.0.1:8301");
}

#[test]
fn help_texts_explain_defaults() {
    let init = run(&mut keyward(&["init", "--help"]));
    assert!(
        init.stdout
            .contains("Output format: table (text) or json (includes the root token)"),
        "{init}"
    );

    let create = run(&mut keyward(&["token", "create", "--help"]));
    let text = create
        .stdout
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for expected in [
        "768h, capped at the server's maximum token TTL",
        "90s, 15m or 1h30m",
        "a root caller creates another root token",
    ] {
        assert!(
            text.contains(expected),
            "help lacks {expected:?}:\n{create}"
        );
    }

    let get = run(&mut keyward(&["kv", "get", "--help"]));
    assert!(get.stdout.contains("--version <VERSION>"), "{get}");
}

#[test]
fn version_flags_stay_apart() {
    for flag in ["-V", "--version"] {
        let output = run(&mut keyward(&[flag]));
        assert_ok(&output, flag);
        assert!(output.stdout.starts_with("keyward "), "{output}");
    }

    // `kv get` uses --version for a secret's version, so -V is not a flag there.
    let short = run(&mut keyward(&["kv", "get", "-V"]));
    assert_eq!(short.code, Some(2), "{short}");
    assert!(short.stderr.contains("unexpected argument '-V'"), "{short}");
    let no_value = run(&mut keyward(&["kv", "get", "app/db", "--version"]));
    assert_eq!(no_value.code, Some(2), "{no_value}");
    assert!(
        no_value.stderr.contains("--version <VERSION>"),
        "{no_value}"
    );
}

#[test]
fn token_create_table_shows_duration_unit() {
    let server = Server::dev();

    let output = server.cli(
        &server.root_token,
        &["token", "create", "--policy", "default", "--ttl", "1h30m"],
    );

    assert_ok(&output, "token create");
    assert_eq!(labelled(&output, "token_duration"), "1h30m");
}

#[test]
fn kv_paths_copied_from_bao_get_hints() {
    let server = Server::dev();
    let root = server.root_token.clone();
    assert_ok(
        &server.cli(&root, &["kv", "put", "app/db", "k=v"]),
        "kv put",
    );

    let get = server.cli(&root, &["kv", "get", "secret/app/db"]);
    assert_eq!(get.code, Some(4), "{get}");
    assert!(
        get.stderr
            .contains("(keyward kv paths omit the secret/ mount; try app/db)"),
        "{get}"
    );

    let leading = server.cli(&root, &["kv", "get", "/app/db"]);
    assert_eq!(leading.code, Some(2), "{leading}");
    assert!(
        leading
            .stderr
            .contains("secret paths have no leading slash"),
        "{leading}"
    );

    // The mount-prefixed path is valid: it names the secret secret/data/secret/app/db.
    let put = server.cli(&root, &["kv", "put", "secret/app/db", "k=other"]);
    assert_ok(&put, "kv put secret/app/db");
    assert!(
        put.stderr
            .contains("keyward kv paths omit the secret/ mount"),
        "{put}"
    );
    let read = server.cli(&root, &["kv", "get", "secret/app/db", "--field", "k"]);
    assert_eq!(read.stdout.trim(), "other", "{read}");
    let original = server.cli(&root, &["kv", "get", "app/db", "--field", "k"]);
    assert_eq!(original.stdout.trim(), "v", "{original}");
}

#[test]
fn audit_verify_reports_partial_line() {
    let server = Server::dev();
    assert_ok(
        &server.cli(&server.root_token, &["kv", "put", "app/db", "k=v"]),
        "kv put",
    );
    let work = temp_dir();
    let copy = work.path().join("audit.log");
    let mut text = std::fs::read(server.audit_log()).expect("read the audit log");
    text.extend_from_slice(b"{\"seq\":");
    std::fs::write(&copy, text).expect("write the copy with a cut-off last line");

    let json = run(keyward(&["audit", "verify", "--format", "json"]).arg(&copy));
    let table = run(keyward(&["audit", "verify"]).arg(&copy));

    assert_ok(&json, "audit verify --format json");
    assert_eq!(json.json()["partial_last_line"], true, "{json}");
    assert_ok(&table, "audit verify");
    assert!(
        table
            .stdout
            .contains("warning: the log ends with a partial line"),
        "{table}"
    );
}
