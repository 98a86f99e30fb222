//! The PostgreSQL store: our own ledger-shaped schema (docs/adr/0004-store-schema.md).
//!
//! - `migrations/` holds the versioned schema, applied at start by refinery as the owner role.
//! - [`Store`] is the service's access, as the role `jifen_app`, which may only INSERT and SELECT
//!   ledger data. A batch of records is appended by one multi-row INSERT in one transaction. A
//!   concurrent writer that took the same seq first makes the append fail with
//!   [`StoreError::Conflict`], and nothing of the batch is stored.
//! - [`event_store`] adapts the store to `esrs::store::EventStore` for the village aggregate.
//! - [`embedded`] is the private PostgreSQL cluster `jifen serve` and the tests run;
//!   [`storage`] starts storage (that cluster, or an external server), migrated;
//!   [`connection`] reads a libpq connection string with its TLS options (`sslmode`,
//!   `sslrootcert`).

pub mod connection;
pub mod digest;
pub mod embedded;
pub mod event_store;
pub mod read_model;
pub mod snapshots;
pub mod storage;

pub use connection::Connection;
use deadpool_postgres::Pool;
use jifen_ledger::hash::Hash;
use jifen_ledger::ids::VillageCode;
use jifen_ledger::merkle::FORGETTABLE_LEVELS;
use jifen_ledger::record::Record;
use jifen_ledger::signature::{EventSignature, PublicKey};
use thiserror::Error;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

refinery::embed_migrations!("src/store/migrations");

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("ledger {ledger}: seq {seq} was appended concurrently by another writer")]
    Conflict { ledger: String, seq: u64 },
    #[error("ledger data is append-only: {0}")]
    AppendOnly(String),
    #[error("stored record {ledger}/{seq} is malformed: {error}")]
    Corrupt { ledger: String, seq: i64, error: String },
    #[error("database: {}", database_error(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("connection pool: {}", pool_error(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("connection pool setup: {0}")]
    PoolSetup(String),
    #[error("schema migration: {0}")]
    Migration(String),
    #[error("database connection string: {0}")]
    ConnectionString(String),
}

/// Connects one client (outside the pool), driving its connection on a task.
async fn connect_one(conn: &str) -> Result<tokio_postgres::Client, StoreError> {
    Ok(Connection::parse(conn)?.connect().await?.0)
}

/// Creates database `name` if it does not exist (connected to another database as a role
/// allowed to create databases).
pub async fn create_database(admin_conn: &str, name: &str) -> Result<(), StoreError> {
    let client = connect_one(admin_conn).await?;
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        client.batch_execute(&format!("CREATE DATABASE \"{quoted}\"")).await?;
    }
    Ok(())
}

/// Applies the schema migrations as the owner role.
pub async fn migrate(owner_conn: &str) -> Result<(), StoreError> {
    migrate_to(owner_conn, None).await
}

/// Applies the schema migrations up to `version` (all of them with `None`): the tests of an
/// upgrade start from an older schema.
pub async fn migrate_to(owner_conn: &str, version: Option<u32>) -> Result<(), StoreError> {
    migrate_connection(&Connection::parse(owner_conn)?, version).await
}

/// Applies the schema migrations over a parsed connection.
pub async fn migrate_with(owner: &Connection) -> Result<(), StoreError> {
    migrate_connection(owner, None).await
}

async fn migrate_connection(owner: &Connection, version: Option<u32>) -> Result<(), StoreError> {
    let mut client = owner.connect().await?.0;
    let target = version.map_or(refinery::Target::Latest, |v| refinery::Target::Version(v as _));
    migrations::runner().set_target(target).run_async(&mut client).await.map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(())
}

fn signatures_bytes(sigs: &[EventSignature]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sigs.len() * 96);
    for s in sigs {
        out.extend_from_slice(&s.public_key.0);
        out.extend_from_slice(&s.signature);
    }
    out
}

