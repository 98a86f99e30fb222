//! Read models in PostgreSQL (docs/adr/0005-serving-from-postgresql.md): the balance of each
//! household, its figures per month, and what a query needs of the rulebooks, in the tables of
//! migration V2.
//!
//! - The writer stores the rows a request changed ([`Rows::changed`]) and the signed checkpoint
//!   of the new tip ([`Tip`]) in the transaction that appends the request's records, so a
//!   crash at any point loses nothing and counts nothing twice, and every answer names a tree
//!   with a signed checkpoint. The head row (`read_models`) moves from the old tree size to
//!   the new one only if it is at the old one, so a writer that lost a race to another process
//!   stores nothing.
//! - Queries read them ([`Store::read_balance`], [`Store::read_balances`]) in one snapshot,
//!   and name the tree they reflect.
//! - They are checked, not trusted: [`Rows::all`] gives every row a replay yields, and
//!   [`Rows::first_difference`] names the first stored row that differs (VerifyLedger and every
//!   load). [`Store::rebuild_read_model`] replaces them with a replay's rows (`jifen rebuild`).

use super::digest::{digest_sql, Field, Lines};
use super::{Store, StoreError};
use deadpool_postgres::Transaction;
use jifen_ledger::balance::Category;
use jifen_ledger::balance::{expires, Balance};
use jifen_ledger::hash::Hash;
use jifen_ledger::ids::VillageCode;
use jifen_ledger::pb::{ObjectionOutcome, StockSource};
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::VillageState;
use jifen_projections::audit::{Act, ActFlag, AuditMonth, Spread};
use jifen_projections::balances::PeriodFigures;
use jifen_projections::publicity::{Board, BoardEntry, EntryStatus, ObjectionView};
use jifen_projections::supermarket::{GoodsMonth, Month, Receipt};
use jifen_projections::Views;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;
use tokio_postgres::IsolationLevel;

type Param<'a> = dyn ToSql + Sync + 'a;

/// What the read model keeps of a rulebook: when it takes effect and whether points expire
/// annually under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulebookRow {
    /// The seq of the record that adopted it (0: the genesis).
    pub adopted_at: u64,
    pub effective_from: Date,
    pub annual_expiry: bool,
}

/// The read model's head: the tree it reflects, and what a query needs to judge balances now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub tree_size: u64,
    pub root: Hash,
    pub last_recorded_at: i64,
    pub book_year: Option<i32>,
}

/// Read-model rows of one ledger: all of them, or those a request changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows {
    /// Balances by household, in household order.
    pub balances: Vec<(String, Balance)>,
    /// Figures by (period, household), in that order.
    pub periods: Vec<(Period, String, PeriodFigures)>,
    /// In adoption order.
    pub rulebooks: Vec<RulebookRow>,
    /// 公示 boards, in publication id order.
    pub boards: Vec<Board>,
    /// The supermarket's months with activity, in order.
    pub supermarket: Vec<(Period, Month)>,
    /// What the monthly red flags need of each month, in order.
    pub audit_months: Vec<(Period, AuditMonth)>,
    /// Scores signed by one panel member alone, by (period, member), in that order.
    pub alone: Vec<(Period, String, u64)>,
}

/// Every read-model table but the heads (`read_models`), children before the tables their
/// rows refer to: the order to delete them in (and, reversed, to fill them).
pub const TABLES: [&str; 12] = [
    "rm_acts",
    "rm_audit_months",
    "rm_audit_alone",
    "rm_balances",
    "rm_period_figures",
    "rm_rulebooks",
    "rm_board_entries",
    "rm_objections",
    "rm_publications",
    "rm_supermarket_receipts",
    "rm_supermarket_goods",
    "rm_supermarket_months",
];

fn rulebook_rows(state: &VillageState, from: usize) -> Vec<RulebookRow> {
    state
        .rulebooks()
        .iter()
        .skip(from)
        .map(|r| RulebookRow { adopted_at: r.adopted_at, effective_from: r.effective_from, annual_expiry: r.annual_expiry() })
        .collect()
}

/// The 公示 boards a server's view retired ([`jifen_projections::publicity::Publicity::serving`]:
/// the closed boards of settled months, which nothing can change): what checking their stored
/// rows needs, each board's header and the digests of its entries and objections; and the
/// boards whole only while a read model is to be built from them.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RetiredBoards {
    headers: Vec<Board>,
    digests: BoardDigests,
    /// Never in a snapshot: taken once the read model is built.
    #[serde(skip)]
    whole: Option<Vec<Board>>,
}

impl RetiredBoards {
    /// Retired boards kept whole, to build a read model.
    pub fn keeping_whole() -> RetiredBoards {
        RetiredBoards { whole: Some(Vec::new()), ..RetiredBoards::default() }
    }

    /// Takes in boards just retired.
    pub fn add(&mut self, boards: Vec<Board>) {
        if boards.is_empty() {
            return;
        }
        let (entries, objections) = boards_digest(boards.iter());
        self.digests.0.extend(entries);
        self.digests.1.extend(objections);
        self.headers.extend(boards.iter().map(header));
        if let Some(whole) = &mut self.whole {
            whole.extend(boards);
        } else {
            drop(boards);
        }
        // Retired in settlement order, stored in publication id order.
        self.headers.sort_by(|a, b| a.id.cmp(&b.id));
        self.digests.0.sort_by(|a, b| a.0.cmp(&b.0));
        self.digests.1.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// Drops the whole boards (once a read model is built from them).
    pub fn forget_whole(&mut self) {
        self.whole = None;
    }

    /// How many boards were retired.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Whether a board is among them.
    pub fn contains(&self, id: &str) -> bool {
        self.headers.binary_search_by(|b| b.id.as_str().cmp(id)).is_ok()
    }
}

/// A board without its entries and objections: the rm_publications row.
fn header(b: &Board) -> Board {
    Board { entries: Vec::new(), objections: Vec::new(), id: b.id.clone(), ..*b }
}

/// Merges two lists sorted by `key` into one.
fn merge_sorted<T, K: Ord>(a: impl IntoIterator<Item = T>, b: impl IntoIterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut out: Vec<T> = a.into_iter().chain(b).collect();
    out.sort_by_key(key);
    out
}

/// The digests of every board of a village: the view's and the retired ones', in publication
/// id order (what [`Store::read_model_summary`] computes over the stored rows).
pub fn all_boards_digest(views: &Views, retired: &RetiredBoards) -> BoardDigests {
    let (entries, objections) = boards_digest(views.publicity.boards());
    (
        merge_sorted(entries, retired.digests.0.iter().cloned(), |(id, _)| id.clone()),
        merge_sorted(objections, retired.digests.1.iter().cloned(), |(id, _)| id.clone()),
    )
}

impl Rows {
    /// Every row of a village whose state and views are `state` and `views`, with the boards
    /// it retired (kept whole: [`RetiredBoards::keeping_whole`]; otherwise their headers only).
    pub fn all(state: &VillageState, views: &Views, retired: &RetiredBoards) -> Rows {
        let mut rows = Rows::summary(state, views, retired);
        let retired_boards = retired.whole.as_deref().unwrap_or(&retired.headers);
        rows.boards = merge_sorted(views.publicity.boards().cloned(), retired_boards.iter().cloned(), |b| b.id.clone());
        rows
    }

    /// [`Rows::all`] but for the boards' entries and objections (compared by digest:
    /// [`all_boards_digest`]).
    pub fn summary(state: &VillageState, views: &Views, retired: &RetiredBoards) -> Rows {
        Rows {
            balances: state.balances().iter().map(|(h, b)| (h.to_owned(), *b)).collect(),
            // Zero figures too: the fold leaves them where it touched a cell, and a request's
            // changed rows include them.
            periods: views.balances.all().map(|(p, h, f)| (p, h.to_owned(), *f)).collect(),
            rulebooks: rulebook_rows(state, 0),
            boards: merge_sorted(views.publicity.boards().map(header), retired.headers.iter().cloned(), |b| b.id.clone()),
            supermarket: views.supermarket.months().map(|(p, m)| (p, m.clone())).collect(),
            audit_months: views.audit.months(&views.balances),
            alone: views.audit.alone().map(|(p, a, n)| (p, a.to_owned(), n)).collect(),
        }
    }

    /// The rows a request changed: `state` and `views` hold its events under their journals
    /// (`VillageState::begin_batch`, `Views::begin`), and the state had `rulebooks_before`
    /// rulebooks before it. The boards and months it touched come with only their items that
    /// changed (and their header figures), at the positions [`Parts`] gives.
    pub fn changed(state: &VillageState, views: &Views, rulebooks_before: usize) -> (Rows, Parts) {
        let book = state.balances();
        let changed_at = |n: usize, same: &dyn Fn(usize) -> bool| (0..n).filter(|i| !same(*i)).collect::<Vec<usize>>();
        let mut parts = Parts::default();
        // Each touched board and month is copied with only the items that changed (the
        // journals keep their value at the batch's start), never whole.
        let boards = views
            .publicity
            .touched()
            .into_iter()
            .map(|b| {
                let old = views.publicity.before(&b.id).flatten();
                let entries = changed_at(b.entries.len(), &|i| old.is_some_and(|o| o.entries.get(i) == Some(&b.entries[i])));
                let objections = changed_at(b.objections.len(), &|i| old.is_some_and(|o| o.objections.get(i) == Some(&b.objections[i])));
                let board = Board {
                    id: b.id.clone(),
                    period: b.period,
                    window_start: b.window_start,
                    window_end: b.window_end,
                    closed: b.closed,
                    entries: entries.iter().map(|&i| b.entries[i].clone()).collect(),
                    objections: objections.iter().map(|&i| b.objections[i].clone()).collect(),
                };
                parts.boards.push((entries, objections));
                board
            })
            .collect();
        let supermarket = views
            .supermarket
            .touched()
            .into_iter()
            .map(|(p, m)| {
                let old = views.supermarket.before(p).flatten();
                let receipts = changed_at(m.receipts.len(), &|i| old.is_some_and(|o| o.receipts.get(i) == Some(&m.receipts[i])));
                let goods_changed = |code: &String, g: &GoodsMonth| {
                    !old.is_some_and(|o| o.goods.get(code) == Some(g) && o.goods_out.get(code) == m.goods_out.get(code))
                };
                let goods: BTreeMap<String, GoodsMonth> =
                    m.goods.iter().filter(|(c, g)| goods_changed(c, g)).map(|(c, g)| (c.clone(), g.clone())).collect();
                let month = Month {
                    receipts: receipts.iter().map(|&i| m.receipts[i].clone()).collect(),
                    exchanges: m.exchanges,
                    reversals: m.reversals,
                    points: m.points,
                    points_returned: m.points_returned,
                    goods_out: m.goods_out.iter().filter(|(c, _)| goods.contains_key(*c)).map(|(c, q)| (c.clone(), *q)).collect(),
                    goods,
                };
                parts.receipts.push(receipts);
                (p, month)
            })
            .collect();
        let rows = Rows {
            balances: book.touched().into_iter().filter_map(|h| Some((h.to_owned(), *book.get(h)?))).collect(),
            periods: views.balances.touched().into_iter().map(|(p, h, f)| (p, h.to_owned(), f)).collect(),
            rulebooks: rulebook_rows(state, rulebooks_before),
            boards,
            supermarket,
            audit_months: views.audit.months_touched(&views.balances),
            alone: views.audit.alone_touched().into_iter().map(|(p, a, n)| (p, a.to_owned(), n)).collect(),
        };
        (rows, parts)
    }

    /// Only these rows, to store without moving a head (a rebuild).
    fn only(rows: &Rows) -> Derived {
        Derived {
            tip: Tip { old_size: 0, size: 0, root: Hash::default(), note: String::new() },
            last_recorded_at: 0,
            book_year: None,
            rows: rows.clone(),
            parts: None,
            acts: Vec::new(),
        }
    }

