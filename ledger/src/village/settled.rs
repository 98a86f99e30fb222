//! What a settled period leaves in memory.
//!
//! Once a month is settled (`PeriodSettled`), nothing can change its entries any more: a score
//! dated in it, a correction of one of its entries and a 公示 of it are refused
//! (`PeriodSettled`), and settlement required every live entry to be final, so no objection
//! can be pending on one. What the write-model still needs of them is only what it takes to
//! refuse a later event with the same rejection as before. At each settlement the state
//! therefore *forgets* what the settled periods no longer need, and keeps a fixed-size trace
//! of each thing it forgets, under the [`digest16`](super::digest16) of its id:
//!
//! | forgotten | kept | for |
//! |---|---|---|
//! | an entry of a settled period | its period and whether it is void | `Duplicate`, `EntryVoid`, `PeriodSettled`, `EntryOutsidePeriod` |
//! | a claim scored or declined | whether it was scored | `Duplicate`, `ClaimAlreadyScored`, `ClaimAlreadyDeclined` |
//! | a decided objection | nothing but its id | `Duplicate`, `AlreadyDecided` |
//! | a closed 公示 of a settled period | its period | `Duplicate`, `PublicationClosed`, a settlement naming it |
//! | the caps used in a settled period | nothing | (scores and corrections in it are refused first) |
//!
//! A served village then costs what its households and open periods cost, plus a few dozen
//! bytes for each settled thing, instead of its whole history of strings. The decisions are
//! unchanged; the given/when/then tests and every replay show it. Accessors such as
//! [`VillageState::entry`] answer for what is still open only.

use super::{digest16, Rejection, VillageState};
use crate::ids::Id;
use crate::time::Period;

/// What a settled period keeps of one of its entries.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SettledEntry {
    pub period: Period,
    pub void: bool,
}

impl VillageState {
    /// The trace of a forgotten entry (one of a settled period).
    pub(crate) fn settled_entry(&self, id: &str) -> Option<SettledEntry> {
        self.settled_entries.get(&digest16(id.as_bytes())).copied()
    }

    /// Whether an entry with this id was ever recorded (open or forgotten).
    pub(crate) fn entry_exists(&self, id: &str) -> bool {
        self.entries.contains_key(id) || self.settled_entry(id).is_some()
    }

    /// Whether a claim with this id was ever recorded.
    pub(crate) fn claim_exists(&self, id: &str) -> bool {
        self.claims.contains_key(id) || self.answered_claims.contains_key(&digest16(id.as_bytes()))
    }

    /// The rejection of a forgotten answered claim: it was scored, or declined.
    pub(crate) fn answered_claim(&self, id: &str) -> Option<Rejection> {
        self.answered_claims.get(&digest16(id.as_bytes())).map(|&scored| {
            if scored {
                Rejection::ClaimAlreadyScored(id.to_owned())
            } else {
                Rejection::ClaimAlreadyDeclined(id.to_owned())
            }
        })
    }

    /// Whether an objection with this id was ever filed.
    pub(crate) fn objection_exists(&self, id: &str) -> bool {
        self.objections.contains_key(id) || self.decided_objections.contains_key(&digest16(id.as_bytes()))
    }

    /// Whether this objection was decided and forgotten.
    pub(crate) fn objection_forgotten(&self, id: &str) -> bool {
        self.decided_objections.contains_key(&digest16(id.as_bytes()))
    }

    /// The period of a forgotten (closed, settled) publication.
    pub(crate) fn closed_publication(&self, id: &str) -> Option<Period> {
        self.closed_publications.get(&digest16(id.as_bytes())).copied()
    }

    /// Whether a publication with this id was ever opened.
    pub(crate) fn publication_exists(&self, id: &str) -> bool {
        self.publications.contains_key(id) || self.closed_publication(id).is_some()
    }

    /// Forgets what the settlement of `period` leaves no use for (module docs). Costs what the
    /// open periods hold, once a month; under a batch's journal it can be undone like any
    /// other change.
    pub(super) fn forget_settled(&mut self, period: Period) {
        let settled: Vec<String> = self.entries.iter().filter(|(_, e)| e.period == period).map(|(id, _)| id.clone()).collect();
        for id in settled {
            if let Some(e) = self.entries.remove(&id) {
                self.settled_entries.insert(digest16(id.as_bytes()), SettledEntry { period: e.period, void: e.void });
            }
        }
        let answered: Vec<String> = self.claims.iter().filter(|(_, c)| c.scored || c.declined).map(|(id, _)| id.clone()).collect();
        for id in answered {
            if let Some(c) = self.claims.remove(&id) {
                self.answered_claims.insert(digest16(id.as_bytes()), c.scored);
            }
        }
        let decided: Vec<String> = self.objections.iter().filter(|(_, o)| o.outcome.is_some()).map(|(id, _)| id.clone()).collect();
        for id in decided {
            self.objections.remove(&id);
            self.decided_objections.insert(digest16(id.as_bytes()), ());
        }
        let closed: Vec<String> =
            self.publications.iter().filter(|(_, p)| p.closed && self.settled.contains_key(&p.period)).map(|(id, _)| id.clone()).collect();
        for id in closed {
            if let Some(p) = self.publications.remove(&id) {
                self.closed_publications.insert(digest16(id.as_bytes()), p.period);
            }
        }
        let caps: Vec<(Id, Id, Period)> = self.caps.keys().filter(|(_, _, p)| *p == period).cloned().collect();
        for key in caps {
            self.caps.remove(&key);
        }
    }
}
