//! The crash campaign: load against `jifen serve` while it is killed with SIGKILL, or while
//! PostgreSQL crashes under it, then check what survived.
//!
//! Each round runs `clients` concurrent writers, each sending single appends and all-or-nothing
//! batches of 2–20 independent scores to one village. After a random number of acknowledged
//! requests the round strikes:
//!
//! - **kill round**: SIGKILL to the server while requests are in flight, then a fresh server
//!   process on the same database;
//! - **PostgreSQL round** (every `postgres_every`-th): PostgreSQL is stopped the hard way
//!   (`pg_ctl -m immediate`, as a crash, recovered from the WAL on start) under the load; the
//!   same server process must accept appends again, with no restart of its own.
//!
//! After every round:
//!
//! 1. every acknowledged event is stored at the seq it was acknowledged with, with the same
//!    record hash;
//! 2. every request that got no acknowledgement is stored entirely or not at all, and
//!    resending it returns the stored records as duplicates (same seq) and appends the rest;
//! 3. no event is stored twice, and nothing is stored that was never sent;
//! 4. VerifyLedger verifies the whole chain, every signature, the rules and the checkpoints;
//! 5. a signed checkpoint covers every record (the time it took is recorded).

use super::harness::{openers_file, read_records, wait_checkpoint, Child, Db};
use super::Report;
use crate::api::audit_service_client::AuditServiceClient;
use crate::api::ledger_service_client::LedgerServiceClient;
use crate::api::{self, SignedEvent};
use crate::auth::method;
use crate::store::storage::APP_ROLE;
use anyhow::{bail, ensure, Context};
use jifen_ledger::ids::VillageCode;
use jifen_ledger::sample::{households, open_village_on, receipt_load, Cast};
use jifen_ledger::signature::EventSignature;
use jifen_ledger::time::Date;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// The campaign's parameters.
#[derive(Clone, Debug)]
pub struct CrashConfig {
    /// Rounds in all (kill rounds and PostgreSQL rounds).
    pub rounds: u32,
    /// Every n-th round crashes PostgreSQL instead of the server (0: never).
    pub postgres_every: u32,
    /// Concurrent writers.
    pub clients: usize,
    pub seed: u64,
    /// The `jifen` executable to run as the server.
    pub exe: PathBuf,
}

const HOUSEHOLDS: usize = 60;
const VILLAGE: &str = "150602101301";

/// One request: a single append, or an all-or-nothing batch.
#[derive(Clone)]
struct Unit {
    keys: Vec<String>,
    events: Vec<SignedEvent>,
}

/// What a writer learned of one request.
struct Outcome {
    unit: Unit,
    result: Result<Vec<api::AppendResult>, tonic::Status>,
}

async fn send(client: &mut LedgerServiceClient<Channel>, unit: &Unit) -> Result<Vec<api::AppendResult>, tonic::Status> {
    if unit.events.len() == 1 {
        let r = client.append(api::AppendRequest { event: Some(unit.events[0].clone()) }).await?;
        Ok(r.into_inner().result.into_iter().collect())
    } else {
        let r = client.append_batch(api::AppendBatchRequest { ledger_id: VILLAGE.into(), events: unit.events.clone() }).await?;
        Ok(r.into_inner().results)
    }
}

/// The campaign's memory of the ledger: what was acknowledged, what is uncertain.
#[derive(Default)]
struct Book {
    /// Idempotency key → (seq, record hash) as acknowledged.
    acked: HashMap<String, (u64, Vec<u8>)>,
    /// Requests that failed without an acknowledgement.
    uncertain: Vec<Unit>,
    acked_requests: u64,
    failed_requests: u64,
    resent_present: u64,
    resent_absent: u64,
}

impl Book {
    fn take(&mut self, o: Outcome) -> anyhow::Result<bool> {
        match o.result {
            Ok(results) => {
                ensure!(results.len() == o.unit.keys.len(), "{} results for {} events", results.len(), o.unit.keys.len());
                for (key, r) in o.unit.keys.into_iter().zip(results) {
                    if let Some(prev) = self.acked.insert(key.clone(), (r.seq, r.record_hash.clone())) {
                        ensure!(prev == (r.seq, r.record_hash), "event {key} was acknowledged twice with different records");
                    }
                }
                self.acked_requests += 1;
                Ok(true)
            }
            Err(_) => {
                self.failed_requests += 1;
                self.uncertain.push(o.unit);
                Ok(false)
            }
        }
    }
}

/// The strike of one round.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Strike {
    KillServer,
    CrashPostgres,
}

/// Runs the campaign.
/// The servers seal a snapshot every 200 records (and an eighth of the ledger): kills land
/// while one is being sealed or stored, and restarts load from them.
const SERVE_ARGS: &[&str] = &["--snapshot-every", "200"];

