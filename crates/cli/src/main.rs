//! The `keyward` command-line program: runs the server and talks to a running one.

mod cli;
mod client;
mod commands;
mod config;
mod datadir;
mod doctor;
mod duration;
mod error;
mod keyring_file;
mod resilience_config;
mod rotation_service;
mod serve;
mod shell;
mod vault_config;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;

// glibc's allocator took about an eighth of the server's CPU under a read load, in its
// locking and free-list upkeep. mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Server(args) => serve::run(args).await,
        Command::Init(args) => datadir::init_command(args).await,
        Command::Kv(command) => commands::kv::run(command).await,
        Command::Token(command) => commands::token::run(command).await,
        Command::Policy(command) => commands::policy::run(command).await,
        Command::Audit(command) => commands::audit::run(command),
        Command::Keys(command) => commands::keys::run(command).await,
        Command::Rotation(command) => commands::rotation::run(command).await,
        Command::Rotate(args) => commands::rotation::rotate(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Run(args) => commands::run::run(args).await,
        Command::Export(args) => commands::export::run(args).await,
        Command::Import(args) => commands::import::run(args).await,
    }
}

/// Logs go to standard error; `RUST_LOG` overrides the default level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,keyward=info,keyward_server=info,keyward_manager=info",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
