//! What the campaigns and the end-to-end tests run against: a managed PostgreSQL with the
//! schema, the real server in this process (manual clock) or as a `jifen serve` child process
//! (system clock, killable), and a fingerprint of everything stored.

use crate::api::ledger_service_client::LedgerServiceClient;
use crate::api::{self, SignedEvent};
use crate::auth::method;
use crate::server::clock::{Clock, ManualClock};
use crate::server::villages::{LogKey, Villages};
use crate::store::embedded::{Cluster, SUPERUSER};
use crate::store::storage::{APP_ROLE, DATABASE};
use crate::store::{create_database, migrate, migrate_to, Store};
use crate::townships::Townships;
use anyhow::{anyhow, bail, Context};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{ActorKey, DEPLOYMENT_ORIGIN};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// The log key seed of in-process servers (tests and campaigns: not a secret).
pub const LOG_SEED: [u8; 32] = [7; 32];

/// The deployment's enrolment of the township keys that signed these genesis records.
pub fn openers<'a>(geneses: impl IntoIterator<Item = &'a Record>) -> Townships {
    Townships::of_geneses(geneses)
}

/// [`openers`] as the text of a townships file (`jifen serve --townships`).
pub fn openers_file<'a>(geneses: impl IntoIterator<Item = &'a Record>) -> String {
    Townships::of_geneses(geneses).to_file_text()
}

/// A managed PostgreSQL cluster in a temporary directory, with the migrated database.
pub struct Db {
    pub cluster: Cluster,
    dir: tempfile::TempDir,
}

impl Db {
    /// Starts a fresh cluster and migrates the schema.
    pub async fn start() -> anyhow::Result<Db> {
        Db::start_at(None).await
    }

    /// Starts a fresh cluster with the schema migrated up to `version` (all of it with `None`).
    pub async fn start_at(version: Option<u32>) -> anyhow::Result<Db> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_owned();
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(&path)).await??;
        create_database(&cluster.connection_string(SUPERUSER, "postgres"), DATABASE).await?;
        migrate_to(&cluster.connection_string(SUPERUSER, DATABASE), version).await?;
        Ok(Db { cluster, dir })
    }

    /// Applies the remaining migrations (an upgrade).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Ok(migrate(&self.cluster.connection_string(SUPERUSER, DATABASE)).await?)
    }

    /// The temporary directory the cluster lives in (free for other files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection as the cluster's superuser, which can bypass the append-only triggers
    /// (`SET session_replication_role = replica`): the tamperer's access.
    pub async fn superuser(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.cluster.connection_string(SUPERUSER, DATABASE), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// The service's store (role `jifen_app`).
    pub fn store(&self, pool: usize) -> anyhow::Result<Store> {
        Ok(Store::connect(&self.cluster.connection_string(APP_ROLE, DATABASE), pool)?)
    }

    /// A digest of every stored row of every table, in key order: equal digests mean the
    /// stored ledger is byte for byte the same.
    pub async fn fingerprint(&self) -> anyhow::Result<String> {
        let client = self.superuser().await?;
        let mut parts = Vec::new();
        for (table, order) in [
            ("ledgers", "ledger_id"),
            ("records", "ledger_id, seq"),
            ("checkpoints", "ledger_id, tree_size"),
            ("cosignatures", "ledger_id, tree_size, key_name, key_id"),
            ("profiles", "ledger_id, subject_id"),
            ("read_models", "ledger_id"),
            ("rm_balances", "ledger_id, household_id"),
            ("rm_period_figures", "ledger_id, household_id, period"),
            ("rm_rulebooks", "ledger_id, adopted_at"),
            ("rm_publications", "ledger_id, publication_id"),
            ("rm_board_entries", "ledger_id, publication_id, position"),
            ("rm_objections", "ledger_id, publication_id, position"),
            ("rm_supermarket_months", "ledger_id, period"),
            ("rm_supermarket_receipts", "ledger_id, period, position"),
            ("rm_supermarket_goods", "ledger_id, period, goods_code"),
        ] {
            let row = client
                .query_one(&format!("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY {order})), '') FROM {table} t"), &[])
                .await
                .with_context(|| format!("fingerprinting {table}"))?;
            parts.push(format!("{table}:{}:{}", row.get::<_, i64>(0), row.get::<_, String>(1)));
        }
        Ok(parts.join(" "))
    }

    /// Restarts PostgreSQL as after a crash (immediate shutdown, WAL recovery on start).
    pub async fn crash_restart_postgres(&mut self) -> anyhow::Result<()> {
        // pg_ctl blocks until the server accepts connections again (multi-thread runtime).
        tokio::task::block_in_place(|| self.cluster.crash_restart())?;
        Ok(())
    }
}

