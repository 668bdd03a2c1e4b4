//! Errors of the `keyward` CLI that a new user meets first: each exits with the documented
//! code (1 other, 2 usage, 3 auth, 5 connection) and names what to fix. Most of these fail
//! before anything is sent, so they need no server.

use std::path::Path;

use crate::harness::{InitDir, Output, PASSPHRASE_VAR, Server, free_port, keyward, run, temp_dir};

/// Variable that carries a new passphrase to `keys rotate-root`.
const NEW_PASSPHRASE_VAR: &str = "KEYWARD_TEST_NEW_PASSPHRASE";

/// Asserts the exit code and that standard error contains `expected`.
fn assert_fails(output: &Output, code: i32, expected: &str) {
    assert_eq!(
        output.code,
        Some(code),
        "expected exit code {code}:\n{output}"
    );
    assert!(
        output.stderr.contains(expected),
        "stderr lacks {expected:?}:\n{output}"
    );
}

/// Runs `keyward kv get app/db` with the given client variables and no others.
fn kv_get_with(vars: &[(&str, &str)]) -> Output {
    let mut command = keyward(&["kv", "get", "app/db"]);
    command.envs(vars.iter().copied());
    run(&mut command)
}

/// Returns an address on which nothing listens.
fn unused_addr() -> String {
    format!("https://127.0.0.1:{}", free_port())
}

#[test]
fn missing_token_fails_before_sending() {
    let addr = unused_addr();

    // Nothing listens at the address, so a request would exit with 5, not 2.
    let unset = kv_get_with(&[("KEYWARD_ADDR", &addr)]);
    let empty = kv_get_with(&[("KEYWARD_ADDR", &addr), ("KEYWARD_TOKEN", "")]);

    for output in [unset, empty] {
        assert_fails(&output, 2, "no token: set KEYWARD_TOKEN or pass --token");
    }
}

#[test]
fn invalid_addr_is_usage_error() {
    let cases = [
        ("127.0.0.1:8200", "expected https://HOST:PORT"),
        ("localhost", "expected https://HOST:PORT"),
        ("https://", "expected https://HOST:PORT"),
        ("http://127.0.0.1:8200", "Keyward serves HTTPS only"),
    ];
    for (addr, reason) in cases {
        let output = kv_get_with(&[("KEYWARD_ADDR", addr), ("KEYWARD_TOKEN", "kw_example")]);

        assert_fails(
            &output,
            2,
            &format!("invalid KEYWARD_ADDR {addr:?}: {reason}"),
        );
    }
}

#[test]
fn unusable_ca_file_is_usage_error() {
    let work = temp_dir();
    let not_pem = work.path().join("ca.der");
    std::fs::write(&not_pem, b"\x30\x82\x01\x0a not a PEM file\n").expect("write the file");
    let missing = work.path().join("missing.pem");
    let addr = unused_addr();
    let with_ca = |ca: &Path| {
        kv_get_with(&[
            ("KEYWARD_ADDR", &addr),
            ("KEYWARD_TOKEN", "kw_example"),
            ("KEYWARD_CACERT", &ca.display().to_string()),
        ])
    };

    assert_fails(
        &with_ca(&not_pem),
        2,
        &format!(
            "no certificate found in {} (expected a PEM file)",
            not_pem.display()
        ),
    );
    assert_fails(
        &with_ca(&missing),
        2,
        &format!("cannot read CA file {}", missing.display()),
    );
    assert_fails(
        &with_ca(work.path()),
        2,
        &format!("cannot read CA file {}", work.path().display()),
    );
}

#[test]
fn refused_connection_names_what_to_check() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "refused passphrase");
    let addr = unused_addr();

    let output = kv_get_with(&[
        ("KEYWARD_ADDR", &addr),
        ("KEYWARD_CACERT", &init.ca_file.display().to_string()),
        ("KEYWARD_TOKEN", &init.root_token),
    ]);

    assert_fails(
        &output,
        5,
        &format!("cannot connect to {addr}: is the server running? (check KEYWARD_ADDR)"),
    );
}

#[test]
fn untrusted_certificate_names_ca_file() {
    let server = Server::dev();
    let work = temp_dir();
    let other = InitDir::create(work.path(), "other", "other CA passphrase");

    let output = kv_get_with(&[
        ("KEYWARD_ADDR", &server.url),
        ("KEYWARD_CACERT", &other.ca_file.display().to_string()),
        ("KEYWARD_TOKEN", &server.root_token),
    ]);

    assert_fails(
        &output,
        5,
        &format!(
            "TLS handshake with {} failed: the server's certificate is not trusted by \
             KEYWARD_CACERT ({})",
            server.url,
            other.ca_file.display()
        ),
    );
    assert!(
        !output.stderr.contains(&server.root_token),
        "the token leaked: {output}"
    );
}

