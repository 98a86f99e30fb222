//! `jifen serve`: the gRPC service on the embedded PostgreSQL (default) or an external one.

use jifen::server::clock::SystemClock;
use jifen::server::villages::{LogKey, Villages};
use jifen::store::storage::{connect_external, start_embedded, Storage};
use jifen::townships::Townships;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a command finds the deployment's storage and log key: the options `serve` and
/// `rebuild` share.
#[derive(clap::Args)]
pub struct StorageArgs {
    /// Where the managed PostgreSQL cluster and the log key live.
    #[arg(long, default_value = "jifen-data")]
    pub data_dir: PathBuf,
    /// Use this PostgreSQL server (a libpq URL of a role owning the schema) instead of the
    /// managed cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// With --database-url: how the service connects (default: the same URL as role jifen_app).
    #[arg(long, requires = "database_url")]
    pub app_database_url: Option<String>,
}

impl StorageArgs {
    /// The storage, migrated, with a pool of `pool` connections.
    pub async fn start(&self, pool: usize) -> anyhow::Result<Storage> {
        match &self.database_url {
            Some(url) => connect_external(url, self.app_database_url.as_deref(), pool).await,
            None => start_embedded(&self.data_dir, pool).await,
        }
    }

    /// The deployment's log key file.
    pub fn log_key(&self) -> PathBuf {
        self.data_dir.join("log.key")
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// The deployment origin: ledgers are "<origin>/village/<code>".
    #[arg(long, default_value = "jifen.example.cn")]
    pub deployment_origin: String,
    /// The township authority keys that may open villages (default: `townships` in the data
    /// directory): one line per key, "<9-digit township code> <64 hex digits>". Without it no
    /// village can be opened; villages already opened are served.
    #[arg(long)]
    pub townships: Option<PathBuf>,
    /// Seal a snapshot of a village's decision state once this many records (and an eighth of
    /// the ledger) were appended since the last: a start replays only the records after it.
    #[arg(long, default_value_t = jifen::server::villages::SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
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
fn load_townships(args: &ServeArgs) -> anyhow::Result<Townships> {
    let path = args.townships.clone().unwrap_or_else(|| args.storage.data_dir.join("townships"));
    if args.townships.is_none() && !path.exists() {
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

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        std::fs::create_dir_all(&args.storage.data_dir)?;
        let storage = args.storage.start(16).await?;
        let log = LogKey::load_or_create_for(&args.storage.log_key(), &storage.store).await?;
        let townships = load_townships(&args)?;
        let villages = Arc::new(Villages::new(storage.store.clone(), Arc::new(SystemClock), log, &args.deployment_origin, townships));
        villages.set_snapshot_every(args.snapshot_every);
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!(
            "jifen serving on {} ({})",
            listener.local_addr()?,
            if storage.cluster.is_some() { "embedded PostgreSQL" } else { "external PostgreSQL" }
        );
        jifen::server::run(listener, villages, shutdown_signal()).await?;
        drop(storage);
        println!("jifen stopped");
        Ok(())
    })
}
