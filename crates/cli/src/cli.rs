//! Command-line definitions for the `keyward` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keyward: a secrets manager that serves secrets over TLS 1.3, speaks Vault's KV v2 API and
/// keeps a tamper-evident audit trail.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Keyward server.
    Server(ServerArgs),
    /// Create a new data dir: keyring, database, audit log, TLS certificate and root token.
    Init(InitArgs),
    /// Read and write secrets on a running server.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Create and revoke tokens on a running server.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write and list policies on a running server.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Rotate data keys and the root key, and rewrap records, on a running server.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Set, show and check the rotation policy of a secret on a running server.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Rotate a secret now, whatever its schedule (it needs a rotation policy).
    Rotate(RotateArgs),
    /// Run a command with secrets in its environment; optionally restart it when they change
    /// and mask their values in its output.
    Run(crate::commands::run::RunArgs),
    /// Print secrets as a dotenv file or a JSON object.
    Export(crate::commands::export::ExportArgs),
    /// Write the variables of a dotenv file as a new version of a secret.
    Import(crate::commands::import::ImportArgs),
    /// Check a deployment's security settings: file modes, passphrase, root token,
    /// certificate, audit log and limits. Exits with 1 when a check fails.
    Doctor(DoctorArgs),
}

/// Options of `keyward server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Run a throwaway development server: temporary data dir, generated root key and
    /// self-signed certificate; prints the root token. Never use it for real secrets.
    #[arg(long, conflicts_with = "config")]
    pub dev: bool,
    /// Path of the configuration file (TOML) that `keyward init` wrote. One of --config and
    /// --dev is required.
    #[arg(long, short = 'c', env = "KEYWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides the configuration; default for --dev 127.0.0.1:8200).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// Options of `keyward doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Path of the configuration file (TOML) of the deployment to check.
    #[arg(long, short = 'c', env = "KEYWARD_CONFIG")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Options of `keyward init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create. It must not hold a keyring already.
    #[arg(long, env = "KEYWARD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address the server will listen on, written into the generated configuration. The
    /// default is also the dev server's: pick another port to run both.
    #[arg(long, default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub root_key: RootKeyArgs,
    /// Key derivation for --passphrase-env: PBKDF2-HMAC-SHA256 (600,000 iterations) or
    /// Argon2id (19 MiB, 2 passes).
    #[arg(long, value_enum, default_value_t = Kdf::Pbkdf2)]
    pub kdf: Kdf,
    /// Output format: table (text) or json (includes the root token).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Where the root key that wraps the keyring comes from. Exactly one is required.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct RootKeyArgs {
    /// Name of an environment variable holding a passphrase of at least 12 characters; the
    /// root key is derived from it with the --kdf function.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// File holding the 32-byte root key (raw bytes, or 64 hex characters). `init` creates it
    /// (mode 0600) when it does not exist.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Name of an environment variable holding the root key as 64 hex characters.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
}

/// Key derivation function for a passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kdf {
    /// PBKDF2-HMAC-SHA256, 600,000 iterations: the choice where FIPS compliance matters.
    Pbkdf2,
    /// Argon2id with OWASP's parameters: harder to attack with GPUs.
    Argon2id,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Table,
    /// JSON, for scripts.
    Json,
}

/// How to reach a server; read from the environment like the Vault CLI does.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server address, e.g. https://127.0.0.1:8200.
    #[arg(
        long,
        env = "KEYWARD_ADDR",
        default_value = "https://127.0.0.1:8200",
        global = true
    )]
    pub addr: String,
    /// Token to authenticate with (prefer the environment variable to keep it out of shell
    /// history).
    #[arg(long, env = "KEYWARD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long, env = "KEYWARD_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

/// `keyward kv ...`
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Write a new version of a secret from KEY=VALUE pairs.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// Secret path, e.g. team/service/db.
        path: String,
        /// KEY=VALUE pairs; a value of `-` reads it from standard input.
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Check-and-set: write only if the current version is N (0: only if new).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Read a secret.
    #[command(disable_version_flag = true)]
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// Secret path.
        path: String,
        /// Version to read (default: current).
        #[arg(long)]
        version: Option<u64>,
        /// Print only this field's value.
        #[arg(long)]
        field: Option<String>,
    },
    /// List the secrets under a folder.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Folder, e.g. team/ (default: the root).
        #[arg(default_value = "")]
        path: String,
    },
    /// Soft-delete the current version, or the given versions.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// Secret path.
        path: String,
        /// Versions to delete, comma-separated.
        #[arg(long, value_delimiter = ',')]
        versions: Vec<u64>,
    },
    /// Show a secret's versions with their times and states.
    History {
        #[command(flatten)]
        client: ClientArgs,
        /// Secret path.
        path: String,
    },
}