pub async fn run(config: &CrashConfig, progress: &dyn Fn(&str)) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut db = Db::start().await?;
    let data_dir = db.dir().join("server");
    std::fs::create_dir_all(&data_dir)?;

    // A village opened yesterday (its records' own times are in the past of the server's
    // clock; its rulebook takes effect in eleven days, so the load is of events that need
    // none: stock receipts and household registrations).
    let code = VillageCode::parse(VILLAGE)?;
    let now = chrono::Utc::now().timestamp_micros();
    let hs = households(&mut rng, HOUSEHOLDS);
    let (cast, w) = open_village_on(&code, config.seed, &hs, 4, Date::of_micros(now).add_days(-1))?;
    std::fs::write(data_dir.join("townships"), openers_file(&w.records[..1]))?;
    let mut server = Child::start_with(&config.exe, &db, &data_dir, SERVE_ARGS).await?;
    let mut client = server.client().await?;
    for r in &w.records {
        client.append(api::AppendRequest { event: Some(SignedEvent::new(r.body().to_vec(), r.signatures())) }).await.context("opening")?;
    }
    let opening = w.records.len() as u64;
    let load = receipt_load(&cast, VILLAGE, &format!("{}", config.seed), 400 * config.rounds as usize + 1000, now - 1_000_000);
    let mut queue = units(&mut rng, load);

    let mut book = Book::default();
    let mut checkpoint_waits = Vec::new();
    let mut kills = 0;
    let mut pg_crashes = 0;
    for round in 1..=config.rounds {
        let strike =
            if config.postgres_every > 0 && round % config.postgres_every == 0 { Strike::CrashPostgres } else { Strike::KillServer };
        let target = rng.random_range(3..40u64);
        let shared = Arc::new(Mutex::new(std::mem::take(&mut queue)));
        let (outcomes, mut rx) = mpsc::unbounded_channel::<Outcome>();
        let stop = Arc::new(AtomicBool::new(false));
        let (healthy_tx, healthy) = watch::channel(true);
        let mut writers = Vec::new();
        for _ in 0..config.clients {
            let (mut client, shared, outcomes, stop, mut healthy) =
                (server.client().await?, shared.clone(), outcomes.clone(), stop.clone(), healthy.clone());
            writers.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let Some(unit) = shared.lock().expect("queue").pop_front() else { break };
                    let result = send(&mut client, &unit).await;
                    let failed = result.is_err();
                    if outcomes.send(Outcome { unit, result }).is_err() {
                        break;
                    }
                    if failed {
                        // The server is gone (kill round), or PostgreSQL is: wait until it
                        // is back before the next request.
                        if *healthy.borrow() && strike == Strike::KillServer {
                            break;
                        }
                        if healthy.wait_for(|h| *h).await.is_err() {
                            break;
                        }
                    }
                }
            }));
        }
        drop(outcomes);
        let mut acked = 0;
        let mut struck = false;
        let mut after = 0;
        let mut failures_after_recovery = 0;
        while let Some(o) = rx.recv().await {
            let ok = book.take(o)?;
            if !struck {
                acked += u64::from(ok);
                if acked >= target {
                    struck = true;
                    match strike {
                        Strike::KillServer => {
                            stop.store(true, Ordering::SeqCst);
                            server.kill().await?;
                            kills += 1;
                        }
                        Strike::CrashPostgres => {
                            healthy_tx.send_replace(false);
                            db.crash_restart_postgres().await?;
                            healthy_tx.send_replace(true);
                            pg_crashes += 1;
                        }
                    }
                }
            } else if strike == Strike::CrashPostgres {
                if ok {
                    after += 1;
                    if after >= 10 {
                        stop.store(true, Ordering::SeqCst);
                    }
                } else if *healthy_tx.borrow() {
                    failures_after_recovery += 1;
                    ensure!(
                        failures_after_recovery < 200,
                        "round {round}: the server did not recover from the PostgreSQL restart (200 failed requests since)"
                    );
                }
            }
        }
        for w in writers {
            w.await?;
        }
        queue = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("writers still hold the queue"))?.into_inner().expect("queue");
        ensure!(struck, "round {round}: the load ran out before the strike (more households or fewer rounds)");
        if strike == Strike::CrashPostgres {
            ensure!(after >= 10, "round {round}: no appends were acknowledged after PostgreSQL came back");
        }
        if strike == Strike::KillServer {
            // A killed server's PostgreSQL sessions live on until they notice: a COMMIT it sent
            // just before dying still lands. That is correct (a resend then finds the event
            // stored), but the check below reads the store once and compares resends with it,
            // so it must run on a quiescent store: end those sessions and wait for them.
            db.superuser()
                .await?
                .execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = $1", &[&APP_ROLE])
                .await?;
            server = Child::start_with(&config.exe, &db, &data_dir, SERVE_ARGS).await?;
        }
        let restarted = Instant::now();
        let mut client = server.client().await?;
        let size = check(&mut client, &server, &cast, &mut book, opening).await.with_context(|| format!("round {round} ({strike:?})"))?;
        wait_checkpoint(&mut client, VILLAGE, size).await?;
        checkpoint_waits.push(restarted.elapsed());
        progress(&format!("round {round}/{}: {strike:?} after {acked} acknowledged requests; {size} records verified", config.rounds));
    }
    checkpoint_waits.sort();
    let p = |q: usize| checkpoint_waits[(checkpoint_waits.len() - 1) * q / 100].as_secs_f64() * 1e3;
    Ok(Report {
        campaign: "crash",
        seed: config.seed,
        rounds: config.rounds,
        elapsed: started.elapsed(),
        facts: vec![
            format!("{kills} SIGKILLs of the server under load, {pg_crashes} PostgreSQL crash restarts under load"),
            format!(
                "{} requests acknowledged, {} failed without acknowledgement: {} of their events were found stored (all of their request), {} absent",
                book.acked_requests, book.failed_requests, book.resent_present, book.resent_absent
            ),
            format!("{} events stored in the end, every one verified (chain, signatures, rules, checkpoints) and the read model equal to their replay", book.acked.len()),
            format!("time from restart to a checkpoint covering every record: median {:.0} ms, max {:.0} ms", p(50), p(100)),
        ],
    })
}

