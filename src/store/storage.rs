//! Starting the service's storage: the embedded cluster or an external server, migrated, with a
//! pool for the service's role. Shared by `jifen serve`, the demo and the tests.

use super::{create_database, migrate, migrate_with, Connection, Store};
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

/// Uses an external server: `owner` (a role that owns the schema) migrates, and the service
/// connects with `app` (`jifen serve`: by default the owner's URL as the role `jifen_app`).
pub async fn connect_external(owner: &Connection, app: Connection, pool: usize) -> anyhow::Result<Storage> {
    migrate_with(owner).await.context("migrating the schema")?;
    Ok(Storage { store: Store::connect_with(app, pool)?, cluster: None })
}
