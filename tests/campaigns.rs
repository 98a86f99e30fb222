//! The short mode of the fault campaigns (the long mode is `jifen campaign`): crashes of the
//! server and of PostgreSQL under load, tampering with stored rows, and bad input.

use jifen::campaign::{bad_input, crash, tamper};

fn progress(line: &str) {
    eprintln!("  {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_and_postgres_crashes_and_nothing_is_half_stored() {
    let config = crash::CrashConfig { rounds: 8, postgres_every: 4, clients: 4, seed: 11, exe: env!("CARGO_BIN_EXE_jifen").into() };
    let report = crash::run(&config, &progress).await.unwrap();
    eprintln!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_random_tampering_is_named_at_its_first_bad_seq_by_a_warm_or_a_restarted_server() {
    let report = tamper::run(&tamper::TamperConfig { rounds: 60, seed: 12 }, &progress).await.unwrap();
    eprintln!("{report}");
    // Both modes ran: some rounds restarted the server between the tampering and the check.
    let modes = report.facts.iter().find(|f| f.contains("cold rounds")).expect("the report counts cold rounds");
    let cold: u32 = modes.split_whitespace().next().unwrap().parse().unwrap();
    assert!(cold > 10 && cold < 50, "{modes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_own_status_and_leaves_the_ledger_byte_for_byte_unchanged() {
    let report = bad_input::run(&bad_input::BadInputConfig { rounds: 60, seed: 13 }, &progress).await.unwrap();
    eprintln!("{report}");
}
