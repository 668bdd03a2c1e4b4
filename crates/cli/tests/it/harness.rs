//! Test harness: starts `keyward` servers as child processes, runs client programs (the
//! `keyward` CLI, `bao`, `curl`, `openssl`) with a time limit, and talks HTTPS with reqwest.
//!
//! Every server gets its own loopback port and temporary directory, so tests can run in
//! parallel. A server still running when its handle is dropped is killed with SIGKILL; a test
//! that wants a graceful stop calls [`Server::terminate`]. When a test panics, the dropped
//! server prints its logs to help explain the failure.

use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

mod http;

pub use http::{CurlResponse, Http, Response, curl, send};

/// Environment variable naming the `keyward` binary to test instead of the one Cargo built
/// for these tests. `scripts/test.sh` sets it to the `dist` build, the binary that ships and
/// that the benchmarks measure.
pub const BINARY_VAR: &str = "KEYWARD_TEST_BIN";

/// Returns the path of the `keyward` binary under test.
pub fn keyward_binary() -> PathBuf {
    match std::env::var_os(BINARY_VAR) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{BINARY_VAR} names {}, which is not a file",
                path.display()
            );
            path
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_keyward")),
    }
}

/// Name of the environment variable that carries the passphrase to `init` and `server`.
pub const PASSPHRASE_VAR: &str = "KEYWARD_TEST_PASSPHRASE";

/// Time a server gets to print its banner and respond to `sys/health`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Time any one client command gets before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a server gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Variables of the `keyward` CLI that must not leak from the environment into a test.
const KEYWARD_VARS: [&str; 6] = [
    "KEYWARD_ADDR",
    "KEYWARD_TOKEN",
    "KEYWARD_CACERT",
    "KEYWARD_CONFIG",
    "KEYWARD_DATA_DIR",
    "RUST_LOG",
];

/// Returns a loopback port that was free a moment ago.
///
/// Another process may take it before the server binds it, so [`Server`] retries with a new
/// port when that happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("read the bound address")
        .port()
}

/// Name of the environment variable that names a directory to keep the tests' server files
/// in: data dirs (SQLite database and WAL, audit log) and server logs. `scripts/test.sh` sets
/// it and scans the directory for leaked secrets after the tests.
pub const ARTIFACTS_VAR: &str = "KEYWARD_TEST_ARTIFACTS";

/// Returns the directory named by [`ARTIFACTS_VAR`], creating it, or `None` when it is unset.
fn artifacts_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(ARTIFACTS_VAR).filter(|value| !value.is_empty())?);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    Some(dir)
}

/// Creates a temporary directory for one test.
///
/// When [`ARTIFACTS_VAR`] is set, the directory is made there and kept after the test.
pub fn temp_dir() -> TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("keyward-it-");
    match artifacts_dir() {
        Some(parent) => {
            builder.disable_cleanup(true);
            builder.tempdir_in(parent)
        }
        None => builder.tempdir(),
    }
    .expect("create a temporary directory")
}

/// Creates a temporary directory for a client's own files, such as response bodies that hold
/// secrets on purpose. It is removed on drop even when [`ARTIFACTS_VAR`] is set, so the leak
/// scan looks only at what servers wrote.
pub fn client_scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("keyward-it-client-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Returns the value of a variable a test needs from the test script.
///
/// When it is missing the test fails under `CI=true`, and otherwise prints why it is skipped
/// and returns `None`.
pub fn required_env(name: &str, test: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{test}: {name} is not set; scripts/test.sh sets it (CI=true, so this fails)"
                );
            }
            eprintln!("SKIPPED {test}: {name} is not set (run scripts/test.sh to provide it)");
            None
        }
    }
}

/// What a finished command printed and how it exited.
pub struct Output {
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Returns whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Parses standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("standard output is not JSON ({error}):\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

fn read_pipe(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Runs a command with no standard input and returns its output; panics when it takes longer
/// than a minute.
pub fn run(command: &mut Command) -> Output {
    run_with_timeout(command, COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("{command:?} did not finish within {COMMAND_TIMEOUT:?}"))
}

/// Runs a command with no standard input; returns `None` (after killing it) when it takes
/// longer than `timeout`.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Option<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let stdout = read_pipe(child.stdout.take());
    let stderr = read_pipe(child.stderr.take());

    let status = wait_with_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    status.map(|status| Output {
        code: status.code(),
        stdout,
        stderr,
    })
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(error) => panic!("cannot wait for child process: {error}"),
        }
    }
}

/// Builds a `keyward` command that inherits none of the CLI's variables from the test
/// environment.
pub fn keyward(args: &[&str]) -> Command {
    let mut command = Command::new(keyward_binary());
    command.args(args);
    for var in KEYWARD_VARS {
        command.env_remove(var);
    }
    command
}

/// Sends a signal to a process with the `kill` program.
pub fn signal(pid: u32, name: &str) {
    let output = run(Command::new("kill").args(["-s", name, &pid.to_string()]));
    assert!(output.success(), "kill -s {name} {pid} failed:\n{output}");
}

