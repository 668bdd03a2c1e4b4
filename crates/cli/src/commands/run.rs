//! `keyward run --secret PATH[=PREFIX] ... -- CMD ARGS`: starts a command with secrets in its
//! environment.
//!
//! Each field of each secret becomes a variable named PREFIX + the field name upper-cased, with
//! characters other than `A-Z`, `0-9` and `_` replaced by `_`. Every secret is read before the
//! command starts, so a missing secret or a permission problem fails without running it. The
//! command's exit code becomes `keyward run`'s (128 + N when signal N killed it), and SIGTERM,
//! SIGINT and SIGHUP are passed on to it. The tokens `KEYWARD_TOKEN`, `KEYWARD_TOKEN_FILE`,
//! `BAO_TOKEN` and `VAULT_TOKEN` are removed from its environment: it gets the secrets, not
//! the token. Addresses and CA files (`KEYWARD_ADDR`, `VAULT_ADDR`, `*_CACERT`, ...) stay: they
//! grant nothing, and a command that authenticates with its own credentials needs them.
//!
//! A field whose variable name is on [`PROTECTED_VARIABLES`] (or starts with one of
//! [`PROTECTED_PREFIXES`]), such as `PATH`, `LD_PRELOAD` or `BASH_ENV`, is refused before the
//! command starts: it would change what the command loads or runs. A prefix
//! (`--secret PATH=PREFIX_`) gives such a field a harmless name.
//!
//! With `--watch`, `keyward run` follows the server's change notifications. When one of the
//! secrets gets a new version, it stops the command with `--restart-signal` (SIGKILL after
//! 10 s) and starts it again with the new values. The command then runs in a process group of
//! its own, and the restart signal, SIGKILL and forwarded signals go to the whole group, so
//! processes the command started do not outlive it with the old values. (Without `--watch` the
//! command stays in the terminal's process group, so it can read from the terminal.) With `--mask`, the command's standard output and error
//! pass through a [`Masker`] that replaces the values with `*****`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use rustix::process::{Pid, Signal, kill_process, kill_process_group, test_kill_process_group};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use keyward_client::WatchEvent;
use keyward_store::SecretPath;

use super::mask::Masker;
use crate::cli::ClientArgs;
use crate::client::Client;
use crate::error::CliError;

/// Time the command gets to exit after the restart signal before it is killed.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// Interval of the checks whether the command's process group is empty after a restart signal.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Time to wait for the change notification stream before the command starts anyway.
const WATCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time the output copiers get to drain after the command exits (a grandchild may keep the
/// pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Variables a secret field may not set: they change which programs, libraries or startup
/// code the command (or a shell or interpreter it runs) loads.
const PROTECTED_VARIABLES: &[&str] = &[
    "PATH",
    "BASH_ENV",
    "ENV",
    "IFS",
    "CDPATH",
    "PS4",
    "SHELL",
    "SHELLOPTS",
    "BASHOPTS",
    "HOME",
    "TMPDIR",
    "GCONV_PATH",
    "LOCPATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "CLASSPATH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "KEYWARD_TOKEN",
    "KEYWARD_TOKEN_FILE",
];

/// Prefixes of variable names a secret field may not set (dynamic linker and shell
/// function imports).
const PROTECTED_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_"];

/// Token variables removed from the command's environment.
const TOKEN_VARIABLES: &[&str] = &[
    "KEYWARD_TOKEN",
    "KEYWARD_TOKEN_FILE",
    "BAO_TOKEN",
    "VAULT_TOKEN",
];

/// Options of `keyward run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Secret to put into the environment, optionally with a prefix for its variable names,
    /// e.g. `app/db=DB_`. Repeat for more secrets.
    #[arg(long = "secret", value_name = "PATH[=PREFIX]", required = true)]
    pub secrets: Vec<String>,
    /// Restart the command when one of the secrets gets a new version.
    #[arg(long)]
    pub watch: bool,
    /// Signal that stops the command before a restart: a name such as TERM, HUP or USR1, or a
    /// number.
    #[arg(long, value_name = "SIGNAL", default_value = "TERM")]
    pub restart_signal: String,
    /// Replace the secrets' values in the command's standard output and error with `*****`
    /// (values shorter than 4 bytes are left alone).
    #[arg(long)]
    pub mask: bool,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// One `--secret` option.
struct SecretSpec {
    path: SecretPath,
    prefix: String,
}

/// The secrets as read for one start of the command.
struct Injected {
    /// Version of each secret, by path.
    versions: BTreeMap<String, u64>,
    /// Variable name and value.
    variables: Vec<(String, Zeroizing<String>)>,
}

/// The reason supervision of one child ended.
enum Outcome {
    Exited(ExitStatus),
    Restart(Injected),
}

/// Runs `keyward run`. On success it does not return: the process exits with the command's
/// exit code.
pub async fn run(args: RunArgs) -> Result<(), CliError> {
    let specs = args
        .secrets
        .iter()
        .map(|raw| parse_spec(raw))
        .collect::<Result<Vec<_>, _>>()?;
    let restart_signal = parse_signal(&args.restart_signal)?;
    let client = Client::new(&args.client)?;

    // Following changes starts before the first read, so no change after it is missed.
    let mut changes = if args.watch {
        Some(start_watch(&args.client, &specs).await?)
    } else {
        None
    };

    let mut injected = read_all(&client, &specs).await?;
    let mut masked_values: Vec<Zeroizing<String>> = Vec::new();
    let mut terminate = listen(SignalKind::terminate())?;
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut hangup = listen(SignalKind::hangup())?;

    loop {
        if args.mask {
            masked_values.extend(injected.variables.iter().map(|(_, v)| v.clone()));
        }
        let (mut child, copiers) = spawn(&args, &injected, args.mask.then_some(&masked_values))?;

        let outcome = loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(|e| CliError::Other(format!("cannot wait for the command: {e}")))?;
                    break Outcome::Exited(status);
                }
                relevant = next_relevant_change(&mut changes, &specs) => {
                    if !relevant {
                        continue;
                    }
                    match read_all(&client, &specs).await {
                        Ok(fresh) if fresh.versions != injected.versions => break Outcome::Restart(fresh),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "a secret changed but could not be read; the command keeps running with the old values");
                        }
                    }
                }
                _ = terminate.recv() => forward(&child, args.watch, Signal::TERM),
                _ = interrupt.recv() => forward(&child, args.watch, Signal::INT),
                _ = hangup.recv() => forward(&child, args.watch, Signal::HUP),
            }
        };

        match outcome {
            Outcome::Exited(status) => {
                drain(copiers).await;
                exit_like(status).await;
            }
            Outcome::Restart(fresh) => {
                tracing::info!(
                    signal = %args.restart_signal,
                    "a secret has a new version; restarting the command"
                );
                stop(&mut child, restart_signal).await;
                drain(copiers).await;
                injected = fresh;
            }
        }
    }
}

