//! `keyward server` on Vault: secrets stored in an OpenBao KV v2 mount and shared with the
//! `bao` CLI, and a root key wrapped by an OpenBao transit key that opens the keyring after a
//! restart.
//!
//! Needs `KEYWARD_TEST_OPENBAO_ADDR`, `KEYWARD_TEST_OPENBAO_TOKEN` and `KEYWARD_TEST_BAO_BIN`.
//! Each test enables its own mounts, so tests can share one OpenBao server.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use keyward_vault::{AppRoleSettings, Auth, VaultClient, VaultConfig, VaultToken};
use serde_json::{Value, json};

use crate::harness::{InitDir, Server, free_port, random_hex, required_env, run, temp_dir};

/// The shared OpenBao server.
struct Bao {
    addr: String,
    token: String,
    bin: String,
}

fn bao(test: &str) -> Option<Bao> {
    Some(Bao {
        addr: required_env("KEYWARD_TEST_OPENBAO_ADDR", test)?,
        token: required_env("KEYWARD_TEST_OPENBAO_TOKEN", test)?,
        bin: required_env("KEYWARD_TEST_BAO_BIN", test)?,
    })
}

impl Bao {
    fn root_client(&self) -> VaultClient {
        VaultClient::new(
            VaultConfig::new(self.addr.clone()),
            Auth::Token(VaultToken::new(self.token.clone())),
        )
        .expect("vault client builds")
    }

    /// Runs the `bao` CLI with the root token and returns its standard output.
    fn cli(&self, args: &[&str]) -> String {
        let home = temp_dir();
        let output = run(Command::new(&self.bin)
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.token)
            .env("HOME", home.path()));
        assert!(output.success(), "bao {args:?} failed:\n{output}");
        output.stdout
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(6))
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("configuration opens for appending");
    file.write_all(text.as_bytes())
        .expect("configuration is appended");
}

/// Enables a KV v2 mount and an AppRole role allowed to use it, writes the role's IDs into
/// files in `dir`, and returns the `[storage]` section that uses them.
fn vault_storage_section(bao: &Bao, dir: &Path) -> (String, String) {
    let client = bao.root_client();
    let kv_mount = unique("kv");
    let approle_mount = unique("approle");
    let policy = unique("keyward");

    let (role_id, secret_id) = runtime().block_on(async {
        let options = BTreeMap::from([("version".to_owned(), "2".to_owned())]);
        client
            .enable_secrets_engine(&kv_mount, "kv", &options)
            .await
            .expect("kv v2 engine is enabled");
        client
            .enable_auth_method(&approle_mount, "approle")
            .await
            .expect("approle is enabled");
        let hcl = format!(
            "path \"{kv_mount}/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }}"
        );
        client.write_policy(&policy, &hcl).await.expect("policy is written");
        let settings = AppRoleSettings {
            token_policies: vec![policy.clone()],
            token_ttl_secs: 60,
            token_max_ttl_secs: 600,
        };
        client
            .write_approle_role(&approle_mount, "keyward", &settings)
            .await
            .expect("role is written");
        let role_id = client
            .approle_role_id(&approle_mount, "keyward")
            .await
            .expect("role id reads");
        let secret_id = client
            .approle_generate_secret_id(&approle_mount, "keyward")
            .await
            .expect("secret id is issued");
        (role_id, secret_id.expose_secret().to_owned())
    });

    std::fs::write(dir.join("role-id"), role_id).expect("role id file is written");
    std::fs::write(dir.join("secret-id"), secret_id).expect("secret id file is written");
    let section = format!(
        "\n[storage]\nbackend = \"vault\"\nmount = \"{kv_mount}\"\nprefix = \"keyward\"\n\
         [storage.vault]\naddress = \"{}\"\n\
         [storage.vault.auth]\nmethod = \"approle\"\nmount = \"{approle_mount}\"\n\
         role_id_file = \"{}\"\nsecret_id_file = \"{}\"\n",
        bao.addr,
        dir.join("role-id").display(),
        dir.join("secret-id").display(),
    );
    (section, kv_mount)
}

