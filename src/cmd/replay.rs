//! `jifen replay`: the year rebuilt from a bundle, offline: balances, 公示, settlements,
//! supermarket, red flags.

use super::tables::{self, table};
use super::verify::TrustArgs;
use anyhow::{bail, Context};
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::time::{Date, Period};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The bundle file.
    #[arg(long)]
    bundle: PathBuf,
    /// The year to show.
    #[arg(long)]
    year: i32,
    /// Replay only records recorded up to the end of this day (YYYY-MM-DD, China time).
    #[arg(long)]
    as_of: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: TrustArgs,
}

/// `jifen replay`: verifies the bundle, then rebuilds the projections from it.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let (mut bundle, report) = super::verify::open_bundle(&args.bundle, &args.trust)?;
    let as_of = match &args.as_of {
        Some(s) => Date::parse("as_of", s)?,
        None => Date::from_ymd(args.year, 12, 31).context("--year")?,
    };
    let until = as_of.add_days(1).start_micros();
    let mut settlements = Vec::new();
    let mut records = 0u64;
    // Folded as a pipeline (decode ∥ state and views ∥ audit trail); each settlement's digest
    // is compared with the state right before it. The records are moved in, not copied.
    let in_view = std::mem::take(&mut bundle.records).into_iter().take_while(move |r| r.recorded_at() < until);
    let p = jifen_projections::replay::replay_with(in_view, |a, state| {
        if let Payload::PeriodSettled(s) = a.payload() {
            let r = a.record();
            let replayed = state.balance_digest_at(r.recorded_at());
            settlements.push((r.seq(), s.clone(), replayed.as_bytes() == s.balance_digest.as_slice(), replayed));
        }
        records += 1;
    })?;
    let periods: Vec<Period> = (1..=12).filter_map(|m| Period::from_ym(args.year, m)).collect();
    let flags = p.audit.red_flags(&p.balances);
    let last = report.checkpoints.last().expect("checkpoint");
    if args.json {
        let out = json!({
            "village": bundle.ledger.to_string(),
            "origin": bundle.origin,
            "year": args.year,
            "as_of": as_of.to_string(),
            "records_replayed": records,
            "bundle": { "records": report.records, "checkpoint_size": last.size, "witnesses": last.cosigners, "log_key_given": report.log_key_given },
            "balances": p.state().balances().iter().map(|(h, b)| json!({
                "household": h, "basic": b.basic, "contribution": b.contribution, "deducted": b.deducted,
                "redeemed": b.redeemed, "carried_in": b.carried_in, "carried_out": b.carried_out,
                "expired": b.expired, "available": b.available(), "ever_earned": b.ever_earned(),
            })).collect::<Vec<_>>(),
            "publications": periods.iter().flat_map(|&m| p.publicity.boards_of(m)).map(|b| json!({
                "id": b.id, "period": b.period.to_string(), "closed": b.closed,
                "entries": b.entries.iter().map(|e| json!({
                    "entry": e.entry_id, "household": e.household, "item": e.item_code,
                    "scored_points": e.scored_points, "points": e.points, "status": e.status.label(),
                })).collect::<Vec<_>>(),
                "objections": b.objections.iter().map(|o| json!({
                    "id": o.id, "entry": o.entry_id, "objector": o.objector, "reason": o.reason,
                    "outcome": o.outcome.map(|x| format!("{x:?}")), "finding": o.finding, "correction": o.correction,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "settlements": settlements.iter().map(|(seq, s, ok, replayed)| json!({
                "seq": seq, "period": s.period, "households": s.households, "period_points": s.period_points,
                "balance_digest": jifen_ledger::hex(&s.balance_digest), "replayed_digest": replayed.to_hex(), "matches_replay": ok,
            })).collect::<Vec<_>>(),
            "supermarket": periods.iter().filter_map(|&m| p.supermarket.month(m).map(|x| json!({
                "period": m.to_string(), "received_by_source": x.received_by_source().iter().map(|(s, q)| (s.to_string(), *q)).collect::<std::collections::BTreeMap<_, _>>(),
                "exchanges": x.exchanges, "reversals": x.reversals, "points": x.points,
            }))).collect::<Vec<_>>(),
            "red_flags": flags.iter().map(|f| f.describe()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}  {} 年度回放（截至 {as_of}，{records} 条记录；账本已验证至检查点 {}，见证 {}/{}）\n",
            bundle.origin,
            args.year,
            last.size,
            last.cosigners.len(),
            last.quorum
        );
        println!("【各户积分（截至 {as_of}）】");
        print!("{}", tables::balances(p.state(), usize::MAX));
        for &m in &periods {
            for b in p.publicity.boards_of(m) {
                println!();
                print!("{}", tables::board(b));
            }
        }
        println!("\n【核算】");
        let rows: Vec<Vec<String>> = settlements
            .iter()
            .map(|(seq, s, ok, _)| {
                vec![
                    s.period.clone(),
                    seq.to_string(),
                    s.households.to_string(),
                    s.period_points.to_string(),
                    jifen_ledger::hex(&s.balance_digest)[..16].to_owned(),
                    if *ok { "一致 ✓".into() } else { "不一致 ✗".into() },
                ]
            })
            .collect();
        print!("{}", table(&["月份", "序号", "户数", "当月积分", "余额摘要", "与回放"], &rows));
        println!();
        for &m in &periods {
            if p.supermarket.month(m).is_some() {
                print!("{}", tables::supermarket(&p, m));
            }
        }
        println!("\n【审计】");
        print!("{}", tables::audit_summary(&p));
    }
    if settlements.iter().any(|(_, _, ok, _)| !ok) {
        bail!("a settlement's balance digest differs from the replay");
    }
    Ok(())
}
