//! # jifen
//!
//! The jifen command: the service (`serve`), the demo of a village year and the benchmark of
//! the ledger core.
//!
//! The commands are in `cmd/`, one file each (see its module docs).

mod cmd;

/// mimalloc, not the system allocator: a replay allocates on one thread and frees on another,
/// and glibc's malloc spent a fifth of the replay pipeline there and made its time vary
/// 1.5× from run to run (docs/BENCHMARKS.md, tenth session).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: in mimalloc.h the option right before
/// `mi_option_use_numa_nodes`, which libmimalloc-sys names (this one it does not).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// mimalloc's default purge delays: 1 s in mimalloc 3 (libmimalloc-sys's default), 10 ms in 2.
const DEFAULT_PURGE_DELAYS: [std::ffi::c_long; 2] = [1000, 10];

/// A server returns the memory it frees to the system at once, not after mimalloc's default
/// delay (1 s): with the delay, a served village held 382 MB (peak 603) once its history was checked,
/// against 163 MB (peak 449) without, and replayed no faster (docs/BENCHMARKS.md). An
/// operator's `MIMALLOC_PURGE_DELAY` is left as it is, and so is an option that does not read
/// as the default (another mimalloc, whose options are numbered otherwise).
fn return_freed_memory_at_once() {
    // SAFETY: mimalloc's option calls take a plain integer and may be called at any time.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() && DEFAULT_PURGE_DELAYS.contains(&libmimalloc_sys::mi_option_get(PURGE_DELAY))
        {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }
}

use clap::{Parser, Subcommand};

/// jifen — tamper-evident points ledger for village governance (积分制).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// How diagnostics are written to standard error: readable lines, or one JSON object per
    /// line (for a log collector). Colours only on a terminal.
    /// [default: text; for `serve`, log_format of its settings]
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

use cmd::config::LogFormat;

/// Diagnostics on stderr (stdout carries what a command prints: tables, JSON, the address
/// `serve` listens on). `RUST_LOG` chooses what is logged; by default `serve` logs at `info`
/// (a line per call and per refused event) and the other commands at `warn`.
fn init_logging(format: LogFormat, serving: bool) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| if serving { "info".into() } else { "warn".into() });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
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
    /// Print the log's public key and, for a village, the origin and note verifier key its
    /// checkpoints are signed under (what supervisors and auditors pin).
    LogKey(cmd::log_key::LogKeyArgs),
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
    let cli = Cli::parse();
    if let Command::Serve(mut args) = cli.command {
        args.log_format = cli.log_format;
        let settings = args.settings()?;
        init_logging(settings.log_format, true);
        return_freed_memory_at_once();
        return cmd::serve::run(settings);
    }
    init_logging(cli.log_format.unwrap_or(LogFormat::Text), false);
    match cli.command {
        Command::Demo(args) if args.offline => cmd::demo_offline::run(args.year),
        Command::Demo(args) => cmd::demo::run(args.grpc),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Serve(_) => unreachable!("served above"),
        Command::Campaign(args) => cmd::campaign::run(args),
        Command::Rebuild(args) => cmd::rebuild::run(args),
        Command::Keygen(args) => cmd::keygen::keygen(args),
        Command::LogKey(args) => cmd::log_key::run(args),
        Command::Verify(args) => cmd::verify::verify(args),
        Command::Cosign(args) => cmd::cosign::cosign(args),
        Command::Export(args) => cmd::export::export(args),
        Command::Replay(args) => cmd::replay::replay(args),
        Command::Submit(args) => cmd::submit::run(args),
        Command::Query(args) => cmd::query::run(args),
    }
}

#[cfg(test)]
mod tests {
    /// The option set for a server is mimalloc's purge delay: it reads as its default, and as 0
    /// once set.
    #[test]
    fn the_server_sets_mimallocs_purge_delay() {
        // SAFETY: as in `return_freed_memory_at_once`.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                super::DEFAULT_PURGE_DELAYS.contains(&get()),
                "not mimalloc's default purge delay: option {} reads {}",
                super::PURGE_DELAY,
                get()
            );
        }
        super::return_freed_memory_at_once();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 0);
        }
    }
}
