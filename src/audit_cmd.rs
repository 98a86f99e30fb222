//! The commands of the people who do not trust the operator:
//!
//! - `cosign` — a supervisor witnesses the latest checkpoint, after checking it extends the
//!   last one they cosigned (kept in a local state file); a split view leaves an evidence file.
//! - `export` — the year bundle of a village, from a server (a guarded call).
//! - `verify --bundle` / `verify --evidence` — offline checks of a bundle or of evidence.
//! - `replay` — the year rebuilt from a bundle: balances, 公示, settlements, supermarket, flags.

use crate::tables::{self, table};
use anyhow::{bail, Context};
use jifen::api::audit_service_client::AuditServiceClient;
use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self};
use jifen::auth::{authorized, method, unix_now};
use jifen_ledger::bundle::{verify_bundle, witness_key_name, Bundle, BundleReport, Trust};
use jifen_ledger::checkpoint::SignedCheckpoint;
use jifen_ledger::hash::Hash;
use jifen_ledger::note::{NoteSigner, NoteVerifier};
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::time::{Date, Period};
use jifen_ledger::verify::SignatureMode;
use jifen_ledger::village::Accepted;
use jifen_ledger::witness::{check_step, Evidence, Finding, Step, StepError};
use jifen_projections::Projections;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct CosignArgs {
    /// The supervisor's key file (from `jifen keygen`).
    #[arg(long)]
    key: PathBuf,
    /// The supervisor's actor id in the ledger (the witness key is named
    /// `<deployment>/witness/<actor id>`).
    #[arg(long)]
    actor: String,
    /// The jifen server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The village (12-digit code).
    #[arg(long)]
    village: String,
    /// The log's verifier key (`<origin>+<id>+<key>`); needed on first use, then kept in the
    /// state file.
    #[arg(long)]
    log_key: Option<String>,
    /// The witness state file: the last checkpoint cosigned, per village.
    #[arg(long, default_value = "witness-state.json")]
    state: PathBuf,
    /// Where to write evidence if the log shows a split view (default: next to the state file).
    #[arg(long)]
    evidence: Option<PathBuf>,
}

/// The witness's memory: per village, the log key and the last cosigned checkpoint (note).
struct WitnessState {
    path: PathBuf,
    json: Value,
}

impl WitnessState {
    fn load(path: &Path) -> anyhow::Result<WitnessState> {
        let json = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not a witness state file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({ "version": 1, "villages": {} }),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(WitnessState { path: path.to_owned(), json })
    }

    fn get(&self, village: &str, field: &str) -> Option<String> {
        self.json["villages"][village][field].as_str().map(str::to_owned)
    }

    /// Records the cosigned checkpoint, replacing the file atomically.
    fn save(&mut self, village: &str, log_key: &str, checkpoint: &str) -> anyhow::Result<()> {
        self.json["villages"][village] = json!({ "log_key": log_key, "checkpoint": checkpoint });
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.json)?)?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