fn listen(kind: SignalKind) -> Result<tokio::signal::unix::Signal, CliError> {
    signal(kind).map_err(|e| CliError::Other(format!("cannot install a signal handler: {e}")))
}

fn parse_spec(raw: &str) -> Result<SecretSpec, CliError> {
    let (path, prefix) = raw.split_once('=').unwrap_or((raw, ""));
    let path = SecretPath::parse(path)
        .map_err(|e| CliError::Usage(format!("invalid --secret {raw:?}: {e}")))?;
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(CliError::Usage(format!(
            "invalid --secret {raw:?}: the prefix may contain only letters, digits and _"
        )));
    }
    Ok(SecretSpec {
        path,
        prefix: prefix.to_owned(),
    })
}

/// Parses a signal name (`TERM`, `SIGTERM`, `term`) or number.
fn parse_signal(raw: &str) -> Result<Signal, CliError> {
    let name = raw.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let signal = match name {
        "HUP" => Some(Signal::HUP),
        "INT" => Some(Signal::INT),
        "QUIT" => Some(Signal::QUIT),
        "KILL" => Some(Signal::KILL),
        "USR1" => Some(Signal::USR1),
        "USR2" => Some(Signal::USR2),
        "TERM" => Some(Signal::TERM),
        "WINCH" => Some(Signal::WINCH),
        number => number.parse::<i32>().ok().and_then(Signal::from_named_raw),
    };
    signal.ok_or_else(|| {
        CliError::Usage(format!(
            "invalid --restart-signal {raw:?}: expected a name such as TERM, HUP, INT or USR1, or a number"
        ))
    })
}

/// Turns a field name into a variable name: upper-cased, other characters replaced by `_`.
fn variable_name(prefix: &str, field: &str) -> String {
    let upper: String = field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{upper}")
}