    /// The first difference between these stored rows and `expected` (a replay's), by table
    /// and key, if any.
    pub fn first_difference(&self, expected: &Rows) -> Option<String> {
        first_diff("rm_balances", "household", &self.balances, &expected.balances, |(h, _)| h.clone())
            .or_else(|| {
                first_diff("rm_period_figures", "(period, household)", &self.periods, &expected.periods, |(p, h, _)| format!("({p}, {h})"))
            })
            .or_else(|| {
                first_diff("rm_rulebooks", "rulebook adopted at seq", &self.rulebooks, &expected.rulebooks, |r| r.adopted_at.to_string())
            })
            .or_else(|| board_difference(&self.boards, &expected.boards))
            .or_else(|| first_diff("rm_supermarket_months", "month", &self.supermarket, &expected.supermarket, |(p, _)| p.to_string()))
            .or_else(|| first_diff("rm_audit_months", "month", &self.audit_months, &expected.audit_months, |(p, _)| p.to_string()))
            .or_else(|| {
                first_diff("rm_audit_alone", "(month, panel member)", &self.alone, &expected.alone, |(p, a, _)| format!("({p}, {a})"))
            })
    }
}

/// The first row of `stored` and `expected` (both in key order) that differs, missing or extra.
fn first_diff<T: PartialEq + Debug>(
    table: &str,
    key_name: &str,
    stored: &[T],
    expected: &[T],
    key: impl Fn(&T) -> String,
) -> Option<String> {
    let mut s = stored.iter().peekable();
    let mut e = expected.iter().peekable();
    loop {
        match (s.peek(), e.peek()) {
            (None, None) => return None,
            (Some(a), None) => return Some(format!("read model {table}: {key_name} {} is stored but no record gives it", key(a))),
            (None, Some(b)) => return Some(format!("read model {table}: {key_name} {} is missing (the records give {b:?})", key(b))),
            (Some(a), Some(b)) => {
                let (ka, kb) = (key(a), key(b));
                if ka != kb {
                    // Keys are in the same order on both sides: the smaller one is the one
                    // that has no partner. Compared as the rows order them, not as strings.
                    let a_first = stored.iter().position(|x| key(x) == kb).is_some();
                    return Some(if a_first {
                        format!("read model {table}: {key_name} {ka} is stored but no record gives it")
                    } else {
                        format!("read model {table}: {key_name} {kb} is missing (the records give {b:?})")
                    });
                }
                if a != b {
                    return Some(format!("read model {table}: {key_name} {ka} is stored as {a:?}, but the records give {b:?}"));
                }
                s.next();
                e.next();
            }
        }
    }
}

/// The first difference between stored and replayed 公示 boards: a publication, an entry or an
/// objection, by table and key.
fn board_difference(stored: &[Board], expected: &[Board]) -> Option<String> {
    type Summary = (String, Period, i64, i64, bool, usize, usize);
    let summary =
        |b: &Board| -> Summary { (b.id.clone(), b.period, b.window_start, b.window_end, b.closed, b.entries.len(), b.objections.len()) };
    let stored_summaries: Vec<Summary> = stored.iter().map(summary).collect();
    let expected_summaries: Vec<Summary> = expected.iter().map(summary).collect();
    // Entry and objection counts are part of a publication's summary, so rows added or
    // removed show up here first, by publication.
    if let Some(d) = first_diff("rm_publications", "publication", &stored_summaries, &expected_summaries, |b| b.0.clone()) {
        return Some(d);
    }
    for (s, e) in stored.iter().zip(expected) {
        for (i, (a, b)) in s.entries.iter().zip(&e.entries).enumerate() {
            if a != b {
                return Some(format!(
                    "read model rm_board_entries: publication {} position {i} (entry {}) is stored as {a:?}, but the records give {b:?}",
                    s.id, b.entry_id
                ));
            }
        }
        for (i, (a, b)) in s.objections.iter().zip(&e.objections).enumerate() {
            if a != b {
                return Some(format!(
                    "read model rm_objections: publication {} position {i} (objection {}) is stored as {a:?}, but the records give {b:?}",
                    s.id, b.id
                ));
            }
        }
    }
    None
}

fn category_code(c: Category) -> i16 {
    match c {
        Category::Basic => 0,
        Category::Contribution => 1,
        Category::Deduction => 2,
    }
}

fn category_of(code: i16) -> Option<Category> {
    [Category::Basic, Category::Contribution, Category::Deduction].get(usize::try_from(code).ok()?).copied()
}

const STATUSES: [EntryStatus; 6] =
    [EntryStatus::Published, EntryStatus::Objected, EntryStatus::Upheld, EntryStatus::Dismissed, EntryStatus::Final, EntryStatus::Void];

fn status_code(s: EntryStatus) -> i16 {
    STATUSES.iter().position(|x| *x == s).expect("every status is listed") as i16
}

impl Head {
    /// Whether balances as stored are due an annual expiry at `now` (µs; never before the
    /// last record): [`VillageState::balances_at`]'s rule, on the stored year and rulebooks.
    pub fn expiry_due(&self, rulebooks: &[RulebookRow], now: i64) -> bool {
        let today = Date::of_micros(now.max(self.last_recorded_at));
        let annual = rulebooks.iter().rev().find(|r| r.effective_from <= today).is_some_and(|r| r.annual_expiry);
        expires(self.book_year, today.year(), annual)
    }
}

/// The signed tip stored with a request's records: the checkpoint of the new tree. (No Merkle
/// node is stored: a proof computes the nodes a server's tree forgot from the records' hashes,
/// [`super::Store::merkle_nodes`].)
pub struct Tip {
    pub old_size: u64,
    pub size: u64,
    pub root: Hash,
    /// The signed note.
    pub note: String,
}

/// The positions of the items a request's [`Rows::changed`] keeps, parallel to its boards and
/// months, which hold only the items that changed: each board's entry and objection positions,
/// each month's receipt positions (its goods lines are keyed by code). A busy month's receipts
/// or a large board's entries are then not copied or written again each time one changes.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    pub boards: Vec<(Vec<usize>, Vec<usize>)>,
    pub receipts: Vec<Vec<usize>>,
}

/// What a request stores beside its records, in the same transaction.
pub struct Derived {
    pub tip: Tip,
    pub last_recorded_at: i64,
    pub book_year: Option<i32>,
    pub rows: Rows,
    /// Which parts of `rows`' boards and months to write (all of them with `None`).
    pub parts: Option<Parts>,
    /// The acts of the request's records (the audit trail's rows), in seq order.
    pub acts: Vec<Act>,
}

fn corrupt(ledger: &str, error: String) -> StoreError {
    StoreError::Corrupt { ledger: ledger.to_owned(), seq: -1, error }
}

