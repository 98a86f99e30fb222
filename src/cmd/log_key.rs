//! `jifen log-key`: the log's public key, and for a village its origin and the note verifier
//! key of its checkpoints, which supervisors and auditors pin (`jifen cosign --log-key`,
//! `jifen verify --log-key`). It reads the key file `serve` uses and never creates one.

use anyhow::Context;
use jifen::server::villages::LogKey;
use jifen_ledger::ids::VillageCode;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct LogKeyArgs {
    /// The data directory of `jifen serve`, which holds the log key (`log.key`).
    #[arg(long, default_value = "jifen-data")]
    data_dir: PathBuf,
    /// The deployment origin `jifen serve` runs with (its `--deployment-origin`): a village's
    /// origin, and so its verifier key, is named after it. Required with --village.
    #[arg(long, requires = "village")]
    deployment_origin: Option<String>,
    /// A village (its 12-digit code): print its origin and the note verifier key its
    /// checkpoints are signed under. Repeatable.
    #[arg(long, requires = "deployment_origin")]
    village: Vec<String>,
}

pub fn run(args: LogKeyArgs) -> anyhow::Result<()> {
    let villages = args
        .village
        .iter()
        .map(|code| VillageCode::parse(code).with_context(|| format!("--village {code:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = args.data_dir.join("log.key");
    let key = LogKey::load(&path)
        .context("the log key (it is created by the first `jifen serve` on this data directory, never by this command)")?;
    println!("log key file: {}", path.display());
    println!("public key: {}", jifen_ledger::hex(&key.public_key()));
    if args.village.is_empty() {
        println!("each village's checkpoints are signed under its own origin: pass --village <code> for its note verifier key");
    }
    let deployment = args.deployment_origin.unwrap_or_default();
    for code in villages {
        let origin = format!("{deployment}/village/{code}");
        let verifier = key.verifier(&origin).with_context(|| format!("--deployment-origin {deployment:?}"))?;
        println!("origin: {origin}");
        println!("note verifier key: {verifier}");
    }
    Ok(())
}
