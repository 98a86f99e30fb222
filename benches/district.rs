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
//! stopped. A second server is started: the first call on each village loads it (chain
//! checked, write-model and views folded, read model compared). Reported: each first call's
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

        let mut server = Child::start(env!("CARGO_BIN_EXE_jifen").as_ref(), &db, &dir).await.unwrap();
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
            "first answer of a village not loaded yet ({} records): median {:.0} ms, slowest {:.0} ms ({} villages, one after another)",
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
        server.kill().await.unwrap();
    });
}
