//! The tamper campaign: an operator with the database superuser's access disables the
//! append-only triggers (`session_replication_role = replica`) and changes stored rows. Every
//! change must be caught by VerifyLedger, naming the first bad seq.
//!
//! Each round applies one random tampering to a verified village-year, asks VerifyLedger, and
//! restores the rows from a saved copy:
//!
//! - an edit of one column of one row (body, recorded_at, signatures, prev_hash, the stored
//!   record_hash), or of two or three rows at once;
//! - a deletion, a reordering (two rows swapped), an insertion (a copy of another row, later
//!   rows shifted up);
//! - a truncation of the tail, with the stored checkpoints left in place, or removed too (then
//!   caught with the checkpoint a supervisor holds);
//! - an edit of the read model (docs/adr/0005): a household's balance, a monthly figure, a
//!   household's balance row deleted, a rulebook's expiry, the head's tree size, year, last
//!   record time or root, a 公示 entry's points or status, an objection's finding, a 公示
//!   window, a supermarket month's stock, an act of the audit trail (a column rewritten, or the
//!   row deleted), a month's score count or a lone scorer's count; VerifyLedger must name the
//!   table and the row, as the records verify;
//! - a snapshot's body or size column (the next start would load from it).
//!
//! Half the rounds are **cold**: the server is stopped before the tampering and started after
//! it, so it loads the tampered rows (the order of events a tamperer would choose). Servers
//! seal a snapshot every 40 records, so a cold server loads the village from the latest one
//! and checks the history behind it in the background. It must refuse public queries with
//! DATA_LOSS / LEDGER_CORRUPT from its load, or, for rows before the snapshot, answer the
//! honest (sealed) figures until the history check stops the village; and it must still let
//! the supervisors verify. In warm rounds the running server keeps answering from memory
//! until VerifyLedger finds the tampering; from then on it refuses them too. Below the
//! auditor's enrolment (seq 2), a cold server's reader is the township key the deployment
//! enrolled.

