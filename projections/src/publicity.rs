//! The 公示 view: each publication's entries with their status, objections and decisions, and
//! the boards built from it: 红黑榜 (red and black lists) and the quarterly column (季度积分栏).

use crate::balances::{Balances, PeriodFigures};
use jifen_ledger::balance::Category;
use jifen_ledger::ids::Id;
use jifen_ledger::journal::JOrd;
use jifen_ledger::pb::{correction, event_body::Payload, ObjectionOutcome};
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::{Accepted, VillageState};
use std::collections::BTreeMap;

/// Where an entry stands in its publication.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    /// Published, no objection.
    Published,
    /// An objection is pending.
    Objected,
    /// An objection was upheld; the entry was corrected.
    Upheld,
    /// An objection was dismissed.
    Dismissed,
    /// The publication closed: the entry is final.
    Final,
    /// The entry was voided.
    Void,
}

impl EntryStatus {
    /// The label on the notice board.
    pub fn label(self) -> &'static str {
        match self {
            EntryStatus::Published => "公示中",
            EntryStatus::Objected => "有异议",
            EntryStatus::Upheld => "异议成立",
            EntryStatus::Dismissed => "异议不成立",
            EntryStatus::Final => "已生效",
            EntryStatus::Void => "已作废",
        }
    }
}

/// One line of a 公示 board.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BoardEntry {
    pub entry_id: String,
    /// Shared with the write-model's entry (an [`Id`]).
    pub household: Id,
    pub item_code: Id,
    pub item_name: String,
    pub category: Category,
    pub occurred_on: Date,
    /// The points as scored.
    pub scored_points: i64,
    /// The points now (after corrections).
    pub points: i64,
    pub status: EntryStatus,
}

/// An objection and what became of it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ObjectionView {
    pub id: String,
    pub entry_id: String,
    pub objector: String,
    pub reason: String,
    pub filed_at: i64,
    pub outcome: Option<ObjectionOutcome>,
    pub finding: String,
    pub decided_at: Option<i64>,
    /// "→ 2" or "作废" when upheld.
    pub correction: Option<String>,
}

/// A publication as shown on the notice board.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Board {
    pub id: String,
    pub period: Period,
    pub window_start: i64,
    pub window_end: i64,
    pub closed: bool,
    pub entries: Vec<BoardEntry>,
    pub objections: Vec<ObjectionView>,
}

/// All publications of a village. Like the balances view, it folds a request's events under
/// an undo journal ([`Publicity::begin`]) when the server stores the boards they change with
/// them.
///
/// Offline ([`Publicity::default`]) it keeps every board. A server ([`Publicity::serving`])
/// *retires* the closed boards of a month when the month is settled: nothing can change them
/// any more (the write-model refuses whatever would), so they leave memory, and the server
/// keeps only what checking their stored rows needs ([`Publicity::take_retired`]).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct Publicity {
    boards: JOrd<String, Board>,
    /// For each entry: its publication and position on the board.
    index: JOrd<String, (String, usize)>,
    /// Whether a settlement retires its month's closed boards (a server's view).
    retiring: bool,
    /// The boards retired since [`Publicity::take_retired`] (a snapshot is taken once the
    /// server took them).
    #[serde(skip)]
    retired: Vec<Board>,
    /// `retired.len()` at [`Publicity::begin`], while a journal is open.
    #[serde(skip)]
    mark: Option<usize>,
}

impl Publicity {
    /// A view that retires the closed boards of each month settled (a server's).
    pub fn serving() -> Publicity {
        Publicity { retiring: true, ..Publicity::default() }
    }
    /// Opens the journal: the changes from now on can be rolled back.
    pub fn begin(&mut self) {
        self.boards.begin();
        self.index.begin();
        self.mark = Some(self.retired.len());
    }
    /// Closes the journal, keeping the changes.
    pub fn commit(&mut self) {
        self.boards.commit();
        self.index.commit();
        self.mark = None;
    }
    /// Undoes every change since [`Publicity::begin`].
    pub fn rollback(&mut self) {
        self.boards.rollback();
        self.index.rollback();
        if let Some(mark) = self.mark.take() {
            self.retired.truncate(mark);
        }
    }
    /// A board as it was when the journal was opened (`None` inside: it did not exist), if it
    /// changed since.
    pub fn before(&self, id: &str) -> Option<Option<&Board>> {
        self.boards.before(&id.to_owned())
    }

