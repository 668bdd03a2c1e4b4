//! A generator that runs an external program and takes its standard output as the value.
//!
//! The program runs without a shell, with standard input closed and an environment of its
//! own (a fixed `PATH` and `KEYWARD_SECRET_PATH`, nothing of the server's, which may hold the
//! root-key passphrase), and is killed at its timeout. Its standard error is read but never logged or returned, because a failing program
//! may print the value there; errors report only the exit status and byte counts.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

use super::{GenerateError, Generator};
use crate::secret::SecretValue;

/// The `PATH` the program gets in place of the server's environment.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Maximum output accepted from the program, in bytes.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Runs a program that prints the new value on standard output.
#[derive(Debug)]
pub struct CommandGenerator {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandGenerator {
    /// Creates a generator running `argv[0]` with the remaining arguments.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Result<Self, GenerateError> {
        if argv.first().is_none_or(|program| program.is_empty()) {
            return Err(GenerateError::Invalid(
                "a command generator needs a program".to_owned(),
            ));
        }
        Ok(Self { argv, timeout })
    }

    fn program(&self) -> String {
        self.argv.first().cloned().unwrap_or_default()
    }

    async fn run(&self, path: &str) -> Result<SecretValue, GenerateError> {
        let program = self.program();
        let mut child = tokio::process::Command::new(&program)
            .args(&self.argv[1..])
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("KEYWARD_SECRET_PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| GenerateError::Spawn {
                program: program.clone(),
                source,
            })?;

        let failed = |reason: String| GenerateError::Command {
            program: program.clone(),
            reason,
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(failed("its output pipes were not opened".to_owned()));
        };

        let mut out = Zeroizing::new(Vec::new());
        let mut err = Zeroizing::new(Vec::new());
        let mut stdout = stdout.take(MAX_OUTPUT + 1);
        let mut stderr = stderr.take(MAX_OUTPUT);
        let read_out = stdout.read_to_end(&mut out);
        let read_err = stderr.read_to_end(&mut err);
        let (out_result, err_result, status) = tokio::join!(read_out, read_err, child.wait());
        out_result.map_err(|error| failed(format!("reading its output failed: {error}")))?;
        err_result.map_err(|error| failed(format!("reading its error output failed: {error}")))?;
        let status = status.map_err(|error| failed(format!("waiting for it failed: {error}")))?;

        if !status.success() {
            return Err(failed(format!(
                "it exited with {status} and wrote {} bytes to standard error",
                err.len()
            )));
        }
        if out.len() as u64 > MAX_OUTPUT {
            return Err(failed(format!("it printed more than {MAX_OUTPUT} bytes")));
        }

        let mut text = Zeroizing::new(
            String::from_utf8(std::mem::take(&mut *out))
                .map_err(|_| failed("its output is not UTF-8".to_owned()))?,
        );
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() || text.contains(['\n', '\0']) {
            return Err(failed(
                "it must print exactly one non-empty line".to_owned(),
            ));
        }
        Ok(SecretValue::new(std::mem::take(&mut *text)))
    }
}

#[async_trait]
impl Generator for CommandGenerator {
    async fn generate(&self, path: &str) -> Result<SecretValue, GenerateError> {
        match tokio::time::timeout(self.timeout, self.run(path)).await {
            Ok(result) => result,
            // Dropping the future drops the child, and `kill_on_drop` kills it.
            Err(_) => Err(GenerateError::Timeout {
                program: self.program(),
                timeout_secs: self.timeout.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str, timeout: Duration) -> CommandGenerator {
        CommandGenerator::new(
            vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()],
            timeout,
        )
        .expect("valid command")
    }

    #[tokio::test]
    async fn command_output_becomes_value() {
        let generator = shell(
            "printf 'tok-%s\\n' \"$KEYWARD_SECRET_PATH\"",
            Duration::from_secs(5),
        );
        let value = generator.generate("team/app/key").await.expect("generate");
        assert_eq!(value.expose_secret(), "tok-team/app/key");
    }

    #[tokio::test]
    async fn command_gets_none_of_the_server_environment() {
        // Cargo sets this variable for the test process; the program must not see it.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let generator = shell(
            "printf '%s|%s' \"${CARGO_PKG_NAME:-unset}\" \"$PATH\"",
            Duration::from_secs(5),
        );
        let value = generator.generate("a/b").await.expect("generate");
        assert_eq!(value.expose_secret(), format!("unset|{CHILD_PATH}"));
    }

    #[tokio::test]
    async fn failing_command_hides_its_stderr() {
        let generator = shell("echo leaked-value >&2; exit 3", Duration::from_secs(5));
        let error = generator.generate("a/b").await.expect_err("exit 3");
        let message = error.to_string();
        assert!(!message.contains("leaked-value"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
    }

    #[tokio::test]
    async fn slow_command_times_out() {
        let generator = shell("sleep 5; echo late", Duration::from_millis(200));
        let started = std::time::Instant::now();
        let error = generator.generate("a/b").await.expect_err("timeout");
        assert!(matches!(error, GenerateError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn empty_output_is_rejected() {
        let generator = shell("true", Duration::from_secs(5));
        let error = generator.generate("a/b").await.expect_err("empty");
        assert!(matches!(error, GenerateError::Command { .. }), "{error}");
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let generator = CommandGenerator::new(
            vec!["/nonexistent/keyward-generator".to_owned()],
            Duration::from_secs(1),
        )
        .expect("valid command");
        let error = generator.generate("a/b").await.expect_err("missing");
        assert!(matches!(error, GenerateError::Spawn { .. }), "{error}");
    }
}
