//! Append throughput, end to end, on the embedded PostgreSQL (fsync on):
//!
//! - **jifen, batched**: `AppendBatch` of 100 signed events over gRPC (decode, verify every
//!   signature, decide, persist through the esrs EventStore in one transaction, fold);
//! - **jifen, single**: one `Append` at a time over gRPC, with p50/p99 latency;
//! - **baseline: esrs stock `PgStore`** persisting the same records, 100 per `persist`;
//! - **ceiling: bare multi-row INSERT** of the same records (our `Store::append`, nothing else).
//!
//! `cargo bench --bench appends --features esrs-baseline [-- EVENTS RUNS [batched|concurrent]]`
//! (`batched` or `concurrent`: that run alone, for a profiler; `JIFEN_BENCH_SQL`: SQL run as
//! the superuser on each fresh database after its migrations, to measure a schema change).
//! The workload is pre-signed scores for a village of 600 households, so signing time on the
//! client is not measured. Medians over RUNS fresh databases.

use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self, SignedEvent};
use jifen::server::clock::ManualClock;
use jifen::server::villages::{LogKey, Villages};
use jifen::store::embedded::SUPERUSER;
use jifen::store::{create_database, migrate, Store};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{households, open_village, open_village_on, score_load, DEPLOYMENT_ORIGIN, SCORE_LOAD_PER_HOUSEHOLD};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// The server's own allocator (`src/main.rs`): the server runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn stored_record(r: &Record) -> StoredRecord {
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

/// `villages` villages of 100 households each (codes 1506021013xx), each with `per_village`
/// pre-signed scores: the openings, and the loads.
fn many_villages(villages: usize, per_village: usize) -> (Vec<Vec<Record>>, Vec<Vec<SignedEvent>>, i64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let hs = households(&mut rng, 100);
    let mut openings = Vec::new();
    let mut loads = Vec::new();
    let mut now = 0;
    for v in 0..villages {
        let code = jifen_ledger::VillageCode::parse(&format!("1506021013{v:02}")).unwrap();
        let (cast, w) = open_village_on(&code, 1, &hs, 4, jifen_ledger::time::Date::parse("d", "2024-12-20").unwrap()).expect("opens");
        loads.push(score_load(&cast, &hs, &w.ledger, "m", per_village, w.now - 1).into_iter().map(|(b, s)| event(b, &s)).collect());
        now = w.now;
        openings.push(w.records);
    }
    (openings, loads, now)
}

/// What the concurrent single-append run measured.
struct Concurrent {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    checkpoint_p50_ms: f64,
    checkpoint_p99_ms: f64,
}

/// One client per village, each appending its events one call at a time, all at once; every
/// 20th acknowledged append also waits for the first checkpoint covering it.
async fn concurrent_singles(s: &Server, loads: &[Vec<SignedEvent>]) -> Concurrent {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for load in loads {
        let load = load.clone();
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = LedgerServiceClient::connect(format!("http://{addr}")).await.unwrap();
            let mut lat = Vec::with_capacity(load.len());
            let mut waits = Vec::new();
            for (i, e) in load.into_iter().enumerate() {
                let c = Instant::now();
                let r = client.append(api::AppendRequest { event: Some(e) }).await.unwrap().into_inner().result.unwrap();
                let acked = Instant::now();
                lat.push(acked - c);
                if i % 20 == 0 {
                    let mut watcher = client.clone();
                    waits.push(tokio::spawn(async move {
                        let req = api::GetCheckpointRequest { ledger_id: r.ledger_id, tree_size: 0, min_tree_size: r.seq + 1 };
                        watcher.get_checkpoint(req).await.unwrap();
                        acked.elapsed()
                    }));
                }
            }
            let mut covered = Vec::new();
            for w in waits {
                covered.push(w.await.unwrap());
            }
            (lat, covered)
        }));
    }
    let (mut lat, mut covered) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, c) = t.await.unwrap();
        lat.extend(l);
        covered.extend(c);
    }
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    lat.sort();
    covered.sort();
    let ms = |v: &[std::time::Duration], q: usize| v[(v.len() - 1) * q / 100].as_secs_f64() * 1e3;
    Concurrent {
        rate,
        p50_ms: ms(&lat, 50),
        p99_ms: ms(&lat, 99),
        checkpoint_p50_ms: ms(&covered, 50),
        checkpoint_p99_ms: ms(&covered, 99),
    }
}

struct Server {
    addr: std::net::SocketAddr,
    client: LedgerServiceClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    store: Store,
}

async fn server(cluster: &jifen::store::embedded::Cluster, db: &str, opening: &[Record], now: i64) -> Server {
    server_pool(cluster, db, &[opening.to_vec()], now, 8).await
}

