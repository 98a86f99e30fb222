//! `jifen verify`: an auditor's own check of a ledger, on their machine: served by a jifen
//! server (`--server`), or offline from a year bundle (`--bundle`) or split-view evidence
//! (`--evidence`).

use super::tables::{self};
use anyhow::{bail, Context};
use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self};
use jifen_ledger::bundle::{verify_bundle, Bundle, BundleReport, Trust};
use jifen_ledger::checkpoint::SignedCheckpoint;
use jifen_ledger::note::NoteVerifier;
use jifen_ledger::verify::verify_ledger_with_progress;
use jifen_ledger::verify::SignatureMode;
use jifen_ledger::witness::{Evidence, Finding};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Verify this year bundle offline (no server, no database).
    #[arg(long, conflicts_with_all = ["evidence", "village"])]
    bundle: Option<PathBuf>,
    /// Check this split-view evidence file (from `jifen cosign`) on its own.
    #[arg(long, conflicts_with_all = ["bundle", "village"])]
    evidence: Option<PathBuf>,
    #[command(flatten)]
    server: super::connect::ServerArgs,
    /// The village (12-digit code), to verify what a server stores.
    #[arg(long, required_unless_present_any = ["bundle", "evidence"])]
    village: Option<String>,
    /// With --village: a supervisor's, township's or auditor's key file, to sign the request
    /// for the records.
    #[arg(long, requires = "village")]
    key: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Verifies a ledger: offline from a bundle or evidence, or read from a server.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.bundle {
        return verify_bundle_file(path, &args.trust);
    }
    if let Some(path) = &args.evidence {
        return verify_evidence_file(path);
    }
    let village = args.village.clone().context("--village")?;
    let key = super::submit::read_key(args.key.as_deref().context("--key: reading the records needs a reader's key")?)?;
    let mode = args.trust.mode();
    let args = ServerVerify { server: args.server, village, log_key: args.trust.log_key, mode };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = LedgerServiceClient::new(args.server.channel().await?).max_decoding_message_size(80 << 20);
        let cp = client
            .get_checkpoint(api::GetCheckpointRequest { ledger_id: args.village.clone(), tree_size: 0, min_tree_size: 0 })
            .await
            .context("fetching the latest checkpoint")?
            .into_inner()
            .checkpoint
            .context("no checkpoint")?;
        let log = args.log_key.as_deref().map(NoteVerifier::parse).transpose().context("--log-key")?;
        let checkpoint = match &log {
            Some(log) => SignedCheckpoint::open(cp.note.as_bytes(), &cp.origin, log, &[])?.0.checkpoint().clone(),
            None => jifen_ledger::checkpoint::Checkpoint::parse_text(jifen_ledger::note::Note::parse(cp.note.as_bytes())?.text())?,
        };
        let reading = super::tables::progress(checkpoint.size, "read");
        let mut stream = client
            .read_records(jifen::auth::authorized(
                api::ReadRecordsRequest { ledger_id: args.village.clone(), from_seq: 0, limit: checkpoint.size },
                &key,
                jifen::auth::method::READ_RECORDS,
                &args.village,
                jifen::auth::unix_now(),
            ))
            .await?
            .into_inner();
        let mut records = Vec::with_capacity(checkpoint.size as usize);
        while let Some(chunk) = stream.message().await? {
            for r in chunk.records {
                records.push(r.to_record().map_err(|e| anyhow::anyhow!("record {}: {e}", r.seq))?);
            }
            reading.set_position(records.len() as u64);
        }
        reading.finish_and_clear();
        let checking = super::tables::progress(records.len() as u64, "replay");
        // Every stage runs; the failure at the lowest seq is the one reported.
        let outcome = tokio::task::spawn_blocking(move || {
            let n = records.len();
            let result = verify_ledger_with_progress(&records, &checkpoint, args.mode, |seq| {
                if seq % 1024 == 0 {
                    checking.set_position(seq);
                }
            });
            checking.finish_and_clear();
            result.map(|_| (n, checkpoint))
        })
        .await?;
        match outcome {
            Ok((n, cp)) => {
                println!(
                    "verified: {n} records of {} — chain, every signature, Merkle root {} of checkpoint {}{}, every event admissible",
                    args.village,
                    cp.root,
                    cp.size,
                    if log.is_some() { " (log signature checked)" } else { " (log signature not checked: pass --log-key)" }
                );
                Ok(())
            }
            Err(e) => bail!("NOT verified: {e}"),
        }
    })
}

struct ServerVerify {
    server: super::connect::ServerArgs,
    village: String,
    log_key: Option<String>,
    mode: jifen_ledger::verify::SignatureMode,
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
pub fn open_bundle(path: &Path, trust: &TrustArgs) -> anyhow::Result<(Bundle, BundleReport)> {
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

pub fn describe(f: &Finding) -> String {
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
