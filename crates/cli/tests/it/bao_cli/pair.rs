//! A Keyward dev server paired with a private mount on an OpenBao dev server, and the
//! comparison of one `bao` command's outputs from both.

use std::cell::RefCell;
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::compare::{Exception, compare_json, mask_rows, mask_times, mask_uuids};
use crate::harness::{Output, Server, random_hex, required_env, run, temp_dir};

/// Which server a `bao` command talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Keyward,
    OpenBao,
}

/// A Keyward dev server and a private mount on the shared OpenBao dev server.
pub struct Pair {
    pub keyward: Server,
    bao_bin: String,
    openbao_addr: String,
    pub openbao_token: String,
    mount: String,
    work: TempDir,
    /// Policies written to OpenBao, deleted again on drop.
    pub openbao_policies: RefCell<Vec<String>>,
    /// Strings to mask in outputs (tokens and accessors seen so far), with their mask.
    masks: RefCell<Vec<(String, &'static str)>>,
}

/// The outputs of one command on both servers, normalised.
pub struct Both {
    pub args: String,
    pub keyward: Output,
    pub openbao: Output,
}

/// A difference in `bao`'s error output that Keyward has on purpose.
pub struct StderrException {
    /// The text in OpenBao's output.
    pub openbao: &'static str,
    /// The text in Keyward's output at the same place.
    pub keyward: &'static str,
    /// Why they differ.
    pub reason: &'static str,
}

/// OpenBao wraps a policy refusal of a valid token in a one-item multierror list, but sends a
/// plain "permission denied" for an unknown token.
pub const PERMISSION_DENIED: StderrException = StderrException {
    openbao: "* 1 error occurred:\n\t* permission denied\n\n\n",
    keyward: "* permission denied\n",
    reason: "Keyward sends the same 403 body for unknown tokens and refused paths, so a \
             refusal does not tell whether the token is valid",
};

/// OpenBao returns an empty 404 body for a PATCH of a missing secret, so bao prints its
/// "Raw Message" form.
pub const EMPTY_PATCH_404: StderrException = StderrException {
    openbao: "Code: 404. Raw Message:\n",
    keyward: "Code: 404. Errors:\n",
    reason: "Keyward sends {\"errors\":[]} with every 404, as OpenBao does for reads",
};

/// A table row that only OpenBao prints.
pub struct RowException {
    /// The row's key.
    pub row: &'static str,
    /// Why Keyward does not print it.
    pub reason: &'static str,
}

/// OpenBao 2.7 counts metadata writes in `current_metadata_version`.
pub const METADATA_VERSION_ROW: RowException = RowException {
    row: "current_metadata_version",
    reason: "Keyward keeps no counter of metadata writes, so its metadata has no such field",
};

/// The JSON field of [`METADATA_VERSION_ROW`].
pub const METADATA_VERSION_FIELD: Exception = Exception {
    path: "data.current_metadata_version",
    reason: METADATA_VERSION_ROW.reason,
};

impl Pair {
    /// Starts a Keyward dev server and enables a fresh mount on OpenBao. Returns `None`
    /// outside CI when the test environment provides no `bao` or no OpenBao.
    pub fn start(test: &str) -> Option<Pair> {
        let bao_bin = required_env("KEYWARD_TEST_BAO_BIN", test)?;
        let openbao_addr = required_env("KEYWARD_TEST_OPENBAO_ADDR", test)?;
        let openbao_token = required_env("KEYWARD_TEST_OPENBAO_TOKEN", test)?;

        let mut pair = Pair {
            keyward: Server::dev(),
            bao_bin,
            openbao_addr,
            openbao_token,
            mount: String::new(),
            work: temp_dir(),
            openbao_policies: RefCell::new(Vec::new()),
            masks: RefCell::new(Vec::new()),
        };
        pair.masks
            .borrow_mut()
            .push((pair.keyward.root_token.clone(), "<root token>"));
        pair.masks
            .borrow_mut()
            .push((pair.openbao_token.clone(), "<root token>"));

        // Tests run in parallel against one OpenBao: retry on the rare name collision.
        for _ in 0..5 {
            let mount = format!("kw{}", random_hex(2));
            let root = pair.openbao_token.clone();
            let output = pair.raw(
                Side::OpenBao,
                &root,
                &["secrets", "enable", &format!("-path={mount}"), "kv-v2"],
            );
            if output.success() {
                pair.mount = mount;
                return Some(pair);
            }
            eprintln!("enabling mount {mount} on OpenBao failed, retrying:\n{output}");
        }
        panic!(
            "{test}: cannot enable a KV v2 mount on OpenBao at {}",
            pair.openbao_addr
        );
    }

