//! # jifen
//!
//! The jifen command: the service (`serve`), the demo of a village year and the benchmark of
//! the ledger core.
//!
//! The commands are in `cmd/`, one file each (see its module docs).

mod cmd;

use clap::{Parser, Subcommand};

/// jifen — tamper-evident points ledger for village governance (积分制).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A village's month end to end over gRPC on the embedded PostgreSQL (or, with --offline,
    /// a whole generated year verified in memory).
    Demo(DemoArgs),
    /// Measure generation, verification stages and projection replay.
    Bench(cmd::bench::BenchArgs),
    /// Crash, tamper and bad-input campaigns against the real server and PostgreSQL (long mode).
    Campaign(cmd::campaign::CampaignArgs),
    /// Run the gRPC service (on a private, managed PostgreSQL unless --database-url is given).
    Serve(cmd::serve::ServeArgs),
    /// Rebuild a village's read model (balances, months, 公示 boards, supermarket) from its records, in the
    /// database of `serve`; prints what it repaired.
    Rebuild(cmd::rebuild::RebuildArgs),
    /// Create a signing key for an actor (or a supervisor's note key).
    Keygen(cmd::keygen::KeygenArgs),
    /// Verify a ledger on this machine: served by a jifen server, or offline from a year bundle
    /// (--bundle), or split-view evidence (--evidence).
    Verify(cmd::verify::VerifyArgs),
    /// As a supervisor, witness the latest checkpoint after checking it extends the last one
    /// you cosigned; a split view leaves an evidence file.
    Cosign(cmd::cosign::CosignArgs),
    /// Write a village's year bundle (records, witnessed checkpoints, proofs) to a file.
    Export(cmd::export::ExportArgs),
    /// Rebuild a year from a bundle, offline: balances, 公示, settlements, supermarket, flags.
    Replay(cmd::replay::ReplayArgs),
    /// Sign an event described in JSON with key files and append it.
    Submit(cmd::submit::SubmitArgs),
    /// Balances, 公示 boards, 红黑榜 and audit trails from a server, as tables.
    Query(cmd::query::QueryArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Generate and verify a whole village-year in memory, without PostgreSQL or gRPC.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    grpc: cmd::demo::GrpcDemoArgs,
    #[command(flatten)]
    year: cmd::demo_offline::YearArgs,
}

fn main() -> anyhow::Result<()> {
    // Diagnostics on stderr: stdout carries what a command prints (tables, JSON, the address
    // `serve` listens on).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo(args) if args.offline => cmd::demo_offline::run(args.year),
        Command::Demo(args) => cmd::demo::run(args.grpc),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Campaign(args) => cmd::campaign::run(args),
        Command::Rebuild(args) => cmd::rebuild::run(args),
        Command::Keygen(args) => cmd::keygen::keygen(args),
        Command::Verify(args) => cmd::verify::verify(args),
        Command::Cosign(args) => cmd::cosign::cosign(args),
        Command::Export(args) => cmd::export::export(args),
        Command::Replay(args) => cmd::replay::replay(args),
        Command::Submit(args) => cmd::submit::run(args),
        Command::Query(args) => cmd::query::run(args),
    }
}