fn record_of(row: &Row) -> Result<Record, StoreError> {
    let ledger: String = row.get("ledger_id");
    let seq: i64 = row.get("seq");
    let corrupt = |error: String| StoreError::Corrupt { ledger: ledger.clone(), seq, error };
    let code = VillageCode::parse(&ledger).map_err(|e| corrupt(e.to_string()))?;
    let prev: Vec<u8> = row.get("prev_hash");
    let sigs: Vec<u8> = row.get("signatures");
    if !sigs.len().is_multiple_of(96) {
        return Err(corrupt("signature column is not a multiple of 96 bytes".into()));
    }
    let signatures = sigs
        .chunks_exact(96)
        .map(|c| EventSignature {
            public_key: PublicKey(c[..32].try_into().expect("32 bytes")),
            signature: c[32..].try_into().expect("64 bytes"),
        })
        .collect();
    let seq_u = u64::try_from(seq).map_err(|_| corrupt("negative seq".into()))?;
    let prev_hash = Hash::from_slice(&prev).ok_or_else(|| corrupt("prev_hash is not 32 bytes".into()))?;
    Record::new(code, seq_u, prev_hash, row.get("recorded_at"), row.get("body"), signatures).map_err(|e| corrupt(e.to_string()))
}

/// The columns of a multi-row INSERT, one array each.
struct Columns<'a> {
    ids: Vec<&'a str>,
    seqs: Vec<i64>,
    prevs: Vec<&'a [u8]>,
    times: Vec<i64>,
    bodies: Vec<&'a [u8]>,
    sigs: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    fn of(records: impl Iterator<Item = &'a Record>) -> Columns<'a> {
        let mut c = Columns { ids: vec![], seqs: vec![], prevs: vec![], times: vec![], bodies: vec![], sigs: vec![], hashes: vec![] };
        for r in records {
            c.ids.push(r.ledger_id().as_str());
            c.seqs.push(r.seq() as i64);
            c.prevs.push(r.prev_hash().as_bytes().as_slice());
            c.times.push(r.recorded_at());
            c.bodies.push(r.body());
            c.sigs.push(signatures_bytes(r.signatures()));
            c.hashes.push(r.hash().0.to_vec());
        }
        c
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        [&self.ids, &self.seqs, &self.prevs, &self.times, &self.bodies, &self.sigs, &self.hashes]
    }
}

/// Appends a batch of records (one multi-row INSERT from arrays).
const INSERT_RECORDS: &str = "INSERT INTO records (ledger_id, seq, prev_hash, recorded_at, body, signatures, record_hash) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bytea[], $6::bytea[], $7::bytea[])";

/// What an audit reads of a ledger: see [`Store::load_for_audit`].
pub struct AuditRows {
    /// The records before the first undecodable row.
    pub records: Vec<Record>,
    /// Their stored `record_hash` column.
    pub hashes: Vec<Hash>,
    /// The first row that is no record, by its stored seq, and why.
    pub undecodable: Option<(u64, String)>,
}

/// A refused event, for the refusal log ([`Store::log_refusal`]).
pub struct Refusal<'a> {
    pub ledger: &'a VillageCode,
    /// The server's clock (µs).
    pub refused_at: i64,
    /// The reason the client's ErrorInfo named, and its message.
    pub reason: &'a str,
    pub message: &'a str,
    /// The event's place in its request.
    pub index: usize,
    pub body: &'a [u8],
    pub signatures: &'a [EventSignature],
}

/// A row of the refusal log.
pub struct StoredRefusal {
    pub refused_at: i64,
    pub reason: String,
    pub message: String,
    pub signer: Vec<u8>,
    pub body: Vec<u8>,
}

/// The most refusals the log keeps per ledger and signer in a day.
pub const REFUSALS_PER_SIGNER: i64 = 100;
/// The most refusals the log keeps per ledger in a day.
pub const REFUSALS_PER_LEDGER: i64 = 10_000;

/// The service's store.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The group committer, started on the first append.
    commits: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<CommitJob>>>,
    /// How the pool connects: health asks over a connection of its own.
    conn: std::sync::Arc<Connection>,
}

/// One ledger's batch waiting for the group committer.
struct CommitJob {
    origin: Option<String>,
    records: Vec<Record>,
    derived: Option<read_model::Derived>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// One ledger's batch to write: its origin if it opens the ledger, its records, and what they
/// derive.
struct Job<'a> {
    origin: Option<&'a str>,
    records: &'a [Record],
    derived: Option<&'a read_model::Derived>,
}

/// The most records the group committer writes in one transaction.
const GROUP_ROWS: usize = 2000;

