//! `jifen bench`: generation, each stage of full verification, and projection replay over a
//! generated village-year, with the baseline measured in the same run: signatures checked one
//! by one with `verify_strict` on one core. Medians over `--runs`.

use jifen_ledger::sample::{generate, SampleConfig};
use jifen_ledger::verify::{check_chain, check_root, check_signatures, replay, SignatureMode};
use jifen_projections::Projections;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seed of the generated village.
    #[arg(long, default_value_t = 2025)]
    seed: u64,
    /// Households in the generated village.
    #[arg(long, default_value_t = 600)]
    households: usize,
    /// Average scores per household per month.
    #[arg(long, default_value_t = 4.0)]
    scores: f64,
    /// Repetitions of each measured stage (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        out = Some(f());
        times.push(t.elapsed());
    }
    (median(times), out.expect("ran at least once"))
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0}/s", n as f64 / d.as_secs_f64())
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = SampleConfig { seed: args.seed, households: Some(args.households), months: 12, scores_per_household: args.scores };
    let t = Instant::now();
    let sample = generate(&config).map_err(|r| anyhow::anyhow!("generator: {r}"))?;
    let generation = t.elapsed();
    let records = sample.records();
    let n = records.len();
    let sigs: usize = records.iter().map(|r| r.signatures().len()).sum();
    let checkpoint = sample.checkpoint();
    println!("village-year: {} households, {n} records, {sigs} signatures; {} threads", args.households, rayon::current_num_threads());
    println!(
        "generate + append through the write-model (sign, verify_strict, decide, apply): {:>8.3} s  {}",
        generation.as_secs_f64(),
        rate(n, generation)
    );

    let (chain, hashes) = time(args.runs, || check_chain(records).expect("chain"));
    let (batch, _) = time(args.runs, || check_signatures(records, SignatureMode::BatchParallel).expect("signatures"));
    let (single, _) = time(args.runs.min(3), || check_signatures(records, SignatureMode::SingleSerial).expect("signatures"));
    let (merkle, _) = time(args.runs, || check_root(&hashes, &checkpoint).expect("root"));
    let (rules, _) = time(args.runs, || replay(records, |_| {}).expect("replay"));
    let (projections, _) = time(args.runs, || Projections::from_records(records).expect("projections"));

    let row = |name: &str, d: Duration, count: usize| println!("  {name:<44} {:>9.1} ms  {}", d.as_secs_f64() * 1e3, rate(count, d));
    println!("\nfull verification, median of {} runs:", args.runs);
    row("chain (record hashes in parallel, links)", chain, n);
    row("signatures: batch, all cores", batch, sigs);
    row("signatures: verify_strict one by one, 1 core", single, sigs);
    row("Merkle tree and root vs checkpoint", merkle, n);
    row("rule replay (write-model, signatures done)", rules, n);
    let total = chain + batch + merkle + rules;
    let baseline = chain + single + merkle + rules;
    row("total", total, n);
    row("total with the one-by-one baseline", baseline, n);
    println!(
        "  signature speed-up batch+parallel vs baseline: {:.2}×; full verification {:.2}×",
        single.as_secs_f64() / batch.as_secs_f64(),
        baseline.as_secs_f64() / total.as_secs_f64()
    );
    println!("\nprojection replay (all views from records): {:>9.1} ms  {}", projections.as_secs_f64() * 1e3, rate(n, projections));
    Ok(())
}
