//! TLS end to end with real clients: only TLS 1.3 handshakes succeed (checked with
//! `openssl s_client`), every response carries HSTS (checked with `curl`), and SIGHUP swaps
//! the certificate for new connections while open ones keep working.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{InitDir, Output, Server, curl, run, temp_dir};

const HSTS: &str = "max-age=63072000; includeSubDomains; preload";

/// Runs `openssl s_client` against `server`, trusting `ca_file`, with `options`.
fn s_client(server: &Server, ca_file: &Path, options: &[&str]) -> Output {
    run(Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &server.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(ca_file)
        .args(options))
}

fn combined(output: &Output) -> String {
    format!("{}\n{}", output.stdout, output.stderr)
}

fn assert_handshake_fails(output: &Output, case: &str) {
    let text = combined(output);
    assert!(!output.success(), "{case}: s_client succeeded:\n{output}");
    assert!(
        text.contains("Cipher is (NONE)"),
        "{case}: a cipher was negotiated:\n{output}"
    );
    assert!(
        text.contains("no peer certificate available"),
        "{case}: {output}"
    );
}

fn assert_tls13(output: &Output, case: &str) {
    let text = combined(output);
    assert!(output.success(), "{case}: s_client failed:\n{output}");
    // s_client prints its session block, with "Protocol  : TLSv1.3", only after a session
    // ticket arrives; with standard input closed it may quit before that.
    assert!(
        text.contains("New, TLSv1.3, Cipher is TLS_"),
        "{case}: not TLS 1.3:\n{output}"
    );
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "{case}: certificate not verified:\n{output}"
    );
}

#[test]
fn tls12_handshake_is_refused() {
    let server = Server::dev();

    let output = s_client(&server, &server.ca_file, &["-tls1_2"]);

    assert_handshake_fails(&output, "-tls1_2");
}

#[test]
fn tls13_handshake_succeeds() {
    let server = Server::dev();

    let output = s_client(&server, &server.ca_file, &["-tls1_3"]);

    assert_tls13(&output, "-tls1_3");
}

#[test]
fn unforced_client_negotiates_tls13() {
    let server = Server::dev();

    let output = s_client(&server, &server.ca_file, &[]);

    assert_tls13(&output, "no version option");
}

#[test]
fn older_protocol_offers_are_refused() {
    let server = Server::dev();

    // A client that offers at most TLS 1.2, or only TLS 1.1, gets no connection at all.
    assert_handshake_fails(
        &s_client(&server, &server.ca_file, &["-no_tls1_3"]),
        "-no_tls1_3",
    );
    assert_handshake_fails(
        &s_client(
            &server,
            &server.ca_file,
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        ),
        "-tls1_1",
    );
}

#[test]
fn hsts_header_on_every_status() {
    let server = Server::dev();
    let url = |path: &str| format!("{}/v1/{path}", server.url);
    let token = format!("X-Vault-Token: {}", server.root_token);
    let large_body = temp_dir();
    let large_file = large_body.path().join("body.json");
    std::fs::write(&large_file, vec![b' '; 2 * 1024 * 1024]).expect("write a 2 MiB body");
    let large_arg = format!("@{}", large_file.display());

    let cases: Vec<(u16, Vec<String>)> = vec![
        (200, vec!["-H".into(), token.clone(), url("sys/health")]),
        (
            400,
            vec!["-H".into(), token.clone(), url("secret/data/a//b")],
        ),
        (403, vec![url("secret/data/app/x")]),
        (404, vec!["-H".into(), token.clone(), url("no/such/route")]),
        (
            405,
            vec![
                "-X".into(),
                "DELETE".into(),
                "-H".into(),
                token.clone(),
                url("sys/health"),
            ],
        ),
        (
            413,
            vec![
                "-X".into(),
                "PUT".into(),
                "-H".into(),
                token.clone(),
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data-binary".into(),
                large_arg.clone(),
                url("secret/data/app/x"),
            ],
        ),
    ];

    for (status, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let response = curl(&server, &args);
        assert_eq!(response.status, status, "curl {args:?}: {response:?}");
        assert_eq!(
            response.header("strict-transport-security"),
            Some(HSTS),
            "HSTS missing on the {status} response: {response:?}"
        );
    }
}

