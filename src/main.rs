//! # jifen
//!
//! The jifen command: the service (`serve`), the demo of a village year and the benchmark of
//! the ledger core.
//!
//! # Layout
//!
//! - `demo` — generates a village-year through the write-model, verifies it, prints a month.
//! - `bench` — times generation, each verification stage and the projections fold, with the
//!   one-by-one, one-core signature check as the baseline measured in the same run.
//! - `serve` — the gRPC service on the embedded or an external PostgreSQL.
//! - `tables` — the readable tables (公示 board, balances, audit summary) the commands print.

mod bench;
mod demo;
mod serve;
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
    /// Generate a sample village-year, verify it, and print a month's 公示 board and balances.
    Demo(demo::DemoArgs),
    /// Measure generation, verification stages and projection replay.
    Bench(bench::BenchArgs),
    /// Run the gRPC service (on a private, managed PostgreSQL unless --database-url is given).
    Serve(serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
