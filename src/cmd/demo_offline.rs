//! `jifen demo`: a village-year generated through the write-model, verified end to end (chain,
//! every signature, Merkle root against a checkpoint cosigned by supervisors, rule replay), and
//! a month of it printed as the village would see it.

use super::tables;
use anyhow::{bail, Context};
use jifen_ledger::checkpoint::SignedCheckpoint;
use jifen_ledger::note::NoteSigner;
use jifen_ledger::sample::{generate, SampleConfig, DEPLOYMENT_ORIGIN};
use jifen_ledger::time::Period;
use jifen_ledger::verify::{check_chain, check_root, check_signatures, replay};
use jifen_projections::Projections;

#[derive(clap::Args)]
pub struct YearArgs {
    /// With --offline: the month to print, 1–12.
    #[arg(long, default_value_t = 3)]
    month: u32,
    /// With --offline: households (default: chosen by the seed, 300–800).
    #[arg(long, value_parser = super::demo_offline::households_arg())]
    year_households: Option<usize>,
}

/// `--households`: a whole number from `MIN_HOUSEHOLDS` to `MAX_HOUSEHOLDS`.
pub fn households_arg() -> clap::builder::RangedU64ValueParser<usize> {
    use jifen_ledger::sample::{MAX_HOUSEHOLDS, MIN_HOUSEHOLDS};
    clap::builder::RangedU64ValueParser::new().range(MIN_HOUSEHOLDS as u64..=MAX_HOUSEHOLDS as u64)
}

pub fn run(args: YearArgs) -> anyhow::Result<()> {
    let seed = 2025;
    let period = Period::from_ym(2025, args.month).context("--month must be 1 to 12")?;
    println!("生成示范村 2025 年度账本（种子 {seed}）……");
    let sample = generate(&SampleConfig { seed, households: args.year_households, months: 12, scores_per_household: 5.0 })
        .map_err(|r| anyhow::anyhow!("the generator produced an inadmissible event: {r}"))?;
    let records = sample.records();
    println!("{} 户，{} 条记录，账本 {}", sample.households.len(), records.len(), sample.origin);

    // The log signs a checkpoint; two supervisors (the rulebook's witness quorum) cosign it.
    let checkpoint = sample.checkpoint();
    let mut signed = checkpoint.sign(&sample.log_key);
    let witnesses: Vec<NoteSigner> = sample.cast.supervisors[..2]
        .iter()
        .map(|s| NoteSigner::new(&format!("{DEPLOYMENT_ORIGIN}/witness/{}", s.id), s.key.clone()).expect("valid key name"))
        .collect();
    for w in &witnesses {
        signed.cosign(w);
    }
    let note = signed.encode();
    println!("\n签名检查点（C2SP signed note）：\n{note}");

    // Verify as an auditor would, from the records and the note alone.
    let verifiers: Vec<_> = witnesses.iter().map(|w| w.verifier().clone()).collect();
    let (opened, cosigners) = SignedCheckpoint::open(note.as_bytes(), &sample.origin, sample.log_key.verifier(), &verifiers)?;
    let last_at = records.last().map_or(0, |r| r.recorded_at());
    let quorum = sample.writer.state.witness_quorum_after(records.len() as u64, last_at) as usize;
    if cosigners.len() < quorum {
        bail!("checkpoint has {} cosignatures, the rulebook requires {quorum}", cosigners.len());
    }
    let stage = tables::progress(4, "verify");
    let hashes = check_chain(records)?;
    stage.inc(1);
    check_signatures(records, jifen::batch_mode())?;
    stage.inc(1);
    check_root(&hashes, opened.checkpoint())?;
    stage.inc(1);
    stage.finish_and_clear();
    let progress = tables::progress(records.len() as u64, "replay");
    let state = replay(records, |seq| {
        if seq % 1024 == 0 {
            progress.set_position(seq);
        }
    })?;
    progress.finish_and_clear();
    if state.head() != sample.writer.state.head() {
        bail!("replay reached a different head");
    }
    println!(
        "verified: {} records — hash chain, {} signatures (batch, all cores), Merkle root of checkpoint {} with {} of {} witness cosignatures, every event re-admitted by the write-model",
        records.len(),
        records.iter().map(|r| r.signatures().len()).sum::<usize>(),
        opened.checkpoint().size,
        cosigners.len(),
        quorum
    );

    let p = Projections::from_records(records)?;
    println!();
    for b in p.publicity.boards_of(period) {
        println!("{}", tables::board(b));
    }
    println!("{}", tables::red_black(&p, period));
    println!("【2025 年末 · 累计获得积分前 15 户】");
    println!("{}", tables::balances(p.state(), 15));
    println!("{}", tables::supermarket(&p, period));
    println!("【审计摘要】");
    println!("{}", tables::audit_summary(&p));
    Ok(())
}
