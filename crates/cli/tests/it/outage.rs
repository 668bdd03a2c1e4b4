//! Outages of the Vault storage backend, with `[storage.resilience]` configured. Reads are
//! served stale up to the staleness limit and then rejected with a 503 naming the last sync,
//! writes are rejected, and the circuit breaker opens and closes. A server restarted with
//! OpenBao down serves its encrypted cache file, and the environment fallback is checked.
//!
//! Each test starts its own OpenBao from `KEYWARD_TEST_BAO_BIN` on free loopback ports, since
//! it kills that server; the shared one from `KEYWARD_TEST_OPENBAO_ADDR` is never touched.
//! The server that must come back with its data uses raft storage with one unseal key.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{Http, InitDir, Server, free_port, random_hex, required_env, run, temp_dir};

/// Variable that passes OpenBao's root token to the Keyward server.
const TOKEN_VAR: &str = "KEYWARD_TEST_OUTAGE_BAO_TOKEN";

/// Concurrent readers in the outage test.
const READERS: usize = 4;

/// `failure_threshold` in the outage test.
const THRESHOLD: usize = 3;

/// `max_stale` in the outage test.
const MAX_STALE: Duration = Duration::from_secs(6);

/// Small limits so an outage plays out in seconds.
const OUTAGE_RESILIENCE: &str = "cache_ttl = \"1s\"\nmax_stale = \"6s\"\nfailure_threshold = 3\n\
                                 backoff_base = \"1s\"\nbackoff_max = \"2s\"\ncall_timeout = \"2s\"\n";

/// Time an OpenBao server gets to return the expected `sys/health` status.
const BAO_START_TIMEOUT: Duration = Duration::from_secs(60);

/// An OpenBao server owned by one test.
struct OwnBao {
    bin: String,
    addr: String,
    port: u16,
    dir: TempDir,
    /// Raft storage and an unseal key, so a restart keeps the data; `None` in dev mode.
    unseal_key: Option<String>,
    root_token: String,
    child: Option<Child>,
    starts: usize,
}

