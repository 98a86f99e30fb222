//! `jifen serve`: the gRPC service on the embedded PostgreSQL (default) or an external one.

use super::config::Settings;
use jifen::server::clock::SystemClock;
use jifen::server::villages::{LogKey, Villages};
use jifen::townships::Townships;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a command finds the deployment's storage and log key: the options `serve`, `rebuild`
/// and `log-key` share. Each may also come from the config file or the environment
/// (`config::load`); unset ones are not serialized, so they override nothing.
#[derive(clap::Args, serde::Serialize)]
pub struct StorageArgs {
    /// A TOML file of settings (every option of `serve`: deploy/jifen.toml lists them); the
    /// environment's JIFEN_<SETTING> and the command line override it. JIFEN_CONFIG names one too.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the managed PostgreSQL cluster, the log key and the townships file live
    /// [default: $STATE_DIRECTORY under systemd; /var/lib/jifen for root; else
    /// $XDG_DATA_HOME/jifen].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Use this PostgreSQL server (a libpq URL of a role owning the schema; sslmode and
    /// sslrootcert honoured) instead of the managed cluster.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// The password of --database-url's role, read from this file (not the command line).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_password_file: Option<PathBuf>,
    /// With --database-url: how the service connects (default: the same URL as role jifen_app).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_database_url: Option<String>,
    /// The password of the service's role, read from this file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_database_password_file: Option<PathBuf>,
}

impl StorageArgs {
    /// The settings, with these options over the config file and the environment.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        super::config::load(self.config.as_deref(), self)
    }
}

#[derive(clap::Args, serde::Serialize)]
pub struct ServeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub storage: StorageArgs,
    /// The address to listen on [default: 127.0.0.1:50051].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The deployment origin: ledgers are "<origin>/village/<code>" [default: jifen.example.cn].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_origin: Option<String>,
    /// The township authority keys that may open villages (default: `townships` in the data
    /// directory): one line per key, "<9-digit township code> <64 hex digits>". Without it no
    /// village can be opened; villages already opened are served.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub townships: Option<PathBuf>,
    /// Seal a snapshot of a village's decision state once this many records (and an eighth of
    /// the ledger) were appended since the last: a start replays only the records after it
    /// [default: 5000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_every: Option<u64>,
    /// Serve TLS with this certificate chain (PEM, the server's certificate first).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics on http://<this address>/metrics.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// The service's database connections [default: 16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_pool: Option<usize>,
    /// The global --log-format, when given (set by main).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<super::config::LogFormat>,
}

impl ServeArgs {
    /// The settings, with these options over the config file and the environment.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        super::config::load(self.storage.config.as_deref(), self)
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight appends, signing the last checkpoints");
}

/// The deployment's townships file: the one named (which must exist), or `townships` in the
/// data directory if it exists.
fn load_townships(settings: &Settings) -> anyhow::Result<Townships> {
    let path = settings.townships.clone().unwrap_or_else(|| settings.data_dir.join("townships"));
    if settings.townships.is_none() && !path.exists() {
        eprintln!(
            "jifen: no townships file at {}: no village can be opened until township authority keys are enrolled there (see README, \"Opening villages\")",
            path.display()
        );
        return Ok(Townships::none());
    }
    let townships = Townships::load(&path)?;
    tracing::info!(keys = townships.len(), file = %path.display(), "township authority keys enrolled");
    Ok(townships)
}

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(jifen::server::tls_identity(cert, key)?),
            _ => None,
        };
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| anyhow::anyhow!("the data directory {}: {e}", settings.data_dir.display()))?;
        let storage = settings.start_storage(settings.database_pool).await?;
        let log = LogKey::load_or_create_for(&settings.log_key(), &storage.store).await?;
        let townships = load_townships(&settings)?;
        let villages = Arc::new(Villages::new(storage.store.clone(), Arc::new(SystemClock), log, &settings.deployment_origin, townships));
        villages.set_snapshot_every(settings.snapshot_every);
        let listener =
            tokio::net::TcpListener::bind(settings.listen).await.map_err(|e| anyhow::anyhow!("listening on {}: {e}", settings.listen))?;
        let metrics = match settings.metrics_listen {
            Some(addr) => {
                let bound = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("metrics_listen {addr}: {e}"))?;
                Some((bound, jifen::server::metrics::install()?))
            }
            None => None,
        };
        println!(
            "jifen serving on {} ({}, {})",
            listener.local_addr()?,
            if tls.is_some() { "TLS" } else { "plaintext" },
            if storage.cluster.is_some() { "embedded PostgreSQL" } else { "external PostgreSQL" }
        );
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some((bound, handle)) = metrics {
            println!("metrics on http://{}/metrics", bound.local_addr()?);
            let stopped = async move {
                let _ = metrics_stopped.await;
            };
            let villages = villages.clone();
            tokio::spawn(async move {
                if let Err(e) = jifen::server::metrics::serve(bound, handle, villages, stopped).await {
                    tracing::error!(error = %e, "the metrics endpoint stopped");
                }
            });
        }
        tracing::info!(data_dir = %settings.data_dir.display(), "data directory");
        jifen::server::run_with(listener, villages, tls, shutdown_signal()).await?;
        let _ = stop_metrics.send(());
        drop(storage);
        println!("jifen stopped");
        Ok(())
    })
}
