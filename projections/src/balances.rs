//! Balances per household. The totals are the write-model's [`BalanceBook`] (the one
//! implementation of every figure, read through [`crate::Projections::state`]); this view adds
//! what each household earned, lost and spent in each period.

use jifen_ledger::balance::Category;
use jifen_ledger::journal::{JMap, JOrd};
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::{Accepted, VillageState};

/// A household's figures for one period: final scores by the month of the act, spending by
/// the month of the redemption, returns by the month of the reversal. Every figure but the
/// corrections booked into a score's month is a sum of positive amounts; a month's figures
/// never change because of a later month's redemptions or reversals.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodFigures {
    pub basic: i64,
    pub contribution: i64,
    pub deducted: i64,
    /// Points spent by redemptions recorded in the period.
    pub redeemed: i64,
    /// Points given back by reversals recorded in the period (of redemptions of any period),
    /// on the household that spent them, as the balance book books them.
    pub returned: i64,
}

impl PeriodFigures {
    /// Net points of the period's scores.
    pub fn net(&self) -> i64 {
        self.basic + self.contribution - self.deducted
    }
}

/// The per-period balances view. Like the write-model state, it can fold a request's events
/// under an undo journal ([`Balances::begin`]): the server folds them before it stores them,
/// to write the changed rows in the same transaction, and rolls them back if the store fails.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct Balances {
    periods: JOrd<(Period, String), PeriodFigures>,
    /// Points booked per final entry (with its month), so a later correction books only the
    /// difference; forgotten when the month is settled, as nothing changes its entries then.
    booked: JMap<String, (Period, i64)>,
}

impl Balances {
    /// Opens the journal: the changes from now on can be rolled back.
    pub fn begin(&mut self) {
        self.periods.begin();
        self.booked.begin();
    }
    /// Closes the journal, keeping the changes.
    pub fn commit(&mut self) {
        self.periods.commit();
        self.booked.commit();
    }
    /// Undoes every change since [`Balances::begin`].
    pub fn rollback(&mut self) {
        self.periods.rollback();
        self.booked.rollback();
    }
    /// The (period, household) figures changed since [`Balances::begin`], each once, in
    /// order, with their figures now.
    pub fn touched(&self) -> Vec<(Period, &str, PeriodFigures)> {
        let mut keys: Vec<&(Period, String)> = self.periods.touched().collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().map(|k| (k.0, k.1.as_str(), self.periods.get(k).copied().unwrap_or_default())).collect()
    }
    /// Every household's figures of every period, in (period, household) order.
    pub fn all(&self) -> impl Iterator<Item = (Period, &str, &PeriodFigures)> {
        self.periods.iter().map(|((p, h), f)| (*p, h.as_str(), f))
    }

    /// A household's figures for a period.
    pub fn period(&self, period: Period, household: &str) -> PeriodFigures {
        self.periods.get(&(period, household.to_owned())).copied().unwrap_or_default()
    }

    /// Every household's figures for a period, in household order.
    pub fn periods(&self, period: Period) -> impl Iterator<Item = (&str, &PeriodFigures)> + Clone {
        self.periods.range((period, String::new())..).take_while(move |((p, _), _)| *p == period).map(|((_, h), f)| (h.as_str(), f))
    }

    /// The periods with any figure.
    pub fn known_periods(&self) -> Vec<Period> {
        // One seek per period, not a walk over every household's figures.
        let mut out = Vec::new();
        let mut next = self.periods.keys().next().map(|(p, _)| *p);
        while let Some(p) = next {
            out.push(p);
            next = self.periods.range((p.next(), String::new())..).next().map(|((q, _), _)| *q);
        }
        out
    }

    /// Books a final entry's current points (from the write-model state).
    fn book_entry(&mut self, state: &VillageState, entry_id: &str) {
        let Some(e) = state.entry(entry_id) else { return };
        if !e.is_final {
            return;
        }
        let now = if e.void { 0 } else { e.points };
        let before = self.booked.insert(entry_id.to_owned(), (e.period, now)).map_or(0, |(_, points)| points);
        let delta = now.saturating_sub(before);
        // Booked where the write-model books it: the household now holding the points.
        let holder = state.resolve_household(&e.household).to_owned();
        let f = self.periods.entry_or_default((e.period, holder));
        match e.category {
            Category::Basic => f.basic = f.basic.saturating_add(delta),
            Category::Contribution => f.contribution = f.contribution.saturating_add(delta),
            Category::Deduction => f.deducted = f.deducted.saturating_sub(delta),
        }
    }

    /// Folds an event; `state` is the write-model state after it.
    pub fn apply(&mut self, a: &Accepted, state: &VillageState) {
        match a.payload() {
            Payload::PublicationClosed(p) => {
                for id in state.publication(&p.publication_id).map(|x| x.entries.as_slice()).unwrap_or_default() {
                    self.book_entry(state, id);
                }
            }
            Payload::ScoreCorrected(c) => self.book_entry(state, &c.entry_id),
            Payload::ObjectionDecided(d) => {
                if let Some(o) = state.objection(&d.objection_id) {
                    self.book_entry(state, &o.entry.clone());
                }
            }
            Payload::PeriodSettled(p) => {
                let Ok(period) = Period::parse("period", &p.period) else { return };
                let settled: Vec<String> = self.booked.iter().filter(|(_, (p, _))| *p == period).map(|(id, _)| id.clone()).collect();
                for id in settled {
                    self.booked.remove(&id);
                }
            }
            Payload::RedemptionRecorded(r) => {
                let period = Date::of_micros(a.record().recorded_at()).period();
                let f = self.periods.entry_or_default((period, r.household_id.clone()));
                f.redeemed = f.redeemed.saturating_add(r.total_points);
            }
            Payload::RedemptionReversed(r) => {
                if let Some(red) = state.redemption(&r.redemption_id) {
                    let period = Date::of_micros(a.record().recorded_at()).period();
                    let f = self.periods.entry_or_default((period, red.household.clone()));
                    f.returned = f.returned.saturating_add(red.total);
                }
            }
            _ => {}
        }
    }
}
