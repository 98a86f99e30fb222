//! Client commands: `keygen` (a signing key for an actor) and `verify` (an auditor's check of
//! a ledger served by a jifen server, done on the auditor's own machine).

use anyhow::{bail, Context};
use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self};
use jifen_ledger::checkpoint::SignedCheckpoint;
use jifen_ledger::note::NoteVerifier;
use jifen_ledger::verify::verify_ledger_with_progress;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key file (created with mode 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Also print the signed-note verifier key under this key name (e.g.
    /// "jifen.example.cn/witness/supervisor-01" for a supervisor who cosigns checkpoints).
    #[arg(long)]
    note_name: Option<String>,
}

/// Writes a new Ed25519 key: the 32-byte seed in hex (private), and prints the public key.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = jifen_ledger::hex(key.verifying_key().as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .with_context(|| format!("creating {} (an existing key is never overwritten)", args.out.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(&args.out, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(f, "{}", jifen_ledger::hex(&seed))?;
    println!("private key written to {} (keep it secret)", args.out.display());
    println!("public key: {public}");
    if let Some(name) = args.note_name {
        let v = NoteVerifier::new(&name, key.verifying_key().to_bytes())?;
        println!("note verifier key: {v}");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Verify this year bundle offline (no server, no database).
    #[arg(long, conflicts_with_all = ["evidence", "village"])]
    bundle: Option<PathBuf>,
    /// Check this split-view evidence file (from `jifen cosign`) on its own.
    #[arg(long, conflicts_with_all = ["bundle", "village"])]
    evidence: Option<PathBuf>,
    /// The jifen server.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The village (12-digit code), to verify what a server stores.
    #[arg(long, required_unless_present_any = ["bundle", "evidence"])]
    village: Option<String>,
    /// With --village: a supervisor's, township's or auditor's key file, to sign the request
    /// for the records.
    #[arg(long, requires = "village")]
    key: Option<PathBuf>,
    #[command(flatten)]
    trust: crate::audit_cmd::TrustArgs,
}

/// Verifies a ledger: offline from a bundle or evidence, or read from a server.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.bundle {
        return crate::audit_cmd::verify_bundle_file(path, &args.trust);
    }
    if let Some(path) = &args.evidence {
        return crate::audit_cmd::verify_evidence_file(path);
    }
    let village = args.village.clone().context("--village")?;
    let key = crate::submit::read_key(args.key.as_deref().context("--key: reading the records needs a reader's key")?)?;
    let mode = args.trust.mode();
    let args = ServerVerify { server: args.server, village, log_key: args.trust.log_key, mode };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = LedgerServiceClient::connect(args.server.clone())
            .await
            .with_context(|| format!("connecting to {}", args.server))?
            .max_decoding_message_size(80 << 20);
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
        let reading = crate::tables::progress(checkpoint.size, "read");
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
        let checking = crate::tables::progress(records.len() as u64, "replay");
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
    server: String,
    village: String,
    log_key: Option<String>,
    mode: jifen_ledger::verify::SignatureMode,
}
