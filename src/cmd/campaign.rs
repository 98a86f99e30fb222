//! `jifen campaign`: the long mode of the crash, tamper and bad-input campaigns (the test
//! suite runs the short mode). Results go to docs/RELIABILITY.md.

use jifen::campaign::{bad_input, crash, tamper, Report};

#[derive(clap::Args)]
pub struct CampaignArgs {
    /// Which campaign to run.
    #[arg(value_enum, default_value = "all")]
    pub which: Which,
    /// Rounds (default: the long mode's 120 crash, 500 tamper, 1000 bad-input rounds).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Every n-th crash round crashes PostgreSQL instead of the server.
    #[arg(long, default_value_t = 4)]
    pub postgres_every: u32,
    /// Concurrent writers in the crash campaign.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// The seed: the same seed replays the same campaign.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
pub enum Which {
    All,
    Crash,
    Tamper,
    BadInput,
}

pub fn run(args: CampaignArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let progress = |line: &str| eprintln!("  {line}");
    rt.block_on(async {
        let mut reports: Vec<Report> = Vec::new();
        if matches!(args.which, Which::All | Which::Crash) {
            let config = crash::CrashConfig {
                rounds: args.rounds.unwrap_or(120),
                postgres_every: args.postgres_every,
                clients: args.clients,
                seed: args.seed,
                exe: std::env::current_exe()?,
            };
            eprintln!("crash campaign: {} rounds, seed {}", config.rounds, config.seed);
            reports.push(crash::run(&config, &progress).await?);
        }
        if matches!(args.which, Which::All | Which::Tamper) {
            let config = tamper::TamperConfig { rounds: args.rounds.unwrap_or(500), seed: args.seed };
            eprintln!("tamper campaign: {} rounds, seed {}", config.rounds, config.seed);
            reports.push(tamper::run(&config, &progress).await?);
        }
        if matches!(args.which, Which::All | Which::BadInput) {
            let config = bad_input::BadInputConfig { rounds: args.rounds.unwrap_or(1000), seed: args.seed };
            eprintln!("bad-input campaign: {} random rounds after the named cases, seed {}", config.rounds, config.seed);
            reports.push(bad_input::run(&config, &progress).await?);
        }
        for r in &reports {
            println!("{r}");
        }
        Ok(())
    })
}