use super::harness::{openers, Db, Local};
use super::Report;
use crate::api::{self, audit_service_client::AuditServiceClient, query_service_client::QueryServiceClient};
use crate::auth::method;
use crate::store::read_model::TABLES;
use anyhow::{anyhow, ensure, Context};
use jifen_ledger::sample::{generate, SampleConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;

/// The campaign's parameters.
#[derive(Clone, Debug)]
pub struct TamperConfig {
    pub rounds: u32,
    pub seed: u64,
}

/// One stored-row column an edit can change.
#[derive(Clone, Copy, Debug)]
enum Column {
    Body,
    RecordedAt,
    Signatures,
    PrevHash,
    RecordHash,
}

/// One tampering, with the seq VerifyLedger must name.
#[derive(Clone, Debug)]
enum Tampering {
    Edit(Vec<(u64, Column, u32, u8)>),
    Delete(u64),
    Swap(u64, u64),
    Insert { at: u64, copy_of: u64 },
    Truncate(u64),
    TruncateWithCheckpoints(u64),
    ReadModel(ReadModelEdit),
}

/// A change to a read-model row.
#[derive(Clone, Debug)]
enum ReadModelEdit {
    /// A figure of a household's balance, moved by `delta`.
    Balance { household: String, column: &'static str, delta: i64 },
    /// A figure of a household's monthly row, moved by `delta`.
    Period { period: String, household: String, column: &'static str, delta: i64 },
    /// Whether a rulebook expires points annually, flipped (balances read "now" would expire,
    /// or not, wrongly).
    Rulebook { adopted_at: i64 },
    /// A household's balance row, removed.
    DeleteBalance { household: String },
    /// The head's tree size moved by `delta` (never to 0).
    TreeSize { delta: i64 },
    /// The head's year, a year back (an expiry that was booked would seem due again).
    BookYear,
    /// The head's last record time moved by `delta` µs.
    LastRecordedAt { delta: i64 },
    /// One byte of the head's root flipped.
    Root,
    /// A 公示 board entry's points moved by `delta`, or its status changed.
    BoardEntry { publication: String, position: i32, entry: String, status: bool, delta: i64 },
    /// An objection's finding rewritten.
    Objection { publication: String, position: i32, objection: String },
    /// A publication's window end moved by `delta` µs.
    Window { publication: String, delta: i64 },
    /// A supermarket month's stock of a goods moved by `delta` units (never below zero).
    Stock { period: String, goods: String, delta: i64 },
    /// An act of the audit trail rewritten: `column` set to `value` (SQL).
    Act { seq: u64, column: &'static str, value: &'static str },
    /// An act of the audit trail removed (hidden from whoever asks about its signers,
    /// households or entry).
    DeleteAct { seq: u64 },
    /// A month's score count moved by `delta` (a lone scorer would be flagged, or not).
    AuditMonth { period: String, delta: i64 },
    /// The scores a panel member signed alone in a month, moved by `delta`.
    Alone { period: String, actor: String, delta: i64 },
    /// One byte of the latest snapshot's body flipped (the next start would load from it).
    SnapshotBody,
    /// The latest snapshot's size column moved one record back.
    SnapshotSize,
}

/// The read-model rows a campaign can aim at: households, monthly rows, rulebooks.
struct Targets {
    households: Vec<String>,
    months: Vec<(String, String)>,
    rulebooks: Vec<i64>,
    /// (publication, position, entry id) of each board entry.
    entries: Vec<(String, i32, String)>,
    /// (publication, position, objection id) of each objection.
    objections: Vec<(String, i32, String)>,
    /// (period, goods code) of each supermarket goods line.
    goods: Vec<(String, String)>,
    /// Months of the audit trail.
    audit_months: Vec<String>,
    /// (period, panel member) of each lone-scorer count.
    alone: Vec<(String, String)>,
}

/// What VerifyLedger must say of a tampering.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// The first bad seq.
    Seq(u64),
    /// No seq, and a reason that contains this.
    ReadModel(String),
}

impl Tampering {
    fn random(rng: &mut ChaCha8Rng, n: u64, targets: &Targets) -> Tampering {
        if rng.random_range(0..4) == 0 {
            let household = targets.households[rng.random_range(0..targets.households.len())].clone();
            let delta = rng.random_range(1..=500i64) * if rng.random_bool(0.5) { 1 } else { -1 };
            let (period, month_of) = targets.months[rng.random_range(0..targets.months.len())].clone();
            return Tampering::ReadModel(match rng.random_range(0..18) {
                0 => ReadModelEdit::Balance {
                    household,
                    column: ["basic", "contribution", "deducted", "redeemed", "carried_in", "expired", "earned_carried_in"]
                        [rng.random_range(0..7)],
                    delta,
                },
                1 => ReadModelEdit::Period {
                    period,
                    household: month_of,
                    column: ["basic", "contribution", "deducted", "redeemed", "returned"][rng.random_range(0..5)],
                    delta,
                },
                2 => ReadModelEdit::DeleteBalance { household },
                3 => ReadModelEdit::TreeSize {
                    delta: if rng.random_bool(0.5) { -(rng.random_range(1..n as i64)) } else { rng.random_range(1..=50) },
                },
                4 => ReadModelEdit::BookYear,
                5 => ReadModelEdit::Rulebook { adopted_at: targets.rulebooks[rng.random_range(0..targets.rulebooks.len())] },
                6 => ReadModelEdit::LastRecordedAt { delta },
                7 => ReadModelEdit::Root,
                8 => {
                    let (publication, position, entry) = targets.entries[rng.random_range(0..targets.entries.len())].clone();
                    ReadModelEdit::BoardEntry { publication, position, entry, status: rng.random_bool(0.5), delta }
                }
                9 => {
                    let (publication, position, objection) = targets.objections[rng.random_range(0..targets.objections.len())].clone();
                    ReadModelEdit::Objection { publication, position, objection }
                }
                10 => {
                    let (publication, _, _) = targets.entries[rng.random_range(0..targets.entries.len())].clone();
                    ReadModelEdit::Window { publication, delta }
                }
                11 => {
                    let (period, goods) = targets.goods[rng.random_range(0..targets.goods.len())].clone();
                    ReadModelEdit::Stock { period, goods, delta: delta.abs() }
                }
                12 => {
                    let (column, value) = [
                        ("author", "author || 'x'"),
                        ("signers", "'nobody'"),
                        ("households", "households || ' H9999'"),
                        ("entry_id", "'E-forged'"),
                        ("flag", "CASE WHEN flag IS NULL THEN 1 ELSE NULL END"),
                        ("recorded_at", "recorded_at + 1"),
                    ][rng.random_range(0..6)];
                    let seq = rng.random_range(0..n);
                    ReadModelEdit::Act { seq, column, value }
                }
                13 => ReadModelEdit::DeleteAct { seq: rng.random_range(0..n) },
                14 => {
                    let period = targets.audit_months[rng.random_range(0..targets.audit_months.len())].clone();
                    ReadModelEdit::AuditMonth { period, delta: delta.abs() }
                }
                15 => ReadModelEdit::SnapshotBody,
                16 => ReadModelEdit::SnapshotSize,
                _ if targets.alone.is_empty() => ReadModelEdit::DeleteAct { seq: rng.random_range(0..n) },
                _ => {
                    let (period, actor) = targets.alone[rng.random_range(0..targets.alone.len())].clone();
                    ReadModelEdit::Alone { period, actor, delta }
                }
            });
        }
        let edit = |rng: &mut ChaCha8Rng| {
            let column =
                [Column::Body, Column::RecordedAt, Column::Signatures, Column::PrevHash, Column::RecordHash][rng.random_range(0..5)];
            (rng.random_range(0..n), column, rng.random::<u32>(), rng.random_range(1..=255u8))
        };
        match rng.random_range(0..8) {
            0 | 1 => Tampering::Edit(vec![edit(rng)]),
            2 => {
                let mut edits: BTreeMap<u64, _> = BTreeMap::new();
                for _ in 0..rng.random_range(2..=3) {
                    let e = edit(rng);
                    edits.insert(e.0, e);
                }
                Tampering::Edit(edits.into_values().collect())
            }
            3 => Tampering::Delete(rng.random_range(0..n)),
            4 => {
                let a = rng.random_range(0..n - 1);
                Tampering::Swap(a, rng.random_range(a + 1..n))
            }
            5 => Tampering::Insert { at: rng.random_range(1..n), copy_of: rng.random_range(0..n) },
            6 => Tampering::Truncate(rng.random_range(1..n)),
            _ => Tampering::TruncateWithCheckpoints(rng.random_range(1..n)),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Tampering::Edit(e) if e.len() > 1 => "several edits",
            Tampering::Edit(_) => "edit",
            Tampering::Delete(_) => "deletion",
            Tampering::Swap(..) => "reordering",
            Tampering::Insert { .. } => "insertion",
            Tampering::Truncate(_) => "truncation",
            Tampering::TruncateWithCheckpoints(_) => "truncation with its checkpoints",
            Tampering::ReadModel(ReadModelEdit::Balance { .. }) => "read model: a balance",
            Tampering::ReadModel(ReadModelEdit::Period { .. }) => "read model: a monthly figure",
            Tampering::ReadModel(ReadModelEdit::DeleteBalance { .. }) => "read model: a balance row deleted",
            Tampering::ReadModel(ReadModelEdit::TreeSize { .. }) => "read model: its tree size",
            Tampering::ReadModel(ReadModelEdit::BookYear) => "read model: its year",
            Tampering::ReadModel(ReadModelEdit::Rulebook { .. }) => "read model: a rulebook's expiry",
            Tampering::ReadModel(ReadModelEdit::LastRecordedAt { .. }) => "read model: its last record time",
            Tampering::ReadModel(ReadModelEdit::Root) => "read model: its root",
            Tampering::ReadModel(ReadModelEdit::BoardEntry { .. }) => "read model: a 公示 entry",
            Tampering::ReadModel(ReadModelEdit::Objection { .. }) => "read model: an objection",
            Tampering::ReadModel(ReadModelEdit::Window { .. }) => "read model: a 公示 window",
            Tampering::ReadModel(ReadModelEdit::Stock { .. }) => "read model: a supermarket stock",
            Tampering::ReadModel(ReadModelEdit::Act { .. }) => "read model: an act of the audit trail",
            Tampering::ReadModel(ReadModelEdit::DeleteAct { .. }) => "read model: an act deleted",
            Tampering::ReadModel(ReadModelEdit::AuditMonth { .. }) => "read model: a month's score count",
            Tampering::ReadModel(ReadModelEdit::Alone { .. }) => "read model: a lone scorer's count",
            Tampering::ReadModel(ReadModelEdit::SnapshotBody) => "a snapshot's body",
            Tampering::ReadModel(ReadModelEdit::SnapshotSize) => "a snapshot's size",
        }
    }

    /// What VerifyLedger must say.
    fn expect(&self) -> Expect {
        match self {
            Tampering::ReadModel(edit) => Expect::ReadModel(match edit {
                ReadModelEdit::Balance { household, .. } => format!("rm_balances: household {household} is stored as"),
                ReadModelEdit::Period { period, household, .. } => {
                    format!("rm_period_figures: (period, household) ({period}, {household}) is stored as")
                }
                ReadModelEdit::Rulebook { adopted_at } => format!("rm_rulebooks: rulebook adopted at seq {adopted_at} is stored as"),
                ReadModelEdit::BoardEntry { publication, position, entry, .. } => {
                    format!("rm_board_entries: publication {publication} position {position} (entry {entry}) is stored as")
                }
                ReadModelEdit::Objection { publication, position, objection } => {
                    format!("rm_objections: publication {publication} position {position} (objection {objection}) is stored as")
                }
                ReadModelEdit::Window { publication, .. } => format!("rm_publications: publication {publication} is stored as"),
                ReadModelEdit::Stock { period, .. } => format!("rm_supermarket_months: month {period} is stored as"),
                ReadModelEdit::DeleteBalance { household } => format!("rm_balances: household {household} is missing"),
                ReadModelEdit::Act { seq, .. } => format!("rm_acts: seq {seq} is stored as"),
                ReadModelEdit::DeleteAct { seq } => format!("rm_acts: seq {seq} is missing"),
                ReadModelEdit::AuditMonth { period, .. } => format!("rm_audit_months: month {period} is stored as"),
                ReadModelEdit::Alone { period, actor, .. } => {
                    format!("rm_audit_alone: (month, panel member) ({period}, {actor}) is stored as")
                }
                ReadModelEdit::SnapshotBody | ReadModelEdit::SnapshotSize => "the snapshot of size".into(),
                ReadModelEdit::TreeSize { delta } if *delta > 0 => "read model: it reflects a tree of".into(),
                ReadModelEdit::TreeSize { .. } | ReadModelEdit::BookYear | ReadModelEdit::LastRecordedAt { .. } | ReadModelEdit::Root => {
                    "read model: its head is stored as".into()
                }
            }),
            _ => Expect::Seq(self.first_bad()),
        }
    }

    /// The first seq that is no longer what was appended.
    fn first_bad(&self) -> u64 {
        match self {
            Tampering::Edit(e) => e.iter().map(|x| x.0).min().expect("at least one edit"),
            Tampering::Delete(s) | Tampering::Swap(s, _) | Tampering::Truncate(s) | Tampering::TruncateWithCheckpoints(s) => *s,
            // A copy of the very row it displaces leaves that seq as it was: the first row
            // that differs is the displaced original, one seq up.
            Tampering::Insert { at, copy_of } if copy_of == at => at + 1,
            Tampering::Insert { at, .. } => *at,
            Tampering::ReadModel(_) => u64::MAX,
        }
    }

    /// The SQL that does it, on ledger `l`.
    fn sql(&self, l: &str) -> String {
        let w = |seq: u64| format!("WHERE ledger_id = '{l}' AND seq = {seq}");
        match self {
            Tampering::Edit(edits) => edits
                .iter()
                .map(|(seq, column, at, mask)| {
                    let flip = |c: &str| {
                        let i = format!("({at}::bigint % length({c}))::int");
                        format!("{c} = set_byte({c}, {i}, get_byte({c}, {i}) # {mask})")
                    };
                    let set = match column {
                        Column::Body => flip("body"),
                        Column::Signatures => flip("signatures"),
                        Column::PrevHash => flip("prev_hash"),
                        Column::RecordHash => flip("record_hash"),
                        Column::RecordedAt => {
                            format!("recorded_at = recorded_at + {}", i64::from(*mask) * if at % 2 == 0 { 1 } else { -1 })
                        }
                    };
                    format!("UPDATE records SET {set} {};", w(*seq))
                })
                .collect(),
            Tampering::Delete(s) => format!("DELETE FROM records {};", w(*s)),
            Tampering::Swap(a, b) => format!(
                "UPDATE records SET seq = 100000000 {}; UPDATE records SET seq = {a} {}; UPDATE records SET seq = {b} {};",
                w(*a),
                w(*b),
                w(100000000)
            ),
            Tampering::Insert { at, copy_of } => format!(
                "UPDATE records SET seq = seq + 100000000 WHERE ledger_id = '{l}' AND seq >= {at};
                 UPDATE records SET seq = seq - 99999999 WHERE ledger_id = '{l}' AND seq >= 100000000;
                 INSERT INTO records (ledger_id, seq, prev_hash, recorded_at, body, signatures, record_hash)
                   SELECT ledger_id, {at}, prev_hash, recorded_at, body, signatures, record_hash FROM saved_records {};",
                w(*copy_of)
            ),
            Tampering::Truncate(cut) => format!("DELETE FROM records WHERE ledger_id = '{l}' AND seq >= {cut};"),
            Tampering::TruncateWithCheckpoints(cut) => format!(
                "DELETE FROM records WHERE ledger_id = '{l}' AND seq >= {cut};
                 DELETE FROM cosignatures WHERE ledger_id = '{l}' AND tree_size > {cut};
                 DELETE FROM checkpoints WHERE ledger_id = '{l}' AND tree_size > {cut};"
            ),
            Tampering::ReadModel(edit) => {
                match edit {
                    ReadModelEdit::Balance { household, column, delta } => {
                        format!("UPDATE rm_balances SET {column} = {column} + {delta} WHERE ledger_id = '{l}' AND household_id = '{household}';")
                    }
                    ReadModelEdit::Period { period, household, column, delta } => format!(
                        "UPDATE rm_period_figures SET {column} = {column} + {delta} \
                         WHERE ledger_id = '{l}' AND period = '{period}' AND household_id = '{household}';"
                    ),
                    ReadModelEdit::Rulebook { adopted_at } => format!(
                        "UPDATE rm_rulebooks SET annual_expiry = NOT annual_expiry WHERE ledger_id = '{l}' AND adopted_at = {adopted_at};"
                    ),
                    ReadModelEdit::LastRecordedAt { delta } => {
                        format!("UPDATE read_models SET last_recorded_at = last_recorded_at + {delta} WHERE ledger_id = '{l}';")
                    }
                    ReadModelEdit::BoardEntry { publication, position, status, delta, .. } => {
                        let set = if *status { "status = (status + 1) % 6".to_owned() } else { format!("points = points + {delta}") };
                        format!(
                            "UPDATE rm_board_entries SET {set} WHERE ledger_id = '{l}' AND publication_id = '{publication}' AND position = {position};"
                        )
                    }
                    ReadModelEdit::Objection { publication, position, .. } => format!(
                        "UPDATE rm_objections SET finding = finding || ' (amended)' WHERE ledger_id = '{l}' AND publication_id = '{publication}' AND position = {position};"
                    ),
                    ReadModelEdit::Window { publication, delta } => format!(
                        "UPDATE rm_publications SET window_end = window_end + {delta} WHERE ledger_id = '{l}' AND publication_id = '{publication}';"
                    ),
                    ReadModelEdit::Stock { period, goods, delta } => format!(
                        "UPDATE rm_supermarket_goods SET stock = stock + {delta} WHERE ledger_id = '{l}' AND period = '{period}' AND goods_code = '{goods}';"
                    ),
                    ReadModelEdit::Root => format!(
                        "UPDATE read_models SET root_hash = set_byte(root_hash, 7, get_byte(root_hash, 7) # 1) WHERE ledger_id = '{l}';"
                    ),
                    ReadModelEdit::DeleteBalance { household } => {
                        format!("DELETE FROM rm_balances WHERE ledger_id = '{l}' AND household_id = '{household}';")
                    }
                    ReadModelEdit::TreeSize { delta } => {
                        format!("UPDATE read_models SET tree_size = tree_size + {delta} WHERE ledger_id = '{l}';")
                    }
                    ReadModelEdit::BookYear => format!("UPDATE read_models SET book_year = book_year - 1 WHERE ledger_id = '{l}';"),
                    ReadModelEdit::Act { seq, column, value } => {
                        format!("UPDATE rm_acts SET {column} = {value} WHERE ledger_id = '{l}' AND seq = {seq};")
                    }
                    ReadModelEdit::DeleteAct { seq } => format!("DELETE FROM rm_acts WHERE ledger_id = '{l}' AND seq = {seq};"),
                    ReadModelEdit::AuditMonth { period, delta } => {
                        format!("UPDATE rm_audit_months SET scores = scores + {delta} WHERE ledger_id = '{l}' AND period = '{period}';")
                    }
                    ReadModelEdit::Alone { period, actor, delta } => format!(
                        "UPDATE rm_audit_alone SET scores = scores + {delta} WHERE ledger_id = '{l}' AND period = '{period}' AND actor_id = '{actor}';"
                    ),
                    ReadModelEdit::SnapshotBody => format!(
                        "UPDATE snapshots SET body = set_byte(body, length(body) / 3, get_byte(body, length(body) / 3) # 16) \
                         WHERE ledger_id = '{l}' AND tree_size = (SELECT max(tree_size) FROM snapshots WHERE ledger_id = '{l}');"
                    ),
                    ReadModelEdit::SnapshotSize => format!(
                        "UPDATE snapshots SET tree_size = tree_size - 1 \
                         WHERE ledger_id = '{l}' AND tree_size = (SELECT max(tree_size) FROM snapshots WHERE ledger_id = '{l}');"
                    ),
                }
            }
        }
    }
}

/// How often the campaign's servers seal a snapshot (records).
const SNAPSHOT_EVERY: u64 = 40;

/// Runs the campaign.
pub async fn run(config: &TamperConfig, progress: &dyn Fn(&str)) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let db = Db::start().await?;
    // Large enough that a server's tree forgets the lower levels of its first 256 leaves, and
    // with a settled month whose 公示 boards it no longer keeps.
    let sample = generate(&SampleConfig { seed: config.seed, households: Some(40), months: 2, scores_per_household: 3.0 })?;
    // Every server seals a snapshot every 40 records (and an eighth of the ledger): a cold
    // server loads the village from the latest, and checks the history behind it meanwhile.
    let start = || async {
        let server = Local::start(&db, openers(&sample.records()[..1])).await?;
        server.villages.set_snapshot_every(SNAPSHOT_EVERY);
        anyhow::Ok(server)
    };
    let mut server = start().await?;
    let ledger = sample.writer.ledger.clone();
    for r in sample.records() {
        server.replay(r).await?;
    }
    let n = sample.records().len() as u64;
    server.wait_checkpoint(&ledger, n).await?;
    // A start after the appends: its load seals the last snapshot if one is due.
    server.shutdown().await?;
    server = start().await?;
    server.clock.advance_to(sample.records().last().map_or(0, |r| r.recorded_at()));
    let held = server.wait_checkpoint(&ledger, n).await?;
    server.villages.history_checked().await;
    let owner = db.superuser().await?;
    let snapshot: Option<i64> = owner.query_one("SELECT max(tree_size) FROM snapshots WHERE ledger_id = $1", &[&ledger]).await?.get(0);
    let snapshot = snapshot.ok_or_else(|| anyhow!("no snapshot was sealed"))? as u64;
    owner
        .batch_execute(&format!(
            "CREATE TABLE saved_records AS SELECT * FROM records;
                 CREATE TABLE saved_checkpoints AS SELECT * FROM checkpoints;
                 CREATE TABLE saved_cosignatures AS SELECT * FROM cosignatures;
                 CREATE TABLE saved_read_models AS SELECT * FROM read_models;
                 CREATE TABLE saved_snapshots AS SELECT * FROM snapshots; {}",
            TABLES.iter().map(|t| format!("CREATE TABLE saved_{t} AS SELECT * FROM {t};")).collect::<String>()
        ))
        .await?;
    let rows = |sql: &'static str| {
        let (owner, ledger) = (&owner, &ledger);
        async move { owner.query(sql, &[ledger]).await }
    };
    let targets = Targets {
        households: rows("SELECT household_id FROM rm_balances WHERE ledger_id = $1").await?.iter().map(|r| r.get(0)).collect(),
        months: rows("SELECT period, household_id FROM rm_period_figures WHERE ledger_id = $1")
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        rulebooks: rows("SELECT adopted_at FROM rm_rulebooks WHERE ledger_id = $1").await?.iter().map(|r| r.get(0)).collect(),
        entries: rows("SELECT publication_id, position, entry_id FROM rm_board_entries WHERE ledger_id = $1")
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
        objections: rows("SELECT publication_id, position, objection_id FROM rm_objections WHERE ledger_id = $1")
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
        goods: rows("SELECT period, goods_code FROM rm_supermarket_goods WHERE ledger_id = $1")
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        audit_months: rows("SELECT period FROM rm_audit_months WHERE ledger_id = $1").await?.iter().map(|r| r.get(0)).collect(),
        alone: rows("SELECT period, actor_id FROM rm_audit_alone WHERE ledger_id = $1")
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    };
    ensure!(
        !targets.households.is_empty()
            && !targets.months.is_empty()
            && !targets.rulebooks.is_empty()
            && !targets.entries.is_empty()
            && !targets.objections.is_empty()
            && !targets.goods.is_empty(),
        "the village's read model lacks balances, monthly figures, rulebooks, 公示 entries, objections or supermarket goods"
    );
    let pristine = db.fingerprint().await?;
    let mut audit = AuditServiceClient::connect(format!("http://{}", server.addr)).await?;
    let verify = |server: &Local, note: &str| {
        let req = api::VerifyLedgerRequest { ledger_id: ledger.clone(), checkpoint_note: note.to_owned() };
        server.auth(req, method::VERIFY_LEDGER, &ledger, &sample.cast.auditor)
    };
    let clean = audit.verify_ledger(verify(&server, &held.note)).await?.into_inner();
    ensure!(clean.ok, "the untouched ledger does not verify: {}", clean.reason);
    let mut kinds: BTreeMap<&'static str, u32> = BTreeMap::new();
    let (mut cold_rounds, mut answered_from_snapshot) = (0, 0);
    let last_time = sample.records().last().map_or(0, |r| r.recorded_at());
    let mut query = QueryServiceClient::connect(format!("http://{}", server.addr)).await?;
    let balances = api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() };
    let honest = query.list_balances(balances.clone()).await?.into_inner().balances;
    for round in 1..=config.rounds {
        let t = Tampering::random(&mut rng, n, &targets);
        let cold = rng.random_bool(0.5);
        let want = t.expect();
        query
            .list_balances(balances.clone())
            .await
            .with_context(|| format!("round {round}: the village is not served before the tampering"))?;
        if cold {
            server.shutdown().await?;
        }
        owner
            .batch_execute(&format!("SET session_replication_role = replica; {}", t.sql(&ledger)))
            .await
            .with_context(|| format!("{t:?}"))?;
        if cold {
            cold_rounds += 1;
            server = start().await?;
            server.clock.advance_to(last_time);
            audit = AuditServiceClient::connect(format!("http://{}", server.addr)).await?;
            query = QueryServiceClient::connect(format!("http://{}", server.addr)).await?;
            // Refused from the load on; or, for rows before the snapshot that only the history
            // check reads, answered with the sealed state's (honest) figures until that check
            // stops the village, without a restart.
            match query.list_balances(balances.clone()).await {
                Err(e) if e.code() == tonic::Code::DataLoss => {}
                Ok(answer) => {
                    ensure!(
                        answer.get_ref().balances == honest,
                        "round {round} (seed {}, cold): {t:?} — a server started after it answered tampered balances",
                        config.seed
                    );
                    answered_from_snapshot += 1;
                    server.villages.history_checked().await;
                    let refused = query.list_balances(balances.clone()).await;
                    ensure!(
                        refused.as_ref().err().is_some_and(|e| e.code() == tonic::Code::DataLoss),
                        "round {round} (seed {}, cold): {t:?} — once the history behind the snapshot was checked, ListBalances answered {refused:?}",
                        config.seed
                    );
                }
                Err(e) => return Err(anyhow!("round {round} (seed {}, cold): {t:?} — ListBalances answered {e:?}", config.seed)),
            }
        }
        // A truncation that took its checkpoints along is only visible against the held one.
        let note = if matches!(t, Tampering::TruncateWithCheckpoints(_)) { held.note.as_str() } else { "" };
        let reader = if cold && matches!(want, Expect::Seq(s) if s <= 2) { &sample.cast.township } else { &sample.cast.auditor };
        let req = api::VerifyLedgerRequest { ledger_id: ledger.clone(), checkpoint_note: note.to_owned() };
        let res = audit.verify_ledger(server.auth(req, method::VERIFY_LEDGER, &ledger, reader)).await;
        let res = res
            .with_context(|| {
                format!("round {round} (seed {}, {}): {t:?} — VerifyLedger failed", config.seed, if cold { "cold" } else { "warm" })
            })?
            .into_inner();
        let named = match &want {
            Expect::Seq(seq) => res.has_bad_seq && res.first_bad_seq == *seq,
            Expect::ReadModel(needle) => !res.has_bad_seq && res.reason.contains(needle.as_str()),
        };
        if res.ok || !named {
            return Err(anyhow!(
                "round {round} (seed {}, {}): {t:?} — VerifyLedger said ok={} first_bad_seq={} ({}), expected {want:?}",
                config.seed,
                if cold { "cold" } else { "warm" },
                res.ok,
                if res.has_bad_seq { res.first_bad_seq.to_string() } else { "none".into() },
                res.reason
            ));
        }
        let refused = query.list_balances(balances.clone()).await;
        ensure!(
            refused.as_ref().err().is_some_and(|e| e.code() == tonic::Code::DataLoss),
            "round {round} (seed {}): {t:?} — after VerifyLedger found it, ListBalances answered {refused:?}",
            config.seed
        );
        *kinds.entry(t.kind()).or_default() += 1;
        owner
            .batch_execute(&format!(
                "SET session_replication_role = replica;
                 DELETE FROM records WHERE ledger_id = '{ledger}';
                 INSERT INTO records OVERRIDING SYSTEM VALUE SELECT * FROM saved_records;
                 DELETE FROM cosignatures; DELETE FROM checkpoints;
                 INSERT INTO checkpoints OVERRIDING SYSTEM VALUE SELECT * FROM saved_checkpoints;
                 INSERT INTO cosignatures OVERRIDING SYSTEM VALUE SELECT * FROM saved_cosignatures;
                 {}
                 DELETE FROM read_models; INSERT INTO read_models SELECT * FROM saved_read_models;
                 DELETE FROM snapshots; INSERT INTO snapshots SELECT * FROM saved_snapshots; {}",
                TABLES.iter().map(|t| format!("DELETE FROM {t};")).collect::<String>(),
                TABLES.iter().rev().map(|t| format!("INSERT INTO {t} SELECT * FROM saved_{t};")).collect::<String>()
            ))
            .await?;
        // The next round starts from a server that loaded the restored rows.
        server.shutdown().await?;
        server = start().await?;
        server.clock.advance_to(last_time);
        audit = AuditServiceClient::connect(format!("http://{}", server.addr)).await?;
        query = QueryServiceClient::connect(format!("http://{}", server.addr)).await?;
        if round % 50 == 0 || round == config.rounds {
            progress(&format!("round {round}/{}: every tampering named (its first bad seq, or the read-model row)", config.rounds));
        }
    }
    ensure!(db.fingerprint().await? == pristine, "restoring the saved rows did not give the original ledger back");
    let clean = audit.verify_ledger(verify(&server, &held.note)).await?.into_inner();
    ensure!(clean.ok, "the restored ledger does not verify: {}", clean.reason);
    server.shutdown().await?;
    Ok(Report {
        campaign: "tamper",
        seed: config.seed,
        rounds: config.rounds,
        elapsed: started.elapsed(),
        facts: vec![
            format!("a village of {n} records, its latest snapshot at {snapshot}; each round one random tampering by the database superuser, triggers bypassed"),
            format!(
                "{cold_rounds} cold rounds (the server restarted between the tampering and the check, loading the village from its snapshot: public queries refused with DATA_LOSS from its load, or in {answered_from_snapshot} rounds answered with the honest figures until the check of the history behind the snapshot stopped the village), {} warm",
                config.rounds - cold_rounds
            ),
            format!(
                "detected, the first bad seq or the read-model row named exactly: {}",
                kinds.iter().map(|(k, v)| format!("{v} × {k}")).collect::<Vec<_>>().join(", ")
            ),
        ],
    })
}