/// An append as one statement (so one transaction, one round trip) of these parts, each a
/// multi-row write from arrays: the new ledgers ($1–$2), the records ($3–$9), and what they
/// derive ($10–$127): new read-model heads, moved heads, balances, monthly figures, rulebooks,
/// checkpoints, 公示 boards (publications, entries, objections), supermarket months (receipts,
/// goods), and the audit trail (acts, monthly figures, lone scorers). A statement holds only
/// the parts that have rows ([`append_statement`]): PostgreSQL sets up every part of a
/// statement, rows or not, and a score touches eight of the seventeen. A rebuild runs it with
/// rows alone. Each head moves from the size its writer decided on; if one is not there
/// (another process appended first, or the row was removed), the statement fails with SQLSTATE
/// JF409 and stores nothing, like a record whose seq another writer took (a unique violation).
const APPEND_PARTS: [&str; 17] = [
    "new_ledgers AS (INSERT INTO ledgers (ledger_id, origin) SELECT * FROM UNNEST($1::text[], $2::text[]))",
    "new_records AS (INSERT INTO records (ledger_id, seq, prev_hash, recorded_at, body, signatures, record_hash) \
       SELECT * FROM UNNEST($3::text[], $4::bigint[], $5::bytea[], $6::bigint[], $7::bytea[], $8::bytea[], $9::bytea[]))",
    "new_heads AS (INSERT INTO read_models (ledger_id, tree_size, root_hash, last_recorded_at, book_year) \
       SELECT * FROM UNNEST($10::text[], $11::bigint[], $12::bytea[], $13::bigint[], $14::integer[]))",
    "moved AS (UPDATE read_models rm SET tree_size = u.size, root_hash = u.root, last_recorded_at = u.last, book_year = u.year \
       FROM UNNEST($15::text[], $16::bigint[], $17::bytea[], $18::bigint[], $19::integer[], $20::bigint[]) AS u(id, size, root, last, year, old) \
       WHERE rm.ledger_id = u.id AND rm.tree_size = u.old RETURNING 1)",
    "balances AS (INSERT INTO rm_balances (ledger_id, household_id, basic, contribution, deducted, redeemed, carried_in, \
       carried_out, earned_carried_in, earned_carried_out, expired) \
       SELECT * FROM UNNEST($21::text[], $22::text[], $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[], $27::bigint[], \
       $28::bigint[], $29::bigint[], $30::bigint[], $31::bigint[]) \
       ON CONFLICT (ledger_id, household_id) DO UPDATE SET basic = EXCLUDED.basic, contribution = EXCLUDED.contribution, \
       deducted = EXCLUDED.deducted, redeemed = EXCLUDED.redeemed, carried_in = EXCLUDED.carried_in, \
       carried_out = EXCLUDED.carried_out, earned_carried_in = EXCLUDED.earned_carried_in, \
       earned_carried_out = EXCLUDED.earned_carried_out, expired = EXCLUDED.expired)",
    "periods AS (INSERT INTO rm_period_figures (ledger_id, household_id, period, basic, contribution, deducted, redeemed, returned) \
       SELECT * FROM UNNEST($32::text[], $33::text[], $34::text[], $35::bigint[], $36::bigint[], $37::bigint[], $38::bigint[], $39::bigint[]) \
       ON CONFLICT (ledger_id, household_id, period) DO UPDATE SET basic = EXCLUDED.basic, \
       contribution = EXCLUDED.contribution, deducted = EXCLUDED.deducted, redeemed = EXCLUDED.redeemed, returned = EXCLUDED.returned)",
    "rulebooks AS (INSERT INTO rm_rulebooks (ledger_id, adopted_at, effective_from, annual_expiry) \
       SELECT * FROM UNNEST($40::text[], $41::bigint[], $42::text[], $43::boolean[]) \
       ON CONFLICT (ledger_id, adopted_at) DO UPDATE SET effective_from = EXCLUDED.effective_from, annual_expiry = EXCLUDED.annual_expiry)",
    "checkpoints AS (INSERT INTO checkpoints (ledger_id, tree_size, root_hash, note) \
       SELECT * FROM UNNEST($44::text[], $45::bigint[], $46::bytea[], $47::text[]))",
    "publications AS (INSERT INTO rm_publications (ledger_id, publication_id, period, window_start, window_end, closed) \
       SELECT * FROM UNNEST($48::text[], $49::text[], $50::text[], $51::bigint[], $52::bigint[], $53::boolean[]) \
       ON CONFLICT (ledger_id, publication_id) DO UPDATE SET period = EXCLUDED.period, window_start = EXCLUDED.window_start, \
       window_end = EXCLUDED.window_end, closed = EXCLUDED.closed)",
    "board_entries AS (INSERT INTO rm_board_entries (ledger_id, publication_id, position, entry_id, household_id, item_code, \
       item_name, category, occurred_on, scored_points, points, status) \
       SELECT * FROM UNNEST($54::text[], $55::text[], $56::integer[], $57::text[], $58::text[], $59::text[], $60::text[], \
       $61::smallint[], $62::text[], $63::bigint[], $64::bigint[], $65::smallint[]) \
       ON CONFLICT (ledger_id, publication_id, position) DO UPDATE SET entry_id = EXCLUDED.entry_id, \
       household_id = EXCLUDED.household_id, item_code = EXCLUDED.item_code, item_name = EXCLUDED.item_name, \
       category = EXCLUDED.category, occurred_on = EXCLUDED.occurred_on, scored_points = EXCLUDED.scored_points, \
       points = EXCLUDED.points, status = EXCLUDED.status \
       WHERE rm_board_entries IS DISTINCT FROM EXCLUDED)",
    "objections AS (INSERT INTO rm_objections (ledger_id, publication_id, position, objection_id, entry_id, objector, reason, \
       filed_at, outcome, finding, decided_at, correction) \
       SELECT * FROM UNNEST($66::text[], $67::text[], $68::integer[], $69::text[], $70::text[], $71::text[], $72::text[], \
       $73::bigint[], $74::smallint[], $75::text[], $76::bigint[], $77::text[]) \
       ON CONFLICT (ledger_id, publication_id, position) DO UPDATE SET objection_id = EXCLUDED.objection_id, \
       entry_id = EXCLUDED.entry_id, objector = EXCLUDED.objector, reason = EXCLUDED.reason, filed_at = EXCLUDED.filed_at, \
       outcome = EXCLUDED.outcome, finding = EXCLUDED.finding, decided_at = EXCLUDED.decided_at, correction = EXCLUDED.correction \
       WHERE rm_objections IS DISTINCT FROM EXCLUDED)",
    "supermarket_months AS (INSERT INTO rm_supermarket_months (ledger_id, period, exchanges, reversals, points, points_returned) \
       SELECT * FROM UNNEST($78::text[], $79::text[], $80::bigint[], $81::bigint[], $82::bigint[], $83::bigint[]) \
       ON CONFLICT (ledger_id, period) DO UPDATE SET exchanges = EXCLUDED.exchanges, reversals = EXCLUDED.reversals, \
       points = EXCLUDED.points, points_returned = EXCLUDED.points_returned)",
    "supermarket_receipts AS (INSERT INTO rm_supermarket_receipts (ledger_id, period, position, receipt_id, goods_code, quantity, \
       source, donor, recorded_at) \
       SELECT * FROM UNNEST($84::text[], $85::text[], $86::integer[], $87::text[], $88::text[], $89::bigint[], $90::integer[], \
       $91::text[], $92::bigint[]) \
       ON CONFLICT (ledger_id, period, position) DO UPDATE SET receipt_id = EXCLUDED.receipt_id, goods_code = EXCLUDED.goods_code, \
       quantity = EXCLUDED.quantity, source = EXCLUDED.source, donor = EXCLUDED.donor, recorded_at = EXCLUDED.recorded_at \
       WHERE rm_supermarket_receipts IS DISTINCT FROM EXCLUDED)",
    "supermarket_goods AS (INSERT INTO rm_supermarket_goods (ledger_id, period, goods_code, name, stock, price, received, \
       out_units, returned, points, points_returned, net_out) \
       SELECT * FROM UNNEST($93::text[], $94::text[], $95::text[], $96::text[], $97::bigint[], $98::bigint[], $99::bigint[], \
       $100::bigint[], $101::bigint[], $102::bigint[], $103::bigint[], $104::bigint[]) \
       ON CONFLICT (ledger_id, period, goods_code) DO UPDATE SET name = EXCLUDED.name, stock = EXCLUDED.stock, \
       price = EXCLUDED.price, received = EXCLUDED.received, out_units = EXCLUDED.out_units, returned = EXCLUDED.returned, \
       points = EXCLUDED.points, points_returned = EXCLUDED.points_returned, net_out = EXCLUDED.net_out \
       WHERE rm_supermarket_goods IS DISTINCT FROM EXCLUDED)",
    "acts AS (INSERT INTO rm_acts (ledger_id, seq, kind, author, signers, recorded_at, occurred_at, households, entry_id, flag, \
       flag_days, flag_actor) \
       SELECT * FROM UNNEST($105::text[], $106::bigint[], $107::text[], $108::text[], $109::text[], $110::bigint[], $111::bigint[], \
       $112::text[], $113::text[], $114::smallint[], $115::integer[], $116::text[]))",
    "audit_months AS (INSERT INTO rm_audit_months (ledger_id, period, scores, gainers, top, top_points, points) \
       SELECT * FROM UNNEST($117::text[], $118::text[], $119::bigint[], $120::integer[], $121::integer[], $122::bigint[], \
       $123::bigint[]) \
       ON CONFLICT (ledger_id, period) DO UPDATE SET scores = EXCLUDED.scores, gainers = EXCLUDED.gainers, top = EXCLUDED.top, \
       top_points = EXCLUDED.top_points, points = EXCLUDED.points)",
    "audit_alone AS (INSERT INTO rm_audit_alone (ledger_id, period, actor_id, scores) \
       SELECT * FROM UNNEST($124::text[], $125::text[], $126::text[], $127::bigint[]) \
       ON CONFLICT (ledger_id, period, actor_id) DO UPDATE SET scores = EXCLUDED.scores)",
];

/// The end of an append's statement when it moves heads ([`APPEND_PARTS`]' `moved`): it fails
/// with SQLSTATE JF409 unless every head moved.
const APPEND_END: &str = "SELECT jifen_heads_moved((SELECT count(*) FROM moved), cardinality($15::text[]))";

/// The index of the `moved` part in [`APPEND_PARTS`].
const MOVED: usize = 3;

/// An append's statement for the parts that have rows, and which of [`APPEND_PARTS`]'
/// parameters (0-based, $1 being 0) it takes, in order.
pub(super) struct AppendStatement {
    pub sql: String,
    pub params: Vec<usize>,
}

/// The numbers of the `$n` parameters in `sql`, in order of appearance.
fn parameters(sql: &str) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> + '_ {
    sql.match_indices('$').filter_map(move |(at, _)| {
        let digits = sql[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        Some((at..at + 1 + digits, sql[at + 1..at + 1 + digits].parse().ok()?))
    })
}

/// The statement of an append whose parts with rows are those set in `present` (a bit per
/// part of [`APPEND_PARTS`]), numbered afresh; built once per set of parts.
pub(super) fn append_statement(present: u32) -> std::sync::Arc<AppendStatement> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    static BUILT: LazyLock<Mutex<HashMap<u32, Arc<AppendStatement>>>> = LazyLock::new(Default::default);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(present)
        .or_insert_with(|| {
            let mut params = Vec::new();
            let mut renumber = |text: &str| {
                let mut out = String::with_capacity(text.len());
                let mut last = 0;
                for (range, n) in parameters(text) {
                    let new = match params.iter().position(|&p| p == n - 1) {
                        Some(i) => i + 1,
                        None => {
                            params.push(n - 1);
                            params.len()
                        }
                    };
                    out.push_str(&text[last..range.start]);
                    out.push_str(&format!("${new}"));
                    last = range.end;
                }
                out.push_str(&text[last..]);
                out
            };
            let parts: Vec<String> =
                APPEND_PARTS.iter().enumerate().filter(|(i, _)| present & (1 << i) != 0).map(|(_, p)| renumber(p)).collect();
            let end = if present & (1 << MOVED) != 0 { renumber(APPEND_END) } else { "SELECT 0".to_owned() };
            Arc::new(AppendStatement { sql: format!("WITH {} {end}", parts.join(", ")), params })
        })
        .clone()
}

/// The read-model rows of several ledgers' appends, as the columns of multi-row statements.
#[derive(Default)]
pub(super) struct Columns<'a> {
    new_heads: HeadColumns<'a>,
    moved_heads: HeadColumns<'a>,
    old_sizes: Vec<i64>,
    balances: RowColumns<'a>,
    periods: RowColumns<'a>,
    period_names: Vec<String>,
    rulebooks: (Vec<&'a str>, Vec<i64>, Vec<String>, Vec<bool>),
    checkpoints: CheckpointColumns<'a>,
    publications: PublicationColumns<'a>,
    entries: EntryColumns<'a>,
    objections: ObjectionColumns<'a>,
    months: MonthColumns<'a>,
    receipts: ReceiptColumns<'a>,
    goods: GoodsColumns<'a>,
    acts: ActColumns<'a>,
    audit_months: AuditMonthColumns<'a>,
    alone: (Vec<&'a str>, Vec<String>, Vec<&'a str>, Vec<i64>),
}

#[derive(Default)]
struct ActColumns<'a> {
    ids: Vec<&'a str>,
    seqs: Vec<i64>,
    kinds: Vec<&'a str>,
    authors: Vec<&'a str>,
    signers: Vec<String>,
    recorded: Vec<i64>,
    occurred: Vec<i64>,
    households: Vec<String>,
    entries: Vec<Option<&'a str>>,
    flags: Vec<Option<i16>>,
    days: Vec<Option<i32>>,
    actors: Vec<Option<&'a str>>,
}

#[derive(Default)]
struct AuditMonthColumns<'a> {
    ids: Vec<&'a str>,
    periods: Vec<String>,
    scores: Vec<i64>,
    gainers: Vec<i32>,
    top: Vec<i32>,
    top_points: Vec<i64>,
    points: Vec<i64>,
}

/// The stored columns of an act's red flag: its code, days and actor.
fn flag_columns(flag: Option<&ActFlag>) -> (Option<i16>, Option<i32>, Option<&str>) {
    match flag {
        None => (None, None, None),
        Some(ActFlag::BackDated { days }) => (Some(0), Some(*days), None),
        Some(ActFlag::CorrectionWithoutObjection) => (Some(1), None, None),
        Some(ActFlag::UncheckableScorer { actor }) => (Some(2), None, Some(actor)),
    }
}

/// An act's red flag from its stored columns.
fn flag_of(ledger: &str, seq: i64, flag: Option<i16>, days: Option<i32>, actor: Option<String>) -> Result<Option<ActFlag>, StoreError> {
    let bad = format!("read model rm_acts: seq {seq} is stored with flag columns ({flag:?}, {days:?}, {actor:?}), which are no red flag");
    let bad = move || corrupt(ledger, bad);
    Ok(match (flag, days, actor) {
        (None, None, None) => None,
        (Some(0), Some(days), None) => Some(ActFlag::BackDated { days }),
        (Some(1), None, None) => Some(ActFlag::CorrectionWithoutObjection),
        (Some(2), None, Some(actor)) => Some(ActFlag::UncheckableScorer { actor }),
        _ => return Err(bad()),
    })
}

/// The canonical line of an act ([`super::digest`]), in rm_acts' columns.
const ACT_LINE: [Field; 11] = [
    Field::Num("seq"),
    Field::Text("kind"),
    Field::Text("author"),
    Field::Text("signers"),
    Field::Num("recorded_at"),
    Field::Num("occurred_at"),
    Field::Text("households"),
    Field::OptText("entry_id"),
    Field::OptNum("flag"),
    Field::OptNum("flag_days"),
    Field::OptText("flag_actor"),
];

/// The SHA-256 of the acts' canonical lines ([`ACT_LINE`]), in order.
pub fn acts_digest(acts: &[Act]) -> [u8; 32] {
    let mut lines = Lines::default();
    for a in acts {
        let (flag, days, actor) = flag_columns(a.flag.as_ref());
        lines
            .num(a.seq)
            .text(&a.kind)
            .text(&a.author)
            .text(&a.signers.join(" "))
            .num(a.recorded_at)
            .num(a.occurred_at)
            .text(&a.households.join(" "))
            .opt_text(a.entry.as_deref())
            .opt_num(flag)
            .opt_num(days)
            .opt_text(actor)
            .end();
    }
    lines.finish()
}

