//! `jifen cosign`: a supervisor witnesses the latest checkpoint, after checking it extends the
//! last one they cosigned (kept in a local state file); a split view leaves an evidence file.

use anyhow::{bail, Context};
use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self};
use jifen_ledger::bundle::witness_key_name;
use jifen_ledger::checkpoint::SignedCheckpoint;
use jifen_ledger::hash::Hash;
use jifen_ledger::note::{NoteSigner, NoteVerifier};
use jifen_ledger::witness::{check_step, Evidence, Step, StepError};
use serde_json::{json, Value};
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
    #[command(flatten)]
    server: super::connect::ServerArgs,
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
    let key = super::submit::read_key(&args.key)?;
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
        let mut client = LedgerServiceClient::new(args.server.channel().await?);
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
                    let finding = evidence.verify().map(|f| super::verify::describe(&f)).unwrap_or_else(|e| e.to_string());
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
