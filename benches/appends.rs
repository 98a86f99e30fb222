//! Append throughput, end to end, on the embedded PostgreSQL (fsync on):
//!
//! - **jifen, batched**: `AppendBatch` of 100 signed events over gRPC (decode, verify every
//!   signature, decide, persist through the esrs EventStore in one transaction, fold);
//! - **jifen, single**: one `Append` at a time over gRPC, with p50/p99 latency;
//! - **baseline: esrs stock `PgStore`** persisting the same records, 100 per `persist`;
//! - **ceiling: bare multi-row INSERT** of the same records (our `Store::append`, nothing else).
//!
//! `cargo bench --bench appends --features esrs-baseline [-- EVENTS RUNS]`
//! The workload is pre-signed scores for a village of 600 households, so signing time on the
//! client is not measured. Medians over RUNS fresh databases.

use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self, SignedEvent};
use jifen::embedded::SUPERUSER;
use jifen::server::clock::ManualClock;
use jifen::server::villages::{LogKey, Villages};
use jifen::store::{create_database, migrate, Store};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{households, open_village, score_load, DEPLOYMENT_ORIGIN, SCORE_LOAD_PER_HOUSEHOLD};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// A record as esrs's PgStore stores events: serde → JSONB.
#[derive(Clone, Serialize, Deserialize)]
struct StoredRecord {
    ledger_id: String,
    seq: u64,
    prev_hash: String,
    recorded_at: i64,
    body: String,
    signatures: Vec<(String, String)>,
}

struct Baseline;

impl esrs::Aggregate for Baseline {
    const NAME: &'static str = "baseline_village";
    type State = ();
    type Command = ();
    type Event = StoredRecord;
    type Error = std::convert::Infallible;
    fn handle_command(_: &(), _: ()) -> Result<Vec<StoredRecord>, Self::Error> {
        Ok(vec![])
    }
    fn apply_event(state: (), _: StoredRecord) {
        state
    }
}

fn stored(r: &Record) -> StoredRecord {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    StoredRecord {
        ledger_id: r.ledger_id().to_string(),
        seq: r.seq(),
        prev_hash: r.prev_hash().to_hex(),
        recorded_at: r.recorded_at(),
        body: b64.encode(r.body()),
        signatures: r.signatures().iter().map(|s| (b64.encode(s.public_key.0), b64.encode(s.signature))).collect(),
    }
}

fn event(body: Vec<u8>, sigs: &[jifen_ledger::EventSignature]) -> SignedEvent {
    SignedEvent::new(body, sigs)
}

/// The village's opening records, and `n` pre-signed scores of 1 point (within every cap).
fn workload(n: usize) -> (Vec<Record>, Vec<SignedEvent>, i64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let hs = households(&mut rng, 600);
    assert!(n <= SCORE_LOAD_PER_HOUSEHOLD * hs.len(), "at most {} scores stay within the caps", SCORE_LOAD_PER_HOUSEHOLD * hs.len());
    let (cast, w) = open_village(1, &hs, 4).expect("opens");
    let events = score_load(&cast, &hs, &w.ledger, "b", n, w.now - 1).into_iter().map(|(body, sigs)| event(body, &sigs)).collect();
    (w.records, events, w.now)
}

struct Server {
    client: LedgerServiceClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    store: Store,
}

