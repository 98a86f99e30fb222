//! Serving a large village from `jifen serve`: the time to load it, the server's memory, and
//! the latency of inclusion proofs and of GetBalance under a fixed 2,000 requests/s load.
//!
//! ```text
//! cargo build --release
//! ./target/release/jifen bench --households 5000 --scores 16 --runs 1 --write-bundle /tmp/million.bundle
//! cargo bench --bench serving -- /tmp/million.bundle [SECONDS]
//! ```
//!
//! The records of the bundle are written to a fresh embedded PostgreSQL as they are (the
//! store's append, in chunks), then a `jifen serve` process is started on it. Its first call
//! loads the village (chain check, write-model and views folded); then 10,000 inclusion
//! proofs one after another, then GetBalance for random households at 2,000 calls/s
//! (open loop: two calls sent every millisecond, whatever the answers do) for SECONDS
//! (default 10). Then three AppendBatch calls of 100 supermarket receipts by the generated
//! village's keeper (seed 2025): one accepted (the baseline: what a batch costs), one refused
//! at its 2nd event (signed by a stranger), and right after it one accepted again (whether the
//! refusal stalled the village). The server's resident memory is read from /proc.

use jifen::api::query_service_client::QueryServiceClient;
use jifen::api::{self};
use jifen::campaign::harness::{openers_file, Child, Db};
use jifen_ledger::bundle::Bundle;
use jifen_ledger::merkle::{leaf_hash, verify_inclusion};
use jifen_ledger::Hash;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Calls `call(i)` at `rate` calls a second for `seconds`, open loop (a slow answer does not
/// delay the next call): (p50 ms, p99 ms, calls a second offered, failures).
async fn open_loop<F, Fut>(rate: u64, seconds: u64, call: F) -> (f64, f64, f64, u32)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let per_tick = (rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_micros((1_000_000 * per_tick / rate).max(1000)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        for _ in 0..per_tick {
            let (tx, fut) = (tx.clone(), call(sent));
            sent += 1;
            tokio::spawn(async move {
                let t = Instant::now();
                let ok = fut.await;
                let _ = tx.send((t.elapsed(), ok));
            });
        }
    }
    drop(tx);
    let offered = sent as f64 / start.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut failed = 0;
    while let Some((d, ok)) = rx.recv().await {
        lat.push(d);
        failed += u32::from(!ok);
    }
    (quantile(&mut lat, 0.5), quantile(&mut lat, 0.99), offered, failed)
}

fn quantile(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let path = args.first().expect("usage: cargo bench --bench serving -- BUNDLE [SECONDS]");
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let bundle = Bundle::decode(&std::fs::read(path).unwrap()).unwrap();
        let n = bundle.records.len() as u64;
        let ledger = bundle.ledger.to_string();
        println!("village {ledger}: {n} records from {path}");
        let db = Db::start().await.unwrap();
        let store = db.store(4).unwrap();
        let t = Instant::now();
        for (i, chunk) in bundle.records.chunks(5000).enumerate() {
            store.append((i == 0).then_some(bundle.origin.as_str()), chunk).await.unwrap();
        }
        println!("stored in PostgreSQL in {:.1} s (not measured against a target)", t.elapsed().as_secs_f64());
        let hashes: Vec<Hash> = bundle.records.iter().map(|r| r.hash()).collect();
        let dir = db.dir().join("server");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("townships"), openers_file(&bundle.records[..1])).unwrap();
        // The publication whose board is closest to 300 entries (the 公示 target's size).
        let board = bundle
            .records
            .iter()
            .filter_map(|r| match jifen_ledger::body::decode_body(r.body()).ok()?.payload? {
                jifen_ledger::pb::event_body::Payload::PublicationOpened(p) => Some((p.publication_id, p.entry_ids.len())),
                _ => None,
            })
            .min_by_key(|(_, len)| len.abs_diff(300))
            .expect("the bundle has publications");
        // Entries to ask the audit trail of: every 97th score.
        let entry_ids: Arc<Vec<String>> = Arc::new(
            bundle
                .records
                .iter()
                .step_by(97)
                .filter_map(|r| match jifen_ledger::body::decode_body(r.body()).ok()?.payload? {
                    jifen_ledger::pb::event_body::Payload::ScoreRecorded(p) => Some(p.entry_id),
                    _ => None,
                })
                .collect(),
        );
        drop(bundle);

        // The records were stored without their read model (as by a version before read
        // models): the first start builds it, and seals a snapshot. The measured starts are the
        // next ones: without the snapshot (every record replayed: the baseline), then with it.
                // JIFEN_EXE: another build's server, measured by the same harness (an A/B of two commits).
        let exe = std::env::var_os("JIFEN_EXE").map_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_jifen")), Into::into);
        let exe = exe.as_path();
                let mut first = Child::start_logging(exe, &db, &dir, "jifen::server::villages::load=info").await.unwrap();
        let t = Instant::now();
        jifen::campaign::harness::wait_checkpoint(&mut first.client().await.unwrap(), &ledger, n).await.unwrap();
        println!("first start, the read model built from the records: {:.1} s", t.elapsed().as_secs_f64());
        first.kill().await.unwrap();
        let owner = db.superuser().await.unwrap();
        let row = owner.query_one("SELECT tree_size, length(body) FROM snapshots", &[]).await.unwrap();
        let (size, bytes): (i64, i32) = (row.get(0), row.get(1));
        println!("snapshot sealed at {size} records: {:.1} MB", f64::from(bytes) / 1e6);
        owner.batch_execute("CREATE TABLE saved_snapshots AS SELECT * FROM snapshots; DELETE FROM snapshots;").await.unwrap();
        let mut full = Child::start(exe, &db, &dir).await.unwrap();
        let t = Instant::now();
        jifen::campaign::harness::wait_checkpoint(&mut full.client().await.unwrap(), &ledger, n).await.unwrap();
        let replayed = t.elapsed();
        println!("first call, every record replayed (no snapshot; the baseline): {:.1} s", replayed.as_secs_f64());
        full.kill().await.unwrap();
        owner.batch_execute("DELETE FROM snapshots; INSERT INTO snapshots SELECT * FROM saved_snapshots;").await.unwrap();

        let server = Child::start_logging(exe, &db, &dir, "jifen=info").await.unwrap();
        let mut logs = server.logs().unwrap();
        let pid = server.pid().unwrap();
        let (idle, _) = rss_mb(pid);
        let mut ledger_client = server.client().await.unwrap();
        let t = Instant::now();
        let cp = jifen::campaign::harness::wait_checkpoint(&mut ledger_client, &ledger, n).await.unwrap();
        let load = t.elapsed();
        let (rss, peak) = rss_mb(pid);
        println!(
            "first call from the snapshot (opened, the records after it replayed, read model compared): {:.2} s; {:.1}x faster than the replay",
            load.as_secs_f64(),
            replayed.as_secs_f64() / load.as_secs_f64()
        );
        println!("server memory: {idle:.0} MB before the load, {rss:.0} MB serving {n} records (peak {peak:.0} MB)");
        // The history before the snapshot is checked in the background: the measurements below
        // wait for it (they measure a server at rest).
        loop {
            match logs.recv().await {
                Ok(line) if line.contains("history before the snapshot checked") => {
                    println!("history before the snapshot checked, {:.1} s after the start ({})", t.elapsed().as_secs_f64(), line.trim());
                    break;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the server's log ended: {e}"),
            }
        }
        let (rss, peak) = rss_mb(pid);
        println!("server memory once the history is checked: {rss:.0} MB (peak {peak:.0} MB)");

        // Inclusion proofs, one after another, each checked against the checkpoint's root.
        let root = Hash::from_slice(&cp.root_hash).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut lat = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let seq = rng.random_range(0..n);
            let c = Instant::now();
            let res = ledger_client
                .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq, tree_size: n })
                .await
                .unwrap()
                .into_inner();
            lat.push(c.elapsed());
            let proof: Vec<Hash> = res.proof.iter().map(|h| Hash::from_slice(h).unwrap()).collect();
            assert!(verify_inclusion(&leaf_hash(&hashes[seq as usize]), seq, n, &proof, &root).is_ok(), "proof of {seq} does not verify");
        }
        let (p50, p99) = (quantile(&mut lat, 0.5), quantile(&mut lat, 0.99));
        println!("inclusion proof over gRPC on {n} records: p50 {p50:.3} ms, p99 {p99:.3} ms (10,000 calls, each proof verified)");

        // GetBalance at 2,000 calls/s, then GetPublication at 500 calls/s, open loop, over 8
        // connections.
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(QueryServiceClient::connect(format!("http://{}", server.addr)).await.unwrap());
        }
        let all = clients[0].list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap();
        let households: Arc<Vec<String>> = Arc::new(all.into_inner().balances.into_iter().map(|b| b.household_id).collect());
        let (seed, calls, ledger_id) = (rng.random::<u64>(), clients.clone(), ledger.clone());
        let (p50, p99, offered, failed) = open_loop(2000, seconds, move |i| {
            let mut c = calls[(i % 8) as usize].clone();
            let pick = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ i).random_range(0..households.len());
            let h = households[pick].clone();
            let ledger = ledger_id.clone();
            async move { c.get_balance(api::GetBalanceRequest { ledger_id: ledger, household_id: h, ..Default::default() }).await.is_ok() }
        })
        .await;
        println!("GetBalance at {offered:.0} calls/s offered for {seconds} s: p50 {p50:.3} ms, p99 {p99:.3} ms, {failed} failed");
        let (board, entries) = board.clone();
        // One at a time first: what one board costs.
        let mut lat = Vec::with_capacity(200);
        for _ in 0..200 {
            let c = Instant::now();
            let req = api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: board.clone(), ..Default::default() };
            clients[0].get_publication(req).await.unwrap();
            lat.push(c.elapsed());
        }
        let (p50, p99) = (quantile(&mut lat, 0.5), quantile(&mut lat, 0.99));
        println!("GetPublication of a {entries}-entry 公示 board, one at a time: p50 {p50:.3} ms, p99 {p99:.3} ms (200 calls)");
        let (calls, ledger_id) = (clients.clone(), ledger.clone());
        let (p50, p99, offered, failed) = open_loop(500, seconds, move |i| {
            let mut c = calls[(i % 8) as usize].clone();
            let (ledger, publication_id) = (ledger_id.clone(), board.clone());
            async move { c.get_publication(api::GetPublicationRequest { ledger_id: ledger, publication_id, ..Default::default() }).await.is_ok() }
        })
        .await;
        println!(
            "GetPublication of a {entries}-entry 公示 board at {offered:.0} calls/s offered for {seconds} s: p50 {p50:.3} ms, p99 {p99:.3} ms, {failed} failed"
        );
        // An entry's audit trail (its lineage and every red flag), as the village's auditor, at
        // 500 calls/s.
        let auditor = Arc::new(jifen_ledger::sample::ActorKey::derive(2025, "auditor-01", None));
        let (calls, ledger_id) = (clients.clone(), ledger.clone());
        let (p50, p99, offered, failed) = open_loop(500, seconds, move |i| {
            let mut c = calls[(i % 8) as usize].clone();
            let entry = entry_ids[rand_chacha::ChaCha8Rng::seed_from_u64(i).random_range(0..entry_ids.len())].clone();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            let req = api::GetAuditTrailRequest {
                ledger_id: ledger_id.clone(),
                subject: Some(api::get_audit_trail_request::Subject::EntryId(entry)),
                ..Default::default()
            };
            let req = jifen::auth::authorized(req, &auditor.key, jifen::auth::method::GET_AUDIT_TRAIL, &ledger_id, now);
            async move { c.get_audit_trail(req).await.is_ok_and(|r| !r.into_inner().acts.is_empty()) }
        })
        .await;
        println!("GetAuditTrail of an entry at {offered:.0} calls/s offered for {seconds} s: p50 {p50:.3} ms, p99 {p99:.3} ms, {failed} failed");
        let (rss, peak) = rss_mb(pid);
        println!("server memory after the load: {rss:.0} MB (peak {peak:.0} MB)");

        // Batches of 100 receipts: accepted, refused at the 2nd event, accepted again.
        use jifen_ledger::pb::{self, event_body::Payload};
        use jifen_ledger::sample::{sign, stock, ActorKey};
        let keeper = ActorKey::derive(2025, "keeper-01", None);
        let stranger = ActorKey::derive(2025, "stranger", None);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        let batch = |tag: &str, bad_at: Option<usize>| {
            let events = (0..100)
                .map(|i| {
                    let signer = if Some(i) == bad_at { &stranger } else { &keeper };
                    let id = format!("BENCH-{tag}-{i}");
                    let (body, sigs) =
                        sign(&ledger, signer, &[], now, &id, Payload::StockReceived(stock(&id, "G-SOAP", "", 1, pb::StockSource::Subsidy, "")));
                    api::SignedEvent::new(body, &sigs)
                })
                .collect();
            api::AppendBatchRequest { ledger_id: ledger.clone(), events }
        };
        let timed = |req| {
            let mut c = ledger_client.clone();
            async move {
                let t = Instant::now();
                let ok = c.append_batch(req).await.map(|_| ()).map_err(|e| e.message().to_owned());
                (t.elapsed().as_secs_f64() * 1e3, ok)
            }
        };
        let (base, ok) = timed(batch("A", None)).await;
        assert!(ok.is_ok(), "{ok:?}");
        let (refused, err) = timed(batch("B", Some(1))).await;
        assert!(err.as_ref().is_err_and(|m| m.starts_with("event 1:")), "{err:?}");
        let (after, ok) = timed(batch("C", None)).await;
        assert!(ok.is_ok(), "{ok:?}");
        println!(
            "AppendBatch of 100 on {n} records: accepted {base:.1} ms (baseline); refused at its 2nd event {refused:.1} ms; the next accepted batch {after:.1} ms"
        );
    });
}