/// A fresh database with the real server on it (a pool of `pool` connections), with each
/// ledger of `openings` opened.
async fn server_pool(cluster: &jifen::store::embedded::Cluster, db: &str, openings: &[Vec<Record>], now: i64, pool: usize) -> Server {
    create_database(&cluster.connection_string(SUPERUSER, "postgres"), db).await.unwrap();
    migrate(&cluster.connection_string(SUPERUSER, db)).await.unwrap();
    if let Ok(sql) = std::env::var("JIFEN_BENCH_SQL") {
        // An experiment on the schema (docs/BENCHMARKS.md names the ones measured).
        let (client, conn) = tokio_postgres::connect(&cluster.connection_string(SUPERUSER, db), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&sql).await.unwrap();
    }
    let store = Store::connect(&cluster.connection_string("jifen_app", db), pool).unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let townships = jifen::townships::Townships::of_geneses(openings.iter().filter_map(|o| o.first()));
    let villages = Arc::new(Villages::new(store.clone(), clock.clone(), LogKey::from_seed([1; 32]), DEPLOYMENT_ORIGIN, townships));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(jifen::server::run(listener, villages, async {
        let _ = stopped.await;
    }));
    let mut client = LedgerServiceClient::connect(format!("http://{addr}")).await.unwrap().max_decoding_message_size(80 << 20);
    for opening in openings {
        for chunk in opening.chunks(100) {
            clock.advance_to(chunk[chunk.len() - 1].recorded_at());
            let events = chunk.iter().map(|r| event(r.body().to_vec(), r.signatures())).collect();
            client.append_batch(api::AppendBatchRequest { ledger_id: chunk[0].ledger_id().to_string(), events }).await.unwrap();
        }
    }
    clock.advance_to(now);
    Server { addr, client, stop, task, store }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    // `-- N RUNS concurrent`: only the 16-client run (for profiling).
    let only_concurrent = args.get(2).is_some_and(|a| a == "concurrent");
    // `-- N RUNS batched`: only the batched run (for profiling).
    let only_batched = args.get(2).is_some_and(|a| a == "batched");
    let _ = tracing_subscriber::fmt().with_env_filter("jifen=warn").try_init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let storage = jifen::store::storage::start_embedded(dir.path(), 4).await.unwrap();
        let cluster = storage.cluster.as_ref().unwrap();
        let (opening, events, now) = workload(n);
        let singles = (n / 10).clamp(100, 2000);
        println!("workload: {n} pre-signed scores (100 per batch), {singles} single appends; {runs} runs; embedded PostgreSQL, fsync on");
        let (mut batched, mut single, mut pgstore, mut ceiling, mut p50s, mut p99s) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..if only_concurrent { 0 } else { runs } {
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
            if only_batched {
                println!("batched {:.0}/s", batched[run]);
                return;
            }
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
            let tail: Vec<StoredRecord> = records[opening.len()..].iter().map(stored_record).collect();
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
        // 16 clients over 16 villages, one event per call, against esrs's PgStore persisting the
        // same records one per persist from 16 tasks.
        let (villages, per_village) = (16, (n / 16).clamp(50, 1000));
        let (openings, loads, now16) = many_villages(villages, per_village);
        let (mut c_rate, mut c_p50, mut c_p99, mut cp_p50, mut cp_p99, mut e16) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            let s = server_pool(cluster, &format!("bench_m{run}"), &openings, now16, 16).await;
            let c = concurrent_singles(&s, &loads).await;
            println!(
                "run {}: 16 clients × 16 villages, single appends {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; append→checkpoint p50 {:.0} ms, p99 {:.0} ms",
                run + 1,
                c.rate,
                c.p50_ms,
                c.p99_ms,
                c.checkpoint_p50_ms,
                c.checkpoint_p99_ms
            );
            let mut stored = Vec::new();
            for o in &openings {
                let code = o[0].ledger_id().clone();
                stored.push(s.store.load(&code).await.unwrap()[o.len()..].iter().map(stored_record).collect::<Vec<_>>());
            }
            let _ = s.stop.send(());
            s.task.await.unwrap().unwrap();
            c_rate.push(c.rate);
            c_p50.push(c.p50_ms);
            c_p99.push(c.p99_ms);
            cp_p50.push(c.checkpoint_p50_ms);
            cp_p99.push(c.checkpoint_p99_ms);

            let db = format!("bench_e16_{run}");
            create_database(&cluster.connection_string(SUPERUSER, "postgres"), &db).await.unwrap();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect_with(sqlx::postgres::PgConnectOptions::new().socket(dir.path().join("run")).username(SUPERUSER).database(&db))
                .await
                .unwrap();
            let store = esrs::store::postgres::PgStoreBuilder::<Baseline>::new(pool).try_build().await.unwrap();
            let t = Instant::now();
            let total: usize = stored.iter().map(|v| v.len()).sum();
            let tasks: Vec<_> = stored
                .into_iter()
                .map(|events| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut state = esrs::AggregateState::<()>::new();
                        for e in events {
                            esrs::store::EventStore::persist(&store, &mut state, vec![e]).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            e16.push(total as f64 / t.elapsed().as_secs_f64());
            println!("run {}: baseline esrs PgStore, 16 tasks, one event per persist {:.0}/s", run + 1, e16[run]);
        }
        if only_concurrent {
            return;
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
        let (cr, ce) = (median(c_rate), median(e16));
        println!(
            "  jifen Append, 16 clients over 16 villages                          {cr:>9.0}   p50 {:.2} ms, p99 {:.2} ms",
            median(c_p50),
            median(c_p99)
        );
        println!("  baseline: esrs stock PgStore, 16 tasks, one event per persist     {ce:>9.0}");
        println!("  ratio: 16-client singles / PgStore = {:.2}×", cr / ce);
        println!("  append → signed checkpoint covering it: p50 {:.0} ms, p99 {:.0} ms", median(cp_p50), median(cp_p99));
    });
}
