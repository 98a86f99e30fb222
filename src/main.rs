//! # jifen
//!
//! The jifen command: the service (`serve`), the demo of a village year and the benchmark of
//! the ledger core.
//!
//! # Layout
//!
//! - `demo_grpc` — README command 1: a village's month over gRPC on the embedded PostgreSQL.
//! - `demo` — `demo --offline`: a village-year generated, verified and printed in memory.
//! - `bench` — times generation, each verification stage and the projections fold, with the
//!   one-by-one, one-core signature check as the baseline measured in the same run.
//! - `campaign_cmd` — `campaign`: the long mode of the crash, tamper and bad-input campaigns.
//! - `serve` — the gRPC service on the embedded or an external PostgreSQL.
//! - `client` — `keygen`, and `verify` (against a server, or offline).
//! - `audit_cmd` — `cosign`, `export`, `verify --bundle/--evidence`, `replay`: the supervisors' and
//!   auditors' commands.
//! - `submit`, `query_cmd` — signing and appending an event; readable queries.
//! - `tables` — the readable tables (公示 board, balances, audit summary) the commands print.

mod audit_cmd;
mod bench;
mod campaign_cmd;
mod client;
mod demo;
mod demo_grpc;
mod query_cmd;
mod serve;
mod submit;
mod tables;

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
    Bench(bench::BenchArgs),
    /// Crash, tamper and bad-input campaigns against the real server and PostgreSQL (long mode).
    Campaign(campaign_cmd::CampaignArgs),
    /// Run the gRPC service (on a private, managed PostgreSQL unless --database-url is given).
    Serve(serve::ServeArgs),
    /// Create a signing key for an actor (or a supervisor's note key).
    Keygen(client::KeygenArgs),
    /// Verify a ledger on this machine: served by a jifen server, or offline from a year bundle
    /// (--bundle), or split-view evidence (--evidence).
    Verify(client::VerifyArgs),
    /// As a supervisor, witness the latest checkpoint after checking it extends the last one
    /// you cosigned; a split view leaves an evidence file.
    Cosign(audit_cmd::CosignArgs),
    /// Write a village's year bundle (records, witnessed checkpoints, proofs) to a file.
    Export(audit_cmd::ExportArgs),
    /// Rebuild a year from a bundle, offline: balances, 公示, settlements, supermarket, flags.
    Replay(audit_cmd::ReplayArgs),
    /// Sign an event described in JSON with key files and append it.
    Submit(submit::SubmitArgs),
    /// Balances, 公示 boards, 红黑榜 and audit trails from a server, as tables.
    Query(query_cmd::QueryArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Generate and verify a whole village-year in memory, without PostgreSQL or gRPC.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    grpc: demo_grpc::GrpcDemoArgs,
    #[command(flatten)]
    year: demo::YearArgs,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match Cli::parse().command {
        Command::Demo(args) if args.offline => demo::run(args.year),
        Command::Demo(args) => demo_grpc::run(args.grpc),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Campaign(args) => campaign_cmd::run(args),
        Command::Keygen(args) => client::keygen(args),
        Command::Verify(args) => client::verify(args),
        Command::Cosign(args) => audit_cmd::cosign(args),
        Command::Export(args) => audit_cmd::export(args),
        Command::Replay(args) => audit_cmd::replay(args),
        Command::Submit(args) => submit::run(args),
        Command::Query(args) => query_cmd::run(args),
    }
}
