//! # jifen
//!
//! The jifen command: for now the in-memory demo of a village year and the benchmark of the
//! ledger core. The service (PostgreSQL store, gRPC) wraps the same `jifen-ledger` and
//! `jifen-projections` crates.
//!
//! # Layout
//!
//! - `demo` — generates a village-year through the write-model, verifies it, prints a month.
//! - `bench` — times generation, each verification stage and the projections fold, with the
//!   one-by-one, one-core signature check as the baseline measured in the same run.
//! - `tables` — the readable tables (公示 board, balances, audit summary) the commands print.

mod bench;
mod demo;
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