#[test]
fn bao_and_keyward_share_vault_secrets() {
    let Some(bao) = bao("bao_and_keyward_share_vault_secrets") else {
        return;
    };
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", &random_hex(16));
    let (section, kv_mount) = vault_storage_section(&bao, work.path());
    append(&init.config, &section);
    let server = Server::start(&init, work.path());
    let http = server.http();
    let token = &server.root_token;

    bao.cli(&[
        "kv",
        "put",
        &format!("-mount={kv_mount}"),
        "keyward/app/db",
        "password=from-bao",
    ]);
    let read = http.get("secret/data/app/db", token);
    let version = http.write_secret("app/api", token, &json!({ "key": "from-keyward" }));
    let printed = bao.cli(&[
        "kv",
        "get",
        "-format=json",
        &format!("-mount={kv_mount}"),
        "keyward/app/api",
    ]);

    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.json()["data"]["data"]["password"], "from-bao");
    assert_eq!(version, 1);
    let printed: Value = serde_json::from_str(&printed).expect("bao prints JSON");
    assert_eq!(printed["data"]["data"]["key"], "from-keyward");
    let database = std::fs::read(init.database()).expect("database reads");
    assert!(
        !database
            .windows(b"from-keyward".len())
            .any(|window| window == b"from-keyward"),
        "the value must live in vault, not in the local database"
    );
}

#[test]
fn transit_auto_unseal_survives_restart() {
    let Some(bao) = bao("transit_auto_unseal_survives_restart") else {
        return;
    };
    let work = temp_dir();
    let transit_mount = unique("transit");
    runtime().block_on(async {
        let client = bao.root_client();
        client
            .enable_secrets_engine(&transit_mount, "transit", &BTreeMap::new())
            .await
            .expect("transit engine is enabled");
        client
            .transit_create_key(&transit_mount, "keyward-root")
            .await
            .expect("transit key is created");
    });
    let init = InitDir::create(work.path(), "data", &random_hex(16));
    let server = Server::start(&init, work.path());
    let root = server.root_token.clone();
    server
        .http()
        .write_secret("team/db", &root, &json!({ "password": "kept" }));

    let transit_file = work.path().join("transit.toml");
    std::fs::write(
        &transit_file,
        format!(
            "[root_key]\nsource = \"transit\"\nmount = \"{transit_mount}\"\n\
             key_name = \"keyward-root\"\nwrapped_key_file = \"root-key.transit\"\n\
             [root_key.vault]\naddress = \"{}\"\n\
             [root_key.vault.auth]\nmethod = \"token\"\ntoken_env = \"KEYWARD_TEST_OPENBAO_TOKEN\"\n",
            bao.addr
        ),
    )
    .expect("transit settings are written");
    let rotated = server.cli(
        &root,
        &[
            "keys",
            "rotate-root",
            "--new-transit",
            &transit_file.display().to_string(),
            "--config",
            &init.config.display().to_string(),
            "--format",
            "json",
        ],
    );
    assert!(
        rotated.success(),
        "rotate-root to transit failed:\n{rotated}"
    );
    assert_eq!(rotated.json()["config_updated"], true);
    let status = server.terminate();
    assert!(status.success(), "{status}");

    let wrapped = std::fs::read_to_string(work.path().join("root-key.transit"))
        .expect("wrapped root key is written");
    let config = std::fs::read_to_string(&init.config).expect("configuration reads");
    assert!(wrapped.starts_with("vault:v1:"), "{wrapped}");
    assert!(config.contains("source = \"transit\""), "{config}");
    assert!(
        !config.contains(&bao.token),
        "the token must not be written to the configuration"
    );

    // The passphrase the harness still passes no longer matters: the keyring opens through
    // the transit key.
    let server = Server::start(&init, work.path());
    let read = server.http().get("secret/data/team/db", &root);
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.json()["data"]["data"]["password"], "kept");

    // And back from transit to a key file.
    let key_file = work.path().join("root.key");
    let moved = server.cli(
        &root,
        &[
            "keys",
            "rotate-root",
            "--new-key-file",
            &key_file.display().to_string(),
            "--config",
            &init.config.display().to_string(),
        ],
    );
    assert!(
        moved.success(),
        "rotate-root to a key file failed:\n{moved}"
    );
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let server = Server::start(&init, work.path());
    let read = server.http().get("secret/data/team/db", &root);
    assert_eq!(read.status, 200, "{read:?}");
}

#[test]
fn missing_vault_token_variable_stops_startup() {
    let work = temp_dir();
    let init = InitDir::create(work.path(), "data", &random_hex(16));
    append(
        &init.config,
        "\n[storage]\nbackend = \"vault\"\n[storage.vault]\naddress = \"http://127.0.0.1:9\"\n\
         [storage.vault.auth]\nmethod = \"token\"\ntoken_env = \"KEYWARD_TEST_UNSET_VAULT_TOKEN\"\n",
    );

    let output = run(Server::config_command(&init, &init.passphrase, free_port())
        .env_remove("KEYWARD_TEST_UNSET_VAULT_TOKEN"));

    assert!(!output.success(), "{output}");
    assert!(
        output.stderr.contains("KEYWARD_TEST_UNSET_VAULT_TOKEN"),
        "the error must name the variable:\n{output}"
    );
}
