//! `jifen bench`: generation, each stage of full verification, and projection replay over a
//! generated village-year, with the baseline measured in the same run: signatures checked one
//! by one with `verify_strict` on one core. Then the year bundle: decode and `verify_bundle`,
//! against the same stages run one after another with one-core signatures. Medians over `--runs`.

use jifen_ledger::bundle::{verify_bundle, witness_key_name, Bundle, Trust};
use jifen_ledger::note::NoteSigner;
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
    /// Also write the generated year bundle to this file (input of the serving benchmark,
    /// `cargo bench --bench serving -- FILE`).
    #[arg(long)]
    write_bundle: Option<std::path::PathBuf>,
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
    let (batch, _) = time(args.runs, || check_signatures(records, jifen::batch_mode()).expect("signatures"));
    let (single, _) = time(args.runs.min(3), || check_signatures(records, SignatureMode::SingleSerial).expect("signatures"));
    let (merkle, _) = time(args.runs, || check_root(&hashes, &checkpoint).expect("root"));
    let (rules, _) = time(args.runs, || replay(records, |_| {}).expect("replay"));
    let (projections, _) = time(args.runs, || Projections::from_records(records).expect("projections"));
    let (serially, _) = time(args.runs, || Projections::from_records_serially(records).expect("projections"));
    // Where projection replay spends its time: decoding, the write-model state, the views.
    let (decoding, decoded) = time(args.runs, || {
        records.iter().map(|r| jifen_ledger::village::Accepted::from_verified_record(r.clone()).expect("decodes")).collect::<Vec<_>>()
    });
    let (folding_state, _) = time(args.runs, || {
        let mut state = jifen_ledger::village::VillageState::new();
        decoded.iter().for_each(|a| state.apply(a));
        state
    });

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
    println!(
        "  (a pipeline: decode ∥ state and views ∥ audit trail; {:.2}× the serial fold)",
        serially.as_secs_f64() / projections.as_secs_f64()
    );
    row("baseline: the serial fold, record by record", serially, n);
    row("of which: copy and decode each record", decoding, n);
    row("of which: fold the write-model state", folding_state, n);
    row("of which: fold the four views (the rest)", serially.saturating_sub(decoding + folding_state), n);

    // The year bundle an auditor verifies offline: one checkpoint cosigned by two supervisors.
    let mut signed = checkpoint.sign(&sample.log_key);
    for s in &sample.cast.supervisors[..2] {
        signed.cosign(&NoteSigner::new(&witness_key_name(&sample.origin, &s.id), s.key.clone()).expect("key name"));
    }
    let bundle = Bundle {
        ledger: records[0].ledger_id().clone(),
        origin: sample.origin.clone(),
        log_key: sample.log_key.verifier().to_string(),
        year: 2025,
        records: records.to_vec(),
        checkpoints: vec![signed.encode()],
        proofs: vec![],
    };
    let bytes = bundle.encode();
    if let Some(path) = &args.write_bundle {
        std::fs::write(path, &bytes)?;
        println!("wrote the year bundle ({} bytes) to {}", bytes.len(), path.display());
    }
    let trust = Trust { log_key: Some(sample.log_key.verifier().clone()), witness_keys: vec![] };
    let (decode, decoded) = time(args.runs, || Bundle::decode(&bytes).expect("decode"));
    let (verify, _) = time(args.runs, || verify_bundle(&decoded, &trust, jifen::batch_mode(), |_| {}).expect("verify"));
    let bundle_total = decode + verify;
    // Baseline: the same stages one after another, signatures one by one on one core.
    let bundle_baseline = decode + chain + single + merkle + rules;
    println!("\nyear bundle of {} MB, median of {} runs:", bytes.len() >> 20, args.runs);
    row("decode (strict, records in parallel)", decode, n);
    row("verify_bundle (batch sigs ∥ replay, roots, quorum)", verify, n);
    row("decode + verify", bundle_total, n);
    row("baseline: decode, then stages serially, 1-core sigs", bundle_baseline, n);
    println!(
        "  bundle verification speed-up vs baseline: {:.2}×; at this rate 1,000,000 records take {:.1} s",
        bundle_baseline.as_secs_f64() / bundle_total.as_secs_f64(),
        bundle_total.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}