/// A data dir made by `keyward init` with a passphrase.
pub struct InitDir {
    /// The data dir.
    pub dir: PathBuf,
    /// Its `keyward.toml`.
    pub config: PathBuf,
    /// The CA that signed the server certificate.
    pub ca_file: PathBuf,
    /// The root token `init` printed.
    pub root_token: String,
    /// The passphrase that seals the keyring.
    pub passphrase: String,
}

impl InitDir {
    /// Runs `keyward init --format json` into `parent/name`, sealing the keyring with
    /// `passphrase`.
    pub fn create(parent: &Path, name: &str, passphrase: &str) -> InitDir {
        let dir = parent.join(name);
        let output = run(keyward(&[
            "init",
            "--format",
            "json",
            "--passphrase-env",
            PASSPHRASE_VAR,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env(PASSPHRASE_VAR, passphrase));
        assert!(output.success(), "keyward init failed:\n{output}");

        let printed = output.json();
        let field = |name: &str| -> String {
            printed[name]
                .as_str()
                .unwrap_or_else(|| panic!("init output has no string {name:?}: {printed}"))
                .to_owned()
        };
        InitDir {
            config: PathBuf::from(field("config")),
            ca_file: PathBuf::from(field("ca_file")),
            root_token: field("root_token"),
            dir,
            passphrase: passphrase.to_owned(),
        }
    }

    /// Returns the path of the SQLite database.
    pub fn database(&self) -> PathBuf {
        self.dir.join("keyward.db")
    }
}

/// A running `keyward server`.
pub struct Server {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed its certificate.
    pub ca_file: PathBuf,
    /// A token with the root policy.
    pub root_token: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    /// The dir of a dev server's logs; config servers log into the test's own dir.
    _logs: Option<TempDir>,
    /// Whether this is a dev server, whose temporary data dir is removed on drop.
    dev: bool,
}

/// Why a server process did not become ready.
enum StartFailure {
    /// It exited, perhaps because another process took its port.
    Exited(String),
}

impl Server {
    /// Starts `keyward server --dev` on a free port.
    pub fn dev() -> Server {
        let logs = temp_dir();
        let mut last_failure = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let stdout_log = logs.path().join(format!("server-{attempt}.stdout"));
            let stderr_log = logs.path().join(format!("server-{attempt}.stderr"));
            let listen = format!("127.0.0.1:{port}");
            let mut command = keyward(&["server", "--dev", "--listen", &listen]);
            // The dev server makes its data dir under TMPDIR: keep it with the artifacts.
            if let Some(dir) = artifacts_dir() {
                command.env("TMPDIR", dir);
            }
            let child = spawn_logged(&mut command, &stdout_log, &stderr_log);

            let mut server = Server {
                child: Some(child),
                addr: listen.parse().expect("valid loopback address"),
                url: format!("https://{listen}"),
                ca_file: PathBuf::new(),
                root_token: String::new(),
                data_dir: PathBuf::new(),
                stdout_log,
                stderr_log,
                _logs: None,
                dev: true,
            };
            match server
                .read_dev_banner()
                .and_then(|()| server.wait_until_healthy())
            {
                Ok(()) => {
                    server._logs = Some(logs);
                    return server;
                }
                Err(StartFailure::Exited(log)) => last_failure = log,
            }
        }
        panic!(
            "keyward server --dev did not start in three attempts; last stderr:\n{last_failure}"
        );
    }

    /// Starts `keyward server --config` on a free port for a data dir made by
    /// [`InitDir::create`], with its logs in `log_dir`.
    pub fn start(init: &InitDir, log_dir: &Path) -> Server {
        Self::start_with_env(init, log_dir, &[])
    }

    /// Starts a server like [`Server::start`] with extra environment variables.
    pub fn start_with_env(init: &InitDir, log_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let stamp = format!("{port}-{}", std::process::id());
            let stdout_log = log_dir.join(format!("server-{stamp}.stdout"));
            let stderr_log = log_dir.join(format!("server-{stamp}.stderr"));
            let child = spawn_logged(
                Self::config_command(init, &init.passphrase, port).envs(env.iter().copied()),
                &stdout_log,
                &stderr_log,
            );

            let listen = format!("127.0.0.1:{port}");
            let mut server = Server {
                child: Some(child),
                addr: listen.parse().expect("valid loopback address"),
                url: format!("https://{listen}"),
                ca_file: init.ca_file.clone(),
                root_token: init.root_token.clone(),
                data_dir: init.dir.clone(),
                stdout_log,
                stderr_log,
                _logs: None,
                dev: false,
            };
            match server.wait_until_healthy() {
                Ok(()) => return server,
                Err(StartFailure::Exited(log)) => last_failure = log,
            }
        }
        panic!(
            "keyward server --config did not start in three attempts; last stderr:\n{last_failure}"
        );
    }

