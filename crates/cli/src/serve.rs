//! `keyward server`: opens a data dir (or makes a throwaway one with `--dev`) and serves it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyward_crypto::RootKey;
use keyward_manager::{LockoutConfig, ManagerConfig, ResilienceConfig};
use keyward_server::{ClientAuth, RateLimit, ServerConfig};

use crate::cli::ServerArgs;
use crate::config::{Config, Limits, RootKeySource, RotationSettings, StorageConfig};
use crate::datadir::{self, DataDir, Opened};
use crate::error::CliError;
use crate::rotation_service::RotationService;
use crate::shell;

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> Result<(), CliError> {
    // Before the manager exists, so the gauges it sets while opening are recorded.
    keyward_server::install_metrics_recorder();
    if args.dev {
        return run_dev(args).await;
    }

    let config_path = args.config.as_deref().ok_or_else(|| {
        CliError::Usage(
            "no configuration: pass --config FILE (or set KEYWARD_CONFIG) to serve a data dir \
             made by `keyward init`, or --dev for a throwaway development server"
                .into(),
        )
    })?;
    let mut config = Config::load(config_path)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }

    let dir = DataDir::new(&config.data_dir);
    let mut manager_config = manager_config(&config.limits);
    manager_config.resilience = resilience_config(&config)?;
    let opened = datadir::open(&dir, &config.root_key, &config.storage, manager_config).await?;
    open_disk_cache(&opened).await?;
    let (cert_file, key_file) = datadir::tls_files(&config);
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "keyward server starting");
    let rotation = rotation_settings(&config);
    serve(
        opened,
        server_config(&config, cert_file, key_file),
        rotation,
    )
    .await
}

/// Returns where and how to run the rotation engine, or `None` when it is off. The Vault
/// backend has no pending stage, so the engine never runs on it.
fn rotation_settings(config: &Config) -> Option<(std::path::PathBuf, RotationSettings)> {
    if !config.rotation.enabled {
        return None;
    }
    if !matches!(config.storage, StorageConfig::Sqlite) {
        tracing::warn!("rotation is disabled: the vault storage backend has no pending stage");
        return None;
    }
    Some((config.data_dir.clone(), config.rotation.clone()))
}

async fn run_dev(args: ServerArgs) -> Result<(), CliError> {
    let temp = tempfile::Builder::new()
        .prefix("keyward-dev-")
        .tempdir()
        .map_err(|e| CliError::Other(format!("cannot create a temporary data dir: {e}")))?;
    let dir = DataDir::new(temp.path().join("data"));
    let root = RootKey::generate().map_err(|e| CliError::Other(e.to_string()))?;

    let limits = Limits::default();
    let initialised = datadir::initialise(&dir, root, manager_config(&limits)).await?;
    let config = Config {
        data_dir: temp.path().join("data"),
        listen: args.listen.unwrap_or_else(datadir::dev_listen),
        // The dev root key lives only in memory; nothing can reopen this data dir.
        root_key: RootKeySource::KeyEnv {
            name: String::new(),
        },
        tls: None,
        limits,
        storage: Default::default(),
        rotation: Default::default(),
    };
    let (cert_file, key_file) = datadir::tls_files(&config);

    print_dev_banner(
        &config,
        &initialised.ca_file,
        initialised.root_token.token.expose(),
    );
    drop(initialised.root_token);

    let rotation = rotation_settings(&config);
    let result = serve(
        initialised.opened,
        server_config(&config, cert_file, key_file),
        rotation,
    )
    .await;
    drop(temp);
    result
}

fn print_dev_banner(config: &Config, ca_file: &Path, token: &str) {
    let addr = shell::client_addr(config.listen);
    let ca = ca_file.display();
    println!("Keyward is running in development mode: data is temporary and lost on exit.");
    println!("Do not store real secrets in it.");
    println!();
    println!("Address:    {addr}");
    println!("CA file:    {ca}");
    println!("Root token: {token}");
    println!();
    println!("To use it from this shell with keyward, bao or vault:");
    println!();
    print!("{}", shell::export_lines(&addr, ca_file, token));
    println!();
}