/// `jifen cosign`.
pub fn cosign(args: CosignArgs) -> anyhow::Result<()> {
    let key = crate::submit::read_key(&args.key)?;
    let mut state = WitnessState::load(&args.state)?;
    let log_key = match (args.log_key.as_deref(), state.get(&args.village, "log_key").as_deref()) {
        (Some(given), Some(kept)) if given != kept => {
            bail!("--log-key differs from the key kept in {} for this village ({kept})", args.state.display())
        }
        (Some(k), _) | (None, Some(k)) if !k.is_empty() => k.to_owned(),
        _ => bail!("pass the log's verifier key with --log-key on first use"),
    };
    let log = NoteVerifier::parse(&log_key).context("--log-key")?;
    let origin = log.name().to_owned();
    if !origin.ends_with(&format!("/village/{}", args.village)) {
        bail!("the log key is for {origin}, not village {}", args.village);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client =
            LedgerServiceClient::connect(args.server.clone()).await.with_context(|| format!("connecting to {}", args.server))?;
        let offered = client
            .get_checkpoint(api::GetCheckpointRequest { ledger_id: args.village.clone(), ..Default::default() })
            .await
            .context("fetching the latest checkpoint")?
            .into_inner()
            .checkpoint
            .context("no checkpoint in the answer")?;
        let (signed, _) = SignedCheckpoint::open(offered.note.as_bytes(), &origin, &log, &[])
            .context("the offered checkpoint is not signed by the log key")?;
        let new = signed.checkpoint().clone();
        if new.size == 0 {
            bail!("the server offers a checkpoint of size 0, which no log signs (docs/FORMAT.md §5): nothing to cosign");
        }
        let last_note = state.get(&args.village, "checkpoint");
        if let Some(last_note) = &last_note {
            let (last, _) = SignedCheckpoint::open(last_note.as_bytes(), &origin, &log, &[]).context("the state file's checkpoint")?;
            let last = last.checkpoint().clone();
            let (lo, hi) = (last.size.min(new.size), last.size.max(new.size));
            let mut refused_proof = String::new();
            let proof: Vec<Hash> = if lo == hi {
                vec![]
            } else {
                match client
                    .get_consistency_proof(api::GetConsistencyProofRequest { ledger_id: args.village.clone(), old_size: lo, new_size: hi })
                    .await
                {
                    Ok(r) => r.into_inner().proof.iter().filter_map(|h| Hash::from_slice(h)).collect(),
                    // A log that cannot prove consistency has none to give: that is evidence too.
                    Err(status) => {
                        refused_proof = format!("\nthe server gave no proof from {lo} to {hi}: {}", status.message());
                        vec![]
                    }
                }
            };
            match check_step(&last, &new, &proof) {
                Ok(Step::Same) => println!("checkpoint {} is the one cosigned last time; cosigning it again", new.size),
                Ok(Step::Extends) => {
                    println!("checkpoint {} extends the last cosigned one ({}): consistency proof checked", new.size, last.size)
                }
                Err(StepError::Stale { last, offered }) => {
                    bail!("the server offers checkpoint {offered}, older than {last} which you already cosigned: nothing to cosign")
                }
                Err(StepError::EmptyCheckpoint) => {
                    bail!(
                        "a checkpoint of size 0 is involved (the offered one or your state file's), which no log signs: nothing to cosign"
                    )
                }
                Err(e) => {
                    let evidence = Evidence { log_key: log_key.clone(), older: last_note.clone(), newer: offered.note.clone(), proof };
                    let path = args.evidence.clone().unwrap_or_else(|| {
                        args.state.with_file_name(format!("split-view-{}-{}-{}.evidence", args.village, last.size, new.size))
                    });
                    std::fs::write(&path, evidence.encode()).with_context(|| format!("writing {}", path.display()))?;
                    let finding = evidence.verify().map(|f| describe(&f)).unwrap_or_else(|e| e.to_string());
                    bail!(
                        "REFUSED: {e}{refused_proof}\nthe log showed a split view; evidence written to {} ({finding}).\n\
                         Anyone can check it with: jifen verify --evidence {}",
                        path.display(),
                        path.display()
                    );
                }
            }
        }
        let name = witness_key_name(&origin, &args.actor);
        let signer = NoteSigner::new(&name, key)?;
        let line = signer.sign_line(&new.to_text()).line();
        let answer = client
            .add_cosignature(api::AddCosignatureRequest {
                ledger_id: args.village.clone(),
                tree_size: new.size,
                signature_line: line.trim_end().to_owned(),
            })
            .await
            .context("submitting the cosignature")?
            .into_inner()
            .checkpoint
            .context("no checkpoint in the answer")?;
        state.save(&args.village, &log_key, &offered.note)?;
        println!(
            "cosigned checkpoint {} (root {}) as {name}: {} cosignature(s){}",
            new.size,
            new.root,
            answer.cosignatures,
            if answer.witnessed { " — witnessed (quorum reached)" } else { " — quorum not yet reached" }
        );
        Ok(())
    })
}

fn describe(f: &Finding) -> String {
    match f {
        Finding::Fork { size } => format!("two signed checkpoints of size {size} with different roots"),
        Finding::Proven { old, new, .. } => {
            format!("proven: the log's own proof shows its tree of {new} records does not contain the tree of {old} it signed before")
        }
        Finding::Unanswered { old, new } => {
            format!("the log's proof from {old} to {new} fails; no valid proof can exist if it lied — ask the log for one")
        }
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The jifen server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The village (12-digit code).
    #[arg(long)]
    village: String,
    /// The calendar year.
    #[arg(long)]
    year: u32,
    /// The bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// A supervisor's, township's or auditor's key file, to sign the request.
    #[arg(long)]
    key: PathBuf,
}

/// `jifen export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let key = crate::submit::read_key(&args.key)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client =
            AuditServiceClient::connect(args.server.clone()).await.with_context(|| format!("connecting to {}", args.server))?;
        let request = authorized(
            api::ExportBundleRequest { ledger_id: args.village.clone(), year: args.year },
            &key,
            method::EXPORT_BUNDLE,
            &args.village,
            unix_now(),
        );
        let mut stream = client.export_bundle(request).await.context("ExportBundle")?.into_inner();
        // Written to a side file and renamed once complete and well-formed; removed on failure.
        let tmp = args.out.with_extension("partial");
        let bar = indicatif::ProgressBar::new_spinner().with_message("export");
        let received = async {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut n = 0u64;
            while let Some(m) = stream.message().await? {
                f.write_all(&m.chunk)?;
                n += m.chunk.len() as u64;
                bar.set_position(n);
            }
            f.sync_all()?;
            drop(f);
            let bundle = Bundle::decode(&std::fs::read(&tmp)?).context("the server sent a malformed bundle")?;
            std::fs::rename(&tmp, &args.out)?;
            anyhow::Ok((n, bundle))
        }
        .await;
        bar.finish_and_clear();
        let (n, bundle) = received.inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        println!(
            "wrote {} ({n} bytes): {} records of {}, {} checkpoints; verify with: jifen verify --bundle {} --log-key '{}'",
            args.out.display(),
            bundle.records.len(),
            bundle.origin,
            bundle.checkpoints.len(),
            args.out.display(),
            bundle.log_key
        );
        Ok(())
    })
}

