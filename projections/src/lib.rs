//! # jifen-projections
//!
//! Read models of a village ledger: pure folds of verified records, used by the server online
//! and by `jifen replay` offline. No I/O, no clock: the same records give the same views.
//!
//! Every projection is fed the accepted event *and* the write-model state after it
//! ([`jifen_ledger::village::VillageState`]), so figures the write-model already keeps (entries,
//! balances, stock) are read from it, never computed a second time.
//!
//! # Layout
//!
//! - [`balances`] — per household: earned by category, deducted, redeemed, available, ever
//!   earned, and per-period figures.
//! - [`publicity`] — the 公示 view of each publication, 红黑榜 and the quarterly column.
//! - [`supermarket`] — stock, monthly donations and exchanges.
//! - [`audit`] — acts by actor and household, entry lineage, signers, red flags.

pub mod audit;
pub mod balances;
pub mod publicity;
pub mod supermarket;

use jifen_ledger::record::Record;
use jifen_ledger::village::{Accepted, Rejection, VillageState};

/// All projections of one village, folded together.
#[derive(Default)]
pub struct Projections {
    state: VillageState,
    pub balances: balances::Balances,
    pub publicity: publicity::Publicity,
    pub supermarket: supermarket::Supermarket,
    pub audit: audit::AuditTrail,
}

impl Projections {
    /// Empty projections.
    pub fn new() -> Projections {
        Projections::default()
    }

    /// The write-model state the projections were folded with.
    pub fn state(&self) -> &VillageState {
        &self.state
    }

    /// Folds one accepted event.
    pub fn apply(&mut self, accepted: &Accepted) {
        self.state.apply(accepted);
        self.balances.apply(accepted, &self.state);
        self.publicity.apply(accepted, &self.state);
        self.supermarket.apply(accepted, &self.state);
        self.audit.apply(accepted, &self.state);
    }

    /// Folds verified records (decoding each body once).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<Projections, Rejection> {
        let mut p = Projections::new();
        for r in records {
            p.apply(&Accepted::from_verified_record(r.clone())?);
        }
        Ok(p)
    }
}
