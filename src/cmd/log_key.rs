//! `jifen log-key`: the log's public key, and for a village its origin and the note verifier
//! key of its checkpoints, which supervisors and auditors pin (`jifen cosign --log-key`,
//! `jifen verify --log-key`). It reads the key file `serve` uses and never creates one.

use anyhow::Context;
use jifen::server::villages::LogKey;
use jifen_ledger::ids::VillageCode;
use std::path::PathBuf;

#[derive(clap::Args, serde::Serialize)]
pub struct LogKeyArgs {
    /// The config file of `jifen serve` (its data directory and deployment origin are read
    /// from it, as `serve` reads them); JIFEN_CONFIG names one too.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The data directory of `jifen serve`, which holds the log key (`log.key`) [default: as
    /// `serve`'s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// The deployment origin `jifen serve` runs with: a village's origin, and so its verifier
    /// key, is named after it. With --village it must be given, here, in the config file or as
    /// JIFEN_DEPLOYMENT_ORIGIN: a default would print a key nobody signs with.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_origin: Option<String>,
    /// A village (its 12-digit code): print its origin and the note verifier key its
    /// checkpoints are signed under. Repeatable.
    #[arg(long)]
    #[serde(skip)]
    village: Vec<String>,
}

pub fn run(args: LogKeyArgs) -> anyhow::Result<()> {
    let villages = args
        .village
        .iter()
        .map(|code| VillageCode::parse(code).with_context(|| format!("--village {code:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (settings, given) = super::config::load_layers(args.config.as_deref(), &args)?;
    if !villages.is_empty() && !given.contains("deployment_origin") {
        anyhow::bail!(
            "--village needs the deployment origin `jifen serve` runs with: --deployment-origin, deployment_origin in --config, or JIFEN_DEPLOYMENT_ORIGIN"
        );
    }
    let path = settings.log_key();
    let key = LogKey::load(&path)
        .context("the log key (it is created by the first `jifen serve` on this data directory, never by this command)")?;
    println!("log key file: {}", path.display());
    println!("public key: {}", jifen_ledger::hex(&key.public_key()));
    if args.village.is_empty() {
        println!("each village's checkpoints are signed under its own origin: pass --village <code> for its note verifier key");
    }
    let deployment = settings.deployment_origin;
    for code in villages {
        let origin = format!("{deployment}/village/{code}");
        let verifier = key.verifier(&origin).with_context(|| format!("--deployment-origin {deployment:?}"))?;
        println!("origin: {origin}");
        println!("note verifier key: {verifier}");
    }
    Ok(())
}