/// The keys an auditor passes.
#[derive(clap::Args, Clone)]
pub struct TrustArgs {
    /// The log's verifier key; without it the bundle's own key is used (and said so).
    #[arg(long)]
    pub log_key: Option<String>,
    /// A witness (supervisor) verifier key to count; repeatable. Without any, the supervisors
    /// enrolled in the ledger at each checkpoint.
    #[arg(long = "witness-key")]
    pub witness_keys: Vec<String>,
    /// Check every signature one by one, exactly as FORMAT.md §3 defines validity (on all
    /// cores), instead of the faster randomised batch check (§3.2).
    #[arg(long)]
    pub strict: bool,
}

impl TrustArgs {
    fn trust(&self) -> anyhow::Result<Trust> {
        Ok(Trust {
            log_key: self.log_key.as_deref().map(NoteVerifier::parse).transpose().context("--log-key")?,
            witness_keys: self.witness_keys.iter().map(|k| NoteVerifier::parse(k)).collect::<Result<_, _>>().context("--witness-key")?,
        })
    }

    /// How signatures are checked: `--strict`, or a batch weighted from fresh OS randomness.
    pub fn mode(&self) -> SignatureMode {
        if self.strict {
            SignatureMode::Strict
        } else {
            jifen::batch_mode()
        }
    }
}

/// Reads, decodes and verifies a bundle, with a progress bar; the report or the first failure.
fn open_bundle(path: &Path, trust: &TrustArgs) -> anyhow::Result<(Bundle, BundleReport)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bundle = Bundle::decode(&bytes).with_context(|| format!("{} is not a valid bundle", path.display()))?;
    let bar = tables::progress(bundle.records.len() as u64, "verify");
    let report = verify_bundle(&bundle, &trust.trust()?, trust.mode(), |seq| {
        if seq % 4096 == 0 {
            bar.set_position(seq);
        }
    });
    bar.finish_and_clear();
    match report {
        Ok(r) => Ok((bundle, r)),
        Err(e) => match e.seq() {
            Some(seq) => bail!("NOT verified: first bad record seq {seq}: {e}"),
            None => bail!("NOT verified: {e}"),
        },
    }
}

/// `jifen verify --bundle`.
pub fn verify_bundle_file(path: &Path, trust: &TrustArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (bundle, report) = open_bundle(path, trust)?;
    let last = report.checkpoints.last().expect("a verified bundle has a checkpoint");
    println!(
        "verified {}: {} records and {} signatures of {} — chain, every signature with the keys in force, \
         every event admissible, {} checkpoint root(s) and the proofs between them; last checkpoint {} \
         witnessed by {} of {} needed ({}); {:.1} s",
        path.display(),
        report.records,
        report.signatures,
        bundle.origin,
        report.checkpoints.len(),
        last.size,
        last.cosigners.len(),
        last.quorum,
        last.cosigners.join(", "),
        started.elapsed().as_secs_f64()
    );
    if !report.log_key_given {
        println!("warning: checked against the bundle's own log key {}; pass --log-key with the key you trust", bundle.log_key);
    }
    Ok(())
}

/// `jifen verify --evidence`.
pub fn verify_evidence_file(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let evidence = Evidence::parse(&text)?;
    match evidence.verify() {
        Ok(f) => {
            println!("EVIDENCE HOLDS: both checkpoints are signed by {}; {}", evidence.log_key, describe(&f));
            Ok(())
        }
        Err(e) => bail!("not evidence of a split view: {e}"),
    }
}

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
    let (bundle, report) = open_bundle(&args.bundle, &args.trust)?;
    let as_of = match &args.as_of {
        Some(s) => Date::parse("as_of", s)?,
        None => Date::from_ymd(args.year, 12, 31).context("--year")?,
    };
    let until = as_of.add_days(1).start_micros();
    let mut p = Projections::new();
    let mut settlements = Vec::new();
    let mut records = 0u64;
    for r in bundle.records.iter().take_while(|r| r.recorded_at() < until) {
        let a = Accepted::from_verified_record(r.clone())?;
        if let Payload::PeriodSettled(s) = a.payload() {
            let replayed = p.state().balance_digest_at(r.recorded_at());
            settlements.push((r.seq(), s.clone(), replayed.as_bytes() == s.balance_digest.as_slice(), replayed));
        }
        p.apply(&a);
        records += 1;
    }
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
