//! The harness of the end-to-end tests: the real server on port 0 against a real (embedded)
//! PostgreSQL, with a manual clock.
#![allow(dead_code)]

use jifen::api::{self, SignedEvent};
use jifen::campaign::harness;
use jifen_ledger::record::Record;
use jifen_ledger::sample::{generate, ActorKey, Sample, SampleConfig};
use tonic::Code;
use tonic_types::StatusExt;

#[allow(unused_imports)]
pub use jifen::campaign::harness::LOG_SEED;

/// The harness's in-process server, with test-style (panicking) helpers.
pub struct Server(pub harness::Local);

impl std::ops::Deref for Server {
    type Target = harness::Local;
    fn deref(&self) -> &harness::Local {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut harness::Local {
        &mut self.0
    }
}

impl Server {
    /// A server whose deployment lets `sample`'s township open its village.
    pub async fn start(db: &Db, sample: &Sample) -> Server {
        Server(harness::Local::start(&db.0, harness::openers(&sample.records()[..1])).await.unwrap())
    }

    pub async fn shutdown(&mut self) {
        self.0.shutdown().await.unwrap();
    }

    /// Appends a record's event with the clock at its recorded_at.
    pub async fn replay(&mut self, r: &Record) -> api::AppendResult {
        self.0.replay(r).await.unwrap()
    }

    /// The records of a ledger, read with the auditor's token.
    pub async fn read_all(&mut self, ledger: &str, reader: &ActorKey) -> Vec<Record> {
        self.0.read_all(ledger, reader).await.unwrap()
    }

    pub async fn len(&mut self, ledger: &str, reader: &ActorKey) -> usize {
        self.read_all(ledger, reader).await.len()
    }
}

pub fn event(body: Vec<u8>, sigs: &[jifen_ledger::EventSignature]) -> SignedEvent {
    SignedEvent::new(body, sigs)
}

/// The harness's managed, migrated PostgreSQL.
pub struct Db(pub harness::Db);

impl std::ops::Deref for Db {
    type Target = harness::Db;
    fn deref(&self) -> &harness::Db {
        &self.0
    }
}

impl Db {
    pub async fn start() -> Db {
        Db(harness::Db::start().await.unwrap())
    }
}

pub fn small_year(seed: u64, months: u32) -> Sample {
    generate(&SampleConfig { seed, households: Some(25), months, scores_per_household: 2.0 }).unwrap()
}

pub fn record_of(r: &api::Record) -> Record {
    r.to_record().unwrap()
}

pub fn assert_status(e: tonic::Status, code: Code, reason: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    let info = e.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {e:?}"));
    assert_eq!(info.reason, reason, "{e:?}");
    assert_eq!(info.domain, "jifen.v1");
}

/// Puts a ledger's records back as they were saved in the table `saved_records` (created by
/// the test with `CREATE TABLE saved_records AS SELECT * FROM records`), as the database
/// superuser, with the append-only triggers bypassed: the undo of a test's tampering.
pub async fn restore_saved_records(owner: &tokio_postgres::Client, ledger: &str) {
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             DELETE FROM records WHERE ledger_id = '{ledger}';
             INSERT INTO records OVERRIDING SYSTEM VALUE SELECT * FROM saved_records WHERE ledger_id = '{ledger}';"
        ))
        .await
        .unwrap();
}

/// Removes a ledger's read model (every read-model table and its head), as the database
/// superuser: what an operator who wants it gone does; the next load builds it again.
pub async fn drop_read_model(owner: &tokio_postgres::Client, ledger: &str) {
    let tables = jifen::store::read_model::TABLES.iter().chain(&["read_models"]);
    let sql: String = tables.map(|t| format!("DELETE FROM {t} WHERE ledger_id = '{ledger}';")).collect();
    owner.batch_execute(&sql).await.unwrap();
}

/// The first `n` lines a `jifen serve` child prints ("jifen serving on ADDR (…)", then
/// "metrics on http://ADDR/metrics" when it serves metrics), and the gRPC address of the first.
pub fn serve_lines(child: &mut std::process::Child, n: usize) -> (Vec<String>, String) {
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let lines: Vec<String> = (0..n)
        .map(|_| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim_end().to_owned()
        })
        .collect();
    let addr = lines[0].strip_prefix("jifen serving on ").and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("{lines:?}"));
    (lines.clone(), addr.to_owned())
}