/// Tells whether a secret field may not set the variable `name`.
fn is_protected(name: &str) -> bool {
    PROTECTED_VARIABLES.contains(&name) || PROTECTED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Reads every secret; fails on the first one that is missing or unreadable.
async fn read_all(client: &Client, specs: &[SecretSpec]) -> Result<Injected, CliError> {
    let mut injected = Injected {
        versions: BTreeMap::new(),
        variables: Vec::new(),
    };
    let mut names: BTreeMap<String, String> = BTreeMap::new();

    for spec in specs {
        let response = client
            .request(Method::GET, &format!("secret/data/{}", spec.path), None)
            .await?;
        let data = response["data"]["data"].as_object().ok_or_else(|| {
            CliError::NotFound(format!(
                "secret {} has no readable current version",
                spec.path
            ))
        })?;
        let version = response["data"]["metadata"]["version"]
            .as_u64()
            .unwrap_or(0);
        injected.versions.insert(spec.path.to_string(), version);

        for (field, value) in data {
            let name = variable_name(&spec.prefix, field);
            if is_protected(&name) {
                return Err(CliError::Usage(format!(
                    "field {field:?} of {path} would set {name}, which changes what the command loads or runs; give the secret a prefix (--secret {path}=PREFIX_)",
                    path = spec.path
                )));
            }
            if let Some(other) = names.insert(name.clone(), spec.path.to_string()) {
                return Err(CliError::Usage(format!(
                    "variable {name} would come from both {other} and {}; give one of them a prefix (--secret {}=PREFIX_)",
                    spec.path, spec.path
                )));
            }
            let text = Zeroizing::new(match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
            if text.contains('\0') {
                return Err(CliError::Usage(format!(
                    "field {field:?} of {} contains a NUL byte, which an environment variable cannot hold",
                    spec.path
                )));
            }
            injected.variables.push((name, text));
        }
    }
    Ok(injected)
}

/// Starts the command; with `masked`, its output goes through maskers.
fn spawn(
    args: &RunArgs,
    injected: &Injected,
    masked: Option<&Vec<Zeroizing<String>>>,
) -> Result<(Child, Vec<JoinHandle<()>>), CliError> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::Usage("no command given after --".into()))?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::inherit())
        .kill_on_drop(true);
    for name in TOKEN_VARIABLES {
        command.env_remove(name);
    }
    if args.watch {
        // Its own group, so a restart reaches the processes it started too.
        command.process_group(0);
    }
    for (name, value) in &injected.variables {
        command.env(name, value.as_str());
    }
    if masked.is_some() {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }

    let mut child = command
        .spawn()
        .map_err(|e| CliError::Usage(format!("cannot start {program:?}: {e}")))?;

    let mut copiers = Vec::new();
    if let Some(values) = masked {
        let values: Vec<Zeroizing<String>> = values.clone();
        if let Some(stdout) = child.stdout.take() {
            copiers.push(tokio::spawn(copy_masked(
                stdout,
                tokio::io::stdout(),
                values.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            copiers.push(tokio::spawn(copy_masked(
                stderr,
                tokio::io::stderr(),
                values,
            )));
        }
    }
    Ok((child, copiers))
}

/// Copies `input` to `output`, masking the values.
async fn copy_masked(
    mut input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    values: Vec<Zeroizing<String>>,
) {
    let mut masker = Masker::new(values.iter().map(|v| v.as_str()));
    drop(values);
    let mut buffer = Zeroizing::new(vec![0u8; 8192]);
    loop {
        let read = match input.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let out = masker.push(&buffer[..read]);
        if output.write_all(&out).await.is_err() || output.flush().await.is_err() {
            return;
        }
    }
    let _ = output.write_all(&masker.finish()).await;
    let _ = output.flush().await;
}

async fn drain(copiers: Vec<JoinHandle<()>>) {
    for copier in copiers {
        if tokio::time::timeout(DRAIN_TIMEOUT, copier).await.is_err() {
            tracing::warn!("the command's output was still open after it exited; stopped copying");
        }
    }
}

/// Sends `signal` to the command, or with `group` to its process group (whose id is the
/// command's pid).
fn forward(child: &Child, group: bool, signal: Signal) {
    let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    let _ = if group {
        kill_process_group(pid, signal)
    } else {
        kill_process(pid, signal)
    };
}

/// Stops the command and the rest of its process group with `signal`, then SIGKILL when
/// [`RESTART_GRACE`] has passed and the group is not empty yet.
async fn stop(child: &mut Child, signal: Signal) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    forward(child, true, signal);
    let deadline = tokio::time::Instant::now() + RESTART_GRACE;
    let exited = tokio::time::timeout_at(deadline, async {
        let _ = child.wait().await;
        // The group outlives the command while processes it started remain.
        if let Some(pid) = pid {
            while test_kill_process_group(pid).is_ok() {
                tokio::time::sleep(GROUP_POLL).await;
            }
        }
    })
    .await;
    if exited.is_err() {
        tracing::warn!("the command did not exit after the restart signal; killing it");
        if let Some(pid) = pid {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        let _ = child.kill().await;
    }
}

/// Exits with the command's code, or 128 + N after signal N.
async fn exit_like(status: ExitStatus) -> ! {
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    let _ = tokio::io::stdout().flush().await;
    let _ = tokio::io::stderr().flush().await;
    std::process::exit(code)
}

/// Connects to the change notifications for the secrets' common folder and waits (briefly)
/// until the stream is ready.
async fn start_watch(
    client_args: &ClientArgs,
    specs: &[SecretSpec],
) -> Result<(keyward_client::Client, broadcast::Receiver<WatchEvent>), CliError> {
    let mut builder = keyward_client::ClientBuilder::new().addr(client_args.addr.clone());
    if let Some(token) = &client_args.token {
        builder = builder.token(token.clone());
    }
    if let Some(cacert) = &client_args.cacert {
        builder = builder.ca_file(cacert.clone());
    }
    let watcher = builder
        .build()
        .map_err(|e| CliError::Usage(format!("cannot follow changes: {e}")))?;

    let paths: Vec<String> = specs.iter().map(|s| s.path.to_string()).collect();
    let prefix = common_prefix(&paths);
    let mut events = watcher.subscribe();
    watcher
        .watch(&prefix)
        .map_err(|e| CliError::Usage(format!("cannot follow changes: {e}")))?;

    let connected = tokio::time::timeout(WATCH_CONNECT_TIMEOUT, async {
        loop {
            match events.recv().await {
                Ok(WatchEvent::Connected) | Err(broadcast::error::RecvError::Closed) => return,
                _ => continue,
            }
        }
    })
    .await;
    if connected.is_err() {
        tracing::warn!(
            "change notifications are not connected yet; starting the command anyway and retrying in the background"
        );
    }
    Ok((watcher, events))
}

/// Waits for an event that may mean one of the secrets changed. Pends forever without `--watch`.
async fn next_relevant_change(
    changes: &mut Option<(keyward_client::Client, broadcast::Receiver<WatchEvent>)>,
    specs: &[SecretSpec],
) -> bool {
    let Some((_, events)) = changes else {
        return std::future::pending().await;
    };
    let paths: BTreeSet<String> = specs.iter().map(|s| s.path.to_string()).collect();
    match events.recv().await {
        Ok(WatchEvent::Changed(change)) => paths.contains(&change.path),
        // Changes may have been missed: read again and compare versions.
        Ok(WatchEvent::Connected | WatchEvent::Reset)
        | Err(broadcast::error::RecvError::Lagged(_)) => true,
        Ok(_) => false,
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

/// Returns the longest folder shared by `paths`, or the path itself when there is only one.
fn common_prefix(paths: &[String]) -> String {
    let Some((first, rest)) = paths.split_first() else {
        return String::new();
    };
    if rest.iter().all(|p| p == first) {
        return first.clone();
    }
    let mut shared: Vec<&str> = first.split('/').collect();
    for path in rest {
        let segments: Vec<&str> = path.split('/').collect();
        let common = shared
            .iter()
            .zip(&segments)
            .take_while(|(a, b)| a == b)
            .count();
        shared.truncate(common);
    }
    if shared.is_empty() {
        String::new()
    } else {
        format!("{}/", shared.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_upper_cased_with_prefix() {
        assert_eq!(variable_name("DB_", "password"), "DB_PASSWORD");
        assert_eq!(variable_name("", "api-key.v2"), "API_KEY_V2");
    }

    #[test]
    fn specs_parse_path_and_prefix() {
        let spec = parse_spec("app/db=DB_").expect("valid");
        assert_eq!(spec.path.to_string(), "app/db");
        assert_eq!(spec.prefix, "DB_");
        assert!(parse_spec("app/db=BAD-PREFIX").is_err());
        assert!(parse_spec("../x").is_err());
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("HUP").ok(), Some(Signal::HUP));
        assert_eq!(parse_signal("sigusr1").ok(), Some(Signal::USR1));
        assert_eq!(parse_signal("15").ok(), Some(Signal::TERM));
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn dangerous_variables_are_protected_and_ordinary_ones_are_not() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "ENV",
            "IFS",
            "HOME",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "JAVA_TOOL_OPTIONS",
        ] {
            assert!(is_protected(name), "{name}");
        }
        for name in ["USER", "PASSWORD", "DB_PATH", "APP_HOME", "LANG"] {
            assert!(!is_protected(name), "{name}");
        }
    }

    #[test]
    fn common_prefix_is_a_whole_folder() {
        assert_eq!(common_prefix(&["app/db".into()]), "app/db");
        assert_eq!(common_prefix(&["app/db".into(), "app/api".into()]), "app/");
        assert_eq!(common_prefix(&["app/db".into(), "other/x".into()]), "");
        assert_eq!(
            common_prefix(&["team/app/db".into(), "team/app/x/y".into()]),
            "team/app/"
        );
    }
}
