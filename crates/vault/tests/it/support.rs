//! Finding the shared OpenBao server, unique names, and OpenBao processes a test starts itself.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyward_vault::{Auth, VaultClient, VaultConfig, VaultToken};

/// The shared OpenBao server and a client holding its root token.
pub struct Bao {
    pub addr: String,
    pub root: VaultClient,
}

/// Returns the shared server, or `None` after a loud skip line when the environment does not
/// name one. Under `CI=true` a missing server fails the test instead.
pub fn bao(test: &str) -> Option<Bao> {
    let addr = std::env::var("KEYWARD_TEST_OPENBAO_ADDR").ok();
    let token = std::env::var("KEYWARD_TEST_OPENBAO_TOKEN").ok();
    let (Some(addr), Some(root_token)) = (addr, token) else {
        skip_or_fail(
            test,
            "KEYWARD_TEST_OPENBAO_ADDR and KEYWARD_TEST_OPENBAO_TOKEN",
        );
        return None;
    };
    let root = VaultClient::new(
        VaultConfig::new(addr.clone()),
        Auth::Token(VaultToken::new(root_token.clone())),
    )
    .expect("root client builds");
    Some(Bao { addr, root })
}

/// Returns the `bao` binary, or `None` after a skip line (a failure under `CI=true`).
pub fn bao_bin(test: &str) -> Option<PathBuf> {
    match std::env::var("KEYWARD_TEST_BAO_BIN") {
        Ok(bin) if !bin.is_empty() => Some(PathBuf::from(bin)),
        _ => {
            skip_or_fail(test, "KEYWARD_TEST_BAO_BIN");
            None
        }
    }
}

fn skip_or_fail(test: &str, variables: &str) {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{test}: {variables} must be set under CI=true (scripts/test.sh sets them)");
    }
    eprintln!("SKIPPED {test}: {variables} not set; run scripts/test.sh to start OpenBao");
}

/// Returns a name no other test in this run uses, such as `kv-1234-7`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Enables a KV v2 engine at a unique mount and returns the mount.
pub async fn kv_mount(bao: &Bao) -> String {
    let mount = unique("kv");
    let options = BTreeMap::from([("version".to_owned(), "2".to_owned())]);
    bao.root
        .enable_secrets_engine(&mount, "kv", &options)
        .await
        .expect("kv v2 engine is enabled");
    mount
}

/// Enables a transit engine at a unique mount and returns the mount.
pub async fn transit_mount(bao: &Bao) -> String {
    let mount = unique("transit");
    bao.root
        .enable_secrets_engine(&mount, "transit", &BTreeMap::new())
        .await
        .expect("transit engine is enabled");
    mount
}

/// An OpenBao process started by a test; killed when dropped.
pub struct BaoProcess {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for BaoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback port that is free, with the next port free too (a dev server also
/// binds PORT+1 for its cluster listener).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds an ephemeral port");
        let port = listener.local_addr().expect("has an address").port();
        drop(listener);
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no pair of free loopback ports found");
}

/// Starts a dev server with root token `root_token` and waits until it responds.
pub fn start_dev_server(bin: &PathBuf, root_token: &str) -> BaoProcess {
    let port = free_port_pair();
    let dir = tempfile::tempdir().expect("temporary directory is created");
    let child = Command::new(bin)
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={root_token}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ])
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bao dev server starts");
    let process = BaoProcess {
        child,
        addr: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_for_listener(port);
    process
}

/// Starts a server with Raft storage that nobody has initialised.
pub fn start_uninitialized_server(bin: &PathBuf) -> BaoProcess {
    let port = free_port_pair();
    let dir = tempfile::tempdir().expect("temporary directory is created");
    let config = dir.path().join("bao.hcl");
    let storage = dir.path().join("data");
    std::fs::create_dir(&storage).expect("storage directory is created");
    std::fs::write(
        &config,
        format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"node1\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  \
             cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             cluster_addr = \"http://127.0.0.1:{cluster}\"\n",
            storage.display(),
            cluster = port + 1
        ),
    )
    .expect("server config is written");
    let child = Command::new(bin)
        .args(["server", &format!("-config={}", config.display())])
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bao server starts");
    let process = BaoProcess {
        child,
        addr: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_for_listener(port);
    process
}

fn wait_for_listener(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("OpenBao on port {port} did not start listening within 30 s");
}

/// Runs the `bao` CLI against `addr` with `token` and fails the test unless it succeeds.
pub fn run_bao(bin: &PathBuf, addr: &str, token: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("temporary directory is created");
    let output = Command::new(bin)
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env("HOME", home.path())
        .output()
        .expect("bao CLI runs");
    assert!(
        output.status.success(),
        "bao {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