impl OwnBao {
    /// Starts an in-memory dev server, for tests that never restart it.
    fn dev(bin: &str) -> OwnBao {
        let mut dir = temp_dir();
        let root_token = format!("root-{}", random_hex(8));
        for _ in 0..3 {
            // Dev mode also binds the next port for its cluster listener.
            let port = free_port();
            if TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
                continue;
            }
            let mut bao = OwnBao {
                bin: bin.to_owned(),
                addr: format!("http://127.0.0.1:{port}"),
                port,
                dir,
                unseal_key: None,
                root_token: root_token.clone(),
                child: None,
                starts: 0,
            };
            let mut command = Command::new(bin);
            command.args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ]);
            bao.spawn(&mut command);
            if bao.wait_for_status(200) {
                bao.enable_kv();
                return bao;
            }
            dir = bao.discard();
        }
        panic!("openbao dev server did not start in three attempts");
    }

    /// Starts a server with raft storage, initialises it with one unseal key and unseals it.
    fn persistent(bin: &str) -> OwnBao {
        let dir = temp_dir();
        let port = free_port();
        let cluster_port = free_port();
        let raft = dir.path().join("raft");
        std::fs::create_dir(&raft).expect("raft dir is created");
        let config = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"outage\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster_port}\"\n",
            raft.display()
        );
        std::fs::write(dir.path().join("bao.hcl"), config).expect("openbao config is written");

        let mut bao = OwnBao {
            bin: bin.to_owned(),
            addr: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            unseal_key: None,
            root_token: String::new(),
            child: None,
            starts: 0,
        };
        bao.spawn_persistent();
        assert!(
            bao.wait_for_status(501),
            "openbao did not report itself uninitialised:\n{}",
            bao.log()
        );
        let (status, body) = bao.http(
            "PUT",
            "sys/init",
            None,
            Some(&json!({ "secret_shares": 1, "secret_threshold": 1 })),
        );
        assert_eq!(status, 200, "sys/init failed: {body}");
        bao.unseal_key = Some(
            body["keys_base64"][0]
                .as_str()
                .expect("unseal key")
                .to_owned(),
        );
        bao.root_token = body["root_token"].as_str().expect("root token").to_owned();
        bao.unseal();
        bao.enable_kv();
        bao
    }

    fn spawn_persistent(&mut self) {
        let config = self.dir.path().join("bao.hcl");
        let mut command = Command::new(&self.bin);
        command
            .arg("server")
            .arg(format!("-config={}", config.display()));
        self.spawn(&mut command);
    }

    fn spawn(&mut self, command: &mut Command) {
        self.starts += 1;
        let log = self.dir.path().join(format!("bao-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("openbao log is created");
        let child = command
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.bin));
        self.child = Some(child);
    }

    /// Kills the server and hands back its temporary dir for another attempt.
    fn discard(mut self) -> TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, temp_dir())
    }

    fn unseal(&mut self) {
        let key = self
            .unseal_key
            .clone()
            .expect("a persistent server has a key");
        assert!(
            self.wait_for_status(503),
            "openbao did not report itself sealed:\n{}",
            self.log()
        );
        let (status, body) = self.http("PUT", "sys/unseal", None, Some(&json!({ "key": key })));
        assert_eq!(status, 200, "sys/unseal failed: {body}");
        assert!(
            self.wait_for_status(200),
            "openbao did not become active after unsealing:\n{}",
            self.log()
        );
    }

    /// Kills the server with SIGKILL, as a crash or a network cut would stop it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the persistent server again on the same ports and data, and unseals it.
    fn restart(&mut self) {
        self.spawn_persistent();
        self.unseal();
    }

    /// Polls `sys/health` until it returns `expected`; `false` if the process exits first.
    fn wait_for_status(&mut self, expected: u16) -> bool {
        let deadline = Instant::now() + BAO_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if self.http("GET", "sys/health", None, None).0 == expected {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn enable_kv(&self) {
        let (status, body) = self.http(
            "POST",
            "sys/mounts/kv",
            Some(&self.root_token),
            Some(&json!({ "type": "kv", "options": { "version": "2" } })),
        );
        assert!(
            status == 204 || status == 200,
            "kv mount failed: {status} {body}"
        );
    }

    /// Sends a request with `curl` and returns the status (0 when nothing responded) and body.
    fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut command = Command::new("curl");
        // `sys/init` with raft storage takes about ten seconds.
        command.args(["-s", "-m", "30", "-X", method, "-w", "\n%{http_code}"]);
        if let Some(token) = token {
            command.args(["-H", &format!("X-Vault-Token: {token}")]);
        }
        if let Some(body) = body {
            command.args(["-d", &body.to_string()]);
        }
        let output = run(command.arg(format!("{}/v1/{path}", self.addr)));
        let (text, status) = output.stdout.rsplit_once('\n').unwrap_or(("", "0"));
        let status = status.trim().parse().unwrap_or(0);
        (status, serde_json::from_str(text).unwrap_or(Value::Null))
    }

    /// Runs the `bao` CLI with the root token and returns its standard output.
    fn cli(&self, args: &[&str]) -> String {
        let output = run(Command::new(&self.bin)
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.root_token)
            .env("HOME", self.dir.path()));
        assert!(output.success(), "bao {args:?} failed:\n{output}");
        output.stdout
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("bao-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// The `[storage]` section that points Keyward at this server, with `resilience` as its
    /// `[storage.resilience]` keys.
    fn storage_section(&self, resilience: &str) -> String {
        format!(
            "\n[storage]\nbackend = \"vault\"\nmount = \"kv\"\nprefix = \"keyward\"\n\
             [storage.vault]\naddress = \"{}\"\nrequest_timeout_secs = 2\n\
             [storage.vault.auth]\nmethod = \"token\"\ntoken_env = \"{TOKEN_VAR}\"\n\
             [storage.resilience]\n{resilience}",
            self.addr
        )
    }
}

impl Drop for OwnBao {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- openbao {} log ---\n{}", self.addr, self.log());
        }
    }
}

/// Counts TCP connections to a dead backend's port: it accepts each one and closes it at
/// once, so every backend call Keyward makes fails fast and is counted.
struct ConnectionCounter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl ConnectionCounter {
    fn bind(port: u16) -> ConnectionCounter {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("cannot bind the dead backend's port {port}: {error}"),
            }
        };
        listener
            .set_nonblocking(true)
            .expect("listener becomes non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut accepted = 0;
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted += 1;
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            accepted
        });
        ConnectionCounter { stop, thread }
    }

    /// Closes the port and returns how many connections it accepted.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("counter thread does not panic")
    }
}

/// One read a reader made.
#[derive(Debug, Clone)]
struct Observation {
    started: Instant,
    path: String,
    status: u16,
    stale: bool,
    last_sync: Option<String>,
    source: Option<String>,
    value: Option<String>,
    version: Option<u64>,
    message: String,
}

