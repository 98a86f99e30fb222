//! The harness of the end-to-end tests: the real server on port 0 against a real (embedded)
//! PostgreSQL, with a manual clock.
#![allow(dead_code)]

use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self, SignedEvent};
use jifen::auth::method;
use jifen::embedded::{Cluster, SUPERUSER};
use jifen::server::clock::ManualClock;
use jifen::server::villages::{LogKey, Villages};
use jifen::store::{create_database, migrate, Store};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{generate, ActorKey, Sample, SampleConfig, DEPLOYMENT_ORIGIN};
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

pub const LOG_SEED: [u8; 32] = [7; 32];

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub client: LedgerServiceClient<Channel>,
    pub clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(db: &Db) -> Server {
        let clock = Arc::new(ManualClock::new(0));
        let store = Store::connect(&db.cluster.connection_string("jifen_app", "jifen"), 4).unwrap();
        let villages = Arc::new(Villages::new(store, clock.clone(), LogKey::from_seed(LOG_SEED), DEPLOYMENT_ORIGIN));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(jifen::server::run(listener, villages, async {
            let _ = stopped.await;
        }));
        let client = LedgerServiceClient::connect(format!("http://{addr}")).await.unwrap().max_decoding_message_size(80 << 20);
        Server { addr, client, clock, stop: Some(stop), task: Some(task) }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// Appends a record's event with the clock at its recorded_at.
    pub async fn replay(&mut self, r: &Record) -> api::AppendResult {
        self.clock.advance_to(r.recorded_at());
        let res = self.client.append(api::AppendRequest { event: Some(event(r.body().to_vec(), r.signatures())) }).await;
        res.unwrap_or_else(|s| panic!("seq {}: {s:?}", r.seq())).into_inner().result.unwrap()
    }

    /// A guarded request with a fresh token by `reader`, at the server clock's time.
    pub fn auth<T>(&self, message: T, method: &str, ledger: &str, reader: &ActorKey) -> tonic::Request<T> {
        let now = jifen::server::clock::Clock::now_micros(self.clock.as_ref()).div_euclid(1_000_000);
        jifen::auth::authorized(message, &reader.key, method, ledger, now)
    }

    /// The records of a ledger, read with the auditor's token.
    pub async fn read_all(&mut self, ledger: &str, reader: &ActorKey) -> Vec<Record> {
        let request =
            self.auth(api::ReadRecordsRequest { ledger_id: ledger.into(), from_seq: 0, limit: 0 }, method::READ_RECORDS, ledger, reader);
        let mut stream = self.client.read_records(request).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            out.extend(chunk.records.iter().map(record_of));
        }
        out
    }

    pub async fn len(&mut self, ledger: &str, reader: &ActorKey) -> usize {
        let request =
            self.auth(api::ReadRecordsRequest { ledger_id: ledger.into(), from_seq: 0, limit: 0 }, method::READ_RECORDS, ledger, reader);
        let mut stream = self.client.read_records(request).await.unwrap().into_inner();
        let mut n = 0;
        while let Some(chunk) = stream.message().await.unwrap() {
            n += chunk.records.len();
        }
        n
    }
}

pub fn event(body: Vec<u8>, sigs: &[jifen_ledger::EventSignature]) -> SignedEvent {
    SignedEvent::new(body, sigs)
}

pub struct Db {
    pub cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl Db {
    pub async fn start() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(dir.path()).unwrap();
        create_database(&cluster.connection_string(SUPERUSER, "postgres"), "jifen").await.unwrap();
        migrate(&cluster.connection_string(SUPERUSER, "jifen")).await.unwrap();
        Db { cluster, _dir: dir }
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