    /// Builds the command that serves `init`'s data dir on `port` with `passphrase`.
    pub fn config_command(init: &InitDir, passphrase: &str, port: u16) -> Command {
        let mut command = keyward(&["server", "--listen", &format!("127.0.0.1:{port}")]);
        command
            .arg("--config")
            .arg(&init.config)
            .env(PASSPHRASE_VAR, passphrase);
        command
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("server process is running")
    }

    /// Returns the server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server process is running").id()
    }

    fn exited_log(&mut self) -> Option<String> {
        match self.child().try_wait() {
            Ok(Some(status)) => Some(format!(
                "{status}\n{}",
                std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
            )),
            _ => None,
        }
    }

    /// Waits for the dev banner and takes the CA file and root token from it.
    fn read_dev_banner(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let banner = std::fs::read_to_string(&self.stdout_log).unwrap_or_default();
            let value = |label: &str| {
                banner
                    .lines()
                    .find_map(|line| line.strip_prefix(label))
                    .map(|rest| rest.trim().to_owned())
            };
            if let (Some(ca_file), Some(token)) = (value("CA file:"), value("Root token:")) {
                self.ca_file = PathBuf::from(ca_file);
                self.root_token = token;
                // The dev data dir's layout puts the CA at <data dir>/tls/ca.pem.
                self.data_dir = self
                    .ca_file
                    .parent()
                    .and_then(Path::parent)
                    .expect("CA file lies two levels inside the data dir")
                    .to_owned();
                return Ok(());
            }
            if let Some(log) = self.exited_log() {
                return Err(StartFailure::Exited(log));
            }
            assert!(
                Instant::now() < deadline,
                "keyward server --dev printed no banner within {START_TIMEOUT:?}; stdout:\n{banner}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls `sys/health` until it returns 200.
    fn wait_until_healthy(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let http = Http::new(&self.url, &self.ca_file);
        loop {
            if let Ok(response) = http.try_request("GET", "sys/health", None, None)
                && response.status == 200
            {
                return Ok(());
            }
            if let Some(log) = self.exited_log() {
                return Err(StartFailure::Exited(log));
            }
            assert!(
                Instant::now() < deadline,
                "keyward server at {} did not answer sys/health within {START_TIMEOUT:?}; stderr:\n{}",
                self.url,
                std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Builds an HTTPS client that trusts this server's CA.
    pub fn http(&self) -> Http {
        Http::new(&self.url, &self.ca_file)
    }

    /// Returns the path of the audit log in this server's data dir.
    pub fn audit_log(&self) -> PathBuf {
        self.data_dir.join("audit").join("audit.log")
    }

    /// Parses the audit log's lines.
    pub fn audit_lines(&self) -> Vec<Value> {
        read_audit_lines(&self.audit_log())
    }

    /// Returns the environment the `keyward` CLI needs to reach this server with `token`.
    pub fn cli_env(&self, token: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KEYWARD_ADDR", self.url.clone()),
            ("KEYWARD_CACERT", self.ca_file.display().to_string()),
            ("KEYWARD_TOKEN", token.to_owned()),
        ]
    }

    /// Runs the `keyward` CLI against this server with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        run(keyward(args).envs(self.cli_env(token)))
    }

    /// Reads what the server wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        signal(self.pid(), "HUP");
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        let status = wait_with_timeout(self.child(), STOP_TIMEOUT);
        let status = status.unwrap_or_else(|| {
            panic!(
                "server did not exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            )
        });
        self.child = None;
        status
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn crash(mut self) {
        let child = self.child();
        child.kill().expect("send SIGKILL to the server");
        let _ = child.wait();
        self.child = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }

        // A killed dev server cannot remove its temporary dir (`keyward-dev-*`, the parent of
        // its data dir), so remove it here.
        let dev_dir = self.data_dir.parent().filter(|dir| {
            dir.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("keyward-dev-"))
        });
        if self.dev
            && artifacts_dir().is_none()
            && let Some(dir) = dev_dir
        {
            let _ = std::fs::remove_dir_all(dir);
        }

        if std::thread::panicking() {
            eprintln!(
                "--- keyward server {} stdout ---\n{}\n--- stderr ---\n{}",
                self.url,
                std::fs::read_to_string(&self.stdout_log).unwrap_or_default(),
                self.stderr()
            );
        }
    }
}

fn spawn_logged(command: &mut Command, stdout_log: &Path, stderr_log: &Path) -> Child {
    let stdout = std::fs::File::create(stdout_log).expect("create the stdout log");
    let stderr = std::fs::File::create(stderr_log).expect("create the stderr log");
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"))
}

/// Parses an audit log's JSON lines.
pub fn read_audit_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read audit log {}: {error}", path.display()));
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("audit log line {} is not JSON ({error}): {line}", index + 1)
            })
        })
        .collect()
}

/// Returns a random lowercase hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .expect("read /dev/urandom");
    hex::encode(buffer)
}