/// Splits the load into requests: singles and batches of 2–20.
fn units(rng: &mut ChaCha8Rng, load: Vec<(Vec<u8>, Vec<EventSignature>)>) -> VecDeque<Unit> {
    let mut out = VecDeque::new();
    let mut it = load.into_iter().enumerate().peekable();
    while it.peek().is_some() {
        let n = if rng.random_bool(0.5) { 1 } else { rng.random_range(2..=20) };
        let mut unit = Unit { keys: Vec::new(), events: Vec::new() };
        for (_, (body, sigs)) in it.by_ref().take(n) {
            let key = jifen_ledger::body::decode_body(&body).expect("the load decodes").idempotency_key;
            unit.keys.push(key);
            unit.events.push(SignedEvent::new(body, &sigs));
        }
        out.push_back(unit);
    }
    out
}

/// The checks after a round; returns the number of records.
async fn check(
    client: &mut LedgerServiceClient<Channel>,
    server: &Child,
    cast: &Cast,
    book: &mut Book,
    opening: u64,
) -> anyhow::Result<u64> {
    fn token<T>(cast: &Cast, m: &str, msg: T) -> tonic::Request<T> {
        crate::auth::authorized(msg, &cast.auditor.key, m, VILLAGE, chrono::Utc::now().timestamp())
    }
    let read = api::ReadRecordsRequest { ledger_id: VILLAGE.into(), from_seq: 0, limit: 0 };
    let records = read_records(client, token(cast, method::READ_RECORDS, read)).await?;
    let mut stored: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    for r in &records {
        let key = jifen_ledger::body::decode_body(r.body())?.idempotency_key;
        if stored.insert(key.clone(), (r.seq(), r.hash().0.to_vec())).is_some() {
            bail!("event {key} is stored twice");
        }
    }
    for (key, ack) in &book.acked {
        match stored.get(key) {
            Some(s) if s == ack => {}
            Some(s) => bail!("event {key} was acknowledged at seq {} but is stored at seq {} / another hash", ack.0, s.0),
            None => bail!("event {key}, acknowledged at seq {}, is missing", ack.0),
        }
    }
    let mut appended_now = 0;
    for unit in std::mem::take(&mut book.uncertain) {
        let present: Vec<bool> = unit.keys.iter().map(|k| stored.contains_key(k)).collect();
        let n = present.iter().filter(|p| **p).count();
        ensure!(n == 0 || n == present.len(), "a request of {} events that failed is half stored ({n} present)", present.len());
        let results = send(client, &unit).await.context("resending an unacknowledged request")?;
        for ((key, was), r) in unit.keys.iter().zip(&present).zip(&results) {
            ensure!(
                r.duplicate == *was,
                "resending {key}: duplicate = {} but it was {}stored",
                r.duplicate,
                if *was { "" } else { "not " }
            );
            if *was {
                ensure!(stored[key] == (r.seq, r.record_hash.clone()), "resending {key} returned another record than the stored one");
                book.resent_present += 1;
            } else {
                book.resent_absent += 1;
                appended_now += 1;
            }
            book.acked.insert(key.clone(), (r.seq, r.record_hash.clone()));
        }
    }
    let size = opening + book.acked.len() as u64;
    ensure!(
        records.len() as u64 + appended_now == size,
        "{} records stored and {appended_now} appended on resending, but {size} expected",
        records.len()
    );
    let mut audit = AuditServiceClient::connect(format!("http://{}", server.addr)).await?;
    let res = audit
        .verify_ledger(token(
            cast,
            method::VERIFY_LEDGER,
            api::VerifyLedgerRequest { ledger_id: VILLAGE.into(), checkpoint_note: String::new() },
        ))
        .await?
        .into_inner();
    ensure!(res.ok, "VerifyLedger: {}", res.reason);
    ensure!(res.records == size, "VerifyLedger verified {} records, expected {size}", res.records);
    Ok(size)
}