async fn server(cluster: &jifen::embedded::Cluster, db: &str, opening: &[Record], now: i64) -> Server {
    create_database(&cluster.connection_string(SUPERUSER, "postgres"), db).await.unwrap();
    migrate(&cluster.connection_string(SUPERUSER, db)).await.unwrap();
    let store = Store::connect(&cluster.connection_string("jifen_app", db), 8).unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let villages = Arc::new(Villages::new(store.clone(), clock.clone(), LogKey::from_seed([1; 32]), DEPLOYMENT_ORIGIN));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(jifen::server::run(listener, villages, async {
        let _ = stopped.await;
    }));
    let mut client = LedgerServiceClient::connect(format!("http://{addr}")).await.unwrap().max_decoding_message_size(80 << 20);
    for r in opening {
        clock.advance_to(r.recorded_at());
        client.append(api::AppendRequest { event: Some(event(r.body().to_vec(), r.signatures())) }).await.unwrap();
    }
    clock.advance_to(now);
    Server { client, stop, task, store }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let storage = jifen::service::start_embedded(dir.path(), 4).await.unwrap();
        let cluster = storage.cluster.as_ref().unwrap();
        let (opening, events, now) = workload(n);
        let singles = (n / 10).clamp(100, 2000);
        println!("workload: {n} pre-signed scores (100 per batch), {singles} single appends; {runs} runs; embedded PostgreSQL, fsync on");
        let (mut batched, mut single, mut pgstore, mut ceiling, mut p50s, mut p99s) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            // jifen, batched.
            let mut s = server(cluster, &format!("bench_b{run}"), &opening, now).await;
            let t = Instant::now();
            for chunk in events.chunks(100) {
                s.client
                    .append_batch(api::AppendBatchRequest { ledger_id: jifen_ledger::sample::VILLAGE_CODE.into(), events: chunk.to_vec() })
                    .await
                    .unwrap();
            }
            batched.push(n as f64 / t.elapsed().as_secs_f64());
            let records = s.store.load(&jifen_ledger::VillageCode::parse(jifen_ledger::sample::VILLAGE_CODE).unwrap()).await.unwrap();
            let _ = s.stop.send(());
            s.task.await.unwrap().unwrap();

            // jifen, single appends (fresh ledger), latency per call.
            let mut s = server(cluster, &format!("bench_s{run}"), &opening, now).await;
            let mut lat = Vec::with_capacity(singles);
            let t = Instant::now();
            for e in &events[..singles] {
                let c = Instant::now();
                s.client.append(api::AppendRequest { event: Some(e.clone()) }).await.unwrap();
                lat.push(c.elapsed());
            }
            single.push(singles as f64 / t.elapsed().as_secs_f64());
            lat.sort();
            p50s.push(lat[lat.len() / 2].as_secs_f64() * 1e3);
            p99s.push(lat[lat.len() * 99 / 100].as_secs_f64() * 1e3);
            let _ = s.stop.send(());
            s.task.await.unwrap().unwrap();

            // Baseline: esrs's stock PgStore persisting the same records.
            let db = format!("bench_e{run}");
            create_database(&cluster.connection_string(SUPERUSER, "postgres"), &db).await.unwrap();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect_with(sqlx::postgres::PgConnectOptions::new().socket(dir.path().join("run")).username(SUPERUSER).database(&db))
                .await
                .unwrap();
            let store = esrs::store::postgres::PgStoreBuilder::<Baseline>::new(pool).try_build().await.unwrap();
            let tail: Vec<StoredRecord> = records[opening.len()..].iter().map(stored).collect();
            let mut state = esrs::AggregateState::<()>::new();
            let t = Instant::now();
            for chunk in tail.chunks(100) {
                esrs::store::EventStore::persist(&store, &mut state, chunk.to_vec()).await.unwrap();
            }
            pgstore.push(tail.len() as f64 / t.elapsed().as_secs_f64());

            // Ceiling: the same records by one multi-row INSERT per 100, nothing else.
            let db = format!("bench_c{run}");
            create_database(&cluster.connection_string(SUPERUSER, "postgres"), &db).await.unwrap();
            migrate(&cluster.connection_string(SUPERUSER, &db)).await.unwrap();
            let bare = Store::connect(&cluster.connection_string("jifen_app", &db), 4).unwrap();
            bare.append(Some("o/village/150602101201"), &records[..opening.len()]).await.unwrap();
            let t = Instant::now();
            for chunk in records[opening.len()..].chunks(100) {
                bare.append(None, chunk).await.unwrap();
            }
            ceiling.push(tail.len() as f64 / t.elapsed().as_secs_f64());
            println!(
                "run {}: batched {:.0}/s, single {:.0}/s, PgStore {:.0}/s, bare INSERT {:.0}/s",
                run + 1,
                batched[run],
                single[run],
                pgstore[run],
                ceiling[run]
            );
        }
        let (b, s1, e, c) = (median(batched), median(single), median(pgstore), median(ceiling));
        println!("\nmedian of {runs} runs (events/s):");
        println!("  jifen AppendBatch ×100 over gRPC (verify, decide, persist, fold)  {b:>9.0}");
        println!(
            "  jifen Append, one at a time over gRPC                             {s1:>9.0}   p50 {:.2} ms, p99 {:.2} ms",
            median(p50s),
            median(p99s)
        );
        println!("  baseline: esrs stock PgStore, 100 per persist                     {e:>9.0}");
        println!("  ceiling: bare multi-row INSERT, 100 per statement                 {c:>9.0}");
        println!("  ratios: batched / PgStore = {:.2}×, batched / ceiling = {:.2}, single / PgStore = {:.2}×", b / e, b / c, s1 / e);
    });
}