/// The SHA-256 of the stored acts of seqs $2 ≤ seq < $3, as [`acts_digest`] computes it.
static ACTS_DIGEST: LazyLock<String> =
    LazyLock::new(|| digest_sql(&ACT_LINE, "rm_acts", "ledger_id = $1 AND seq >= $2 AND seq < $3", "seq", None));

/// The canonical line of a 公示 board entry, in rm_board_entries' columns.
const ENTRY_LINE: [Field; 11] = [
    Field::Text("publication_id"),
    Field::Num("position"),
    Field::Text("entry_id"),
    Field::Text("household_id"),
    Field::Text("item_code"),
    Field::Text("item_name"),
    Field::Num("category"),
    Field::Text("occurred_on"),
    Field::Num("scored_points"),
    Field::Num("points"),
    Field::Num("status"),
];

/// The canonical line of an objection on a 公示 board, in rm_objections' columns.
const OBJECTION_LINE: [Field; 11] = [
    Field::Text("publication_id"),
    Field::Num("position"),
    Field::Text("objection_id"),
    Field::Text("entry_id"),
    Field::Text("objector"),
    Field::Text("reason"),
    Field::Num("filed_at"),
    Field::OptNum("outcome"),
    Field::Text("finding"),
    Field::OptNum("decided_at"),
    Field::OptText("correction"),
];

/// Per publication of a ledger ($1), in publication id order: the SHA-256 of its entries'
/// canonical lines, in position order (one digest per board, so no aggregate grows with the
/// ledger, and a difference is found by board).
static ENTRY_DIGESTS: LazyLock<String> =
    LazyLock::new(|| digest_sql(&ENTRY_LINE, "rm_board_entries", "ledger_id = $1", "position", Some("publication_id")));
/// [`ENTRY_DIGESTS`] of the objections.
static OBJECTION_DIGESTS: LazyLock<String> =
    LazyLock::new(|| digest_sql(&OBJECTION_LINE, "rm_objections", "ledger_id = $1", "position", Some("publication_id")));

/// The digests of a ledger's board entries and of its objections, per publication that has
/// any, in publication id order.
pub type BoardDigests = (Vec<(String, [u8; 32])>, Vec<(String, [u8; 32])>);

/// The digests of boards' entries and objections ([`ENTRY_LINE`], [`OBJECTION_LINE`]), as
/// PostgreSQL computes them over the stored rows ([`Store::read_model_summary`]).
pub fn boards_digest<'a>(boards: impl Iterator<Item = &'a Board>) -> BoardDigests {
    let (mut entry_digests, mut objection_digests) = (Vec::new(), Vec::new());
    for b in boards {
        let (mut entries, mut objections) = (Lines::default(), Lines::default());
        for (i, e) in b.entries.iter().enumerate() {
            entries
                .text(&b.id)
                .num(i)
                .text(&e.entry_id)
                .text(&e.household)
                .text(&e.item_code)
                .text(&e.item_name)
                .num(category_code(e.category))
                .text(&e.occurred_on.to_string())
                .num(e.scored_points)
                .num(e.points)
                .num(status_code(e.status))
                .end();
        }
        for (i, o) in b.objections.iter().enumerate() {
            objections
                .text(&b.id)
                .num(i)
                .text(&o.id)
                .text(&o.entry_id)
                .text(&o.objector)
                .text(&o.reason)
                .num(o.filed_at)
                .opt_num(o.outcome.map(|v| v as i16))
                .text(&o.finding)
                .opt_num(o.decided_at)
                .opt_text(o.correction.as_deref())
                .end();
        }
        if !b.entries.is_empty() {
            entry_digests.push((b.id.clone(), entries.finish()));
        }
        if !b.objections.is_empty() {
            objection_digests.push((b.id.clone(), objections.finish()));
        }
    }
    (entry_digests, objection_digests)
}

/// The body of `jifen_act_keys` as migration V7 creates it (compared word by word).
const ACT_KEYS_SOURCE: &str = "SELECT CASE WHEN signers = '' THEN '{}'::text[] \
     ELSE string_to_array(ledger || ' a ' || replace(signers, ' ', E'\\n' || ledger || ' a '), E'\\n') END \
     || CASE WHEN households = '' THEN '{}'::text[] \
     ELSE string_to_array(ledger || ' h ' || replace(households, ' ', E'\\n' || ledger || ' h '), E'\\n') END";

/// The columns of rm_acts as read.
const ACT_COLUMNS: &str = "seq, kind, author, signers, recorded_at, occurred_at, households, entry_id, flag, flag_days, flag_actor";

fn act_of(ledger: &str, row: &tokio_postgres::Row) -> Result<Act, StoreError> {
    let seq: i64 = row.get("seq");
    let list = |t: String| if t.is_empty() { Vec::new() } else { t.split(' ').map(str::to_owned).collect() };
    Ok(Act {
        seq: u64::try_from(seq).map_err(|_| corrupt(ledger, format!("read model rm_acts seq {seq} is negative")))?,
        kind: row.get("kind"),
        author: row.get("author"),
        signers: list(row.get("signers")),
        recorded_at: row.get("recorded_at"),
        occurred_at: row.get("occurred_at"),
        households: list(row.get("households")),
        entry: row.get("entry_id"),
        flag: flag_of(ledger, seq, row.get("flag"), row.get("flag_days"), row.get("flag_actor"))?,
    })
}

#[derive(Default)]
struct MonthColumns<'a> {
    ids: Vec<&'a str>,
    periods: Vec<String>,
    exchanges: Vec<i64>,
    reversals: Vec<i64>,
    points: Vec<i64>,
    returned: Vec<i64>,
}

#[derive(Default)]
struct ReceiptColumns<'a> {
    ids: Vec<&'a str>,
    periods: Vec<String>,
    positions: Vec<i32>,
    receipts: Vec<&'a str>,
    goods: Vec<&'a str>,
    quantities: Vec<i64>,
    sources: Vec<i32>,
    donors: Vec<&'a str>,
    times: Vec<i64>,
}

#[derive(Default)]
struct GoodsColumns<'a> {
    ids: Vec<&'a str>,
    periods: Vec<String>,
    codes: Vec<&'a str>,
    names: Vec<&'a str>,
    stock: Vec<i64>,
    prices: Vec<Option<i64>>,
    received: Vec<i64>,
    out: Vec<i64>,
    returned: Vec<i64>,
    points: Vec<i64>,
    points_returned: Vec<i64>,
    net_out: Vec<Option<i64>>,
}

#[derive(Default)]
struct PublicationColumns<'a> {
    ids: Vec<&'a str>,
    publications: Vec<&'a str>,
    periods: Vec<String>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    closed: Vec<bool>,
}

#[derive(Default)]
struct EntryColumns<'a> {
    ids: Vec<&'a str>,
    publications: Vec<&'a str>,
    positions: Vec<i32>,
    entries: Vec<&'a str>,
    households: Vec<&'a str>,
    items: Vec<&'a str>,
    item_names: Vec<&'a str>,
    categories: Vec<i16>,
    occurred: Vec<String>,
    scored: Vec<i64>,
    points: Vec<i64>,
    statuses: Vec<i16>,
}

#[derive(Default)]
struct ObjectionColumns<'a> {
    ids: Vec<&'a str>,
    publications: Vec<&'a str>,
    positions: Vec<i32>,
    objections: Vec<&'a str>,
    entries: Vec<&'a str>,
    objectors: Vec<&'a str>,
    reasons: Vec<&'a str>,
    filed: Vec<i64>,
    outcomes: Vec<Option<i16>>,
    findings: Vec<&'a str>,
    decided: Vec<Option<i64>>,
    corrections: Vec<Option<&'a str>>,
}

/// Ledger ids, tree sizes, roots and notes.
type CheckpointColumns<'a> = (Vec<&'a str>, Vec<i64>, Vec<&'a [u8]>, Vec<&'a str>);

#[derive(Default)]
struct HeadColumns<'a> {
    ids: Vec<&'a str>,
    sizes: Vec<i64>,
    roots: Vec<&'a [u8]>,
    lasts: Vec<i64>,
    years: Vec<Option<i32>>,
}

/// Ledger ids, household ids and up to nine figures per row.
#[derive(Default)]
struct RowColumns<'a> {
    ids: Vec<&'a str>,
    households: Vec<&'a str>,
    figures: [Vec<i64>; 9],
}

