//! `keyward run`, `keyward export` and `keyward import` against a dev server.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Server, client_scratch_dir, keyward, random_hex, run, signal, temp_dir};

/// Kills `keyward run` when a failing test unwinds, so it does not outlive the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn canary() -> String {
    format!("kw-canary-run-{}", random_hex(8))
}

#[test]
fn run_injects_fields_as_variables() {
    let server = Server::dev();
    let http = server.http();
    http.write_secret(
        "app/db",
        &server.root_token,
        &json!({ "password": "pw-value", "user-name": "app" }),
    );
    http.write_secret(
        "app/api",
        &server.root_token,
        &json!({ "key": "api-value" }),
    );

    let output = server.cli(
        &server.root_token,
        &[
            "run",
            "--secret",
            "app/db=DB_",
            "--secret",
            "app/api",
            "--",
            "sh",
            "-c",
            r#"echo "$DB_PASSWORD $DB_USER_NAME $KEY ${KEYWARD_TOKEN:-no-token}""#,
        ],
    );
    assert!(output.success(), "{output}");
    assert_eq!(output.stdout.trim(), "pw-value app api-value no-token");
}

#[test]
fn run_passes_exit_code_through() {
    let server = Server::dev();
    server
        .http()
        .write_secret("app/db", &server.root_token, &json!({ "a": "b" }));

    let exited = server.cli(
        &server.root_token,
        &["run", "--secret", "app/db", "--", "sh", "-c", "exit 7"],
    );
    assert_eq!(exited.code, Some(7), "{exited}");

    let killed = server.cli(
        &server.root_token,
        &[
            "run",
            "--secret",
            "app/db",
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
    );
    assert_eq!(killed.code, Some(128 + 15), "{killed}");
}

#[test]
fn missing_secret_fails_before_command_starts() {
    let server = Server::dev();
    let dir = temp_dir();
    let marker = dir.path().join("started");

    let output = server.cli(
        &server.root_token,
        &[
            "run",
            "--secret",
            "app/missing",
            "--",
            "touch",
            marker.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(output.code, Some(4), "{output}");
    assert!(output.stderr.contains("app/missing"), "{output}");
    assert!(
        !marker.exists(),
        "the command ran although a secret was missing"
    );
}

#[test]
fn mask_hides_values_in_output() {
    let server = Server::dev();
    let value = canary();
    server
        .http()
        .write_secret("app/db", &server.root_token, &json!({ "password": value }));

    // The value goes out in two writes with a pause between them, and once on standard error.
    let script = r#"half=$(( ${#PASSWORD} / 2 ))
printf 'start %s' "$(printf %s "$PASSWORD" | cut -c1-$half)"
sleep 0.2
printf '%s end\n' "$(printf %s "$PASSWORD" | cut -c$((half + 1))-)"
echo "err $PASSWORD" >&2
echo "plain line""#;
    let output = server.cli(
        &server.root_token,
        &[
            "run", "--mask", "--secret", "app/db", "--", "sh", "-c", script,
        ],
    );
    assert!(output.success(), "{output}");
    assert_eq!(output.stdout, "start ***** end\nplain line\n");
    assert!(output.stderr.contains("err *****"), "{output}");
    assert!(!output.stdout.contains(&value));
    assert!(!output.stderr.contains(&value));
    assert!(!server.stderr().contains(&value));
}

#[test]
fn watch_restarts_command_on_change() {
    let server = Server::dev();
    let http = server.http();
    http.write_secret(
        "app/db",
        &server.root_token,
        &json!({ "password": "first" }),
    );
    let dir = temp_dir();
    let log = dir.path().join("starts.log");
    let script = format!(
        r#"echo "start $PASSWORD" >> {log}
trap 'echo stopped >> {log}; exit 0' HUP
while true; do sleep 0.05; done"#,
        log = log.display()
    );

    let mut command = keyward(&[
        "run",
        "--watch",
        "--restart-signal",
        "HUP",
        "--secret",
        "app/db",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let mut child = command
        .envs(server.cli_env(&server.root_token))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyward run");

    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_for = |wanted: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !read_log().contains(wanted) {
            assert!(
                Instant::now() < deadline,
                "log never showed {wanted:?}:\n{}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("start first");

    let written_at = Instant::now();
    http.write_secret(
        "app/db",
        &server.root_token,
        &json!({ "password": "second" }),
    );
    wait_for("start second");
    assert!(
        written_at.elapsed() < Duration::from_secs(3),
        "restart took {:?}",
        written_at.elapsed()
    );
    assert_eq!(read_log(), "start first\nstopped\nstart second\n");

    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait for keyward run") {
            assert_eq!(
                status.code(),
                Some(143),
                "keyward run passes on the child's SIGTERM death"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keyward run did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn export_and_import_round_trip() {
    let server = Server::dev();
    let data = json!({
        "plain": "abc",
        "quotes": "say \"hi\" and 'bye'",
        "multi_line": "-----BEGIN-----\nline\n-----END-----",
        "shell": "$HOME ${X} `cmd` \\ # not a comment",
        "empty": "",
    });
    server
        .http()
        .write_secret("app/source", &server.root_token, &data);

    let exported = server.cli(
        &server.root_token,
        &["export", "--format", "dotenv", "app/source"],
    );
    assert!(exported.success(), "{exported}");
    // Client-side files hold secret values by design: keep them out of the leak scan.
    let dir = client_scratch_dir();
    let file = dir.path().join("source.env");
    std::fs::write(&file, &exported.stdout).expect("write the dotenv file");

    let imported = server.cli(
        &server.root_token,
        &["import", file.to_str().expect("UTF-8 path"), "app/copy"],
    );
    assert!(imported.success(), "{imported}");

    let copy = server.cli(
        &server.root_token,
        &["export", "--format", "json", "app/copy"],
    );
    assert!(copy.success(), "{copy}");
    assert_eq!(copy.json(), data);
}

#[test]
fn import_reads_handwritten_dotenv() {
    let server = Server::dev();
    let dir = client_scratch_dir();
    let file = dir.path().join("app.env");
    std::fs::write(
        &file,
        "# settings\nexport API_KEY=\"a\\nb\"\nHOST = example.org # comment\nRAW='no $expansion'\n\n",
    )
    .expect("write the dotenv file");

    let imported = server.cli(
        &server.root_token,
        &["import", file.to_str().expect("UTF-8 path"), "app/env"],
    );
    assert!(imported.success(), "{imported}");
    let exported = server.cli(
        &server.root_token,
        &["export", "--format", "json", "app/env"],
    );
    assert_eq!(
        exported.json(),
        json!({ "API_KEY": "a\nb", "HOST": "example.org", "RAW": "no $expansion" })
    );

    std::fs::write(&file, "GOOD=1\nkw-canary-bad line\n").expect("write the dotenv file");
    let rejected = server.cli(
        &server.root_token,
        &["import", file.to_str().expect("UTF-8 path"), "app/env2"],
    );
    assert_eq!(rejected.code, Some(2), "{rejected}");
    assert!(rejected.stderr.contains("line 2"), "{rejected}");
    assert!(!rejected.stderr.contains("kw-canary"), "{rejected}");
}

#[test]
fn run_rejects_bad_restart_signal() {
    let output = run(keyward(&[
        "run",
        "--restart-signal",
        "NOPE",
        "--secret",
        "app/db",
        "--",
        "true",
    ])
    .env("KEYWARD_TOKEN", "kwt.x")
    .env("KEYWARD_CACERT", "/nonexistent"));
    assert_eq!(output.code, Some(2), "{output}");
    assert!(output.stderr.contains("--restart-signal"), "{output}");
}

#[test]
fn client_commands_print_help() {
    for command in ["run", "export", "import"] {
        let output = run(&mut keyward(&[command, "--help"]));
        assert!(output.success(), "keyward {command} --help:\n{output}");
        assert!(output.stdout.contains("Usage: keyward"), "{output}");
    }
}

#[test]
fn exported_dotenv_sources_and_imports_safely() {
    let server = Server::dev();
    // Client-side files hold secret values by design: keep them out of the leak scan.
    let dir = client_scratch_dir();
    let ran = dir.path().join("command-ran");
    let ran = ran.to_str().expect("UTF-8 path");
    let value = format!(
        "a\"b$HOME`touch {ran}`$(touch {ran})\\x\\`'c' \\$ \\\\\" ${{X}} {}",
        canary()
    );
    server
        .http()
        .write_secret("app/source", &server.root_token, &json!({ "v": value }));

    let exported = server.cli(
        &server.root_token,
        &["export", "--format", "dotenv", "app/source"],
    );
    assert!(exported.success(), "{exported}");
    let file = dir.path().join("q.env");
    std::fs::write(&file, &exported.stdout).expect("write the dotenv file");
    let file = file.to_str().expect("UTF-8 path");

    let sourced = run(std::process::Command::new("sh").args([
        "-c",
        r#"set -a; . "$1"; printf %s "$v""#,
        "sh",
        file,
    ]));
    assert!(sourced.success(), "{sourced}");
    assert_eq!(sourced.stdout, value, "the shell read a different value");
    assert!(
        !std::path::Path::new(ran).exists(),
        "sourcing the exported file ran a command from the value"
    );

    let imported = server.cli(&server.root_token, &["import", file, "app/copy"]);
    assert!(imported.success(), "{imported}");
    assert!(
        imported
            .stderr
            .contains("imported 1 variable into app/copy"),
        "{imported}"
    );
    let copy = server.cli(
        &server.root_token,
        &["export", "--format", "json", "app/copy"],
    );
    assert!(copy.success(), "{copy}");
    assert_eq!(copy.json(), json!({ "v": value }));
}

#[test]
fn import_help_says_the_whole_secret_is_replaced() {
    let output = run(&mut keyward(&["import", "--help"]));
    assert!(output.success(), "{output}");
    assert!(
        output.stdout.contains("replaces the whole secret"),
        "{output}"
    );
}

#[test]
fn run_removes_tokens_from_the_command_environment() {
    let server = Server::dev();
    server
        .http()
        .write_secret("app/db", &server.root_token, &json!({ "password": "pw" }));
    let bao = format!("kw-canary-bao-{}", random_hex(8));
    let vault = format!("kw-canary-vault-{}", random_hex(8));

    let output = run(keyward(&["run", "--secret", "app/db", "--", "env"])
        .envs(server.cli_env(&server.root_token))
        .env("BAO_TOKEN", &bao)
        .env("VAULT_TOKEN", &vault)
        .env("KEYWARD_TOKEN_FILE", "/nonexistent/token")
        .env("VAULT_ADDR", "https://127.0.0.1:8200"));
    assert!(output.success(), "{output}");
    let names: Vec<&str> = output
        .stdout
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    for removed in [
        "KEYWARD_TOKEN",
        "KEYWARD_TOKEN_FILE",
        "BAO_TOKEN",
        "VAULT_TOKEN",
    ] {
        assert!(!names.contains(&removed), "{removed} reached the command");
    }
    assert!(!output.stdout.contains(&bao));
    assert!(!output.stdout.contains(&vault));
    assert!(!output.stdout.contains(&server.root_token));
    assert!(names.contains(&"PASSWORD"), "{output}");
    assert!(names.contains(&"VAULT_ADDR"), "{output}");
}

#[test]
fn run_refuses_fields_that_would_set_dangerous_variables() {
    let server = Server::dev();
    let http = server.http();
    let dir = temp_dir();
    let marker = dir.path().join("started");
    let marker = marker.to_str().expect("UTF-8 path");

    for (field, variable) in [
        ("path", "PATH"),
        ("ld_preload", "LD_PRELOAD"),
        ("bash_env", "BASH_ENV"),
        ("node-options", "NODE_OPTIONS"),
    ] {
        http.write_secret(
            "app/evil",
            &server.root_token,
            &json!({ field: "/tmp/kw-evil", "user": "ok" }),
        );
        let output = server.cli(
            &server.root_token,
            &["run", "--secret", "app/evil", "--", "touch", marker],
        );
        assert_eq!(output.code, Some(2), "{field}: {output}");
        assert!(output.stderr.contains(variable), "{output}");
        assert!(
            output.stderr.contains("--secret app/evil=PREFIX"),
            "{output}"
        );
        assert!(!output.stderr.contains("/tmp/kw-evil"), "{output}");
        assert!(
            !std::path::Path::new(marker).exists(),
            "the command ran with {variable} from a secret"
        );
    }

    // A prefix makes the field harmless, and ordinary names such as USER may still be set.
    let output = server.cli(
        &server.root_token,
        &[
            "run",
            "--secret",
            "app/evil=APP_",
            "--",
            "sh",
            "-c",
            r#"echo "$APP_NODE_OPTIONS $APP_USER""#,
        ],
    );
    assert!(output.success(), "{output}");
    assert_eq!(output.stdout.trim(), "/tmp/kw-evil ok");
    http.write_secret("app/user", &server.root_token, &json!({ "user": "svc" }));
    let output = server.cli(
        &server.root_token,
        &[
            "run",
            "--secret",
            "app/user",
            "--",
            "sh",
            "-c",
            "echo $USER",
        ],
    );
    assert!(output.success(), "{output}");
    assert_eq!(output.stdout.trim(), "svc");
}

#[test]
fn watch_restart_stops_processes_the_command_started() {
    let server = Server::dev();
    let http = server.http();
    http.write_secret(
        "app/db",
        &server.root_token,
        &json!({ "password": "first" }),
    );
    let dir = temp_dir();
    let pids = dir.path().join("pids.log");
    // The shell starts a grandchild that has the old value and records its pid.
    let script = format!(
        r#"sleep 200 &
echo "$PASSWORD $!" >> {pids}
wait"#,
        pids = pids.display()
    );

    let mut command = keyward(&[
        "run", "--watch", "--secret", "app/db", "--", "sh", "-c", &script,
    ]);
    let mut child = KillOnDrop(
        command
            .envs(server.cli_env(&server.root_token))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keyward run"),
    );
    let child = &mut child.0;

    let read_pids = || std::fs::read_to_string(&pids).unwrap_or_default();
    let pid_of = |wanted: &str| -> Option<String> {
        read_pids().lines().find_map(|line| {
            line.strip_prefix(wanted)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_owned)
        })
    };
    let wait_for = |wanted: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = pid_of(wanted) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "never started with {wanted:?}:\n{}",
                read_pids()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // A zombie (killed, not reaped yet) counts as gone.
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    let first = wait_for("first");
    assert!(alive(&first));

    http.write_secret(
        "app/db",
        &server.root_token,
        &json!({ "password": "second" }),
    );
    let second = wait_for("second");
    let gone_by = Instant::now() + Duration::from_secs(5);
    while alive(&first) {
        if Instant::now() > gone_by {
            // Do not leave the orphan behind for the rest of the test run.
            signal(first.parse().expect("pid"), "KILL");
            panic!("the old command's grandchild survived the restart");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(&second));

    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait for keyward run").is_none() {
        assert!(
            Instant::now() < deadline,
            "keyward run did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone_by = Instant::now() + Duration::from_secs(5);
    while alive(&second) {
        if Instant::now() > gone_by {
            signal(second.parse().expect("pid"), "KILL");
            panic!("SIGTERM to keyward run did not reach the command's grandchild");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