/// The group committer: one transaction at a time, holding every batch that arrived while
/// the previous one was being written (a natural group commit: no timer, no added latency
/// when the load is light). If the group's transaction fails, each batch is written again on
/// its own, so a conflict or a bad batch fails only its own append. (Three transactions in
/// flight at once were measured slower: more, smaller commits, each waiting for its own WAL
/// flush; docs/BENCHMARKS.md.)
async fn group_committer(store: Store, mut jobs: tokio::sync::mpsc::UnboundedReceiver<CommitJob>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        let mut rows = group[0].records.len();
        while rows < GROUP_ROWS {
            match jobs.try_recv() {
                Ok(job) => {
                    rows += job.records.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        if group.len() > 1 && store.write_group(&group).await.is_ok() {
            for job in group {
                let _ = job.done.send(Ok(()));
            }
            continue;
        }
        for job in group {
            let result = store.write(job.origin.as_deref(), &job.records, job.derived.as_ref()).await;
            let _ = job.done.send(result);
        }
    }
}

impl Store {
    /// A pool of `size` connections with `conn` (a libpq connection string).
    pub fn connect(conn: &str, size: usize) -> Result<Store, StoreError> {
        Store::connect_with(Connection::parse(conn)?, size)
    }

    /// A pool of `size` connections with a parsed connection string.
    pub fn connect_with(conn: Connection, size: usize) -> Result<Store, StoreError> {
        let pool = Pool::builder(conn.manager()).max_size(size).build().map_err(|e| StoreError::PoolSetup(e.to_string()))?;
        Ok(Store { pool, commits: Default::default(), conn: std::sync::Arc::new(conn) })
    }

    /// Appends records of one ledger, all or nothing, durably. `origin` registers the ledger
    /// and must be given exactly when the batch starts at seq 0. Concurrent appends (of
    /// different ledgers) are written together in one transaction by the group committer.
    pub async fn append(&self, origin: Option<&str>, records: &[Record]) -> Result<(), StoreError> {
        self.append_with(origin, records, None).await
    }

    /// [`Store::append`], storing `derived` (the read-model rows the records change and the
    /// signed checkpoint of the new tip) in the same transaction.
    pub async fn append_with(
        &self,
        origin: Option<&str>,
        records: &[Record],
        derived: Option<read_model::Derived>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let commits = self.commits.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            // The committer holds a store without a committer of its own.
            let store = Store { pool: self.pool.clone(), commits: Default::default(), conn: self.conn.clone() };
            tokio::spawn(group_committer(store, rx));
            tx
        });
        let (done, result) = tokio::sync::oneshot::channel();
        let job = CommitJob { origin: origin.map(str::to_owned), records: records.to_vec(), derived, done };
        if commits.send(job).is_err() {
            return Err(StoreError::PoolSetup("the group committer has stopped".into()));
        }
        result.await.map_err(|_| StoreError::PoolSetup("the group committer has stopped".into()))?
    }

    /// Writes several ledgers' batches in one transaction.
    async fn write_group(&self, group: &[CommitJob]) -> Result<(), StoreError> {
        let jobs: Vec<Job<'_>> =
            group.iter().map(|j| Job { origin: j.origin.as_deref(), records: &j.records, derived: j.derived.as_ref() }).collect();
        self.write_jobs(&jobs).await
    }

    /// Writes one ledger's batch, and what it derives, in one transaction.
    async fn write(&self, origin: Option<&str>, records: &[Record], derived: Option<&read_model::Derived>) -> Result<(), StoreError> {
        let Some(first) = records.first() else { return Ok(()) };
        if origin.is_none() && derived.is_none() {
            // One statement is one transaction: no BEGIN/COMMIT.
            let client = self.pool.get().await?;
            let columns = Columns::of(records.iter());
            let insert = client.prepare_cached(INSERT_RECORDS).await?;
            client.execute(&insert, &columns.params()).await.map_err(|e| conflict(e, first.ledger_id().as_str(), first.seq()))?;
            return Ok(());
        }
        self.write_jobs(&[Job { origin, records, derived }]).await.map_err(|e| match e {
            StoreError::Conflict { .. } => StoreError::Conflict { ledger: first.ledger_id().to_string(), seq: first.seq() },
            e => e,
        })
    }

    /// Writes batches of different ledgers, and what they derive, in one statement (so one
    /// transaction and one round trip, [`read_model::append_statement`]). If any part fails,
    /// nothing is stored.
    async fn write_jobs(&self, jobs: &[Job<'_>]) -> Result<(), StoreError> {
        let Some(first) = jobs.first().and_then(|j| j.records.first()) else { return Ok(()) };
        let client = self.pool.get().await?;
        let (mut new_ids, mut origins) = (Vec::new(), Vec::new());
        for job in jobs {
            if let (Some(origin), Some(r)) = (job.origin, job.records.first()) {
                new_ids.push(r.ledger_id().as_str());
                origins.push(origin);
            }
        }
        let records = Columns::of(jobs.iter().flat_map(|j| j.records.iter()));
        let derived = read_model::Columns::of(jobs.iter().filter_map(|j| Some((j.records.first()?.ledger_id().as_str(), j.derived?))));
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&new_ids, &origins];
        all.extend(records.params());
        all.extend(derived.params());
        // The records are always there (bit 1).
        let present = derived.present() | u32::from(!new_ids.is_empty()) | 1 << 1;
        let statement = read_model::append_statement(present);
        let params: Vec<_> = statement.params.iter().map(|&i| all[i]).collect();
        let append = client.prepare_cached(&statement.sql).await?;
        client.query_one(&append, &params).await.map_err(|e| conflict(e, first.ledger_id().as_str(), first.seq()))?;
        Ok(())
    }

    /// The records of a ledger with `from <= seq < to`, in seq order.
    pub async fn read(&self, ledger: &VillageCode, from: u64, to: u64) -> Result<Vec<Record>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT ledger_id, seq, prev_hash, recorded_at, body, signatures FROM records \
                 WHERE ledger_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                &[&ledger.as_str(), &(from.min(i64::MAX as u64) as i64), &(to.min(i64::MAX as u64) as i64)],
            )
            .await?;
        rows.iter().map(record_of).collect()
    }

    /// Every record of a ledger, in seq order.
    pub async fn load(&self, ledger: &VillageCode) -> Result<Vec<Record>, StoreError> {
        self.read(ledger, 0, u64::MAX).await
    }

    /// The stored rows of a ledger for an audit, in seq order: every record up to the first
    /// row that cannot be decoded (tampered with so far that it is no record at all), with the
    /// `record_hash` column each row was written with.
    pub async fn load_for_audit(&self, ledger: &VillageCode) -> Result<AuditRows, StoreError> {
        self.read_rows(ledger, 0, u64::MAX).await
    }

    /// [`Store::load_for_audit`] for the rows with `from <= seq < to`.
    pub async fn read_rows(&self, ledger: &VillageCode, from: u64, to: u64) -> Result<AuditRows, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT ledger_id, seq, prev_hash, recorded_at, body, signatures, record_hash FROM records \
                 WHERE ledger_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                &[&ledger.as_str(), &(from.min(i64::MAX as u64) as i64), &(to.min(i64::MAX as u64) as i64)],
            )
            .await?;
        let mut out = AuditRows { records: Vec::with_capacity(rows.len()), hashes: Vec::with_capacity(rows.len()), undecodable: None };
        for (i, row) in rows.iter().enumerate() {
            match record_of(row) {
                Ok(r) => out.records.push(r),
                Err(e) => {
                    let seq: i64 = row.get("seq");
                    out.undecodable = Some((u64::try_from(seq).unwrap_or(i as u64), e.to_string()));
                    break;
                }
            }
            out.hashes.push(Hash::from_slice(row.get::<_, &[u8]>("record_hash")).unwrap_or_default());
        }
        Ok(out)
    }

    /// One past the highest stored seq of a ledger (0 if it has no rows): where a reader of
    /// every stored row stops, whatever the rows say.
    pub async fn stored_end(&self, ledger: &VillageCode) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let end: Option<i64> = client.query_one("SELECT max(seq) + 1 FROM records WHERE ledger_id = $1", &[&ledger.as_str()]).await?.get(0);
        Ok(end.map_or(0, |e| e.max(0) as u64))
    }

    /// The stored `recorded_at` of a record (µs), if it is stored.
    pub async fn recorded_at(&self, ledger: &VillageCode, seq: u64) -> Result<Option<i64>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT recorded_at FROM records WHERE ledger_id = $1 AND seq = $2",
                &[&ledger.as_str(), &(seq.min(i64::MAX as u64) as i64)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The pool's connections: (in use, idle, the most it opens, tasks waiting for one).
    pub fn pool_status(&self) -> (usize, usize, usize, usize) {
        let s = self.pool.status();
        (s.size - s.available, s.available, s.max_size, s.waiting)
    }

    /// The sizes of a ledger's checkpoints that have at least one cosignature, up to `max`.
    pub async fn cosigned_sizes(&self, ledger: &VillageCode, max: u64) -> Result<Vec<u64>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT DISTINCT tree_size FROM cosignatures WHERE ledger_id = $1 AND tree_size <= $2 ORDER BY tree_size",
                &[&ledger.as_str(), &(max.min(i64::MAX as u64) as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    /// The origin a ledger was opened with, if it exists.
    pub async fn origin(&self, ledger: &VillageCode) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client.query_opt("SELECT origin FROM ledgers WHERE ledger_id = $1", &[&ledger.as_str()]).await?.map(|r| r.get(0)))
    }

    /// Whether the database answers: a connection of its own (not one of the pool's, which may
    /// all be busy, or hung) connects and runs `SELECT 1` within `within`, and is closed.
    pub async fn reachable(&self, within: std::time::Duration) -> bool {
        let ping = async {
            let (client, connection) = self.conn.connect().await.ok()?;
            let answered = client.simple_query("SELECT 1").await.ok();
            drop(client);
            connection.abort();
            answered
        };
        matches!(tokio::time::timeout(within, ping).await, Ok(Some(_)))
    }

    /// Keeps a refused event in the refusal log (migration V8), unless the ledger does not
    /// exist or a bound is reached: [`REFUSALS_PER_SIGNER`] a day per ledger and signer (the
    /// event's first key), [`REFUSALS_PER_LEDGER`] a day per ledger. Whether it was kept. (Two
    /// refusals stored at the same moment may pass a bound by one each: it bounds a flood.)
    pub async fn log_refusal(&self, r: &Refusal<'_>) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let insert = client
            .prepare_cached(
                "INSERT INTO refusals (ledger_id, refused_at, signer, reason, message, event_index, body, signatures) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE EXISTS (SELECT 1 FROM ledgers WHERE ledger_id = $1) \
                   AND (SELECT count(*) FROM refusals WHERE ledger_id = $1 AND signer = $3 AND refused_at > $2 - 86400000000) < $9 \
                   AND (SELECT count(*) FROM refusals WHERE ledger_id = $1 AND refused_at > $2 - 86400000000) < $10",
            )
            .await?;
        let signer = r.signatures.first().map_or([0u8; 32], |s| s.public_key.0);
        let kept = client
            .execute(
                &insert,
                &[
                    &r.ledger.as_str(),
                    &r.refused_at,
                    &signer.as_slice(),
                    &r.reason,
                    &r.message,
                    &(r.index.min(i32::MAX as usize) as i32),
                    &r.body,
                    &signatures_bytes(r.signatures),
                    &REFUSALS_PER_SIGNER,
                    &REFUSALS_PER_LEDGER,
                ],
            )
            .await?;
        Ok(kept == 1)
    }

    /// The refusals of a ledger whose first signature is one of `signers` (any signer with
    /// `None`) and, if given, whose reason is `reason`, newest first, at most `limit`.
    pub async fn refusals(
        &self,
        ledger: &VillageCode,
        signers: Option<&[[u8; 32]]>,
        reason: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredRefusal>, StoreError> {
        let client = self.pool.get().await?;
        let keys: Option<Vec<&[u8]>> = signers.map(|s| s.iter().map(|k| k.as_slice()).collect());
        let rows = client
            .query(
                "SELECT refused_at, reason, message, signer, body FROM refusals \
                 WHERE ledger_id = $1 AND ($2::bytea[] IS NULL OR signer = ANY($2)) AND ($3::text IS NULL OR reason = $3) \
                 ORDER BY refused_at DESC, id DESC LIMIT $4",
                &[&ledger.as_str(), &keys, &reason, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredRefusal { refused_at: r.get(0), reason: r.get(1), message: r.get(2), signer: r.get(3), body: r.get(4) })
            .collect())
    }

    /// Whether any checkpoint is stored: something a log key signed, which only that key
    /// can continue.
    pub async fn has_checkpoints(&self) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM checkpoints)", &[]).await?.get(0))
    }

    /// The ledgers and their origins.
    pub async fn ledgers(&self) -> Result<Vec<(VillageCode, String)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT ledger_id, origin FROM ledgers ORDER BY ledger_id", &[]).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let code =
                    VillageCode::parse(&id).map_err(|e| StoreError::Corrupt { ledger: id.clone(), seq: -1, error: e.to_string() })?;
                Ok((code, r.get(1)))
            })
            .collect()
    }
}