impl<'a> Columns<'a> {
    /// The columns of `derived`, each of one ledger.
    pub(super) fn of(derived: impl Iterator<Item = (&'a str, &'a Derived)>) -> Columns<'a> {
        let mut c = Columns::default();
        for (ledger, d) in derived {
            c.push_rows(ledger, &d.rows, d.parts.as_ref());
            c.push_acts(ledger, &d.acts);
            if d.tip.size == 0 {
                // Rows alone (a rebuild): no head, no checkpoint.
                continue;
            }
            let heads = if d.tip.old_size == 0 { &mut c.new_heads } else { &mut c.moved_heads };
            heads.ids.push(ledger);
            heads.sizes.push(d.tip.size as i64);
            heads.roots.push(d.tip.root.0.as_slice());
            heads.lasts.push(d.last_recorded_at);
            heads.years.push(d.book_year);
            if d.tip.old_size != 0 {
                c.old_sizes.push(d.tip.old_size as i64);
            }
            c.checkpoints.0.push(ledger);
            c.checkpoints.1.push(d.tip.size as i64);
            c.checkpoints.2.push(d.tip.root.0.as_slice());
            c.checkpoints.3.push(d.tip.note.as_str());
        }
        c
    }

    /// Pushes `rows`; with `parts`, their boards and months hold only the items at those
    /// positions (see [`Rows::changed`]).
    fn push_rows(&mut self, ledger: &'a str, rows: &'a Rows, parts: Option<&'a Parts>) {
        for (h, b) in &rows.balances {
            self.balances.ids.push(ledger);
            self.balances.households.push(h);
            let values = [
                b.basic,
                b.contribution,
                b.deducted,
                b.redeemed,
                b.carried_in,
                b.carried_out,
                b.earned_carried_in,
                b.earned_carried_out,
                b.expired,
            ];
            for (col, v) in self.balances.figures.iter_mut().zip(values) {
                col.push(v);
            }
        }
        for (p, h, f) in &rows.periods {
            self.periods.ids.push(ledger);
            self.periods.households.push(h);
            self.period_names.push(p.to_string());
            for (col, v) in self.periods.figures.iter_mut().zip([f.basic, f.contribution, f.deducted, f.redeemed, f.returned]) {
                col.push(v);
            }
        }
        for r in &rows.rulebooks {
            self.rulebooks.0.push(ledger);
            self.rulebooks.1.push(r.adopted_at as i64);
            self.rulebooks.2.push(r.effective_from.to_string());
            self.rulebooks.3.push(r.annual_expiry);
        }
        for (n, b) in rows.boards.iter().enumerate() {
            // The items' positions: as listed by `parts`, or their places in a whole board.
            let (entries, objections) = match parts.and_then(|p| p.boards.get(n)) {
                Some((e, o)) => (Some(e), Some(o)),
                None => (None, None),
            };
            let p = &mut self.publications;
            p.ids.push(ledger);
            p.publications.push(&b.id);
            p.periods.push(b.period.to_string());
            p.starts.push(b.window_start);
            p.ends.push(b.window_end);
            p.closed.push(b.closed);
            for (k, e) in b.entries.iter().enumerate() {
                let i = entries.map_or(k, |at| at[k]);
                let x = &mut self.entries;
                x.ids.push(ledger);
                x.publications.push(&b.id);
                x.positions.push(i as i32);
                x.entries.push(&e.entry_id);
                x.households.push(&e.household);
                x.items.push(&e.item_code);
                x.item_names.push(&e.item_name);
                x.categories.push(category_code(e.category));
                x.occurred.push(e.occurred_on.to_string());
                x.scored.push(e.scored_points);
                x.points.push(e.points);
                x.statuses.push(status_code(e.status));
            }
            for (k, o) in b.objections.iter().enumerate() {
                let i = objections.map_or(k, |at| at[k]);
                let x = &mut self.objections;
                x.ids.push(ledger);
                x.publications.push(&b.id);
                x.positions.push(i as i32);
                x.objections.push(&o.id);
                x.entries.push(&o.entry_id);
                x.objectors.push(&o.objector);
                x.reasons.push(&o.reason);
                x.filed.push(o.filed_at);
                x.outcomes.push(o.outcome.map(|v| v as i16));
                x.findings.push(&o.finding);
                x.decided.push(o.decided_at);
                x.corrections.push(o.correction.as_deref());
            }
        }
        for (n, (period, m)) in rows.supermarket.iter().enumerate() {
            let receipts = parts.and_then(|p| p.receipts.get(n));
            let x = &mut self.months;
            x.ids.push(ledger);
            x.periods.push(period.to_string());
            x.exchanges.push(i64::from(m.exchanges));
            x.reversals.push(i64::from(m.reversals));
            x.points.push(m.points);
            x.returned.push(m.points_returned);
            for (k, r) in m.receipts.iter().enumerate() {
                let i = receipts.map_or(k, |at| at[k]);
                let x = &mut self.receipts;
                x.ids.push(ledger);
                x.periods.push(period.to_string());
                x.positions.push(i as i32);
                x.receipts.push(&r.receipt_id);
                x.goods.push(&r.goods);
                x.quantities.push(i64::from(r.quantity));
                x.sources.push(r.source as i32);
                x.donors.push(&r.donor);
                x.times.push(r.recorded_at);
            }
            for (code, g) in &m.goods {
                let x = &mut self.goods;
                x.ids.push(ledger);
                x.periods.push(period.to_string());
                x.codes.push(code);
                x.names.push(&g.name);
                x.stock.push(g.stock.min(i64::MAX as u64) as i64);
                x.prices.push(g.price);
                x.received.push(g.received.min(i64::MAX as u64) as i64);
                x.out.push(g.out.min(i64::MAX as u64) as i64);
                x.returned.push(g.returned.min(i64::MAX as u64) as i64);
                x.points.push(g.points);
                x.points_returned.push(g.points_returned);
                x.net_out.push(m.goods_out.get(code).copied());
            }
        }
        for (period, m) in &rows.audit_months {
            let x = &mut self.audit_months;
            x.ids.push(ledger);
            x.periods.push(period.to_string());
            x.scores.push(m.scores.min(i64::MAX as u64) as i64);
            x.gainers.push(m.spread.gainers.min(i32::MAX as u32) as i32);
            x.top.push(m.spread.top.min(i32::MAX as u32) as i32);
            x.top_points.push(m.spread.top_points);
            x.points.push(m.spread.points);
        }
        for (period, actor, n) in &rows.alone {
            self.alone.0.push(ledger);
            self.alone.1.push(period.to_string());
            self.alone.2.push(actor);
            self.alone.3.push((*n).min(i64::MAX as u64) as i64);
        }
    }

    fn push_acts(&mut self, ledger: &'a str, acts: &'a [Act]) {
        for act in acts {
            let x = &mut self.acts;
            x.ids.push(ledger);
            x.seqs.push(act.seq as i64);
            x.kinds.push(&act.kind);
            x.authors.push(&act.author);
            x.signers.push(act.signers.join(" "));
            x.recorded.push(act.recorded_at);
            x.occurred.push(act.occurred_at);
            x.households.push(act.households.join(" "));
            x.entries.push(act.entry.as_deref());
            let (flag, days, actor) = flag_columns(act.flag.as_ref());
            x.flags.push(flag);
            x.days.push(days);
            x.actors.push(actor);
        }
    }

    /// Which of the parts of [`APPEND_PARTS`] from the third on (the read-model heads onwards)
    /// have rows, a bit per part.
    pub(super) fn present(&self) -> u32 {
        let rows = [
            self.new_heads.ids.len(),
            self.moved_heads.ids.len(),
            self.balances.ids.len(),
            self.periods.ids.len(),
            self.rulebooks.0.len(),
            self.checkpoints.0.len(),
            self.publications.ids.len(),
            self.entries.ids.len(),
            self.objections.ids.len(),
            self.months.ids.len(),
            self.receipts.ids.len(),
            self.goods.ids.len(),
            self.acts.ids.len(),
            self.audit_months.ids.len(),
            self.alone.0.len(),
        ];
        rows.iter().enumerate().filter(|(_, n)| **n > 0).fold(0, |bits, (i, _)| bits | 1 << (i + 2))
    }

    /// The parameters $10–$127 of [`APPEND_PARTS`].
    #[rustfmt::skip]
    pub(super) fn params(&'a self) -> Vec<&'a Param<'a>> {
        let (n, m) = (&self.new_heads, &self.moved_heads);
        let (b, q) = (&self.balances.figures, &self.periods.figures);
        let (r, c) = (&self.rulebooks, &self.checkpoints);
        let (p, e, o) = (&self.publications, &self.entries, &self.objections);
        let (sm, sr, sg) = (&self.months, &self.receipts, &self.goods);
        let (a, am, al) = (&self.acts, &self.audit_months, &self.alone);
        vec![
            &n.ids, &n.sizes, &n.roots, &n.lasts, &n.years,
            &m.ids, &m.sizes, &m.roots, &m.lasts, &m.years, &self.old_sizes,
            &self.balances.ids, &self.balances.households, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8],
            &self.periods.ids, &self.periods.households, &self.period_names, &q[0], &q[1], &q[2], &q[3], &q[4],
            &r.0, &r.1, &r.2, &r.3,
            &c.0, &c.1, &c.2, &c.3,
            &p.ids, &p.publications, &p.periods, &p.starts, &p.ends, &p.closed,
            &e.ids, &e.publications, &e.positions, &e.entries, &e.households, &e.items, &e.item_names,
            &e.categories, &e.occurred, &e.scored, &e.points, &e.statuses,
            &o.ids, &o.publications, &o.positions, &o.objections, &o.entries, &o.objectors, &o.reasons,
            &o.filed, &o.outcomes, &o.findings, &o.decided, &o.corrections,
            &sm.ids, &sm.periods, &sm.exchanges, &sm.reversals, &sm.points, &sm.returned,
            &sr.ids, &sr.periods, &sr.positions, &sr.receipts, &sr.goods, &sr.quantities, &sr.sources, &sr.donors, &sr.times,
            &sg.ids, &sg.periods, &sg.codes, &sg.names, &sg.stock, &sg.prices, &sg.received, &sg.out, &sg.returned,
            &sg.points, &sg.points_returned, &sg.net_out,
            &a.ids, &a.seqs, &a.kinds, &a.authors, &a.signers, &a.recorded, &a.occurred, &a.households, &a.entries,
            &a.flags, &a.days, &a.actors,
            &am.ids, &am.periods, &am.scores, &am.gainers, &am.top, &am.top_points, &am.points,
            &al.0, &al.1, &al.2, &al.3,
        ]
    }
}

/// Acts per statement of a rebuild.
const ACTS_PER_STATEMENT: usize = 10_000;

/// Inserts acts (a rebuild): [`APPEND_PARTS`]' `acts` alone.
const INSERT_ACTS: &str = "INSERT INTO rm_acts (ledger_id, seq, kind, author, signers, recorded_at, occurred_at, households, \
     entry_id, flag, flag_days, flag_actor) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], \
     $9::text[], $10::smallint[], $11::integer[], $12::text[])";

/// Inserts or replaces rows (a rebuild, in its own transaction): [`APPEND_PARTS`] with rows
/// alone.
async fn upsert_rows(tx: &Transaction<'_>, ledger: &str, rows: &Rows) -> Result<(), StoreError> {
    let derived = Rows::only(rows);
    let c = Columns::of(std::iter::once((ledger, &derived)));
    let present = c.present();
    if present == 0 {
        return Ok(());
    }
    let none = super::Columns::of(std::iter::empty());
    let empty: Vec<&str> = Vec::new();
    let mut all: Vec<&Param<'_>> = vec![&empty, &empty];
    all.extend(none.params());
    all.extend(c.params());
    let statement = append_statement(present);
    let params: Vec<&Param<'_>> = statement.params.iter().map(|&i| all[i]).collect();
    let append = tx.prepare_cached(&statement.sql).await?;
    tx.query_one(&append, &params).await?;
    Ok(())
}

fn head_of(ledger: &str, row: &tokio_postgres::Row) -> Result<Head, StoreError> {
    let root: Vec<u8> = row.get("root_hash");
    Ok(Head {
        tree_size: u64::try_from(row.get::<_, i64>("tree_size")).map_err(|_| corrupt(ledger, "read model tree_size is negative".into()))?,
        root: Hash::from_slice(&root).ok_or_else(|| corrupt(ledger, "read model root_hash is not 32 bytes".into()))?,
        last_recorded_at: row.get("last_recorded_at"),
        book_year: row.get("book_year"),
    })
}

fn balance_of(row: &tokio_postgres::Row) -> Balance {
    Balance {
        basic: row.get("basic"),
        contribution: row.get("contribution"),
        deducted: row.get("deducted"),
        redeemed: row.get("redeemed"),
        carried_in: row.get("carried_in"),
        carried_out: row.get("carried_out"),
        earned_carried_in: row.get("earned_carried_in"),
        earned_carried_out: row.get("earned_carried_out"),
        expired: row.get("expired"),
    }
}

fn figures_of(ledger: &str, row: &tokio_postgres::Row) -> Result<(Period, String, PeriodFigures), StoreError> {
    let period: String = row.get("period");
    let p = Period::parse("period", &period).map_err(|e| corrupt(ledger, format!("read model period: {e}")))?;
    let f = PeriodFigures {
        basic: row.get("basic"),
        contribution: row.get("contribution"),
        deducted: row.get("deducted"),
        redeemed: row.get("redeemed"),
        returned: row.get("returned"),
    };
    Ok((p, row.get("household_id"), f))
}