/// `keyward token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a child token of the current one.
    ///
    /// Without --policy the new token gets the caller's policies, so a root caller creates
    /// another root token: pass --policy to create a narrower one.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// Policy to attach; repeat for several. Default: the caller's policies (root for a
        /// root caller).
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
        /// Time to live: a duration such as 90s, 15m or 1h30m, or whole seconds. Default:
        /// 768h, capped at the server's maximum token TTL.
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_ttl)]
        ttl: Option<u64>,
        /// Human-readable name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Revoke the current token, or another by accessor.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// Accessor of the token to revoke (default: the current token).
        #[arg(long, allow_hyphen_values = true)]
        accessor: Option<String>,
    },
}

/// `keyward policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace a policy from an HCL or JSON file (`-` for standard input).
    Write {
        #[command(flatten)]
        client: ClientArgs,
        /// Policy name.
        name: String,
        /// File with the policy text.
        file: PathBuf,
    },
    /// List policy names.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `keyward keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show each data key: id, creation time, state, records it protects and encryptions.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a new data key active; older keys keep decrypting.
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-encrypt records under older data keys onto the active key, batch by batch, until
    /// none remain. Safe to interrupt: run it again to resume.
    Rewrap {
        #[command(flatten)]
        client: ClientArgs,
        /// Records per batch, from 1 to 10,000; each batch is one transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
    },
    /// Remove a data key that no record uses any more.
    Retire {
        #[command(flatten)]
        client: ClientArgs,
        /// The key's id, as `keyward keys status` shows it.
        id: u32,
    },
    /// Seal the keyring under a new root key; the previous passphrase or key file stops
    /// opening it.
    RotateRoot {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        new_key: NewRootKeyArgs,
        /// Key derivation for --new-passphrase-env (default: pbkdf2).
        #[arg(long, value_enum, requires = "new_passphrase_env")]
        kdf: Option<Kdf>,
        /// Configuration file whose [root_key] section to point at the new key's source.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// The source of the new root key of `keys rotate-root`. Exactly one is required.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct NewRootKeyArgs {
    /// Name of an environment variable holding the new passphrase (at least 12 characters).
    #[arg(long, value_name = "VAR")]
    pub new_passphrase_env: Option<String>,
    /// File holding the new 32-byte root key (raw bytes, or 64 hex characters); created with
    /// a random key (mode 0600) when it does not exist.
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the new root key as 64 hex characters.
    #[arg(long, value_name = "VAR")]
    pub new_key_env: Option<String>,
    /// TOML file with a `[root_key]` section of `source = "transit"`: a new random root key is
    /// wrapped by that Vault transit key and written to its `wrapped_key_file`, which must not
    /// exist yet.
    #[arg(long, value_name = "FILE")]
    pub new_transit: Option<PathBuf>,
}

/// `keyward audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log's hash chain and its head file; names the first bad entry.
    Verify {
        /// The audit log file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `keyward rotation ...`
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Set or replace a secret's rotation policy.
    Set(RotationSetArgs),
    /// Print a secret's rotation policy.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's path, e.g. app/api-key.
        path: String,
    },
    /// Print a secret's rotation state: next due time, failures, the unfinished run and the
    /// versions waiting for revocation.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's path.
        path: String,
    },
    /// Remove a secret's rotation policy; its versions stay as they are.
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's path.
        path: String,
    },
}

/// Options of `keyward rotation set`.
#[derive(Debug, Args)]
pub struct RotationSetArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The secret's path, e.g. app/api-key.
    pub path: String,
    /// When to rotate, in UTC: daily, weekly, monthly, quarterly, yearly or a cron expression.
    #[arg(long, required_unless_present = "policy_file")]
    pub schedule: Option<String>,
    /// How long the replaced version stays valid, e.g. 1h or 7d; 0s revokes it at once.
    #[arg(long, required_unless_present = "policy_file")]
    pub grace: Option<String>,
    /// How new values are made: random (an API key) or password.
    #[arg(long, default_value = "random")]
    pub generator: String,
    /// Length of a generated value, in characters (prefix excluded).
    #[arg(long)]
    pub length: Option<u32>,
    /// Prefix of a random API key, such as sk-.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Characters of a random API key: alphanumeric, hex or base64url.
    #[arg(long)]
    pub charset: Option<String>,
    /// Characters a password must not contain.
    #[arg(long)]
    pub exclude: Option<String>,
    /// TOML file with the rotator that installs each value at its provider (`type =
    /// "webhook"`, `"postgres"` or `"openai"` and its fields).
    #[arg(long)]
    pub rotator_file: Option<PathBuf>,
    /// A whole policy as a TOML or JSON (`.json`) file, instead of the options above.
    #[arg(long, conflicts_with_all = ["schedule", "grace", "rotator_file"])]
    pub policy_file: Option<PathBuf>,
}

/// Options of `keyward rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Rotate with no grace period and revoke the old credential at once, as for a leak.
    #[arg(long)]
    pub emergency: bool,
    /// The secret's path.
    pub path: String,
}
