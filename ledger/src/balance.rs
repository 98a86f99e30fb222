//! Balance accounting: the one implementation of every household's points figures.
//!
//! The write-model uses it to refuse overdrafts and to check a settlement's balance digest;
//! the balances projection reads the same [`BalanceBook`]. Figures are integer points.
//!
//! ```text
//! available = basic + contribution − deducted − redeemed + carried_in − carried_out − expired
//! ever_earned = basic + contribution + earned_carried_in − earned_carried_out
//!               (never reduced by redemption or expiry; moved by splits and merges)
//! ```
//!
//! Under annual expiry, entering a new year resets every available balance to zero (see
//! [`BalanceBook::enter_year`]).
//!
//! The balance digest (docs/FORMAT.md, "Balance digest") is
//! `SHA-256("jifen/balances/v1" || 0x00 || u32 n || n × household row)` over households in
//! ascending byte order of their id, each row
//! `u16 len(id) || id || i64 basic || i64 contribution || i64 deducted || i64 redeemed ||
//! i64 carried_in || i64 carried_out || i64 expired`, all big-endian. The ever-earned carries
//! are not in it (the layout is fixed by docs/FORMAT.md); they follow from the split and merge
//! records, which the chain commits to.

use crate::hash::{Hash, BALANCES_TAG};
use crate::journal::JOrd;

/// Whether a final score is basic, contribution or a deduction.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    Basic,
    Contribution,
    Deduction,
}

/// One household's points.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Final 基础积分 earned.
    pub basic: i64,
    /// Final 贡献积分 earned.
    pub contribution: i64,
    /// Final deductions (扣分), as a positive number.
    pub deducted: i64,
    /// Points spent at the supermarket, net of reversals (never negative: a reversal is booked
    /// on the household that spent the points).
    pub redeemed: i64,
    /// Points carried in from a split or merge.
    pub carried_in: i64,
    /// Points carried out to a split or merge.
    pub carried_out: i64,
    /// Points ever earned carried in from a split or merge (not in the balance digest).
    pub earned_carried_in: i64,
    /// Points ever earned carried out to a split or merge (not in the balance digest).
    pub earned_carried_out: i64,
    /// Points written off by annual resets under an annual expiry policy: unspent points that
    /// lapsed, less deficits cleared (negative when a reset cleared more deficit than it took).
    pub expired: i64,
}

impl Balance {
    /// The balance after an annual reset: whatever is available (a deficit too) is written
    /// off into `expired`, so the new year starts at zero.
    pub fn after_reset(self) -> Balance {
        Balance { expired: self.expired.saturating_add(self.available()), ..self }
    }

    /// Points available to spend.
    pub fn available(&self) -> i64 {
        // Saturating: figures come from records, and no sequence of records may panic.
        self.basic
            .saturating_add(self.contribution)
            .saturating_sub(self.deducted)
            .saturating_sub(self.redeemed)
            .saturating_add(self.carried_in)
            .saturating_sub(self.carried_out)
            .saturating_sub(self.expired)
    }

    /// Points ever earned (for honours and rankings): never reduced by spending or expiry; a
    /// split carries the points it moves, a merge the whole figure, to the household receiving
    /// them.
    pub fn ever_earned(&self) -> i64 {
        self.basic.saturating_add(self.contribution).saturating_add(self.earned_carried_in).saturating_sub(self.earned_carried_out)
    }
}

/// Whether balances of `book_year` expire on entering `year` under a rulebook whose expiry
/// is annual or not: the one rule, for the book in memory and for a stored read model.
pub fn expires(book_year: Option<i32>, year: i32, annual_expiry: bool) -> bool {
    annual_expiry && matches!(book_year, Some(y) if y < year)
}

/// The balance digest (module docs) of balances given in household id order (byte order):
/// the book's, or a stored read model's.
pub fn digest<'a>(balances: impl ExactSizeIterator<Item = (&'a str, &'a Balance)>) -> Hash {
    let mut data = Vec::with_capacity(4 + balances.len() * 72);
    data.extend_from_slice(&(balances.len() as u32).to_be_bytes());
    for (id, b) in balances {
        data.extend_from_slice(&(id.len() as u16).to_be_bytes());
        data.extend_from_slice(id.as_bytes());
        for v in [b.basic, b.contribution, b.deducted, b.redeemed, b.carried_in, b.carried_out, b.expired] {
            data.extend_from_slice(&v.to_be_bytes());
        }
    }
    Hash::tagged(BALANCES_TAG, &data)
}