/// SHA-256 fingerprint of the first certificate in PEM text, as `openssl x509` prints it.
fn fingerprint(pem: &str, scratch: &Path) -> String {
    let start = pem
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in:\n{pem}"));
    let end_marker = "-----END CERTIFICATE-----";
    let end = pem[start..]
        .find(end_marker)
        .map(|offset| start + offset + end_marker.len())
        .expect("certificate block is closed");
    let file = scratch.join(format!("cert-{}.pem", crate::harness::random_hex(4)));
    std::fs::write(&file, &pem[start..end]).expect("write the certificate");

    let output = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&file));
    assert!(output.success(), "openssl x509 failed:\n{output}");
    output.stdout.trim().to_owned()
}

/// Copies `from` over `to` through a temporary file and a rename, as a deployment tool would.
fn replace_file(from: &Path, to: &Path) {
    let staging = to.with_extension("new");
    std::fs::copy(from, &staging).expect("copy the new file");
    std::fs::rename(&staging, to).expect("move the new file into place");
}

#[test]
fn sighup_reloads_certificate() {
    let work = temp_dir();
    let first = InitDir::create(work.path(), "first", "first passphrase");
    let second = InitDir::create(work.path(), "second", "second passphrase");
    let server = Server::start(&first, work.path());

    // A client trusting only the first CA opens a keep-alive connection before the reload.
    let old_client = server.http();
    let response = old_client.get("sys/health", &server.root_token);
    assert_eq!(response.status, 200, "{response:?}");

    let old_cert = std::fs::read_to_string(first.dir.join("tls/cert.pem")).expect("read cert");
    let new_cert = std::fs::read_to_string(second.dir.join("tls/cert.pem")).expect("read cert");
    let old_fingerprint = fingerprint(&old_cert, work.path());
    let new_fingerprint = fingerprint(&new_cert, work.path());
    assert_ne!(old_fingerprint, new_fingerprint);
    let served = s_client(&server, &first.ca_file, &["-showcerts"]);
    assert_eq!(fingerprint(&served.stdout, work.path()), old_fingerprint);

    replace_file(
        &second.dir.join("tls/key.pem"),
        &first.dir.join("tls/key.pem"),
    );
    replace_file(
        &second.dir.join("tls/cert.pem"),
        &first.dir.join("tls/cert.pem"),
    );
    server.hangup();

    // The reload runs in the background: poll until new handshakes show the new certificate.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = s_client(&server, &second.ca_file, &["-showcerts"]);
        if served.stdout.contains("BEGIN CERTIFICATE")
            && fingerprint(&served.stdout, work.path()) == new_fingerprint
        {
            assert_tls13(&served, "after reload");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate 10 s after SIGHUP:\n{served}\nserver log:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A new connection that trusts only the first CA now fails verification...
    let fresh_old_client = server.http();
    let error = fresh_old_client
        .try_request("GET", "sys/health", None, None)
        .expect_err("the new certificate is not signed by the first CA");
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // ...so the old client can only succeed over the connection it opened before the reload.
    let root = server.root_token.clone();
    let response = old_client.put(
        "secret/data/after-reload",
        &root,
        &json!({ "data": { "k": "v" } }),
    );
    assert_eq!(
        response.status, 200,
        "the open connection broke: {response:?}"
    );
    let response = old_client.get("secret/data/after-reload", &root);
    assert_eq!(response.json()["data"]["data"]["k"], "v");
}

#[test]
fn failed_reload_keeps_old_certificate() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", "a passphrase");
    let server = Server::start(&init, work.path());
    let cert = std::fs::read_to_string(init.dir.join("tls/cert.pem")).expect("read cert");
    let expected = fingerprint(&cert, work.path());

    std::fs::write(init.dir.join("tls/cert.pem"), "not a certificate\n").expect("break the cert");
    server.hangup();
    std::thread::sleep(Duration::from_millis(500));

    let served = s_client(&server, &init.ca_file, &["-showcerts"]);
    assert_tls13(&served, "after a failed reload");
    assert_eq!(fingerprint(&served.stdout, work.path()), expected);
    let response = server.http().get("sys/health", &server.root_token);
    assert_eq!(response.status, 200, "{response:?}");
}
