//! # jifen-projections
//!
//! Read models of a village ledger: pure folds of verified records, used by the server online
//! and by `jifen replay` offline. No I/O, no clock: the same records give the same views.
//!
//! [`Views`] holds every projection; each is fed the accepted event *and* the write-model state
//! after it
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
//! - [`replay`] — a whole ledger's projections, folded as a pipeline on three threads.

pub mod audit;
pub mod balances;
pub mod publicity;
pub mod replay;
pub mod supermarket;

use jifen_ledger::record::Record;
use jifen_ledger::village::{Accepted, Rejection, VillageState};

/// Every view of one village, folded from accepted events and the write-model state after
/// each: what the server keeps beside its own state.
/// [`Views::default`] keeps every act of the audit trail and every 公示 board (offline);
/// [`Views::serving`] keeps neither the acts nor the boards of settled months.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub struct Views {
    pub balances: balances::Balances,
    pub publicity: publicity::Publicity,
    pub supermarket: supermarket::Supermarket,
    pub audit: audit::AuditTrail,
}

impl Views {
    /// The views of a server: the audit trail keeps only a request's acts
    /// ([`audit::AuditTrail::serving`]); the server stores them.
    pub fn serving() -> Views {
        Views { audit: audit::AuditTrail::serving(), publicity: publicity::Publicity::serving(), ..Views::default() }
    }

    /// Folds one accepted event; `state` is the write-model state right after it. A server
    /// folds a request's events before it stores them, under the views' journals
    /// ([`Views::begin`]), to store the rows they changed in the same statement.
    pub fn apply(&mut self, accepted: &Accepted, state: &VillageState) {
        self.balances.apply(accepted, state);
        self.publicity.apply(accepted, state);
        self.supermarket.apply(accepted, state);
        self.audit.apply(accepted, state);
    }

    /// Opens the views' journals.
    pub fn begin(&mut self) {
        self.balances.begin();
        self.publicity.begin();
        self.supermarket.begin();
        self.audit.begin();
    }

    /// Closes the views' journals, keeping their changes.
    pub fn commit(&mut self) {
        self.balances.commit();
        self.publicity.commit();
        self.supermarket.commit();
        self.audit.commit();
    }

    /// Undoes the views' changes since [`Views::begin`].
    pub fn rollback(&mut self) {
        self.balances.rollback();
        self.publicity.rollback();
        self.supermarket.rollback();
        self.audit.rollback();
    }
}

/// The views together with their own write-model state: offline replay and tests.
#[derive(Default)]
pub struct Projections {
    state: VillageState,
    pub views: Views,
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
        self.views.apply(accepted, &self.state);
    }

    /// Folds verified records (decoding each body once), in a pipeline of three threads
    /// ([`replay::replay`]); [`Projections::from_records_serially`] gives the same.
    pub fn from_records<'a, I>(records: I) -> Result<Projections, Rejection>
    where
        I: IntoIterator<Item = &'a Record>,
        I::IntoIter: Send,
    {
        replay::replay(records.into_iter().cloned())
    }

    /// Folds verified records one by one on this thread: decode, state, views, next record.
    pub fn from_records_serially<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<Projections, Rejection> {
        let mut p = Projections::new();
        for r in records {
            p.apply(&Accepted::from_verified_record(r.clone())?);
        }
        Ok(p)
    }
}

impl std::ops::Deref for Projections {
    type Target = Views;
    fn deref(&self) -> &Views {
        &self.views
    }
}