/// Every household's balance, keyed by household id.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct BalanceBook {
    households: JOrd<String, Balance>,
    /// The calendar year the available figures belong to (for annual expiry).
    year: Option<i32>,
    /// The year as it was when a batch began (`VillageState::begin_batch`).
    #[serde(skip)]
    batch_year: Option<Option<i32>>,
}

impl BalanceBook {
    pub(crate) fn begin(&mut self) {
        self.batch_year = Some(self.year);
        self.households.begin();
    }
    pub(crate) fn commit(&mut self) {
        self.batch_year = None;
        self.households.commit();
    }
    pub(crate) fn rollback(&mut self) {
        if let Some(year) = self.batch_year.take() {
            self.year = year;
        }
        self.households.rollback();
    }

    /// An empty book.
    pub fn new() -> BalanceBook {
        BalanceBook::default()
    }

    /// Opens a zero balance for a new household.
    pub fn open(&mut self, household: &str) {
        self.households.entry_or_default(household.to_owned());
    }

    /// A household's balance, if it has one.
    pub fn get(&self, household: &str) -> Option<&Balance> {
        self.households.get(household)
    }

    /// All balances in household id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Balance)> {
        self.households.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of households in the book.
    pub fn len(&self) -> usize {
        self.households.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.households.is_empty()
    }

    /// Available points of a household (0 if unknown).
    pub fn available(&self, household: &str) -> i64 {
        self.get(household).map_or(0, Balance::available)
    }

    fn entry(&mut self, household: &str) -> &mut Balance {
        if self.households.contains_key(household) {
            return self.households.get_mut(household).expect("present");
        }
        self.households.entry_or_default(household.to_owned())
    }

    /// Books a change of a final score's points (a score becoming final, or a correction of a
    /// final score). `delta` is signed: deductions are negative points.
    pub fn post_score(&mut self, household: &str, category: Category, delta: i64) {
        let b = self.entry(household);
        match category {
            Category::Basic => b.basic = b.basic.saturating_add(delta),
            Category::Contribution => b.contribution = b.contribution.saturating_add(delta),
            Category::Deduction => b.deducted = b.deducted.saturating_sub(delta),
        }
    }

    /// Books a redemption.
    pub fn post_redemption(&mut self, household: &str, points: i64) {
        let b = self.entry(household);
        b.redeemed = b.redeemed.saturating_add(points);
    }

    /// Books the reversal of a redemption of `points` that `redeemer` made in `spent_in_year`.
    /// The spending is undone where it was booked (so `redeemed` never goes below zero), and
    /// the points returned follow the household's merges to `holder`, the household now
    /// holding its points (a carry, as the merge itself was). Under annual expiry, points spent
    /// in a year before the book's year would have lapsed at its end had they not been spent:
    /// they lapse on return instead of becoming spendable in the new year.
    pub fn reverse_redemption(&mut self, redeemer: &str, holder: &str, points: i64, spent_in_year: i32, annual_expiry: bool) {
        let lapsed = annual_expiry && self.year.is_some_and(|y| y > spent_in_year);
        let b = self.entry(redeemer);
        b.redeemed = b.redeemed.saturating_sub(points);
        if lapsed {
            b.expired = b.expired.saturating_add(points);
        } else if redeemer != holder {
            self.carry(redeemer, holder, points);
        }
    }

    /// Carries available points from one household to another.
    fn carry(&mut self, from: &str, to: &str, points: i64) {
        let f = self.entry(from);
        f.carried_out = f.carried_out.saturating_add(points);
        let t = self.entry(to);
        t.carried_in = t.carried_in.saturating_add(points);
    }

    /// Carries points ever earned from one household to another.
    fn carry_earned(&mut self, from: &str, to: &str, points: i64) {
        let f = self.entry(from);
        f.earned_carried_out = f.earned_carried_out.saturating_add(points);
        let t = self.entry(to);
        t.earned_carried_in = t.earned_carried_in.saturating_add(points);
    }

