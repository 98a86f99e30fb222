//! A district on one `jifen serve`: many villages of a year each, served by one process. What
//! it costs to keep them all loaded (resident memory), and how long a village's first answer
//! takes when the server has not loaded it yet.
//!
//! ```text
//! cargo bench --bench district -- [VILLAGES] [HOUSEHOLDS]
//! ```
//!
//! VILLAGES (default 100) village-years are generated, each with HOUSEHOLDS households (default
//! 150: about 30,000 records with 17 scores a household a month, 闵行's yearly size per
//! village), under township 150602101 (village codes 150602101001…). Their records are written
//! to a fresh embedded PostgreSQL as they are; a first server builds their read models and is
//! stopped (it sealed a snapshot of each). A server started without the snapshots loads the
//! first 20 villages by replaying every record (the baseline); a server started with them
//! loads each village from its snapshot on its first call (the records after it replayed, the
//! read model compared), and checks each village's history behind its snapshot in the
//! background. Reported: each first call's
//! time (median and slowest), and the server's resident memory before, after half and after all
//! villages are loaded, read from /proc.

use jifen::campaign::harness::{openers_file, wait_checkpoint, Child, Db};
use jifen_ledger::ids::VillageCode;
use jifen_ledger::record::Record;
use jifen_ledger::sample::{generate_on, SampleConfig};
use std::time::{Duration, Instant};

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).filter_map(|a| a.parse().ok()).collect();
    let villages = args.first().copied().unwrap_or(100);
    let households = args.get(1).copied().unwrap_or(150);
    let t = Instant::now();
    // Generated on every core: each village is its own seed.
    let codes: Vec<VillageCode> = (1..=villages).map(|i| VillageCode::parse(&format!("150602101{i:03}")).unwrap()).collect();
    let samples: Vec<(String, Vec<Record>)> = std::thread::scope(|s| {
        let chunks: Vec<&[VillageCode]> = codes.chunks(villages.div_ceil(2).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, code)| {
                            let config = SampleConfig {
                                seed: 7000 + i as u64,
                                households: Some(households),
                                months: 12,
                                scores_per_household: 17.0,
                            };
                            let sample = generate_on(code, &config).expect("a generated year");
                            (sample.origin.clone(), sample.writer.records)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let total: usize = samples.iter().map(|(_, r)| r.len()).sum();
    println!(
        "{villages} villages of {households} households: {total} records ({} a village), generated in {:.0} s",
        total / villages,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let db = Db::start().await.unwrap();
        let store = db.store(4).unwrap();
        let t = Instant::now();
        for (origin, records) in &samples {
            for (i, chunk) in records.chunks(5000).enumerate() {
                store.append((i == 0).then_some(origin.as_str()), chunk).await.unwrap();
            }
        }
        println!("stored in PostgreSQL in {:.1} s (not measured against a target)", t.elapsed().as_secs_f64());
        let dir = db.dir().join("server");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("townships"), openers_file(samples.iter().map(|(_, r)| &r[0]))).unwrap();
        let sizes: Vec<(String, u64)> = samples.iter().map(|(_, r)| (r[0].ledger_id().to_string(), r.len() as u64)).collect();
        drop(samples);

        // The first server builds every read model (stored without one, as by an old version).
        let mut first = Child::start(env!("CARGO_BIN_EXE_jifen").as_ref(), &db, &dir).await.unwrap();
        let mut client = first.client().await.unwrap();
        let t = Instant::now();
        for (ledger, n) in &sizes {
            wait_checkpoint(&mut client, ledger, *n).await.unwrap();
        }
        println!("first start, the read models built from the records: {:.1} s", t.elapsed().as_secs_f64());
        first.kill().await.unwrap();

        // The baseline, in the same run: the first villages loaded with every record replayed
        // (their snapshots set aside meanwhile).
        let owner = db.superuser().await.unwrap();
        owner.batch_execute("CREATE TABLE saved_snapshots AS SELECT * FROM snapshots; DELETE FROM snapshots;").await.unwrap();
        let mut full = Child::start(env!("CARGO_BIN_EXE_jifen").as_ref(), &db, &dir).await.unwrap();
        let mut client = full.client().await.unwrap();
        let mut replayed = Vec::new();
        for (ledger, n) in sizes.iter().take(20) {
            let t = Instant::now();
            wait_checkpoint(&mut client, ledger, *n).await.unwrap();
            replayed.push(t.elapsed());
        }
        full.kill().await.unwrap();
        replayed.sort();
        println!(
            "first answer with every record replayed (no snapshot; the baseline): median {:.0} ms, slowest {:.0} ms ({} villages)",
            ms(replayed[replayed.len() / 2]),
            ms(*replayed.last().unwrap()),
            replayed.len()
        );
        owner.batch_execute("DELETE FROM snapshots; INSERT INTO snapshots SELECT * FROM saved_snapshots;").await.unwrap();

        let exe: &std::path::Path = env!("CARGO_BIN_EXE_jifen").as_ref();
        let mut server = Child::start_logging(exe, &db, &dir, "jifen::server::villages::snapshot=info").await.unwrap();
        let mut logs = server.logs().unwrap();
        let started = Instant::now();
        let pid = server.pid().unwrap();
        let idle = rss_mb(pid);
        let mut client = server.client().await.unwrap();
        let mut firsts = Vec::new();
        let mut half = 0.0;
        for (i, (ledger, n)) in sizes.iter().enumerate() {
            let t = Instant::now();
            wait_checkpoint(&mut client, ledger, *n).await.unwrap();
            firsts.push(t.elapsed());
            if i + 1 == sizes.len() / 2 {
                half = rss_mb(pid);
            }
        }
        let all = rss_mb(pid);
        let slowest = *firsts.iter().max().unwrap();
        firsts.sort();
        let median = firsts[firsts.len() / 2];
        println!(
            "first answer of a village not loaded yet, from its snapshot ({} records): median {:.0} ms, slowest {:.0} ms ({} villages, one after another; the history checks behind them running meanwhile)",
            sizes[0].1,
            ms(median),
            ms(slowest),
            sizes.len()
        );
        println!(
            "server memory: {idle:.0} MB before any load, {half:.0} MB serving {} villages, {all:.0} MB serving all {}",
            sizes.len() / 2,
            sizes.len()
        );
        // Every village's history before its snapshot is checked in the background, one
        // village at a time.
        let mut checked = 0;
        while checked < sizes.len() {
            match logs.recv().await {
                Ok(line) if line.contains("history before the snapshot checked") => checked += 1,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the server's log ended: {e}"),
            }
        }
        println!(
            "the histories of all {} villages checked {:.1} s after the start; server memory then {:.0} MB",
            sizes.len(),
            started.elapsed().as_secs_f64(),
            rss_mb(pid)
        );
        server.kill().await.unwrap();
    });
}