/// The real server in this process, on port 0, with a manual clock.
pub struct Local {
    pub addr: std::net::SocketAddr,
    pub client: LedgerServiceClient<Channel>,
    pub clock: Arc<ManualClock>,
    /// The server's villages (to observe loads).
    pub villages: Arc<Villages>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Local {
    /// Starts a server on `db` with a pool of four connections, where `townships` may open
    /// villages.
    pub async fn start(db: &Db, townships: Townships) -> anyhow::Result<Local> {
        let clock = Arc::new(ManualClock::new(0));
        let villages = Arc::new(Villages::new(db.store(4)?, clock.clone(), LogKey::from_seed(LOG_SEED), DEPLOYMENT_ORIGIN, townships));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(crate::server::run(listener, villages.clone(), async {
            let _ = stopped.await;
        }));
        let client = LedgerServiceClient::connect(format!("http://{addr}")).await?.max_decoding_message_size(crate::server::MAX_MESSAGE);
        Ok(Local { addr, client, clock, villages, stop: Some(stop), task: Some(task) })
    }

    /// Stops serving, finishes in-flight appends and signs the last checkpoints.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = stop.send(());
            task.await??;
        }
        Ok(())
    }

    /// Appends a record's event with the clock at its recorded_at.
    pub async fn replay(&mut self, r: &Record) -> anyhow::Result<api::AppendResult> {
        self.clock.advance_to(r.recorded_at());
        let res = self.client.append(api::AppendRequest { event: Some(SignedEvent::new(r.body().to_vec(), r.signatures())) }).await;
        let res = res.map_err(|s| anyhow!("replaying seq {}: {s:?}", r.seq()))?;
        res.into_inner().result.ok_or_else(|| anyhow!("no result"))
    }

    /// A guarded request with a fresh token by `reader`, at the server clock's time.
    pub fn auth<T>(&self, message: T, method: &str, ledger: &str, reader: &ActorKey) -> tonic::Request<T> {
        let now = self.clock.now_micros().div_euclid(1_000_000);
        crate::auth::authorized(message, &reader.key, method, ledger, now)
    }

    /// The records of a ledger, read with `reader`'s token.
    pub async fn read_all(&mut self, ledger: &str, reader: &ActorKey) -> anyhow::Result<Vec<Record>> {
        let request = self.auth(read_request(ledger), method::READ_RECORDS, ledger, reader);
        read_records(&mut self.client, request).await
    }

    /// Waits (without polling) until the ledger has a signed checkpoint of at least `size`.
    pub async fn wait_checkpoint(&mut self, ledger: &str, size: u64) -> anyhow::Result<api::Checkpoint> {
        wait_checkpoint(&mut self.client, ledger, size).await
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn read_request(ledger: &str) -> api::ReadRecordsRequest {
    api::ReadRecordsRequest { ledger_id: ledger.into(), from_seq: 0, limit: 0 }
}

/// Reads every record a ReadRecords request streams.
pub async fn read_records(
    client: &mut LedgerServiceClient<Channel>,
    request: tonic::Request<api::ReadRecordsRequest>,
) -> anyhow::Result<Vec<Record>> {
    let mut stream = client.read_records(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        for r in &chunk.records {
            out.push(r.to_record().map_err(|e| anyhow!("a served record is malformed: {e}"))?);
        }
    }
    Ok(out)
}

/// Waits on the server (GetCheckpoint with `min_tree_size`) for a checkpoint of at least `size`.
pub async fn wait_checkpoint(client: &mut LedgerServiceClient<Channel>, ledger: &str, size: u64) -> anyhow::Result<api::Checkpoint> {
    loop {
        let req = api::GetCheckpointRequest { ledger_id: ledger.into(), tree_size: 0, min_tree_size: size };
        match client.get_checkpoint(req).await {
            Ok(r) => {
                let c = r.into_inner().checkpoint.ok_or_else(|| anyhow!("no checkpoint in the response"))?;
                if c.tree_size >= size {
                    return Ok(c);
                }
            }
            // The server's wait is bounded; ask again.
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => {}
            Err(s) => bail!("waiting for a checkpoint of {size}: {s:?}"),
        }
    }
}

/// `jifen serve` as a child process on an external PostgreSQL (the campaign's cluster), with
/// the system clock: it can be killed with SIGKILL and started again on the same data.
pub struct Child {
    pub addr: std::net::SocketAddr,
    process: tokio::process::Child,
    /// Its log lines, when started with [`Child::start_logging`].
    logs: Option<tokio::sync::broadcast::Sender<String>>,
}

impl Child {
    /// Starts `exe serve` on `db`, keeping its log key (and its townships file, if the caller
    /// wrote one) in `data_dir`, and waits until it listens (it prints its address once bound).
    pub async fn start(exe: &Path, db: &Db, data_dir: &Path) -> anyhow::Result<Child> {
        Child::spawn(exe, db, data_dir, None, &[]).await
    }

    /// [`Child::start`] with more arguments for `jifen serve`.
    pub async fn start_with(exe: &Path, db: &Db, data_dir: &Path, args: &[&str]) -> anyhow::Result<Child> {
        Child::spawn(exe, db, data_dir, None, args).await
    }

    /// [`Child::start`] with the log at `filter` (`RUST_LOG`), each line passed on to this
    /// process's standard error and to [`Child::logs`]' receivers.
    pub async fn start_logging(exe: &Path, db: &Db, data_dir: &Path, filter: &str) -> anyhow::Result<Child> {
        Child::spawn(exe, db, data_dir, Some(filter), &[]).await
    }

    /// [`Child::start_logging`] with more arguments for `jifen serve`.
    pub async fn start_logging_with(exe: &Path, db: &Db, data_dir: &Path, filter: &str, args: &[&str]) -> anyhow::Result<Child> {
        Child::spawn(exe, db, data_dir, Some(filter), args).await
    }

    /// The log lines from now on (with [`Child::start_logging`]).
    pub fn logs(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.logs.as_ref().map(|l| l.subscribe())
    }

    async fn spawn(exe: &Path, db: &Db, data_dir: &Path, filter: Option<&str>, args: &[&str]) -> anyhow::Result<Child> {
        Child::spawn_on(exe, db, DATABASE, data_dir, filter, args).await
    }

    /// [`Child::start`] on another database of `db`'s cluster (a restored one, say).
    pub async fn start_on(exe: &Path, db: &Db, database: &str, data_dir: &Path) -> anyhow::Result<Child> {
        Child::spawn_on(exe, db, database, data_dir, None, &[]).await
    }

    async fn spawn_on(exe: &Path, db: &Db, database: &str, data_dir: &Path, filter: Option<&str>, args: &[&str]) -> anyhow::Result<Child> {
        let mut command = tokio::process::Command::new(exe);
        if let Some(filter) = filter {
            command.env("RUST_LOG", filter).stderr(Stdio::piped());
        } else {
            // Warnings and errors only: a line per call would drown a campaign's output.
            command.env("RUST_LOG", "warn").stderr(Stdio::inherit());
        }
        let mut process = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--database-url")
            .arg(db.cluster.connection_string(SUPERUSER, database))
            .arg("--app-database-url")
            .arg(db.cluster.connection_string(APP_ROLE, database))
            .args(["--listen", "127.0.0.1:0", "--deployment-origin", DEPLOYMENT_ORIGIN])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = process.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = lines.next_line().await?.ok_or_else(|| anyhow!("jifen serve exited before listening"))?;
        let addr = line
            .strip_prefix("jifen serving on ")
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow!("unexpected first line from jifen serve: {line}"))?
            .parse()?;
        // Keep draining its stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let logs = process.stderr.take().map(|stderr| {
            let (tx, _) = tokio::sync::broadcast::channel(4096);
            let sender = tx.clone();
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("{line}");
                    let _ = sender.send(line);
                }
            });
            tx
        });
        Ok(Child { addr, process, logs })
    }

    /// A client of the child.
    pub async fn client(&self) -> anyhow::Result<LedgerServiceClient<Channel>> {
        Ok(LedgerServiceClient::connect(format!("http://{}", self.addr)).await?.max_decoding_message_size(crate::server::MAX_MESSAGE))
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.process.start_kill()?;
        self.process.wait().await?;
        Ok(())
    }
}