    /// A split (分户): `points` available points go to the new household, and count as earned
    /// by it (no more than the old household ever earned).
    pub fn split(&mut self, from: &str, to: &str, points: i64) {
        self.carry(from, to, points);
        let earned = points.min(self.get(from).map_or(0, Balance::ever_earned).max(0));
        self.carry_earned(from, to, earned);
    }

    /// A merge (合户): the household merged carries its whole available balance and everything
    /// it ever earned to the household absorbing it.
    pub fn merge(&mut self, from: &str, to: &str) {
        let (available, earned) = self.get(from).map_or((0, 0), |b| (b.available(), b.ever_earned()));
        self.carry(from, to, available);
        self.carry_earned(from, to, earned);
    }

    /// Whether entering `year` would expire balances.
    pub fn expires_on_entering(&self, year: i32, annual_expiry: bool) -> bool {
        expires(self.year, year, annual_expiry)
    }

    /// The calendar year the available figures belong to (none before the first record).
    pub fn year(&self) -> Option<i32> {
        self.year
    }

    /// The households whose balance changed since the batch began
    /// (`VillageState::begin_batch`), each once, in id order.
    pub fn touched(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.households.touched().map(String::as_str).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Enters `year`: under annual expiry, every available balance of an earlier year is
    /// reset to zero ("available points reset at the start of each calendar year"): unspent
    /// points lapse (`expired` grows) and a deficit left by deductions is cleared (`expired`
    /// shrinks by it), so a new year starts every household at zero and `expired` is the net
    /// write-off. Deductions stay booked as history. Years never go backwards.
    pub fn enter_year(&mut self, year: i32, annual_expiry: bool) {
        match self.year {
            Some(y) if y >= year => {}
            Some(_) if annual_expiry => {
                self.households.update_all(|_, b| *b = b.after_reset());
                self.year = Some(year);
            }
            _ => self.year = Some(year),
        }
    }

    /// The balance digest (module docs).
    pub fn digest(&self) -> Hash {
        digest(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_and_ever_earned_follow_the_postings() {
        let mut book = BalanceBook::new();
        book.open("H0001");
        book.post_score("H0001", Category::Basic, 10);
        book.post_score("H0001", Category::Contribution, 5);
        book.post_score("H0001", Category::Deduction, -3);
        book.post_redemption("H0001", 4);
        let b = book.get("H0001").unwrap();
        assert_eq!((b.available(), b.ever_earned(), b.deducted), (8, 15, 3));
        book.merge("H0001", "H0002");
        assert_eq!((book.available("H0001"), book.available("H0002")), (0, 8));
        assert_eq!((book.get("H0001").unwrap().ever_earned(), book.get("H0002").unwrap().ever_earned()), (0, 15));
    }

    #[test]
    fn annual_expiry_resets_every_balance_to_zero_once_per_year() {
        let mut book = BalanceBook::new();
        book.enter_year(2025, true);
        book.post_score("A", Category::Basic, 10);
        book.post_score("B", Category::Deduction, -2);
        book.enter_year(2025, true);
        assert_eq!(book.available("A"), 10);
        book.enter_year(2026, true);
        assert_eq!((book.available("A"), book.available("B")), (0, 0));
        assert_eq!((book.get("A").unwrap().expired, book.get("B").unwrap().expired, book.get("B").unwrap().deducted), (10, -2, 2));
        assert_eq!(book.get("A").unwrap().ever_earned(), 10);
        let mut never = BalanceBook::new();
        never.enter_year(2025, false);
        never.post_score("A", Category::Basic, 10);
        never.enter_year(2026, false);
        assert_eq!(never.available("A"), 10);
    }

    #[test]
    fn digest_depends_on_every_figure_and_household() {
        let mut a = BalanceBook::new();
        a.post_score("H1", Category::Basic, 1);
        let d = a.digest();
        let mut b = a.clone();
        b.post_redemption("H1", 1);
        assert_ne!(d, b.digest());
        let mut c = a.clone();
        c.open("H2");
        assert_ne!(d, c.digest());
        assert_eq!(d, a.clone().digest());
    }
}