fn observe(path: &str, started: Instant, response: &crate::harness::Response) -> Observation {
    let header = |name: &str| {
        response
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Observation {
        started,
        path: path.to_owned(),
        status: response.status,
        stale: header("x-keyward-stale").as_deref() == Some("true"),
        last_sync: header("x-keyward-last-sync"),
        source: header("x-keyward-source"),
        value: body["data"]["data"]["value"].as_str().map(str::to_owned),
        version: body["data"]["metadata"]["version"].as_u64(),
        message: body["errors"].to_string(),
    }
}

fn read(http: &Http, token: &str, path: &str) -> Observation {
    let started = Instant::now();
    let response = http.get(&format!("secret/data/{path}"), token);
    observe(path, started, &response)
}

/// Starts `READERS` threads that read `paths` in a loop until `stop` is set.
fn spawn_readers(
    server: &Server,
    paths: &[String],
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Vec<Observation>>> {
    (0..READERS)
        .map(|reader| {
            let http = server.http();
            let token = server.root_token.clone();
            let stop = stop.clone();
            let mut paths = paths.to_vec();
            let shift = reader % paths.len();
            paths.rotate_left(shift);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    for path in &paths {
                        let started = Instant::now();
                        match http.try_request(
                            "GET",
                            &format!("secret/data/{path}"),
                            Some(&token),
                            None,
                        ) {
                            Ok(response) => seen.push(observe(path, started, &response)),
                            Err(error) => panic!("read of {path} failed in transport: {error}"),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            })
        })
        .collect()
}

/// Values written to each path, by Keyward or the `bao` CLI, and the latest one.
#[derive(Default)]
struct Written {
    all: HashMap<String, HashSet<String>>,
    latest: HashMap<String, String>,
}

impl Written {
    /// Records `value` before it is sent, so a reader can never see an unrecorded value.
    fn record(&mut self, path: &str, value: &str) {
        self.all
            .entry(path.to_owned())
            .or_default()
            .insert(value.to_owned());
        self.latest.insert(path.to_owned(), value.to_owned());
    }

    fn write(&mut self, http: &Http, token: &str, path: &str, value: &str) -> u64 {
        self.record(path, value);
        http.write_secret(path, token, &json!({ "value": value }))
    }
}

/// Returns the value of the metric line whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

fn metrics(http: &Http, token: &str) -> String {
    let response = http.get("sys/metrics?format=prometheus", token);
    assert_eq!(response.status, 200, "{response:?}");
    response.text()
}

fn health(http: &Http) -> Value {
    let response = http.request("GET", "sys/health", None, None);
    assert_eq!(
        response.status, 200,
        "a degraded server still answers 200: {response:?}"
    );
    response.json()
}

fn sleep_until(deadline: Instant) {
    if let Some(left) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("configuration opens for appending");
    file.write_all(text.as_bytes())
        .expect("configuration is appended");
}

#[test]
fn outage_serves_stale_then_recovers() {
    let Some(bin) = required_env("KEYWARD_TEST_BAO_BIN", "outage_serves_stale_then_recovers")
    else {
        return;
    };
    let mut bao = OwnBao::persistent(&bin);
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", &random_hex(16));
    append(&init.config, &bao.storage_section(OUTAGE_RESILIENCE));
    let server = Server::start_with_env(&init, work.path(), &[(TOKEN_VAR, &bao.root_token)]);
    let http = server.http();
    let token = server.root_token.clone();
    let paths: Vec<String> = (0..4).map(|i| format!("app/k{i}")).collect();
    let mut written = Written::default();

    // Healthy: two versions of each secret, read in a loop.
    for path in &paths {
        written.write(&http, &token, path, &format!("{path}-v1-{}", random_hex(4)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&server, &paths, &stop);
    std::thread::sleep(Duration::from_millis(1500));
    let mut versions_before = HashMap::new();
    for path in &paths {
        let version = written.write(&http, &token, path, &format!("{path}-v2-{}", random_hex(4)));
        versions_before.insert(path.clone(), version);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        health(&http).get("degraded"),
        None,
        "a healthy node omits the field"
    );

    // Outage: OpenBao dies and its port counts every connection Keyward makes to it.
    bao.kill();
    let killed = Instant::now();
    let counter = ConnectionCounter::bind(bao.port);
    let rejected_values: Vec<String> = (0..2)
        .map(|i| format!("outage-write-{i}-{}", random_hex(4)))
        .collect();

    sleep_until(killed + Duration::from_secs(1));
    let first_write = http.put(
        "secret/data/app/k2",
        &token,
        &json!({ "data": { "value": rejected_values[0] } }),
    );
    let degraded = health(&http);
    sleep_until(killed + Duration::from_secs(3));
    let second_write = http.put(
        "secret/data/app/k3",
        &token,
        &json!({ "data": { "value": rejected_values[1] } }),
    );
    let during = metrics(&http, &token);

    sleep_until(killed + MAX_STALE + Duration::from_secs(3));
    let outage = killed.elapsed();
    let outage_connections = counter.finish();

    // Recovery: the same data comes back; the first successful probe closes the breaker.
    let restart_began = Instant::now();
    bao.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut recovered = HashSet::new();
    while recovered.len() < paths.len() && Instant::now() < deadline {
        for path in &paths {
            let seen = read(&http, &token, path);
            if seen.status == 200 && !seen.stale {
                recovered.insert(path.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        recovered.len(),
        paths.len(),
        "reads did not become fresh after the restart"
    );
    let after = metrics(&http, &token);

    let from_bao = format!("from-bao-{}", random_hex(4));
    written.record("app/k1", &from_bao);
    bao.cli(&[
        "kv",
        "put",
        "-mount=kv",
        "keyward/app/k1",
        &format!("value={from_bao}"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen_from_bao = false;
    while !seen_from_bao && Instant::now() < deadline {
        seen_from_bao = read(&http, &token, "app/k1").value.as_deref() == Some(from_bao.as_str());
        std::thread::sleep(Duration::from_millis(100));
    }
    written.write(
        &http,
        &token,
        "app/k0",
        &format!("app/k0-v3-{}", random_hex(4)),
    );
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let observations: Vec<Observation> = readers
        .into_iter()
        .flat_map(|reader| reader.join().expect("reader thread does not panic"))
        .collect();

    // Writes during the outage failed and changed nothing.
    assert_eq!(first_write.status, 503, "{first_write:?}");
    assert_eq!(second_write.status, 503, "{second_write:?}");
    for path in ["app/k2", "app/k3"] {
        let now = read(&http, &token, path);
        assert_eq!(
            now.version,
            versions_before.get(path).copied(),
            "{path}: {now:?}"
        );
        assert_eq!(
            now.value.as_ref(),
            written.latest.get(path),
            "{path}: {now:?}"
        );
    }
    assert_eq!(
        degraded["degraded"], true,
        "health during the outage: {degraded}"
    );
    assert_eq!(
        health(&http).get("degraded"),
        None,
        "a healthy node omits the field"
    );
    assert!(
        seen_from_bao,
        "a value written with the bao CLI after the outage was not seen"
    );

    // The breaker opened, bounded the calls to the dead backend, and closed after one probe.
    let opened = metric(
        &during,
        "keyward_circuit_transitions_total",
        &["backend=\"vault\"", "state=\"open\""],
    );
    assert!(opened >= 1.0, "breaker did not open:\n{during}");
    let bound = READERS + THRESHOLD + 2 + outage.as_secs() as usize;
    assert!(
        outage_connections <= bound,
        "{outage_connections} backend connections in {outage:?} of outage (bound {bound})"
    );
    let opens = metric(
        &after,
        "keyward_circuit_transitions_total",
        &["backend=\"vault\"", "state=\"open\""],
    );
    let probes = metric(
        &after,
        "keyward_circuit_transitions_total",
        &["backend=\"vault\"", "state=\"half_open\""],
    );
    let closes = metric(
        &after,
        "keyward_circuit_transitions_total",
        &["backend=\"vault\"", "state=\"closed\""],
    );
    assert_eq!(closes, 1.0, "{after}");
    assert_eq!(
        probes, opens,
        "every probe but the last failed and reopened the breaker:\n{after}"
    );
    assert_eq!(
        metric(&after, "keyward_circuit_state", &["backend=\"vault\""]),
        0.0,
        "{after}"
    );
    assert_eq!(metric(&after, "keyward_degraded", &[]), 0.0, "{after}");

    let stale_reads = observations.iter().filter(|seen| seen.stale).count();
    let refused_reads = observations
        .iter()
        .filter(|seen| seen.status == 503)
        .count();
    eprintln!(
        "outage: {} reads, {stale_reads} stale, {refused_reads} refused; {outage_connections} \
         backend connections in {outage:?}; breaker opened {opens} times, probed {probes} times",
        observations.len()
    );
    check_observations(
        &observations,
        &written,
        &rejected_values,
        killed,
        restart_began,
        &paths,
    );
}

/// Checks every read the readers made against the outage's timeline and the written values.
fn check_observations(
    observations: &[Observation],
    written: &Written,
    rejected: &[String],
    killed: Instant,
    restart_began: Instant,
    paths: &[String],
) {
    // The last sync of any secret is at most `killed`, and at least one cache TTL (plus a
    // reader's round) before it, so stale reads are served until about `killed + 5s`.
    let surely_stale = killed + Duration::from_secs(4);
    let surely_expired = killed + MAX_STALE + Duration::from_millis(1500);
    let mut last_sync_seen: HashMap<&str, String> = HashMap::new();
    let mut stale_refusals = 0;
    let mut observations = observations.to_vec();
    observations.sort_by_key(|seen| seen.started);

    for seen in &observations {
        if seen.status == 200 {
            let value = seen
                .value
                .as_deref()
                .unwrap_or_else(|| panic!("200 without a value: {seen:?}"));
            assert!(
                written
                    .all
                    .get(&seen.path)
                    .is_some_and(|values| values.contains(value)),
                "read returned a value that was never written: {seen:?}"
            );
            assert!(
                !rejected.iter().any(|r| r == value),
                "a rejected write was served: {seen:?}"
            );
        }
        if seen.started < killed {
            assert_eq!(seen.status, 200, "read before the outage: {seen:?}");
        } else if seen.started < surely_stale {
            assert_eq!(
                seen.status, 200,
                "read within the staleness limit: {seen:?}"
            );
        } else if seen.started >= surely_expired && seen.started < restart_began {
            assert_eq!(seen.status, 503, "read past the staleness limit: {seen:?}");
            assert!(seen.message.contains("last successful sync at"), "{seen:?}");
            let last_sync = last_sync_seen.get(seen.path.as_str());
            let last_sync = last_sync
                .unwrap_or_else(|| panic!("no stale read of {} before {seen:?}", seen.path));
            assert!(
                seen.message.contains(last_sync.as_str()),
                "the 503 must name {last_sync}: {seen:?}"
            );
            stale_refusals += 1;
        }
        if seen.stale {
            // A read started just before the kill may meet the dead backend.
            assert!(
                seen.started + Duration::from_secs(1) >= killed,
                "stale read while OpenBao was up: {seen:?}"
            );
            let last_sync = seen
                .last_sync
                .clone()
                .unwrap_or_else(|| panic!("stale read without X-Keyward-Last-Sync: {seen:?}"));
            last_sync_seen.insert(seen.path.as_str(), last_sync);
        }
        assert!(
            seen.status == 200 || seen.status == 503,
            "unexpected status: {seen:?}"
        );
    }

    for path in paths {
        assert!(
            last_sync_seen.contains_key(path.as_str()),
            "no stale read of {path}"
        );
        let last = observations
            .iter()
            .filter(|seen| &seen.path == path)
            .max_by_key(|seen| seen.started)
            .unwrap_or_else(|| panic!("no read of {path}"));
        assert_eq!(last.status, 200, "{last:?}");
        assert!(!last.stale, "{last:?}");
        assert_eq!(
            last.value.as_ref(),
            written.latest.get(path),
            "latest value of {path} lost: {last:?}"
        );
    }
    assert!(stale_refusals > 0, "no read ran past the staleness limit");
}

#[test]
fn restart_with_backend_down_serves_disk_cache() {
    let Some(bin) = required_env(
        "KEYWARD_TEST_BAO_BIN",
        "restart_with_backend_down_serves_disk_cache",
    ) else {
        return;
    };
    let mut bao = OwnBao::dev(&bin);
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", &random_hex(16));
    append(
        &init.config,
        &bao.storage_section("max_stale = \"1h\"\ncache_ttl = \"1s\"\ndisk_cache = true\n"),
    );
    let root_token = bao.root_token.clone();
    let env = [(TOKEN_VAR, root_token.as_str())];
    let server = Server::start_with_env(&init, work.path(), &env);
    let token = server.root_token.clone();
    let value = format!("cached-{}", random_hex(8));
    server
        .http()
        .write_secret("app/cached", &token, &json!({ "value": value }));
    let first = read(&server.http(), &token, "app/cached");
    let status = server.terminate();
    assert!(status.success(), "{status}");

    bao.kill();
    let server = Server::start_with_env(&init, work.path(), &env);
    let http = server.http();
    let at_start = health(&http);
    let cached = read(&http, &token, "app/cached");
    let never_cached = read(&http, &token, "app/other");
    let reported = health(&http);
    let for_balancers = http.request("GET", "sys/health?degradedcode=429", None, None);

    assert_eq!(first.value.as_deref(), Some(value.as_str()));
    assert_eq!(cached.status, 200, "{cached:?}");
    assert_eq!(cached.value.as_deref(), Some(value.as_str()));
    assert!(
        cached.stale,
        "a read from the cache file must be marked stale: {cached:?}"
    );
    assert!(cached.last_sync.is_some(), "{cached:?}");
    assert_eq!(never_cached.status, 503, "{never_cached:?}");
    assert_eq!(at_start["degraded"], true, "{at_start}");
    assert_eq!(reported["degraded"], true, "{reported}");
    assert_eq!(for_balancers.status, 429, "{for_balancers:?}");

    let file = init.dir.join("read-cache.bin");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file)
            .expect("cache file exists")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "cache file mode {mode:o}");
    let bytes = std::fs::read(&file).expect("cache file reads");
    assert!(
        !bytes
            .windows(value.len())
            .any(|window| window == value.as_bytes()),
        "the cache file must hold ciphertext only"
    );
}

#[test]
fn env_fallback_only_when_backend_and_cache_fail() {
    let Some(bin) = required_env(
        "KEYWARD_TEST_BAO_BIN",
        "env_fallback_only_when_backend_and_cache_fail",
    ) else {
        return;
    };
    let mut bao = OwnBao::dev(&bin);
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", &random_hex(16));
    append(
        &init.config,
        &bao.storage_section(
            "cache_ttl = \"1s\"\nmax_stale = \"1h\"\nfailure_threshold = 1\n\
             [storage.resilience.env_fallback]\nOUTAGE_DB_VALUE = \"app/db#value\"\n\
             OUTAGE_UNCACHED_VALUE = \"app/uncached#value\"\n",
        ),
    );
    let env_value = format!("from-env-{}", random_hex(4));
    let env = [
        (TOKEN_VAR, bao.root_token.as_str()),
        ("OUTAGE_DB_VALUE", env_value.as_str()),
        ("OUTAGE_UNCACHED_VALUE", env_value.as_str()),
    ];
    let server = Server::start_with_env(&init, work.path(), &env);
    let http = server.http();
    let token = server.root_token.clone();
    let backend_value = format!("from-bao-{}", random_hex(4));
    bao.cli(&[
        "kv",
        "put",
        "-mount=kv",
        "keyward/app/db",
        &format!("value={backend_value}"),
    ]);

    let while_up = read(&http, &token, "app/db");
    bao.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let from_cache = read(&http, &token, "app/db");
    let from_env = read(&http, &token, "app/uncached");
    let unmapped = read(&http, &token, "app/unmapped");

    assert_eq!(
        while_up.value.as_deref(),
        Some(backend_value.as_str()),
        "{while_up:?}"
    );
    assert!(!while_up.stale, "{while_up:?}");
    assert_eq!(
        from_cache.value.as_deref(),
        Some(backend_value.as_str()),
        "cache wins over env: {from_cache:?}"
    );
    assert!(
        from_cache.stale && from_cache.source.is_none(),
        "{from_cache:?}"
    );
    assert_eq!(from_env.status, 200, "{from_env:?}");
    assert_eq!(from_env.value.as_deref(), Some(env_value.as_str()));
    assert_eq!(from_env.source.as_deref(), Some("env"), "{from_env:?}");
    assert!(from_env.stale, "{from_env:?}");
    assert_eq!(unmapped.status, 503, "{unmapped:?}");

    let audited: Vec<Value> = server
        .audit_lines()
        .into_iter()
        .filter(|line| line.to_string().contains("secret/data/app/uncached"))
        .collect();
    assert!(
        audited
            .iter()
            .any(|line| line.to_string().contains("\"freshness\":\"env_fallback\"")),
        "the fallback read must be audited as env_fallback: {audited:?}"
    );
    assert!(
        audited
            .iter()
            .all(|line| !line.to_string().contains(&env_value)),
        "the audit log must not contain the value"
    );
}