#[test]
fn lockout_exits_with_three() {
    let server = Server::dev();
    let http = server.http();

    // The dev server locks an address out after 20 failed authentications within a minute.
    let locked = (0..40).any(|_| {
        let response = http.request("GET", "secret/data/app/db", Some("kw-wrong-token"), None);
        response.status == 429
    });
    assert!(
        locked,
        "40 failed authentications did not lock the address out"
    );

    let output = server.cli(&server.root_token, &["kv", "get", "app/db"]);

    assert_fails(
        &output,
        3,
        "the server locks out this address for a few minutes after repeated failures",
    );
}

#[test]
fn bad_ttl_is_rejected_before_sending() {
    let addr = unused_addr();
    let create = |ttl: &str| {
        run(keyward(&["token", "create", &format!("--ttl={ttl}")])
            .env("KEYWARD_ADDR", &addr)
            .env("KEYWARD_TOKEN", "kw_example"))
    };

    for ttl in ["1x", "1h30", "-5m", "0s"] {
        assert_fails(
            &create(ttl),
            2,
            &format!("invalid value '{ttl}' for '--ttl <DURATION>'"),
        );
    }
    // Plain seconds are valid, so this command gets as far as the missing CA file.
    assert_fails(&create("90"), 2, "no CA certificate");
}

#[test]
fn invalid_policy_name_is_usage_error() {
    let work = temp_dir();
    let policy = work.path().join("reader.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/*\" { capabilities = [\"read\"] }\n",
    )
    .expect("write the policy file");

    for name in ["team/reader", "read er", ".."] {
        let output = run(keyward(&["policy", "write", name])
            .arg(&policy)
            .env("KEYWARD_ADDR", unused_addr())
            .env("KEYWARD_TOKEN", "kw_example"));

        assert_fails(
            &output,
            2,
            &format!("invalid policy name {name:?}: use 1 to 128 characters of A-Z a-z 0-9 . _ -"),
        );
    }
}

#[test]
fn duplicate_kv_key_is_usage_error() {
    let output = run(keyward(&["kv", "put", "app/db", "a=1", "a=2"])
        .env("KEYWARD_ADDR", unused_addr())
        .env("KEYWARD_TOKEN", "kw_example"));

    assert_fails(&output, 2, "duplicate key a");
}

#[test]
fn audit_verify_unreadable_log_exits_one() {
    let work = temp_dir();
    let missing = work.path().join("audit.log");

    let missing_output = run(keyward(&["audit", "verify"]).arg(&missing));
    let dir_output = run(keyward(&["audit", "verify"]).arg(work.path()));

    assert_fails(
        &missing_output,
        1,
        &format!("cannot read audit log {}: ", missing.display()),
    );
    assert_fails(
        &dir_output,
        1,
        &format!(
            "cannot read audit log {}: it is a directory",
            work.path().display()
        ),
    );
    for output in [&missing_output, &dir_output] {
        assert!(
            !output.stderr.contains("verification failed"),
            "an unreadable log is not a failed verification:\n{output}"
        );
    }
}

#[test]
fn short_passphrase_is_rejected() {
    let work = temp_dir();
    let dir = work.path().join("data");

    let init = run(
        keyward(&["init", "--passphrase-env", PASSPHRASE_VAR, "--data-dir"])
            .arg(&dir)
            .env(PASSPHRASE_VAR, "eleven char"),
    );
    let rotate = run(keyward(&[
        "keys",
        "rotate-root",
        "--new-passphrase-env",
        NEW_PASSPHRASE_VAR,
    ])
    .env(NEW_PASSPHRASE_VAR, "short")
    .env("KEYWARD_ADDR", unused_addr())
    .env("KEYWARD_TOKEN", "kw_example"));

    assert_fails(&init, 2, "passphrase too short: use at least 12 characters");
    assert!(!dir.exists(), "init created the data dir anyway");
    assert_fails(
        &rotate,
        2,
        "passphrase too short: use at least 12 characters",
    );
}

#[test]
fn server_without_config_names_both_options() {
    let output = run(&mut keyward(&["server"]));

    assert_fails(&output, 2, "--config");
    assert!(output.stderr.contains("--dev"), "{output}");
}