/// The 公示 boards of a ledger (or the one of `publication`), in publication id order, each
/// with its entries in board order and its objections in filing order (or, without `items`,
/// with neither).
async fn boards_in(tx: &Transaction<'_>, ledger: &str, publication: Option<&str>, items: bool) -> Result<Vec<Board>, StoreError> {
    // Two statements, not one with an optional filter: a plan made for "every board" must not
    // serve "one board".
    let filter = if publication.is_some() { "ledger_id = $1 AND publication_id = $2" } else { "ledger_id = $1 AND $2::text IS NULL" };
    let publications = tx
        .prepare_cached(&format!(
            "SELECT publication_id, period, window_start, window_end, closed FROM rm_publications WHERE {filter} \
             ORDER BY publication_id COLLATE \"C\""
        ))
        .await?;
    let entries = tx
        .prepare_cached(&format!(
            "SELECT publication_id, position, entry_id, household_id, item_code, item_name, category, occurred_on, scored_points, \
             points, status FROM rm_board_entries WHERE {filter} ORDER BY publication_id COLLATE \"C\", position"
        ))
        .await?;
    let objections = tx
        .prepare_cached(&format!(
            "SELECT publication_id, position, objection_id, entry_id, objector, reason, filed_at, outcome, finding, decided_at, \
             correction FROM rm_objections WHERE {filter} ORDER BY publication_id COLLATE \"C\", position"
        ))
        .await?;
    let params: [&Param<'_>; 2] = [&ledger, &publication];
    let (publications, entries, objections) = if items {
        tokio::try_join!(tx.query(&publications, &params), tx.query(&entries, &params), tx.query(&objections, &params))?
    } else {
        (tx.query(&publications, &params).await?, Vec::new(), Vec::new())
    };
    let mut boards: Vec<Board> = Vec::with_capacity(publications.len());
    let mut by_id: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in &publications {
        let period: String = row.get("period");
        let id: String = row.get("publication_id");
        by_id.insert(id.clone(), boards.len());
        boards.push(Board {
            id,
            period: Period::parse("period", &period).map_err(|e| corrupt(ledger, format!("read model publication period: {e}")))?,
            window_start: row.get("window_start"),
            window_end: row.get("window_end"),
            closed: row.get("closed"),
            entries: Vec::new(),
            objections: Vec::new(),
        });
    }
    // A row whose publication, position, category, status or date is not what the rows around
    // it say is corrupt (positions must run 0, 1, 2 … in each board).
    let board_of = |row: &tokio_postgres::Row, what: &str, len: &dyn Fn(&Board) -> usize, boards: &[Board]| {
        let publication: String = row.get("publication_id");
        let at =
            *by_id.get(&publication).ok_or_else(|| corrupt(ledger, format!("read model {what} of unknown publication {publication}")))?;
        let position: i32 = row.get("position");
        if usize::try_from(position).ok() != Some(len(&boards[at])) {
            return Err(corrupt(ledger, format!("read model {what} of publication {publication}: position {position} out of order")));
        }
        Ok(at)
    };
    for row in &entries {
        let at = board_of(row, "board entry", &|b| b.entries.len(), &boards)?;
        let category: i16 = row.get("category");
        let status: i16 = row.get("status");
        let occurred: String = row.get("occurred_on");
        boards[at].entries.push(BoardEntry {
            entry_id: row.get("entry_id"),
            household: row.get::<_, &str>("household_id").into(),
            item_code: row.get::<_, &str>("item_code").into(),
            item_name: row.get("item_name"),
            category: category_of(category).ok_or_else(|| corrupt(ledger, format!("read model category {category}")))?,
            occurred_on: Date::parse("occurred_on", &occurred).map_err(|e| corrupt(ledger, format!("read model entry date: {e}")))?,
            scored_points: row.get("scored_points"),
            points: row.get("points"),
            status: *usize::try_from(status)
                .ok()
                .and_then(|i| STATUSES.get(i))
                .ok_or_else(|| corrupt(ledger, format!("read model status {status}")))?,
        });
    }
    for row in &objections {
        let at = board_of(row, "objection", &|b| b.objections.len(), &boards)?;
        let outcome: Option<i16> = row.get("outcome");
        boards[at].objections.push(ObjectionView {
            id: row.get("objection_id"),
            entry_id: row.get("entry_id"),
            objector: row.get("objector"),
            reason: row.get("reason"),
            filed_at: row.get("filed_at"),
            outcome: match outcome {
                None => None,
                Some(o) => Some(ObjectionOutcome::try_from(i32::from(o)).map_err(|_| corrupt(ledger, format!("read model outcome {o}")))?),
            },
            finding: row.get("finding"),
            decided_at: row.get("decided_at"),
            correction: row.get("correction"),
        });
    }
    Ok(boards)
}

/// The supermarket's months with activity (every one, or the last one up to `up_to`), in
/// order, each with its receipts and goods.
async fn months_in(tx: &Transaction<'_>, ledger: &str, up_to: Option<Period>) -> Result<Vec<(Period, Month)>, StoreError> {
    let filter = if up_to.is_some() {
        "ledger_id = $1 AND period = (SELECT max(period) FROM rm_supermarket_months WHERE ledger_id = $1 AND period <= $2)"
    } else {
        "ledger_id = $1 AND $2::text IS NULL"
    };
    let months = tx
        .prepare_cached(&format!(
            "SELECT period, exchanges, reversals, points, points_returned FROM rm_supermarket_months WHERE {filter} ORDER BY period"
        ))
        .await?;
    let receipts = tx
        .prepare_cached(&format!(
            "SELECT period, position, receipt_id, goods_code, quantity, source, donor, recorded_at FROM rm_supermarket_receipts \
             WHERE {filter} ORDER BY period, position"
        ))
        .await?;
    let goods = tx
        .prepare_cached(&format!(
            "SELECT period, goods_code, name, stock, price, received, out_units, returned, points, points_returned, net_out \
             FROM rm_supermarket_goods WHERE {filter} ORDER BY period, goods_code COLLATE \"C\""
        ))
        .await?;
    let up_to = up_to.map(|p| p.to_string());
    let params: [&Param<'_>; 2] = [&ledger, &up_to];
    let (month_rows, receipt_rows, goods_rows) =
        (tx.query(&months, &params).await?, tx.query(&receipts, &params).await?, tx.query(&goods, &params).await?);
    let bad = |what: String| corrupt(ledger, format!("read model supermarket: {what}"));
    let period_of = |row: &tokio_postgres::Row| -> Result<Period, StoreError> {
        let p: String = row.get("period");
        Period::parse("period", &p).map_err(|e| bad(e.to_string()))
    };
    let count = |v: i64, what: &str| u64::try_from(v).map_err(|_| bad(format!("{what} {v} is negative")));
    let mut out: Vec<(Period, Month)> = Vec::with_capacity(month_rows.len());
    for row in &month_rows {
        out.push((
            period_of(row)?,
            Month {
                exchanges: u32::try_from(row.get::<_, i64>("exchanges")).map_err(|_| bad("exchanges out of range".into()))?,
                reversals: u32::try_from(row.get::<_, i64>("reversals")).map_err(|_| bad("reversals out of range".into()))?,
                points: row.get("points"),
                points_returned: row.get("points_returned"),
                ..Month::default()
            },
        ));
    }
    let find = |out: &[(Period, Month)], p: Period| {
        out.iter().position(|(q, _)| *q == p).ok_or_else(|| bad(format!("a row of month {p}, which has none")))
    };
    for row in &receipt_rows {
        let at = find(&out, period_of(row)?)?;
        let m = &mut out[at].1;
        if usize::try_from(row.get::<_, i32>("position")).ok() != Some(m.receipts.len()) {
            return Err(bad("receipt positions out of order".into()));
        }
        let source: i32 = row.get("source");
        m.receipts.push(Receipt {
            receipt_id: row.get("receipt_id"),
            goods: row.get("goods_code"),
            quantity: u32::try_from(row.get::<_, i64>("quantity")).map_err(|_| bad("quantity out of range".into()))?,
            source: StockSource::try_from(source).map_err(|_| bad(format!("stock source {source}")))?,
            donor: row.get("donor"),
            recorded_at: row.get("recorded_at"),
        });
    }
    for row in &goods_rows {
        let at = find(&out, period_of(row)?)?;
        let m = &mut out[at].1;
        let code: String = row.get("goods_code");
        if let Some(n) = row.get::<_, Option<i64>>("net_out") {
            m.goods_out.insert(code.clone(), n);
        }
        m.goods.insert(
            code,
            GoodsMonth {
                name: row.get("name"),
                stock: count(row.get("stock"), "stock")?,
                price: row.get("price"),
                received: count(row.get("received"), "received")?,
                out: count(row.get("out_units"), "out")?,
                returned: count(row.get("returned"), "returned")?,
                points: row.get("points"),
                points_returned: row.get("points_returned"),
            },
        );
    }
    Ok(out)
}

/// The audit trail's monthly rows of a ledger: each month's figures, in period order, and the
/// scores signed by one panel member alone, in (period, member) order.
async fn audit_months_in(tx: &Transaction<'_>, ledger: &str) -> Result<AuditMonths, StoreError> {
    let months = tx
        .prepare_cached("SELECT period, scores, gainers, top, top_points, points FROM rm_audit_months WHERE ledger_id = $1 ORDER BY period")
        .await?;
    let alone = tx
        .prepare_cached("SELECT period, actor_id, scores FROM rm_audit_alone WHERE ledger_id = $1 ORDER BY period, actor_id COLLATE \"C\"")
        .await?;
    let one: [&Param<'_>; 1] = [&ledger];
    let (months, alone) = tokio::try_join!(tx.query(&months, &one), tx.query(&alone, &one))?;
    let period_of = |row: &tokio_postgres::Row, table: &str| -> Result<Period, StoreError> {
        let p: String = row.get("period");
        Period::parse("period", &p).map_err(|e| corrupt(ledger, format!("read model {table}: {e}")))
    };
    let mut out = Vec::with_capacity(months.len());
    for r in &months {
        let period = period_of(r, "rm_audit_months")?;
        let (scores, gainers, top): (i64, i32, i32) = (r.get("scores"), r.get("gainers"), r.get("top"));
        let bad = || {
            corrupt(
                ledger,
                format!("read model rm_audit_months: month {period} is stored with counts ({scores}, {gainers}, {top}), below zero"),
            )
        };
        let month = AuditMonth {
            scores: u64::try_from(scores).map_err(|_| bad())?,
            spread: Spread {
                gainers: u32::try_from(gainers).map_err(|_| bad())?,
                top: u32::try_from(top).map_err(|_| bad())?,
                top_points: r.get("top_points"),
                points: r.get("points"),
            },
        };
        out.push((period, month));
    }
    let mut lone = Vec::with_capacity(alone.len());
    for r in &alone {
        let period = period_of(r, "rm_audit_alone")?;
        let (actor, scores): (String, i64) = (r.get("actor_id"), r.get("scores"));
        let n = u64::try_from(scores).map_err(|_| {
            corrupt(
                ledger,
                format!("read model rm_audit_alone: (month, panel member) ({period}, {actor}) is stored as {scores}, below zero"),
            )
        })?;
        lone.push((period, actor, n));
    }
    Ok((out, lone))
}

/// A ledger's audit months and lone-scorer counts ([`audit_months_in`]).
type AuditMonths = (Vec<(Period, AuditMonth)>, Vec<(Period, String, u64)>);

/// Whom an audit trail is asked about.
#[derive(Clone, Copy, Debug)]
pub enum AuditSubject<'a> {
    /// The acts an actor signed.
    Actor(&'a str),
    /// The acts concerning a household.
    Household(&'a str),
    /// An entry's lineage.
    Entry(&'a str),
    /// Every act that raises a red flag.
    Flagged,
}

/// An audit trail as the read model holds it.
pub struct StoredAuditTrail {
    pub head: Head,
    /// The subject's acts, in seq order: a page of them.
    pub acts: Vec<Act>,
    /// Where the next page starts, if there are more.
    pub next_from_seq: Option<u64>,
    pub months: Vec<(Period, AuditMonth)>,
    pub alone: Vec<(Period, String, u64)>,
}

/// A monthly row as the text of a record: `(YYYY-MM,basic,contribution,deducted,redeemed,returned)`.
fn month_of(ledger: &str, text: &str) -> Result<(Period, PeriodFigures), StoreError> {
    let bad = || corrupt(ledger, format!("read model monthly row {text:?} is malformed"));
    let inner = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(bad)?;
    let mut parts = inner.split(',');
    let period = Period::parse("period", parts.next().ok_or_else(bad)?).map_err(|e| corrupt(ledger, format!("read model period: {e}")))?;
    let mut n = || -> Result<i64, StoreError> { parts.next().ok_or_else(bad)?.parse().map_err(|_| bad()) };
    let f = PeriodFigures { basic: n()?, contribution: n()?, deducted: n()?, redeemed: n()?, returned: n()? };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((period, f))
}

fn rulebook_of(ledger: &str, row: &tokio_postgres::Row) -> Result<RulebookRow, StoreError> {
    let from: String = row.get("effective_from");
    Ok(RulebookRow {
        adopted_at: u64::try_from(row.get::<_, i64>("adopted_at"))
            .map_err(|_| corrupt(ledger, "read model adopted_at is negative".into()))?,
        effective_from: Date::parse("effective_from", &from).map_err(|e| corrupt(ledger, format!("read model rulebook: {e}")))?,
        annual_expiry: row.get("annual_expiry"),
    })
}

const HEAD: &str = "SELECT tree_size, root_hash, last_recorded_at, book_year FROM read_models WHERE ledger_id = $1";
const RULEBOOKS: &str = "SELECT adopted_at, effective_from, annual_expiry FROM rm_rulebooks WHERE ledger_id = $1 ORDER BY adopted_at";
const BALANCE_COLUMNS: &str =
    "household_id, basic, contribution, deducted, redeemed, carried_in, carried_out, earned_carried_in, earned_carried_out, expired";

/// One household's balance as the read model holds it, with its monthly figures.
pub struct StoredBalance {
    pub head: Head,
    pub rulebooks: Vec<RulebookRow>,
    pub balance: Option<Balance>,
    /// The household's figures by period, in period order.
    pub periods: Vec<(Period, PeriodFigures)>,
    /// Its display name (profiles), if it has one.
    pub display_name: Option<String>,
}

/// Every household's balance as the read model holds it.
pub struct StoredBalances {
    pub head: Head,
    pub rulebooks: Vec<RulebookRow>,
    pub balances: Vec<(String, Balance)>,
}

impl Store {
    /// Starts a read-only transaction on one snapshot: every statement in it sees the same
    /// tree size.
    async fn snapshot(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, StoreError> {
        Ok(client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?)
    }

    /// One household's balance, monthly figures and display name, read by one statement (so
    /// from one snapshot, in one round trip); `None` if the ledger has no read model.
    pub async fn read_balance(&self, ledger: &VillageCode, household: &str) -> Result<Option<StoredBalance>, StoreError> {
        let id = ledger.as_str();
        let client = self.pool.get().await?;
        let query = client
            .prepare_cached(
                "SELECT rm.tree_size, rm.root_hash, rm.last_recorded_at, rm.book_year, \
                 ARRAY(SELECT r.adopted_at FROM rm_rulebooks r WHERE r.ledger_id = $1 ORDER BY r.adopted_at) AS rb_adopted, \
                 ARRAY(SELECT r.effective_from FROM rm_rulebooks r WHERE r.ledger_id = $1 ORDER BY r.adopted_at) AS rb_from, \
                 ARRAY(SELECT r.annual_expiry FROM rm_rulebooks r WHERE r.ledger_id = $1 ORDER BY r.adopted_at) AS rb_annual, \
                 b.household_id, b.basic, b.contribution, b.deducted, b.redeemed, b.carried_in, b.carried_out, \
                 b.earned_carried_in, b.earned_carried_out, b.expired, \
                 ARRAY(SELECT ROW(f.period, f.basic, f.contribution, f.deducted, f.redeemed, f.returned)::text \
                       FROM rm_period_figures f WHERE f.ledger_id = $1 AND f.household_id = $2 ORDER BY f.period) AS months, \
                 (SELECT p.display_name FROM profiles p WHERE p.ledger_id = $1 AND p.subject_id = $2) AS display_name \
                 FROM read_models rm LEFT JOIN rm_balances b ON b.ledger_id = rm.ledger_id AND b.household_id = $2 \
                 WHERE rm.ledger_id = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&query, &[&id, &household]).await? else { return Ok(None) };
        let adopted: Vec<i64> = row.get("rb_adopted");
        let from: Vec<String> = row.get("rb_from");
        let annual: Vec<bool> = row.get("rb_annual");
        let rulebooks = adopted
            .iter()
            .zip(&from)
            .zip(&annual)
            .map(|((a, f), e)| {
                Ok(RulebookRow {
                    adopted_at: u64::try_from(*a).map_err(|_| corrupt(id, "read model adopted_at is negative".into()))?,
                    effective_from: Date::parse("effective_from", f).map_err(|e| corrupt(id, format!("read model rulebook: {e}")))?,
                    annual_expiry: *e,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let months: Vec<String> = row.get("months");
        let periods = months.iter().map(|m| month_of(id, m)).collect::<Result<_, _>>()?;
        let balance = row.get::<_, Option<String>>("household_id").map(|_| balance_of(&row));
        Ok(Some(StoredBalance { head: head_of(id, &row)?, rulebooks, balance, periods, display_name: row.get("display_name") }))
    }

    /// Every household's figures of the given months, by one statement (one snapshot), in
    /// (period, household) order; `None` if the ledger has no read model.
    pub async fn read_months(
        &self,
        ledger: &VillageCode,
        periods: &[Period],
    ) -> Result<Option<(Head, Vec<(Period, String, PeriodFigures)>)>, StoreError> {
        let id = ledger.as_str();
        let names: Vec<String> = periods.iter().map(Period::to_string).collect();
        let client = self.pool.get().await?;
        let query = client
            .prepare_cached(
                "SELECT rm.tree_size, rm.root_hash, rm.last_recorded_at, rm.book_year, \
                 f.household_id, f.period, f.basic, f.contribution, f.deducted, f.redeemed, f.returned \
                 FROM read_models rm LEFT JOIN rm_period_figures f ON f.ledger_id = rm.ledger_id AND f.period = ANY($2) \
                 WHERE rm.ledger_id = $1 ORDER BY f.period, f.household_id COLLATE \"C\"",
            )
            .await?;
        let rows = client.query(&query, &[&id, &names]).await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let head = head_of(id, first)?;
        let mut figures = Vec::with_capacity(rows.len());
        for row in &rows {
            // The head alone (no month has a row) comes back as one row of NULL figures.
            if row.get::<_, Option<String>>("household_id").is_some() {
                figures.push(figures_of(id, row)?);
            }
        }
        Ok(Some((head, figures)))
    }

    /// Every household's balance, read in one snapshot; `None` if the ledger has no read model.
    pub async fn read_balances(&self, ledger: &VillageCode) -> Result<Option<StoredBalances>, StoreError> {
        let id = ledger.as_str();
        let mut client = self.pool.get().await?;
        let tx = Self::snapshot(&mut client).await?;
        let (head, rulebooks, balances) = {
            let head = tx.prepare_cached(HEAD).await?;
            let rulebooks = tx.prepare_cached(RULEBOOKS).await?;
            let balances = tx
                .prepare_cached(&format!(
                    "SELECT {BALANCE_COLUMNS} FROM rm_balances WHERE ledger_id = $1 ORDER BY household_id COLLATE \"C\""
                ))
                .await?;
            let one: [&Param<'_>; 1] = [&id];
            let one = &one[..];
            tokio::try_join!(tx.query_opt(&head, one), tx.query(&rulebooks, one), tx.query(&balances, one))?
        };
        tx.commit().await?;
        let Some(head) = head else { return Ok(None) };
        Ok(Some(StoredBalances {
            head: head_of(id, &head)?,
            rulebooks: rulebooks.iter().map(|r| rulebook_of(id, r)).collect::<Result<_, _>>()?,
            balances: balances.iter().map(|r| (r.get("household_id"), balance_of(r))).collect(),
        }))
    }

    /// Every read-model row of a ledger, in one snapshot, in the order [`Rows::all`] gives
    /// them; `None` if the ledger has no read model.
    pub async fn read_model(&self, ledger: &VillageCode) -> Result<Option<(Head, Rows)>, StoreError> {
        Ok(self.read_model_rows(ledger, true).await?.map(|(head, rows, _)| (head, rows)))
    }

    /// [`Store::read_model`] but for the boards' entries and objections, of which PostgreSQL
    /// computes the digests instead ([`boards_digest`]): what a load compares, without moving
    /// a large village's boards out of PostgreSQL.
    pub async fn read_model_summary(&self, ledger: &VillageCode) -> Result<Option<(Head, Rows, BoardDigests)>, StoreError> {
        Ok(self.read_model_rows(ledger, false).await?.map(|(head, rows, digests)| (head, rows, digests.unwrap_or_default())))
    }

    async fn read_model_rows(&self, ledger: &VillageCode, items: bool) -> Result<Option<(Head, Rows, Option<BoardDigests>)>, StoreError> {
        let id = ledger.as_str();
        let mut client = self.pool.get().await?;
        let tx = Self::snapshot(&mut client).await?;
        let one: [&Param<'_>; 1] = [&id];
        let one = &one[..];
        let balances = format!("SELECT {BALANCE_COLUMNS} FROM rm_balances WHERE ledger_id = $1 ORDER BY household_id COLLATE \"C\"");
        let (head, rulebooks, balances, periods) = tokio::try_join!(
            tx.query_opt(HEAD, one),
            tx.query(RULEBOOKS, one),
            tx.query(&balances, one),
            tx.query(
                "SELECT household_id, period, basic, contribution, deducted, redeemed, returned FROM rm_period_figures \
                 WHERE ledger_id = $1 ORDER BY period, household_id COLLATE \"C\"",
                one,
            )
        )?;
        let boards = boards_in(&tx, id, None, items).await?;
        let digests = if items {
            None
        } else {
            let per_board = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<(String, [u8; 32])>, StoreError> {
                rows.iter()
                    .map(|r| {
                        let digest: Vec<u8> = r.get(1);
                        let digest = digest.try_into().map_err(|_| corrupt(id, "a digest of the stored boards is not 32 bytes".into()))?;
                        Ok((r.get(0), digest))
                    })
                    .collect()
            };
            let (entries, objections) = tokio::try_join!(tx.query(ENTRY_DIGESTS.as_str(), one), tx.query(OBJECTION_DIGESTS.as_str(), one))?;
            Some((per_board(entries)?, per_board(objections)?))
        };
        let supermarket = months_in(&tx, id, None).await?;
        let (audit_months, alone) = audit_months_in(&tx, id).await?;
        tx.commit().await?;
        let Some(head) = head else { return Ok(None) };
        Ok(Some((
            head_of(id, &head)?,
            Rows {
                balances: balances.iter().map(|r| (r.get("household_id"), balance_of(r))).collect(),
                periods: periods.iter().map(|r| figures_of(id, r)).collect::<Result<_, _>>()?,
                rulebooks: rulebooks.iter().map(|r| rulebook_of(id, r)).collect::<Result<_, _>>()?,
                boards,
                supermarket,
                audit_months,
                alone,
            },
            digests,
        )))
    }

    /// The supermarket's month `period` as the keeper posts it (`Supermarket::month_view`):
    /// a month with activity as stored; a month without, carried from the last one before it;
    /// with the tree it reflects, in one snapshot. `None` if the ledger has no read model.
    pub async fn read_supermarket_month(&self, ledger: &VillageCode, period: Period) -> Result<Option<(Head, Month)>, StoreError> {
        let id = ledger.as_str();
        let mut client = self.pool.get().await?;
        let tx = Self::snapshot(&mut client).await?;
        let head = tx.prepare_cached(HEAD).await?;
        let head = tx.query_opt(&head, &[&id]).await?;
        let mut months = months_in(&tx, id, Some(period)).await?;
        tx.commit().await?;
        let Some(head) = head else { return Ok(None) };
        let month = match months.pop() {
            Some((p, m)) if p == period => m,
            Some((_, before)) => before.carried(),
            None => Month::default(),
        };
        Ok(Some((head_of(id, &head)?, month)))
    }

    /// One 公示 board with the tree it reflects, in one snapshot; `None` if the ledger has no
    /// read model, a board of `None` if it has no such publication.
    pub async fn read_board(&self, ledger: &VillageCode, publication: &str) -> Result<Option<(Head, Option<Board>)>, StoreError> {
        let id = ledger.as_str();
        let mut client = self.pool.get().await?;
        let tx = Self::snapshot(&mut client).await?;
        let head = tx.prepare_cached(HEAD).await?;
        let head = tx.query_opt(&head, &[&id]).await?;
        let mut boards = boards_in(&tx, id, Some(publication), true).await?;
        tx.commit().await?;
        let Some(head) = head else { return Ok(None) };
        Ok(Some((head_of(id, &head)?, boards.pop())))
    }

    /// The audit trail of `subject`: up to `limit` of its acts from seq `from_seq` on, and the
    /// monthly figures, in one snapshot; `None` if the ledger has no read model.
    pub async fn read_audit_trail(
        &self,
        ledger: &VillageCode,
        subject: AuditSubject<'_>,
        from_seq: u64,
        limit: u32,
    ) -> Result<Option<StoredAuditTrail>, StoreError> {
        let id = ledger.as_str();
        let mut client = self.pool.get().await?;
        let tx = Self::snapshot(&mut client).await?;
        // One statement per subject, so each is planned for its own index.
        let (filter, key) = match subject {
            AuditSubject::Actor(a) => ("jifen_act_keys(ledger_id, signers, households) @> ARRAY[$2::text]", format!("{id} a {a}")),
            AuditSubject::Household(h) => ("jifen_act_keys(ledger_id, signers, households) @> ARRAY[$2::text]", format!("{id} h {h}")),
            AuditSubject::Entry(e) => ("entry_id = $2", e.to_owned()),
            AuditSubject::Flagged => ("flag IS NOT NULL AND $2::text IS NOT NULL", String::new()),
        };
        // Only acts of the records the head reflects: a row beyond it was put there by hand.
        let acts = tx
            .prepare_cached(&format!(
                "SELECT {ACT_COLUMNS} FROM rm_acts WHERE ledger_id = $1 AND {filter} \
                 AND seq >= $3 AND seq < (SELECT tree_size FROM read_models WHERE ledger_id = $1) ORDER BY seq LIMIT $4"
            ))
            .await?;
        let head = tx.prepare_cached(HEAD).await?;
        let one: [&Param<'_>; 1] = [&id];
        // One more than a page: whether there are more.
        let (from, rows) = (i64::try_from(from_seq).unwrap_or(i64::MAX), i64::from(limit) + 1);
        let four: [&Param<'_>; 4] = [&id, &key, &from, &rows];
        let (head, acts) = tokio::try_join!(tx.query_opt(&head, &one), tx.query(&acts, &four))?;
        let (months, alone) = audit_months_in(&tx, id).await?;
        tx.commit().await?;
        let Some(head) = head else { return Ok(None) };
        // And only acts about the subject, whatever the index returned.
        let about = |a: &Act| match subject {
            AuditSubject::Actor(x) => a.signers.iter().any(|s| s == x),
            AuditSubject::Household(h) => a.households.iter().any(|x| x == h),
            AuditSubject::Entry(e) => a.entry.as_deref() == Some(e),
            AuditSubject::Flagged => a.flag.is_some(),
        };
        let mut acts: Vec<Act> = acts.iter().map(|r| act_of(id, r)).collect::<Result<_, _>>()?;
        let next_from_seq = if acts.len() > limit as usize {
            acts.truncate(limit as usize);
            acts.last().map(|a| a.seq + 1)
        } else {
            None
        };
        Ok(Some(StoredAuditTrail {
            head: head_of(id, &head)?,
            acts: acts.into_iter().filter(about).collect(),
            next_from_seq,
            months,
            alone,
        }))
    }

    /// A ledger's read-model head, if it has one.
    pub async fn read_model_head(&self, ledger: &VillageCode) -> Result<Option<Head>, StoreError> {
        let client = self.pool.get().await?;
        let query = client.prepare_cached(HEAD).await?;
        client.query_opt(&query, &[&ledger.as_str()]).await?.map(|r| head_of(ledger.as_str(), &r)).transpose()
    }

    /// The SHA-256 of the stored acts of seqs `from..to` ([`acts_digest`]).
    pub async fn acts_digest(&self, ledger: &VillageCode, from: u64, to: u64) -> Result<[u8; 32], StoreError> {
        let client = self.pool.get().await?;
        let query = client.prepare_cached(&ACTS_DIGEST).await?;
        let row = client.query_one(&query, &[&ledger.as_str(), &(from as i64), &(to as i64)]).await?;
        let digest: Vec<u8> = row.get(0);
        digest.try_into().map_err(|_| corrupt(ledger.as_str(), "the digest of the stored acts is not 32 bytes".into()))
    }

    /// The stored acts of seqs `from..to`, in seq order.
    pub async fn read_acts(&self, ledger: &VillageCode, from: u64, to: u64) -> Result<Vec<Act>, StoreError> {
        let id = ledger.as_str();
        let client = self.pool.get().await?;
        let query = client
            .prepare_cached(&format!("SELECT {ACT_COLUMNS} FROM rm_acts WHERE ledger_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq"))
            .await?;
        let rows = client.query(&query, &[&id, &(from as i64), &(to as i64)]).await?;
        rows.iter().map(|r| act_of(id, r)).collect()
    }

    /// The bounds of a ledger's stored acts, read with its head in one statement: the tree
    /// size the read model reflects and the lowest and highest seq of an act, if it has a read
    /// model. Every act must lie below the head (an append stores both); one beyond it was put
    /// there by hand, and would be served.
    pub async fn acts_bounds(&self, ledger: &VillageCode) -> Result<Option<(u64, Option<i64>, Option<i64>)>, StoreError> {
        let client = self.pool.get().await?;
        let query = client
            .prepare_cached(
                "SELECT rm.tree_size, (SELECT min(seq) FROM rm_acts WHERE ledger_id = $1), (SELECT max(seq) FROM rm_acts WHERE ledger_id = $1) \
                 FROM read_models rm WHERE rm.ledger_id = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&query, &[&ledger.as_str()]).await? else { return Ok(None) };
        Ok(Some((row.get::<_, i64>(0).max(0) as u64, row.get(1), row.get(2))))
    }

    /// Whether the function the acts' index is built on is the one migration V7 created: an
    /// index on another function would find other acts, and no digest of the rows would show
    /// it. `None` if it is; what it is otherwise.
    pub async fn act_keys_function(&self) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT prosrc FROM pg_proc WHERE proname = 'jifen_act_keys'", &[]).await?;
        let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(match found.as_slice() {
            [one] if one.split_whitespace().eq(ACT_KEYS_SOURCE.split_whitespace()) => None,
            _ => Some(format!("read model: the function rm_acts is indexed by (jifen_act_keys) is not the one jifen created: {found:?}")),
        })
    }

    /// Replaces a ledger's read model with `rows` at `head` (a replay of its first
    /// `head.tree_size` records), in one transaction. Refused with [`StoreError::Conflict`] if
    /// the ledger has another number of records by then (appends went on: replay again).
    pub async fn rebuild_read_model(&self, ledger: &VillageCode, head: &Head, rows: &Rows, acts: &[Act]) -> Result<(), StoreError> {
        let id = ledger.as_str();
        if acts.len() as u64 != head.tree_size {
            // A caller's mistake, refused before anything is written.
            return Err(corrupt(id, format!("a rebuild of {} records with {} acts", head.tree_size, acts.len())));
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Appends move the head row under its lock: taking it first orders this rebuild
        // after them, or them after it. The row is created first if there is none (a ledger
        // stored before read models), so that there is a row to lock: two rebuilds, or a
        // rebuild and a build on load, then take turns instead of both writing.
        tx.execute(
            "INSERT INTO read_models (ledger_id, tree_size, root_hash, last_recorded_at, book_year) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (ledger_id) DO NOTHING",
            &[&id, &(head.tree_size as i64), &head.root.0.as_slice(), &head.last_recorded_at, &head.book_year],
        )
        .await?;
        tx.query_one("SELECT 1 FROM read_models WHERE ledger_id = $1 FOR UPDATE", &[&id]).await?;
        let end: Option<i64> = tx.query_one("SELECT max(seq) + 1 FROM records WHERE ledger_id = $1", &[&id]).await?.get(0);
        if end.unwrap_or(0) != head.tree_size as i64 {
            return Err(StoreError::Conflict { ledger: id.to_owned(), seq: head.tree_size });
        }
        for table in TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE ledger_id = $1"), &[&id]).await?;
        }
        // Snapshots are derived too: the next load replays the records and seals a new one.
        tx.execute("DELETE FROM snapshots WHERE ledger_id = $1", &[&id]).await?;
        tx.execute(
            "INSERT INTO read_models (ledger_id, tree_size, root_hash, last_recorded_at, book_year) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (ledger_id) DO UPDATE SET tree_size = EXCLUDED.tree_size, root_hash = EXCLUDED.root_hash, \
             last_recorded_at = EXCLUDED.last_recorded_at, book_year = EXCLUDED.book_year",
            &[&id, &(head.tree_size as i64), &head.root.0.as_slice(), &head.last_recorded_at, &head.book_year],
        )
        .await?;
        upsert_rows(&tx, id, rows).await?;
        let insert = tx.prepare_cached(INSERT_ACTS).await?;
        for chunk in acts.chunks(ACTS_PER_STATEMENT) {
            let mut c = Columns::default();
            c.push_acts(id, chunk);
            let a = &c.acts;
            let params: [&Param<'_>; 12] = [
                &a.ids,
                &a.seqs,
                &a.kinds,
                &a.authors,
                &a.signers,
                &a.recorded,
                &a.occurred,
                &a.households,
                &a.entries,
                &a.flags,
                &a.days,
                &a.actors,
            ];
            tx.execute(&insert, &params).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter numbers of a statement, in order of first appearance.
    fn numbers(sql: &str) -> Vec<usize> {
        let mut seen = Vec::new();
        for (_, n) in parameters(sql) {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen
    }

    #[test]
    fn each_part_of_an_append_is_one_named_write() {
        for part in APPEND_PARTS {
            let (name, rest) = part.split_once(" AS (").unwrap();
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{part}");
            assert!(rest.ends_with(')'), "{part}");
            // The part's parentheses close where it ends, and nowhere before.
            let mut depth = 1i32;
            for (i, c) in rest.char_indices() {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                assert!(depth > 0 || i == rest.len() - 1, "{part}");
            }
            assert_eq!(depth, 0, "{part}");
        }
    }

    #[test]
    fn an_append_with_every_part_is_numbered_as_the_parts_are() {
        let all = append_statement((1 << APPEND_PARTS.len()) - 1);
        assert_eq!(all.params, (0..127).collect::<Vec<_>>());
        assert_eq!(numbers(&all.sql), (1..=127).collect::<Vec<_>>());
        assert!(all.sql.ends_with("cardinality($15::text[]))"), "{}", all.sql);
    }

    #[test]
    fn an_append_holds_only_its_parts_with_rows_numbered_afresh() {
        // A score: records, moved head, balances, monthly figures, checkpoint, acts, audit months.
        let present = [1, MOVED, 4, 5, 7, 14, 15].iter().fold(0, |b, i| b | 1 << i);
        let s = append_statement(present);
        let names: Vec<&str> = APPEND_PARTS.iter().map(|p| p.split(' ').next().unwrap()).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(s.sql.contains(&format!(" {name} AS (")), present & (1 << i) != 0, "{name}: {}", s.sql);
        }
        // The parameters are $1.. in order, each taking the part's own column.
        assert_eq!(numbers(&s.sql), (1..=s.params.len()).collect::<Vec<_>>());
        assert_eq!(s.params[..7], [2, 3, 4, 5, 6, 7, 8]);
        // The head check names the moved heads' ids, wherever they are now.
        let moved_ids = s.params.iter().position(|&p| p == 14).unwrap() + 1;
        assert!(s.sql.ends_with(&format!("cardinality(${moved_ids}::text[]))")), "{}", s.sql);
        // Without moved heads (a ledger's first append), there is nothing to check.
        let first = append_statement(present & !(1 << MOVED) | 1 | 1 << 2);
        assert!(first.sql.ends_with(" SELECT 0"), "{}", first.sql);
        // Built once per set of parts.
        assert!(std::sync::Arc::ptr_eq(&s, &append_statement(present)));
    }
}