    /// The boards changed since [`Publicity::begin`], each once, in publication id order:
    /// those retired meanwhile too, as they were when retired.
    pub fn touched(&self) -> Vec<&Board> {
        let mut ids: Vec<&String> = self.boards.touched().collect();
        ids.sort_unstable();
        ids.dedup();
        let retired = &self.retired[self.mark.unwrap_or(self.retired.len()).min(self.retired.len())..];
        ids.into_iter().filter_map(|id| self.boards.get(id).or_else(|| retired.iter().find(|b| &b.id == id))).collect()
    }

    /// The boards retired since the last call (a server stores them with the request that
    /// retired them, then keeps their digests; a load checks them).
    pub fn take_retired(&mut self) -> Vec<Board> {
        self.mark = self.mark.map(|_| 0);
        std::mem::take(&mut self.retired)
    }

    /// A publication's board (not retired).
    pub fn board(&self, id: &str) -> Option<&Board> {
        self.boards.get(id)
    }

    /// All boards (not retired), in publication id order.
    pub fn boards(&self) -> impl Iterator<Item = &Board> {
        self.boards.values()
    }

    /// The boards of a period.
    pub fn boards_of(&self, period: Period) -> impl Iterator<Item = &Board> {
        self.boards.values().filter(move |b| b.period == period)
    }

    fn line(&mut self, entry: &str) -> Option<&mut BoardEntry> {
        let (board, i) = self.index.get(entry)?;
        self.boards.get_mut(board).and_then(|b| b.entries.get_mut(*i))
    }

    /// Folds an event; `state` is the write-model state after it.
    pub fn apply(&mut self, a: &Accepted, state: &VillageState) {
        let at = a.record().recorded_at();
        match a.payload() {
            Payload::PublicationOpened(p) => {
                let Ok(period) = Period::parse("period", &p.period) else { return };
                let mut entries = Vec::with_capacity(p.entry_ids.len());
                for id in &p.entry_ids {
                    let Some(e) = state.entry(id) else { continue };
                    let item_name = state
                        .rulebooks()
                        .iter()
                        .find(|r| r.version == e.rulebook_version)
                        .and_then(|r| r.items.get(&*e.item_code))
                        .map_or_else(String::new, |i| i.name.clone());
                    self.index.insert(id.clone(), (p.publication_id.clone(), entries.len()));
                    entries.push(BoardEntry {
                        entry_id: id.clone(),
                        household: e.household.clone(),
                        item_code: e.item_code.clone(),
                        item_name,
                        category: e.category,
                        occurred_on: e.occurred_on,
                        scored_points: e.points,
                        points: e.points,
                        status: EntryStatus::Published,
                    });
                }
                self.boards.insert(
                    p.publication_id.clone(),
                    Board {
                        id: p.publication_id.clone(),
                        period,
                        window_start: p.window_start,
                        window_end: p.window_end,
                        closed: false,
                        entries,
                        objections: Vec::new(),
                    },
                );
            }
            Payload::ObjectionFiled(o) => {
                if let Some(line) = self.line(&o.entry_id) {
                    line.status = EntryStatus::Objected;
                }
                if let Some(b) = self.boards.get_mut(&o.publication_id) {
                    b.objections.push(ObjectionView {
                        id: o.objection_id.clone(),
                        entry_id: o.entry_id.clone(),
                        objector: o.objector.clone(),
                        reason: o.reason.clone(),
                        filed_at: at,
                        outcome: None,
                        finding: String::new(),
                        decided_at: None,
                        correction: None,
                    });
                }
            }
            Payload::ObjectionDecided(d) => {
                let Some(o) = state.objection(&d.objection_id) else { return };
                let (board, entry) = (o.publication.clone(), o.entry.clone());
                let outcome = ObjectionOutcome::try_from(d.outcome).ok();
                let correction = d.correction.as_ref().and_then(|c| c.change).map(|c| match c {
                    correction::Change::NewPoints(n) => format!("改为 {n}"),
                    correction::Change::Void(_) => "作废".to_owned(),
                });
                let Some(e) = state.entry(&entry) else { return };
                let (points, void) = (e.points, e.void);
                if let Some(line) = self.line(&entry) {
                    line.points = points;
                    line.status = match (void, outcome) {
                        (true, _) => EntryStatus::Void,
                        (_, Some(ObjectionOutcome::Upheld)) => EntryStatus::Upheld,
                        _ => EntryStatus::Dismissed,
                    };
                }
                if let Some(view) = self.boards.get_mut(&board).and_then(|b| b.objections.iter_mut().find(|v| v.id == d.objection_id)) {
                    view.outcome = outcome;
                    view.finding = d.finding.clone();
                    view.decided_at = Some(at);
                    view.correction = correction;
                }
            }
            Payload::ScoreCorrected(c) => {
                let Some(e) = state.entry(&c.entry_id) else { return };
                let (points, void) = (e.points, e.void);
                if let Some(line) = self.line(&c.entry_id) {
                    line.points = points;
                    if void {
                        line.status = EntryStatus::Void;
                    }
                }
            }
            Payload::PublicationClosed(p) => {
                if let Some(b) = self.boards.get_mut(&p.publication_id) {
                    b.closed = true;
                    for line in &mut b.entries {
                        if line.status != EntryStatus::Void {
                            line.status = EntryStatus::Final;
                        }
                    }
                }
            }
            Payload::PeriodSettled(p) if self.retiring => {
                let Ok(period) = Period::parse("period", &p.period) else { return };
                let closed: Vec<String> = self.boards.values().filter(|b| b.period == period && b.closed).map(|b| b.id.clone()).collect();
                for id in closed {
                    let Some(board) = self.boards.remove(&id) else { continue };
                    for line in &board.entries {
                        self.index.remove(&line.entry_id);
                    }
                    self.retired.push(board);
                }
            }
            _ => {}
        }
    }
}