/// A stored checkpoint: the note as the log signed it, and the cosignature lines added since.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub root: Hash,
    pub note: String,
    pub cosignatures: Vec<(String, u32, Vec<u8>)>,
    /// The stored `recorded_at` of the last record the checkpoint covers (its time, which
    /// decides its witnesses: `bundle::witnesses`), if that row is stored.
    pub last_recorded_at: Option<i64>,
}

impl Store {
    /// Stores a signed checkpoint (one already stored for that size is left as it is: a
    /// checkpoint of a size is the same note whoever signs it).
    pub async fn insert_checkpoint(&self, ledger: &VillageCode, size: u64, root: &Hash, note: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO checkpoints (ledger_id, tree_size, root_hash, note) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&ledger.as_str(), &(size as i64), &root.0.as_slice(), &note],
            )
            .await?;
        Ok(())
    }

    /// Merkle nodes of a ledger by `(level, index)`: those a server's tree forgot
    /// ([`jifen_ledger::merkle::Tree::forget_below`]) and a proof needs, computed from the
    /// stored `record_hash` column of the records they cover (a node below level
    /// [`FORGETTABLE_LEVELS`] covers at most 128 records). A node whose records are not all
    /// stored, or whose level is not below that, is absent from the answer; a stored hash that
    /// is not 32 bytes is [`StoreError::Corrupt`], naming its seq. Nothing here is
    /// trusted: a proof built from these nodes is served only if it leads to the signed root.
    pub async fn merkle_nodes(&self, ledger: &VillageCode, wanted: &[(u8, u64)]) -> Result<jifen_ledger::merkle::Nodes, StoreError> {
        // The records each wanted node covers, merged into ranges of seqs.
        let mut spans: Vec<(u64, u64)> = wanted
            .iter()
            .filter(|(k, _)| usize::from(*k) < FORGETTABLE_LEVELS)
            .filter_map(|&(k, i)| Some((i.checked_shl(k.into())?, i.checked_add(1)?.checked_shl(k.into())?)))
            .collect();
        spans.sort_unstable();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (lo, hi) in spans {
            match ranges.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => ranges.push((lo, hi)),
            }
        }
        let client = self.pool.get().await?;
        let read = client
            .prepare_cached("SELECT seq, record_hash FROM records WHERE ledger_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq")
            .await?;
        let mut leaves: std::collections::HashMap<u64, Hash> = std::collections::HashMap::new();
        for (lo, hi) in ranges {
            let (Ok(lo), Ok(hi)) = (i64::try_from(lo), i64::try_from(hi)) else { continue };
            for row in client.query(&read, &[&ledger.as_str(), &lo, &hi]).await? {
                let (seq, hash): (i64, &[u8]) = (row.get(0), row.get(1));
                let hash = Hash::from_slice(hash).ok_or_else(|| StoreError::Corrupt {
                    ledger: ledger.to_string(),
                    seq,
                    error: format!("its record_hash is {} bytes, not 32 (a proof needs it)", hash.len()),
                })?;
                leaves.insert(seq as u64, jifen_ledger::merkle::leaf_hash(&hash));
            }
        }
        let mut nodes = jifen_ledger::merkle::Nodes::new();
        for &(k, i) in wanted {
            if usize::from(k) >= FORGETTABLE_LEVELS {
                continue;
            }
            let first = i << k;
            let covered: Option<Vec<Hash>> = (first..first + (1 << k)).map(|s| leaves.get(&s).copied()).collect();
            if let Some(hash) = covered.and_then(|l| jifen_ledger::merkle::subtree_root(&l)) {
                nodes.insert((k, i), hash);
            }
        }
        Ok(nodes)
    }

    /// A checkpoint of a ledger: the latest, or the one of `size`.
    pub async fn checkpoint(&self, ledger: &VillageCode, size: Option<u64>) -> Result<Option<StoredCheckpoint>, StoreError> {
        let client = self.pool.get().await?;
        let row = match size {
            Some(n) => {
                client
                    .query_opt(
                        "SELECT c.tree_size, c.root_hash, c.note, (SELECT r.recorded_at FROM records r WHERE r.ledger_id = c.ledger_id AND r.seq = c.tree_size - 1) \
                         FROM checkpoints c WHERE c.ledger_id = $1 AND c.tree_size = $2",
                        &[&ledger.as_str(), &(n as i64)],
                    )
                    .await?
            }
            None => {
                client
                    .query_opt(
                        "SELECT c.tree_size, c.root_hash, c.note, (SELECT r.recorded_at FROM records r WHERE r.ledger_id = c.ledger_id AND r.seq = c.tree_size - 1) \
                         FROM checkpoints c WHERE c.ledger_id = $1 ORDER BY c.tree_size DESC LIMIT 1",
                        &[&ledger.as_str()],
                    )
                    .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let size: i64 = row.get(0);
        let root: Vec<u8> = row.get(1);
        let last_recorded_at: Option<i64> = row.get(3);
        let rows = client
            .query(
                "SELECT key_name, key_id, signature FROM cosignatures WHERE ledger_id = $1 AND tree_size = $2 ORDER BY added_at, key_name",
                &[&ledger.as_str(), &size],
            )
            .await?;
        let corrupt = |e: &str| StoreError::Corrupt { ledger: ledger.to_string(), seq: -1, error: e.to_owned() };
        Ok(Some(StoredCheckpoint {
            tree_size: size as u64,
            root: Hash::from_slice(&root).ok_or_else(|| corrupt("checkpoint root is not 32 bytes"))?,
            note: row.get(2),
            cosignatures: rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u32, r.get(2))).collect(),
            last_recorded_at,
        }))
    }

    /// Stores a cosignature (idempotent).
    pub async fn insert_cosignature(
        &self,
        ledger: &VillageCode,
        size: u64,
        key_name: &str,
        key_id: u32,
        signature: &[u8],
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO cosignatures (ledger_id, tree_size, key_name, key_id, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&ledger.as_str(), &(size as i64), &key_name, &(key_id as i64), &signature],
            )
            .await?;
        Ok(())
    }

    /// Sets a display name (personal data, kept out of the ledger; erasable).
    pub async fn set_profile(&self, ledger: &VillageCode, subject: &str, display_name: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO profiles (ledger_id, subject_id, display_name) VALUES ($1, $2, $3) \
                 ON CONFLICT (ledger_id, subject_id) DO UPDATE SET display_name = EXCLUDED.display_name, updated_at = now()",
                &[&ledger.as_str(), &subject, &display_name],
            )
            .await?;
        Ok(())
    }

    /// Erases a person's profile (个人信息保护法): no hash, signature or proof depends on it.
    pub async fn erase_profile(&self, ledger: &VillageCode, subject: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client.execute("DELETE FROM profiles WHERE ledger_id = $1 AND subject_id = $2", &[&ledger.as_str(), &subject]).await? > 0)
    }

    /// Display names of a ledger's subjects.
    pub async fn profiles(&self, ledger: &VillageCode) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT subject_id, display_name FROM profiles WHERE ledger_id = $1", &[&ledger.as_str()]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Display names of some of a ledger's subjects (those with a profile).
    pub async fn profiles_of(
        &self,
        ledger: &VillageCode,
        subjects: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let client = self.pool.get().await?;
        let query =
            client.prepare_cached("SELECT subject_id, display_name FROM profiles WHERE ledger_id = $1 AND subject_id = ANY($2)").await?;
        let rows = client.query(&query, &[&ledger.as_str(), &subjects]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The record at `seq`, if stored.
    pub async fn record(&self, ledger: &VillageCode, seq: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.read(ledger, seq, seq + 1).await?.pop())
    }
}

/// Maps a unique violation, or a read-model head not where its writer left it (JF409), to a
/// conflict, and the append-only trigger to its own error.
/// A database error as an operator needs it: PostgreSQL's own message and SQLSTATE when the
/// server answered (tokio-postgres shows only "db error" for those).
fn database_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            format!("{} (SQLSTATE {}{})", db.message(), db.code().code(), db.detail().map(|d| format!("; {d}")).unwrap_or_default())
        }
        None => {
            // "error performing TLS handshake", "error connecting to server": the why is in the
            // sources.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// A pool's error, with the database's own message when the database refused a connection
/// (deadpool says only "db error").
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => format!("cannot connect: {}", database_error(e)),
        other => other.to_string(),
    }
}

fn conflict(e: tokio_postgres::Error, ledger: &str, seq: u64) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || c.code() == "JF409" => StoreError::Conflict { ledger: ledger.to_owned(), seq },
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => StoreError::AppendOnly(e.to_string()),
        _ => StoreError::Database(e),
    }
}