fn manager_config(limits: &Limits) -> ManagerConfig {
    ManagerConfig {
        lockout: LockoutConfig {
            threshold: limits.lockout_threshold,
            ..LockoutConfig::default()
        },
        data_key_rotate_after: limits.data_key_rotate_after,
        ..ManagerConfig::default()
    }
}

/// Builds the resilience layer's settings from `[storage.resilience]`; `None` without it.
fn resilience_config(config: &Config) -> Result<Option<ResilienceConfig>, CliError> {
    let StorageConfig::Vault {
        resilience: Some(settings),
        ..
    } = &config.storage
    else {
        return Ok(None);
    };
    settings
        .to_manager_config(&config.data_dir)
        .map(Some)
        .map_err(|e| CliError::Usage(format!("invalid [storage.resilience]: {e}")))
}

/// Loads the encrypted read cache, if `[storage.resilience] disk_cache = true`, so reads can
/// be served before the backend responds.
async fn open_disk_cache(opened: &Opened) -> Result<(), CliError> {
    let loaded = opened
        .manager
        .open_disk_cache(opened.store.keyring_handle())
        .await
        .map_err(|e| CliError::Other(format!("cannot open the read cache file: {e}")))?;
    if loaded > 0 {
        tracing::info!(entries = loaded, "read cache loaded from disk");
    }
    Ok(())
}

fn server_config(
    config: &Config,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
) -> ServerConfig {
    let limits = &config.limits;
    let mut server = ServerConfig::new(config.listen, cert_file, key_file);
    server.client_auth = client_auth(config);
    server.max_body_bytes = limits.max_body_bytes;
    server.request_timeout = Duration::from_secs(limits.request_timeout_secs);
    server.per_token_rate = Some(RateLimit::new(
        limits.per_token_per_second,
        limits.per_token_per_second.saturating_mul(2),
    ));
    server.per_address_rate = Some(RateLimit::new(
        limits.per_address_per_second,
        limits.per_address_per_second.saturating_mul(2),
    ));
    server
}

fn client_auth(config: &Config) -> ClientAuth {
    let Some(tls) = &config.tls else {
        return ClientAuth::None;
    };
    match (&tls.client_ca, tls.require_client_cert) {
        // `Config::load` rejects `require_client_cert` without `client_ca`.
        (None, _) => ClientAuth::None,
        (Some(ca_path), false) => ClientAuth::Optional {
            ca_path: ca_path.clone(),
        },
        (Some(ca_path), true) => ClientAuth::Required {
            ca_path: ca_path.clone(),
        },
    }
}

async fn serve(
    opened: Opened,
    config: ServerConfig,
    rotation: Option<(std::path::PathBuf, RotationSettings)>,
) -> Result<(), CliError> {
    let Opened {
        manager,
        store,
        audit,
        vault_renewal,
    } = opened;

    let rotation = match rotation {
        Some((data_dir, settings)) => {
            Some(RotationService::start(Arc::clone(&manager), &data_dir, &settings).await?)
        }
        None => None,
    };
    let scheduler = rotation.as_ref().map(RotationService::scheduler);
    let result =
        match keyward_server::Server::bind_with_rotation(Arc::clone(&manager), config, scheduler)
            .await
        {
            Ok(server) => server.run(shutdown_signal()).await,
            Err(error) => Err(error),
        };
    if let Some(rotation) = rotation {
        rotation.stop().await;
    }

    // Save the keyring's encryption counts, then close in dependency order so every
    // acknowledged write and audit entry is on disk.
    if let Err(error) = manager.flush_disk_cache().await {
        tracing::error!(%error, "writing the read cache file at shutdown failed; it holds the entries of its last periodic write");
    }
    if let Err(error) = manager.shutdown().await {
        tracing::error!(%error, "saving the keyring at shutdown failed; encryption counts since the last save are lost");
    }
    drop(manager);
    drop(vault_renewal);
    audit.close();
    store.close().await;
    tracing::info!("keyward server stopped");
    result.map_err(|e| CliError::Other(format!("server failed: {e}")))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stop the server with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown signal received; finishing open requests");
}
