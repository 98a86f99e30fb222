//! Starting the service's storage: the embedded cluster or an external server, migrated, with a
//! pool for the service's role. Shared by `jifen serve`, the demo and the tests.

use super::{create_database, migrate, Store};
use crate::store::embedded::{Cluster, SUPERUSER};
use anyhow::Context;
use std::path::Path;

/// The database name inside the managed cluster.
pub const DATABASE: &str = "jifen";
/// The role the service appends and reads as (INSERT and SELECT on ledger tables only).
pub const APP_ROLE: &str = "jifen_app";

/// Running storage: the store, and the managed cluster if there is one (stopped on drop).
pub struct Storage {
    pub store: Store,
    pub cluster: Option<Cluster>,
}

/// Starts the managed cluster in `data_dir`, creates and migrates the database, and connects
/// as the service's role.
pub async fn start_embedded(data_dir: &Path, pool: usize) -> anyhow::Result<Storage> {
    let dir = data_dir.to_owned();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&dir)).await??;
    create_database(&cluster.connection_string(SUPERUSER, "postgres"), DATABASE).await?;
    migrate(&cluster.connection_string(SUPERUSER, DATABASE)).await?;
    let store = Store::connect(&cluster.connection_string(APP_ROLE, DATABASE), pool)?;
    Ok(Storage { store, cluster: Some(cluster) })
}

/// Uses an external server: `owner_url` (a role that owns the schema) migrates, and the
/// service connects with `app_url`, by default the same URL as the role `jifen_app`.
pub async fn connect_external(owner_url: &str, app_url: Option<&str>, pool: usize) -> anyhow::Result<Storage> {
    migrate(owner_url).await.context("migrating the schema")?;
    let app = match app_url {
        Some(u) => u.to_owned(),
        None => {
            let mut config: tokio_postgres::Config = owner_url.parse().context("parsing --database-url")?;
            config.user(APP_ROLE);
            // A tokio_postgres::Config has no Display; rebuild the key=value form.
            config_string(&config)
        }
    };
    Ok(Storage { store: Store::connect(&app, pool)?, cluster: None })
}

fn config_string(c: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    for (host, port) in c.get_hosts().iter().zip(c.get_ports().iter().chain(std::iter::repeat(&5432))) {
        match host {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h} port={port}")),
            tokio_postgres::config::Host::Unix(p) => parts.push(format!("host={} port={port}", p.display())),
        }
    }
    if let Some(u) = c.get_user() {
        parts.push(format!("user={u}"));
    }
    if let Some(d) = c.get_dbname() {
        parts.push(format!("dbname={d}"));
    }
    if let Some(p) = c.get_password() {
        parts.push(format!("password='{}'", String::from_utf8_lossy(p).replace('\'', "\\'")));
    }
    parts.join(" ")
}
