//! Client certificates (mutual TLS), the metrics endpoint and the certificate expiry warning,
//! end to end: a test CA made with rcgen, the real `keyward server` configured through
//! `keyward.toml`, and `curl` and `openssl s_client` as clients.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::harness::{InitDir, Output, Server, free_port, run, temp_dir};

const PASSPHRASE: &str = "mutual tls passphrase";
const METRICS: &str = "sys/metrics?format=prometheus";
const DAY: f64 = 86_400.0;

/// A CA made for one test, with the key it signs with.
struct TestCa {
    cert_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and key in PEM files.
struct Identity {
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl TestCa {
    /// Creates a CA named `name` and writes its certificate to `dir/<file_stem>.pem`.
    fn create(dir: &Path, file_stem: &str, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("valid params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let cert_file = dir.join(format!("{file_stem}.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write the CA certificate");
        TestCa {
            cert_file,
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a client certificate for `name`, written to `dir/<name>.pem` and `.key`.
    fn issue_client(&self, dir: &Path, name: &str) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("valid params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        self.issue(dir, name, params)
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1` that expires at
    /// `not_after`.
    fn issue_server(&self, dir: &Path, name: &str, not_after: OffsetDateTime) -> Identity {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("valid params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = not_after;
        self.issue(dir, name, params)
    }

    fn issue(&self, dir: &Path, name: &str, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let identity = Identity {
            cert_file: dir.join(format!("{name}.pem")),
            key_file: dir.join(format!("{name}.key")),
        };
        std::fs::write(&identity.cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&identity.key_file, key.serialize_pem()).expect("write the key");
        identity
    }
}

/// Appends a `[tls]` table to the data dir's `keyward.toml`.
fn add_tls_table(init: &InitDir, cert_file: &Path, key_file: &Path, client_settings: &str) {
    let mut config = std::fs::read_to_string(&init.config).expect("read keyward.toml");
    config.push_str(&format!(
        "\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n{client_settings}",
        cert_file.display().to_string(),
        key_file.display().to_string(),
    ));
    std::fs::write(&init.config, config).expect("write keyward.toml");
}

/// A `keyward server` that requires client certificates.
///
/// [`Server::start`] checks readiness with a client that has no certificate, so this starts
/// the process itself and checks with `curl --cert`.
struct MtlsServer {
    child: Child,
    addr: SocketAddr,
    ca_file: PathBuf,
    root_token: String,
    stderr_log: PathBuf,
}

impl MtlsServer {
    fn start(init: &InitDir, log_dir: &Path, ready_identity: &Identity) -> MtlsServer {
        let port = free_port();
        let stderr_log = log_dir.join(format!("server-{port}.stderr"));
        let stdout = std::fs::File::create(log_dir.join(format!("server-{port}.stdout")))
            .expect("create the stdout log");
        let stderr = std::fs::File::create(&stderr_log).expect("create the stderr log");
        let child = Server::config_command(init, &init.passphrase, port)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start keyward server");
        let mut server = MtlsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ca_file: init.ca_file.clone(),
            root_token: init.root_token.clone(),
            stderr_log,
        };

        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let output = server.curl(Some(ready_identity), None, "sys/health");
            if output.success() && output.stdout.ends_with("200") {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("keyward server exited ({status}):\n{}", server.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "keyward server did not answer within 15 s:\n{output}\nserver log:\n{}",
                server.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}/v1/{path}", self.addr)
    }

    /// Runs curl with an optional client identity and token; standard output is the body
    /// followed by the status code.
    fn curl(&self, identity: Option<&Identity>, token: Option<&str>, path: &str) -> Output {
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(["--write-out", "%{http_code}"])
            .arg("--cacert")
            .arg(&self.ca_file);
        if let Some(identity) = identity {
            command
                .arg("--cert")
                .arg(&identity.cert_file)
                .arg("--key")
                .arg(&identity.key_file);
        }
        if let Some(token) = token {
            command.args(["-H", &format!("X-Vault-Token: {token}")]);
        }
        run(command.arg(self.url(path)))
    }

    /// Sends SIGHUP.
    fn hangup(&self) {
        let output = run(Command::new("kill").args(["-s", "HUP", &self.child.id().to_string()]));
        assert!(output.success(), "kill -s HUP failed:\n{output}");
    }
}

impl Drop for MtlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- keyward server stderr ---\n{}", self.stderr());
        }
    }
}

/// Runs `openssl s_client` against `addr` with `options`, sends one HTTP request and waits
/// for the server to close the connection.
///
/// In TLS 1.3 the server checks the client certificate after the client has finished the
/// handshake, so a refusal shows up as an alert when the client reads, not at connect time.
fn s_client_request(addr: SocketAddr, ca_file: &Path, options: &[&Path]) -> Output {
    let mut child = Command::new("timeout")
        .args(["30", "openssl", "s_client", "-ign_eof", "-connect"])
        .arg(addr.to_string())
        .args(["-servername", "localhost", "-CAfile"])
        .arg(ca_file)
        .args(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    let request = "GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if let Some(mut stdin) = child.stdin.take() {
        // A refused handshake may close the pipe before the request is written.
        let _ = stdin.write_all(request.as_bytes());
    }
    let output = child.wait_with_output().expect("wait for openssl s_client");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Returns the value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// A data dir whose server requires client certificates from `clients`, and a client
/// certificate from that CA and one from another CA.
struct Setup {
    work: tempfile::TempDir,
    init: InitDir,
    clients: TestCa,
    alice: Identity,
    mallory: Identity,
}

fn setup(require_client_cert: bool) -> Setup {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", PASSPHRASE);
    let clients = TestCa::create(work.path(), "clients-ca", "Keyward test client CA");
    let strangers = TestCa::create(work.path(), "strangers-ca", "Unrelated CA");
    let alice = clients.issue_client(work.path(), "alice");
    let mallory = strangers.issue_client(work.path(), "mallory");
    add_tls_table(
        &init,
        &init.dir.join("tls/cert.pem"),
        &init.dir.join("tls/key.pem"),
        &format!(
            "client_ca = {:?}\nrequire_client_cert = {require_client_cert}\n",
            clients.cert_file.display().to_string()
        ),
    );
    Setup {
        work,
        init,
        clients,
        alice,
        mallory,
    }
}

#[test]
fn missing_client_certificate_is_refused() {
    let setup = setup(true);
    let server = MtlsServer::start(&setup.init, setup.work.path(), &setup.alice);

    // curl's message depends on whether it reads the alert before the connection closes, so
    // only its failure and the missing HTTP status are checked; s_client shows the alert.
    let output = server.curl(None, Some(&server.root_token), "sys/health");
    assert!(
        !output.success(),
        "curl without a certificate succeeded:\n{output}"
    );
    assert!(output.stdout.ends_with("000"), "{output}");

    let output = s_client_request(server.addr, &server.ca_file, &[]);
    assert!(
        output.stderr.contains("alert certificate required"),
        "s_client was not told a certificate is required:\n{output}"
    );
    assert!(!output.stdout.contains("HTTP/1.1"), "{output}");
}

#[test]
fn client_certificate_from_other_ca_is_refused() {
    let setup = setup(true);
    let server = MtlsServer::start(&setup.init, setup.work.path(), &setup.alice);

    let output = server.curl(Some(&setup.mallory), Some(&server.root_token), "sys/health");
    assert!(
        !output.success(),
        "curl with a stranger's certificate succeeded:\n{output}"
    );

    let output = s_client_request(
        server.addr,
        &server.ca_file,
        &[
            Path::new("-cert"),
            &setup.mallory.cert_file,
            Path::new("-key"),
            &setup.mallory.key_file,
        ],
    );
    assert!(
        output.stderr.contains("alert unknown ca")
            || output.stderr.contains("alert bad certificate"),
        "s_client was not refused:\n{output}"
    );
    assert!(!output.stdout.contains("HTTP/1.1"), "{output}");
}

#[test]
fn trusted_certificate_and_token_are_accepted() {
    let setup = setup(true);
    let server = MtlsServer::start(&setup.init, setup.work.path(), &setup.alice);

    let output = server.curl(
        Some(&setup.alice),
        Some(&server.root_token),
        "auth/token/lookup-self",
    );
    assert!(output.success(), "{output}");
    assert!(output.stdout.ends_with("200"), "{output}");

    // The certificate opens the connection; the token still decides what it may do.
    let output = server.curl(Some(&setup.alice), None, "auth/token/lookup-self");
    assert!(output.stdout.ends_with("403"), "{output}");

    let output = s_client_request(
        server.addr,
        &server.ca_file,
        &[
            Path::new("-cert"),
            &setup.alice.cert_file,
            Path::new("-key"),
            &setup.alice.key_file,
        ],
    );
    assert!(output.stdout.contains("HTTP/1.1 200"), "{output}");
}

#[test]
fn optional_client_certificate_lets_token_decide() {
    let setup = setup(false);
    let server = Server::start(&setup.init, setup.work.path());

    let response = server
        .http()
        .get("auth/token/lookup-self", &server.root_token);
    assert_eq!(response.status, 200, "{response:?}");
    let response = server.http().get("auth/token/lookup-self", "");
    assert_eq!(response.status, 403, "{response:?}");

    let output = s_client_request(
        server.addr,
        &server.ca_file,
        &[
            Path::new("-cert"),
            &setup.mallory.cert_file,
            Path::new("-key"),
            &setup.mallory.key_file,
        ],
    );
    assert!(
        !output.stdout.contains("HTTP/1.1"),
        "a stranger's certificate was accepted:\n{output}"
    );
}

#[test]
fn metrics_show_expiry_and_requests() {
    let setup = setup(true);
    let server = MtlsServer::start(&setup.init, setup.work.path(), &setup.alice);
    let refused = server.curl(None, None, "sys/health");
    assert!(!refused.success(), "{refused}");
    let health = server.curl(Some(&setup.alice), None, "sys/health");
    assert!(health.stdout.ends_with("200"), "{health}");

    let output = server.curl(Some(&setup.alice), None, METRICS);
    assert!(
        output.stdout.ends_with("403"),
        "metrics without a token:\n{output}"
    );
    let output = server.curl(Some(&setup.alice), Some(&server.root_token), METRICS);
    assert!(output.stdout.ends_with("200"), "{output}");
    let text = output.stdout;

    let expiry = sample(&text, "keyward_tls_certificate_expiry_seconds")
        .unwrap_or_else(|| panic!("no expiry gauge:\n{text}"));
    // `keyward init` makes a 90-day certificate.
    assert!(
        (89.0 * DAY..=90.0 * DAY).contains(&expiry),
        "expiry {expiry} s is not about 90 days"
    );
    let health_requests = sample(
        &text,
        r#"keyward_http_requests_total{route="sys/health",method="GET",status="2xx"}"#,
    );
    assert!(
        health_requests.is_some_and(|count| count >= 1.0),
        "no request counter for sys/health:\n{text}"
    );
    let refusals = sample(
        &text,
        r#"keyward_tls_handshake_failures_total{reason="no_client_certificate"}"#,
    );
    assert!(
        refusals.is_some_and(|count| count >= 1.0),
        "the refused handshake was not counted:\n{text}"
    );
    assert!(!text.contains(&server.root_token), "the token leaked");
}

#[test]
fn near_expiry_certificate_logs_warning() {
    let work = temp_dir();
    let mut init = InitDir::create(work.path(), "data", PASSPHRASE);
    let ca = TestCa::create(work.path(), "server-ca", "Keyward test server CA");
    let not_after = OffsetDateTime::now_utc() + time::Duration::days(5);
    let server_identity = ca.issue_server(work.path(), "near-expiry-server", not_after);
    add_tls_table(
        &init,
        &server_identity.cert_file,
        &server_identity.key_file,
        "",
    );
    init.ca_file = ca.cert_file.clone();

    let server = Server::start(&init, work.path());

    let log = server.stderr();
    let warning = log
        .lines()
        .find(|line| line.contains("TLS certificate expires within 14 days"))
        .unwrap_or_else(|| panic!("no expiry warning in the server log:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("CN=near-expiry-server"), "{warning}");
    assert!(warning.contains("days_left=4"), "{warning}");
    assert!(
        !log.contains("PRIVATE KEY"),
        "key material in the log:\n{log}"
    );

    let response = server.http().get(METRICS, &server.root_token);
    assert_eq!(response.status, 200, "{response:?}");
    let text = response.text();
    let expiry = sample(&text, "keyward_tls_certificate_expiry_seconds")
        .unwrap_or_else(|| panic!("no expiry gauge:\n{text}"));
    assert!(
        (4.0 * DAY..=5.0 * DAY).contains(&expiry),
        "expiry {expiry} s is not about 5 days"
    );
}

#[test]
fn reload_to_near_expiry_certificate_logs_warning() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", PASSPHRASE);
    let server = Server::start(&init, work.path());
    assert!(
        !server.stderr().contains("expires within 14 days"),
        "a fresh certificate got the warning:\n{}",
        server.stderr()
    );

    let ca = TestCa::create(work.path(), "server-ca", "Keyward test server CA");
    let not_after = OffsetDateTime::now_utc() + time::Duration::days(5);
    let renewed = ca.issue_server(work.path(), "reloaded-server", not_after);
    std::fs::copy(&renewed.key_file, init.dir.join("tls/key.pem")).expect("replace the key");
    std::fs::copy(&renewed.cert_file, init.dir.join("tls/cert.pem")).expect("replace the cert");
    server.hangup();

    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("TLS certificate reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload within 10 s of SIGHUP:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.stderr();
    let warning = log
        .lines()
        .find(|line| line.contains("TLS certificate expires within 14 days"))
        .unwrap_or_else(|| panic!("no expiry warning after the reload:\n{log}"));
    assert!(warning.contains("CN=reloaded-server"), "{warning}");
}

#[test]
fn sighup_reloads_client_ca() {
    let setup = setup(true);
    let server = MtlsServer::start(&setup.init, setup.work.path(), &setup.alice);
    let successors = TestCa::create(setup.work.path(), "next-clients-ca", "Next client CA");
    let bob = successors.issue_client(setup.work.path(), "bob");
    let output = server.curl(Some(&bob), None, "sys/health");
    assert!(!output.success(), "bob's CA is not trusted yet:\n{output}");

    std::fs::copy(&successors.cert_file, &setup.clients.cert_file).expect("replace the CA file");
    server.hangup();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = server.curl(Some(&bob), None, "sys/health");
        if output.success() && output.stdout.ends_with("200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new client CA is not trusted 10 s after SIGHUP:\n{output}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = server.curl(Some(&setup.alice), None, "sys/health");
    assert!(
        !output.success(),
        "the replaced client CA is still trusted:\n{output}"
    );
}