    fn root_token(&self, side: Side) -> &str {
        match side {
            Side::Keyward => &self.keyward.root_token,
            Side::OpenBao => &self.openbao_token,
        }
    }

    /// Runs `bao` against one side with `token`, arguments passed as they are.
    fn raw(&self, side: Side, token: &str, args: &[&str]) -> Output {
        let mut command = Command::new(&self.bao_bin);
        for var in [
            "BAO_ADDR",
            "BAO_CACERT",
            "BAO_TOKEN",
            "BAO_NAMESPACE",
            "BAO_FORMAT",
        ] {
            command.env_remove(var);
            command.env_remove(var.replace("BAO_", "VAULT_"));
        }
        command.env("BAO_TOKEN", token);
        match side {
            Side::Keyward => {
                command
                    .env("BAO_ADDR", &self.keyward.url)
                    .env("BAO_CACERT", &self.keyward.ca_file);
            }
            Side::OpenBao => {
                command.env("BAO_ADDR", &self.openbao_addr);
            }
        }
        run(command.args(args))
    }

    /// Runs `bao` against one side with `token`; on OpenBao the `secret` mount in the
    /// arguments becomes this test's mount, and back again in the output.
    pub fn bao(&self, side: Side, token: &str, args: &[&str]) -> Output {
        let args: Vec<String> = args
            .iter()
            .map(|arg| match side {
                Side::OpenBao if *arg == "secret" || arg.starts_with("secret/") => {
                    format!("{}{}", self.mount, &arg["secret".len()..])
                }
                _ => (*arg).to_owned(),
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = self.raw(side, token, &args);
        Output {
            code: output.code,
            stdout: self.normalise(&output.stdout),
            stderr: self.normalise(&output.stderr),
        }
    }

    /// Masks what legitimately differs between the two servers' outputs.
    fn normalise(&self, text: &str) -> String {
        let mut text = text
            .replace(&format!("{}/", self.mount), "secret/")
            .replace(&self.keyward.url, "<addr>")
            .replace(&self.openbao_addr, "<addr>");
        for (secret, mask) in self.masks.borrow().iter() {
            text = text.replace(secret.as_str(), mask);
        }
        mask_uuids(&mask_times(&text))
    }

    /// Remembers a token or accessor so that it is masked in later outputs.
    pub fn mask(&self, value: &str, label: &'static str) {
        if !value.is_empty() {
            self.masks.borrow_mut().push((value.to_owned(), label));
        }
    }

    /// Runs the same command on both sides with each side's root token.
    pub fn both(&self, args: &[&str]) -> Both {
        self.both_with(
            &self.keyward.root_token.clone(),
            &self.openbao_token.clone(),
            args,
        )
    }

    /// Runs the same command on both sides with the given tokens.
    pub fn both_with(&self, keyward_token: &str, openbao_token: &str, args: &[&str]) -> Both {
        Both {
            args: args.join(" "),
            keyward: self.bao(Side::Keyward, keyward_token, args),
            openbao: self.bao(Side::OpenBao, openbao_token, args),
        }
    }

    /// Writes a policy file for `side`, with this test's mount on OpenBao.
    pub fn policy_file(&self, side: Side, name: &str, text: &str) -> String {
        let text = match side {
            Side::Keyward => text.to_owned(),
            Side::OpenBao => text.replace("\"secret/", &format!("\"{}/", self.mount)),
        };
        let path = self.work.path().join(format!("{name}-{side:?}.hcl"));
        std::fs::write(&path, text).expect("write the policy file");
        path.display().to_string()
    }

    /// Writes policy `name` on both sides and returns its unique name.
    pub fn write_policy(&self, prefix: &str, text: &str) -> String {
        let name = format!("{prefix}-{}", random_hex(3));
        self.openbao_policies.borrow_mut().push(name.clone());
        for side in [Side::Keyward, Side::OpenBao] {
            let file = self.policy_file(side, &name, text);
            let output = self.bao(
                side,
                self.root_token(side),
                &["policy", "write", &name, &file],
            );
            assert!(
                output.success(),
                "policy write on {side:?} failed:\n{output}"
            );
        }
        name
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if self.mount.is_empty() {
            return;
        }
        let root = self.openbao_token.clone();
        let _ = self.raw(Side::OpenBao, &root, &["secrets", "disable", &self.mount]);
        for name in self.openbao_policies.borrow().iter() {
            let _ = self.raw(Side::OpenBao, &root, &["policy", "delete", name]);
        }
    }
}

impl Both {
    /// Asserts that both exited with the same code, `expected` on Keyward.
    pub fn assert_exit(&self, expected: i32) -> &Self {
        assert_eq!(
            self.keyward.code,
            Some(expected),
            "bao {} on Keyward:\n{}",
            self.args,
            self.keyward
        );
        assert_eq!(
            self.keyward.code, self.openbao.code,
            "bao {} exit codes differ.\nKeyward:\n{}\nOpenBao:\n{}",
            self.args, self.keyward, self.openbao
        );
        self
    }

    /// Asserts that both exited with the same code.
    pub fn assert_same_exit(&self) -> &Self {
        assert_eq!(
            self.keyward.code, self.openbao.code,
            "bao {} exit codes differ.\nKeyward:\n{}\nOpenBao:\n{}",
            self.args, self.keyward, self.openbao
        );
        self
    }

    /// Asserts that standard output matches line by line once volatile table rows are masked.
    pub fn assert_same_stdout(&self) -> &Self {
        let keyward = mask_rows(&self.keyward.stdout);
        let openbao = mask_rows(&self.openbao.stdout);
        assert_eq!(
            keyward, openbao,
            "bao {} prints differently.\n--- Keyward ---\n{keyward}\n--- OpenBao ---\n{openbao}",
            self.args
        );
        self
    }

    /// Asserts that standard error matches line by line.
    pub fn assert_same_stderr(&self) -> &Self {
        self.assert_same_stderr_except(&[])
    }

    /// Asserts that standard error matches once each exception's OpenBao text is replaced by
    /// Keyward's.
    pub fn assert_same_stderr_except(&self, exceptions: &[StderrException]) -> &Self {
        let mut openbao = self.openbao.stderr.clone();
        for exception in exceptions {
            if openbao.contains(exception.openbao) {
                eprintln!(
                    "documented difference: OpenBao prints {:?}, Keyward {:?} ({})",
                    exception.openbao, exception.keyward, exception.reason
                );
                openbao = openbao.replace(exception.openbao, exception.keyward);
            }
        }
        assert_eq!(
            self.keyward.stderr, openbao,
            "bao {} errors differently.\n--- Keyward ---\n{}\n--- OpenBao ---\n{}",
            self.args, self.keyward.stderr, self.openbao.stderr
        );
        self
    }

    /// Asserts that standard output matches once the `exceptions` rows are removed, comparing
    /// each line with runs of spaces and of `=` collapsed, because a removed row can change
    /// the width of bao's columns and rules.
    pub fn assert_same_stdout_except(&self, exceptions: &[RowException]) -> &Self {
        let simplify = |text: &str| -> Vec<String> {
            mask_rows(text)
                .lines()
                .filter(|line| {
                    let key = line.split_whitespace().next().unwrap_or_default();
                    !exceptions.iter().any(|exception| exception.row == key)
                })
                .map(|line| {
                    line.split_whitespace()
                        .map(|word| {
                            if word.chars().all(|c| c == '=') {
                                "="
                            } else {
                                word
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        for exception in exceptions {
            eprintln!(
                "documented difference: row {} ({})",
                exception.row, exception.reason
            );
        }
        let keyward = simplify(&self.keyward.stdout);
        let openbao = simplify(&self.openbao.stdout);
        assert_eq!(
            keyward, openbao,
            "bao {} prints differently.\n--- Keyward ---\n{}\n--- OpenBao ---\n{}",
            self.args, self.keyward.stdout, self.openbao.stdout
        );
        self
    }

    /// Asserts that the JSON outputs match, apart from `exceptions`.
    pub fn assert_same_json(&self, exceptions: &[Exception]) -> (Value, Value) {
        let keyward = self.keyward.json();
        let openbao = self.openbao.json();
        let differences = compare_json(&keyward, &openbao, exceptions);
        assert!(
            differences.is_empty(),
            "bao {} JSON differs:\n  {}\n--- Keyward ---\n{keyward:#}\n--- OpenBao ---\n{openbao:#}",
            self.args,
            differences.join("\n  ")
        );
        (keyward, openbao)
    }
}