/// Households with a figure, best first.
pub type Ranking = Vec<(String, i64)>;

/// 红黑榜 of a period: the `n` households with the highest net points (red list), and the
/// households with deductions, most deducted first (black list). Ties go by household id.
pub fn red_black_lists(balances: &Balances, period: Period, n: usize) -> (Ranking, Ranking) {
    rank_month(balances.periods(period), n)
}

/// [`red_black_lists`] of a month's figures by household (the view's, or a read model's rows).
pub fn rank_month<'a>(figures: impl Iterator<Item = (&'a str, &'a PeriodFigures)> + Clone, n: usize) -> (Ranking, Ranking) {
    let mut red: Vec<(String, i64)> = figures.clone().map(|(h, f)| (h.to_owned(), f.net())).filter(|(_, net)| *net > 0).collect();
    red.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    red.truncate(n);
    let mut black: Vec<(String, i64)> = figures.filter(|(_, f)| f.deducted > 0).map(|(h, f)| (h.to_owned(), f.deducted)).collect();
    black.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    black.truncate(n);
    (red, black)
}

/// The months of a quarter (1–4) of a year.
pub fn quarter_months(year: i32, quarter: u32) -> Vec<Period> {
    ((quarter.max(1) - 1) * 3 + 1..=quarter.min(4) * 3).filter_map(|m| Period::from_ym(year, m)).collect()
}

/// The quarterly column (季度积分栏): each household's net points in the quarter, highest first.
pub fn quarterly_column(balances: &Balances, year: i32, quarter: u32) -> Ranking {
    column_of(quarter_months(year, quarter).into_iter().flat_map(|p| balances.periods(p)))
}

/// [`quarterly_column`] of the quarter's figures by household, every month's (the view's, or a
/// read model's rows).
pub fn column_of<'a>(figures: impl Iterator<Item = (&'a str, &'a PeriodFigures)>) -> Ranking {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (h, f) in figures {
        *totals.entry(h.to_owned()).or_default() += f.net();
    }
    let mut column: Ranking = totals.into_iter().collect();
    column.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    column
}
