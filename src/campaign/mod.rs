//! Fault campaigns: evidence that the ledger survives crashes, tampering and bad input.
//!
//! Each campaign is a seeded, repeatable program against the real server and a real
//! PostgreSQL. The test suite runs a short mode of each (`tests/campaigns.rs`); `jifen campaign`
//! runs the long mode; docs/RELIABILITY.md records the results.
//!
//! - [`crash`] — SIGKILL of the server, and crashes of PostgreSQL, under concurrent load.
//! - [`tamper`] — random edits, deletions, reorderings, insertions and truncations of stored
//!   rows behind the triggers' back, each to be named by VerifyLedger at its first bad seq.
//! - [`bad_input`] — malformed, oversized, unsigned, forged, unauthorised and rule-breaking
//!   requests, each to get its own status while the stored ledger stays byte for byte the same.
//! - [`harness`] — the managed database, the in-process server and the `jifen serve` child.

pub mod bad_input;
pub mod crash;
pub mod harness;
pub mod tamper;

use std::time::Duration;

/// What a campaign did and found (a failed check is an error instead).
#[derive(Debug)]
pub struct Report {
    pub campaign: &'static str,
    pub seed: u64,
    pub rounds: u32,
    pub elapsed: Duration,
    /// What was done and checked, one line each.
    pub facts: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} campaign: {} rounds, seed {}, {:.1} s — passed",
            self.campaign,
            self.rounds,
            self.seed,
            self.elapsed.as_secs_f64()
        )?;
        for fact in &self.facts {
            writeln!(f, "  - {fact}")?;
        }
        Ok(())
    }
}
