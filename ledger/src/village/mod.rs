//! The village write-model: given the state of a village ledger and a signed event, accept it
//! (producing the next record) or reject it with a specific [`Rejection`].
//!
//! `decide` is pure and checks everything; `apply` only records what an accepted event did.
//! The state is rebuilt from records alone, so the server, a second server process and an
//! offline auditor reach the same state and the same decisions.
//!
//! Every event passes the envelope checks here (canonical body, signature format and validity,
//! the ledger id, monotone `recorded_at`, idempotency, keys and terms in force at this position
//! in the log, the author among the signers); then the rules of its family:
//!
//! - [`actors`] — genesis, enrolment, key rotation, revocation, an actor's household;
//! - [`rules`] — rulebook adoption by congress resolution;
//! - [`households`] — registration, members, split, merge, closing;
//! - [`scoring`] — self-declarations (scored or declined), scores, corrections;
//! - [`publication`] — 公示, objections, decisions, closing, settlement;
//! - [`supermarket`] — stock, prices, redemptions and reversals;
//! - [`results`] — honours, inspections and satisfaction surveys.

mod actors;
mod error;
mod households;
mod publication;
mod results;
mod rules;
mod scoring;
mod settled;
mod supermarket;

pub use actors::{Actor, RoleSet};
pub use error::Rejection;
pub use households::Household;
pub use publication::{Objection, Publication};
pub use rules::{Item, Rulebook};
pub use scoring::{Claim, Entry};
pub use supermarket::{Goods, Redemption};

use crate::balance::BalanceBook;
use crate::body::decode_body;
use crate::hash::Hash;
use crate::ids::{Id, Interner, VillageCode};
use crate::journal::{JDigests, JMap, JOrd, JSet};
use crate::pb::{event_body::Payload, EventBody};
use crate::record::{canonical_signatures, Record};
use crate::signature::{verify_event, EventSignature, PublicKey};
use crate::time::{Date, Period};
use std::borrow::Cow;

/// How far an author's `occurred_at` may run ahead of the server's `recorded_at` (clock skew).
pub const MAX_CLOCK_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;
/// The longest free-text field (reasons, findings, names), in bytes.
pub const MAX_TEXT: usize = 1000;

/// A signed event offered to the ledger, with the server's time of recording.
#[derive(Clone, Debug)]
pub struct Command {
    body: Vec<u8>,
    signatures: Vec<EventSignature>,
    recorded_at: i64,
    signatures_verified: bool,
}

impl Command {
    /// An event as submitted: body bytes, signatures, and the server's `recorded_at` (µs).
    pub fn new(body: Vec<u8>, signatures: Vec<EventSignature>, recorded_at: i64) -> Command {
        Command { body, signatures, recorded_at, signatures_verified: false }
    }
}

/// A signed event as submitted, before the server gives it a `recorded_at`: the form in
/// which an append path can check signatures ahead of deciding, outside any lock.
#[derive(Clone, Debug)]
pub struct Signed {
    body: Vec<u8>,
    signatures: Vec<EventSignature>,
    verified: bool,
}

impl Signed {
    /// An event as submitted (not yet verified).
    pub fn new(body: Vec<u8>, signatures: Vec<EventSignature>) -> Signed {
        Signed { body, signatures, verified: false }
    }

    /// Checks the signatures of all `events` with `verify_strict`, in parallel on every core,
    /// and marks each event whose signatures all hold as verified. An event with a bad
    /// signature is left unverified: `decide` then checks it again, in order, and names the
    /// bad signature exactly as it would have without this step.
    ///
    /// Admission stays strict, one signature at a time: the batch equation is not equivalent
    /// to `verify_strict` (a signer can make a signature whose `R` has a small-order component
    /// pass a cofactorless batch with some probability, and strict verifiers, OpenSSL's among
    /// them, reject it), so it would let a key holder append a record that independent
    /// verifiers refuse.
    /// Each key is decompressed once for all the events ([`crate::signature::Keys`]).
    pub fn verify_all(events: &mut [Signed]) {
        use rayon::prelude::*;
        let keys = crate::signature::Keys::of(events.iter().flat_map(|e| &e.signatures));
        events.par_iter_mut().with_min_len(8).for_each(|e| {
            e.verified = e.signatures.iter().all(|s| keys.verify(s, &e.body).is_ok());
        });
    }

    /// The body bytes as submitted.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The keys that signed it, as submitted.
    pub fn signers(&self) -> impl Iterator<Item = &crate::signature::PublicKey> {
        self.signatures.iter().map(|s| &s.public_key)
    }

    /// Its signatures, as submitted.
    pub fn signatures(&self) -> &[EventSignature] {
        &self.signatures
    }

    /// Whether [`Signed::verify_all`] verified every signature.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// The command to decide, recorded at `recorded_at` (µs).
    pub fn command(&self, recorded_at: i64) -> Command {
        Command { body: self.body.clone(), signatures: self.signatures.clone(), recorded_at, signatures_verified: self.verified }
    }
}

/// An accepted event: the record and its decoded body.
#[derive(Clone, Debug)]
pub struct Accepted {
    record: Record,
    hash: Hash,
    body: EventBody,
    idem: Idem,
}

/// The [`digest16`]s of an event's idempotency key and of its body: what `apply` files it
/// under. Computed where the event is decoded or judged, so a replay hashes them on the decode
/// thread, not on the thread that folds the state.
#[derive(Clone, Copy, Debug)]
struct Idem {
    key: [u8; 16],
    body: [u8; 16],
}

impl Idem {
    fn of(body: &EventBody, body_bytes: &[u8]) -> Idem {
        Idem { key: digest16(body.idempotency_key.as_bytes()), body: digest16(body_bytes) }
    }
}

impl Accepted {
    /// The record to append.
    pub fn record(&self) -> &Record {
        &self.record
    }
    /// The record hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }
    /// The decoded body.
    pub fn body(&self) -> &EventBody {
        &self.body
    }
    /// The payload.
    pub fn payload(&self) -> &Payload {
        self.body.payload.as_ref().expect("accepted bodies have a payload")
    }
    /// Splits into record and body.
    pub fn into_parts(self) -> (Record, EventBody) {
        (self.record, self.body)
    }

    /// Decodes an already verified record (for projections): no rule is checked.
    pub fn from_verified_record(record: Record) -> Result<Accepted, Rejection> {
        let body = decode_body(record.body())?;
        let hash = record.hash();
        let idem = Idem::of(&body, record.body());
        Ok(Accepted { record, hash, body, idem })
    }
}

/// What the write-model decided about a command.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Append this record.
    Append(Box<Accepted>),
    /// The same event (same idempotency key and body) is already at `seq`.
    Duplicate { seq: u64 },
}

/// What [`VillageState::judge`] found.
enum Judged {
    Duplicate(u64),
    Accepted(VillageCode, Box<EventBody>, Vec<EventSignature>, Idem),
}

/// The actor behind one signature, at this position in the log.
#[derive(Clone, Debug)]
pub(crate) struct Signer {
    pub actor_id: String,
    pub roles: RoleSet,
    pub household: Option<String>,
    /// The seq at which `household` was recorded (enrolment or `ActorHouseholdChanged`).
    pub household_since: u64,
}

/// What every family's rules see of the event being decided.
pub(crate) struct Ctx<'a> {
    pub recorded_at: i64,
    pub today: Date,
    /// The balances as they stand at `recorded_at` ([`VillageState::balances_at`]): what the
    /// event is judged on, after any expiry that its recording books first.
    pub book: &'a BalanceBook,
    pub author: &'a Signer,
    pub signers: &'a [Signer],
}

impl Ctx<'_> {
    /// Requires the author to hold one of `roles`.
    pub fn author_has(&self, roles: RoleSet, action: &'static str) -> Result<(), Rejection> {
        if self.author.roles.intersects(roles) {
            Ok(())
        } else {
            Err(Rejection::RoleNotAllowed { actor: self.author.actor_id.clone(), action })
        }
    }

    /// The distinct signers holding one of `roles`, other than those in `except`.
    pub fn count_with(&self, roles: RoleSet, except: Option<&str>) -> u32 {
        self.signers.iter().filter(|s| s.roles.intersects(roles) && Some(s.actor_id.as_str()) != except).count() as u32
    }
}

/// The first 16 bytes of SHA-256 of `data`: the in-memory identity of an idempotency key and of
/// a body (a collision needs about 2⁶⁴ keys; nothing signed or stored uses it).
fn digest16(data: &[u8]) -> [u8; 16] {
    let h = Hash::of(data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// The genesis facts.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Genesis {
    pub ledger_id: VillageCode,
    pub origin: String,
    pub village_name: String,
    pub township_actor: String,
}

/// The state of one village ledger, rebuilt from its records.
///
/// Its collections keep an undo journal while a batch is being decided (`begin_batch`,
/// `rollback_batch`, `commit_batch`; see [`crate::journal`]), so a writer decides a batch on
/// the live state and restores it if any event is refused, without a copy of the state.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct VillageState {
    genesis: Option<Genesis>,
    next_seq: u64,
    head: Hash,
    last_recorded_at: i64,
    /// Per idempotency key (as its [`digest16`]): the seq of its record and its body's
    /// digest. Fixed-size entries, mostly in one sorted vector: 40 bytes a record.
    idempotency: JDigests<(u64, [u8; 16])>,
    pub(crate) actors: JMap<String, Actor>,
    pub(crate) keys: JMap<PublicKey, String>,
    pub(crate) rulebooks: Vec<Rulebook>,
    pub(crate) households: JOrd<String, Household>,
    /// Households split from each household: (new household, seq of the split).
    pub(crate) splits: JMap<String, Vec<(String, u64)>>,
    pub(crate) members: JSet<String>,
    pub(crate) claims: JMap<String, scoring::Claim>,
    pub(crate) entries: JMap<String, Entry>,
    /// Per period, what a settlement needs of its entries (kept as entries change), so it
    /// never scans the ledger's entries.
    pub(crate) period_tally: JOrd<Period, scoring::PeriodTally>,
    pub(crate) caps: JMap<(Id, Id, Period), i64>,
    pub(crate) publications: JMap<String, Publication>,
    pub(crate) objections: JMap<String, Objection>,
    pub(crate) settled: JOrd<Period, String>,
    pub(crate) goods: JOrd<String, Goods>,
    pub(crate) receipts: JSet<String>,
    pub(crate) redemptions: JMap<String, Redemption>,
    pub(crate) result_ids: JSet<String>,
    pub(crate) book: BalanceBook,
    /// What settled periods leave of their entries, answered claims, decided objections and
    /// closed 公示, by id digest ([`settled`]).
    settled_entries: JDigests<settled::SettledEntry>,
    answered_claims: JDigests<bool>,
    decided_objections: JDigests<()>,
    closed_publications: JDigests<Period>,
    /// The ids entries and caps share ([`Interner`]): rebuilt as events are applied.
    #[serde(skip)]
    pub(crate) ids: Interner,
    /// While a batch is being decided: the scalars as they were at `begin_batch` (never in a
    /// snapshot: one is taken between requests).
    #[serde(skip)]
    batch: Option<Box<Scalars>>,
}

/// The state's plain fields, kept while a batch is being decided.
#[derive(Clone, Debug)]
struct Scalars {
    genesis: Option<Genesis>,
    next_seq: u64,
    head: Hash,
    last_recorded_at: i64,
    rulebooks: usize,
}

/// Calls `$m` on every journaled collection of a state.
macro_rules! each_collection {
    ($state:expr, $m:ident) => {{
        let s = $state;
        s.idempotency.$m();
        s.actors.$m();
        s.keys.$m();
        s.households.$m();
        s.splits.$m();
        s.members.$m();
        s.claims.$m();
        s.entries.$m();
        s.period_tally.$m();
        s.caps.$m();
        s.publications.$m();
        s.objections.$m();
        s.settled.$m();
        s.goods.$m();
        s.receipts.$m();
        s.redemptions.$m();
        s.result_ids.$m();
        s.book.$m();
        s.settled_entries.$m();
        s.answered_claims.$m();
        s.decided_objections.$m();
        s.closed_publications.$m();
    }};
}

impl VillageState {
    /// The state of a ledger with no records.
    pub fn new() -> VillageState {
        VillageState::default()
    }

    /// Starts a batch: from now on, every change to the state can be undone by
    /// [`VillageState::rollback_batch`] (at the cost of keeping each replaced value), until
    /// [`VillageState::commit_batch`]. A writer decides and applies a request's events on the
    /// live state this way, and restores it if one is refused or the store fails.
    pub fn begin_batch(&mut self) {
        self.batch = Some(Box::new(Scalars {
            genesis: self.genesis.clone(),
            next_seq: self.next_seq,
            head: self.head,
            last_recorded_at: self.last_recorded_at,
            rulebooks: self.rulebooks.len(),
        }));
        each_collection!(self, begin);
    }

    /// Ends a batch, keeping its changes.
    pub fn commit_batch(&mut self) {
        self.batch = None;
        each_collection!(self, commit);
    }

    /// Ends a batch, undoing every change since [`VillageState::begin_batch`]: the state is
    /// again exactly what it was. Without a batch, nothing changes.
    pub fn rollback_batch(&mut self) {
        let Some(saved) = self.batch.take() else { return };
        self.genesis = saved.genesis;
        self.next_seq = saved.next_seq;
        self.head = saved.head;
        self.last_recorded_at = saved.last_recorded_at;
        self.rulebooks.truncate(saved.rulebooks);
        each_collection!(self, rollback);
    }

    /// The genesis facts, once the ledger is opened.
    pub fn genesis(&self) -> Option<&Genesis> {
        self.genesis.as_ref()
    }
    /// The seq the next record will have (= the number of records).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
    /// The hash of the last record (zero before the first).
    pub fn head(&self) -> Hash {
        self.head
    }
    /// The `recorded_at` of the last record (0 before the first).
    pub fn last_recorded_at(&self) -> i64 {
        self.last_recorded_at
    }
    /// The seq of the record with this idempotency key, if any.
    pub fn seq_of_key(&self, key: &str) -> Option<u64> {
        self.idempotency.get(&digest16(key.as_bytes())).map(|(seq, _)| *seq)
    }
    /// The balance book as of the last record. Under annual expiry, the expiry of a new year
    /// is booked by the first record of that year; to show balances at a given time (e.g.
    /// "now", before any record of the new year), use [`VillageState::balances_at`].
    pub fn balances(&self) -> &BalanceBook {
        &self.book
    }

    /// The balances as they stand at `micros` (µs since the epoch): the book with any expiry
    /// due by then applied (under annual expiry, the first instant of a new calendar year in
    /// China Standard Time expires the year before), without changing the state. Borrowed
    /// when nothing is due. This is the one path by which an event recorded at `micros` is
    /// judged (`decide`), booked (`apply` books the same expiry first), and by which a
    /// settlement's balance digest is checked and replayed ([`VillageState::balance_digest_at`]).
    pub fn balances_at(&self, micros: i64) -> Cow<'_, BalanceBook> {
        let (year, annual) = self.year_at(micros);
        if self.book.expires_on_entering(year, annual) {
            let mut book = self.book.clone();
            book.enter_year(year, annual);
            Cow::Owned(book)
        } else {
            Cow::Borrowed(&self.book)
        }
    }

    /// One household's balance as it stands at `micros`: [`VillageState::balances_at`] for one
    /// household, without copying the book when an expiry is due.
    pub fn balance_at(&self, household: &str, micros: i64) -> Option<crate::balance::Balance> {
        let (year, annual) = self.year_at(micros);
        let b = *self.book.get(household)?;
        Some(if self.book.expires_on_entering(year, annual) { b.after_reset() } else { b })
    }

    /// The calendar year of `micros` and whether the rulebook in force that day expires points
    /// annually: what [`VillageState::balances_at`] and `apply` book on entering a year.
    pub(crate) fn year_at(&self, micros: i64) -> (i32, bool) {
        let today = Date::of_micros(micros);
        (today.year(), self.rulebook_on(today).is_some_and(|r| r.annual_expiry()))
    }

    /// The balance digest a `PeriodSettled` recorded at `micros` must carry: the digest of
    /// [`VillageState::balances_at`] `micros`. An offline replay checks each settlement with
    /// this, on the state just before the settlement's record.
    pub fn balance_digest_at(&self, micros: i64) -> Hash {
        self.balances_at(micros).digest()
    }
    /// An actor by id.
    pub fn actor(&self, id: &str) -> Option<&Actor> {
        self.actors.get(id)
    }
    /// All actors.
    pub fn actors(&self) -> impl Iterator<Item = &Actor> {
        self.actors.values()
    }
    /// The actor that owns a key (current or retired).
    pub fn actor_of_key(&self, key: &PublicKey) -> Option<&Actor> {
        self.keys.get(key).and_then(|id| self.actors.get(id))
    }
    /// A household by id.
    pub fn household(&self, id: &str) -> Option<&Household> {
        self.households.get(id)
    }
    /// All households in id order.
    pub fn households(&self) -> impl Iterator<Item = &Household> {
        self.households.values()
    }
    /// An entry (score) by id, while its period is not settled (a settled period's entries are
    /// forgotten: [`settled`]).
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }
    /// A self-declaration (claim) by id, until a settlement after its answer forgets it.
    pub fn claim(&self, id: &str) -> Option<&Claim> {
        self.claims.get(id)
    }
    /// A publication by id, until a settlement of its period after it closed forgets it.
    pub fn publication(&self, id: &str) -> Option<&Publication> {
        self.publications.get(id)
    }
    /// An objection by id, until a settlement after its decision forgets it.
    pub fn objection(&self, id: &str) -> Option<&Objection> {
        self.objections.get(id)
    }
    /// The rulebook versions adopted, in order.
    pub fn rulebooks(&self) -> &[Rulebook] {
        &self.rulebooks
    }
    /// A redemption by id.
    pub fn redemption(&self, id: &str) -> Option<&Redemption> {
        self.redemptions.get(id)
    }
    /// The entries (scores) of the periods not yet settled, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
    /// Goods of the supermarket.
    pub fn goods(&self) -> impl Iterator<Item = (&str, &Goods)> {
        self.goods.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// One goods of the supermarket by code.
    pub fn goods_item(&self, code: &str) -> Option<&Goods> {
        self.goods.get(code)
    }
    /// Settled periods and their publication.
    pub fn settled_periods(&self) -> impl Iterator<Item = (Period, &str)> {
        self.settled.iter().map(|(p, s)| (*p, s.as_str()))
    }

    /// Whether an actor may act at `micros` (µs since the epoch): enrolled, not revoked (as of
    /// the state's last record), and `micros` inside their term `[term_start, term_end)`. The
    /// same judgement as a signature's in `decide`; the server uses it for request tokens and
    /// cosignatures at "now", the bundle verifier for witnesses at a checkpoint's time.
    pub fn actor_in_term(&self, actor_id: &str, micros: i64) -> bool {
        self.actors.get(actor_id).is_some_and(|a| a.revoked_at.is_none() && a.term_covers(micros))
    }

    /// The witness quorum at `micros`: that of the rulebook in force on that day (China
    /// Standard Time), which may not be the last adopted one (adopted rulebooks can take effect
    /// later); 1 when no rulebook is in force yet.
    pub fn witness_quorum_at(&self, micros: i64) -> u32 {
        self.rulebook_on(Date::of_micros(micros)).map_or(1, |r| r.witness_quorum)
    }

    /// The witness quorum of a checkpoint of `size` records whose last was recorded at
    /// `micros`: that of the rulebook in force that day among those adopted by then (record
    /// seq below `size`). The same answer on any state that holds those records, so the server,
    /// whose state has moved on, and a verifier replaying up to the checkpoint agree.
    pub fn witness_quorum_after(&self, size: u64, micros: i64) -> u32 {
        let day = Date::of_micros(micros);
        self.rulebooks.iter().rev().filter(|r| r.adopted_at < size).find(|r| r.effective_from <= day).map_or(1, |r| r.witness_quorum)
    }

    /// The rulebook in force on `date`: the highest version whose effective date is not later.
    pub fn rulebook_on(&self, date: Date) -> Option<&Rulebook> {
        self.rulebooks.iter().rev().find(|r| r.effective_from <= date)
    }

    /// Everything `decide` checks of an event, on its body bytes (decoded, `body`) and
    /// signatures: a duplicate, or the ledger id, the decoded body and the canonical signatures
    /// of an event to append.
    fn judge(
        &self,
        body_bytes: &[u8],
        body: EventBody,
        signatures: &[EventSignature],
        recorded_at: i64,
        verified: bool,
    ) -> Result<Judged, Rejection> {
        let canonical = canonical_signatures(signatures.to_vec())?;
        let signatures = canonical.as_slice();
        let payload = body.payload.as_ref().expect("decode_body requires a payload");
        match (&self.genesis, payload) {
            (None, Payload::LedgerOpened(_)) => {}
            (None, _) => return Err(Rejection::NotOpened),
            (Some(_), Payload::LedgerOpened(_)) => {
                // A client retrying the genesis it sent gets its record back, as for any event.
                if let Some(&(seq, h)) = self.idempotency.get(&digest16(body.idempotency_key.as_bytes())) {
                    if h == digest16(body_bytes) {
                        return Ok(Judged::Duplicate(seq));
                    }
                }
                return Err(Rejection::AlreadyOpened);
            }
            (Some(g), _) if g.ledger_id.as_str() != body.ledger_id => {
                return Err(Rejection::WrongLedger { expected: g.ledger_id.to_string(), got: body.ledger_id.clone() })
            }
            _ => {}
        }
        let ledger_id = VillageCode::parse(&body.ledger_id)?;
        if body.idempotency_key.is_empty() || body.idempotency_key.len() > 128 || body.idempotency_key.chars().any(char::is_control) {
            return Err(Rejection::field("idempotency_key", "must be 1 to 128 bytes without control characters"));
        }
        let idem = Idem::of(&body, body_bytes);
        if let Some(&(seq, h)) = self.idempotency.get(&idem.key) {
            return if h == idem.body {
                Ok(Judged::Duplicate(seq))
            } else {
                Err(Rejection::IdempotencyConflict { key: body.idempotency_key.clone(), seq })
            };
        }
        if recorded_at < self.last_recorded_at {
            return Err(Rejection::RecordedAtRegressed { previous: self.last_recorded_at, got: recorded_at });
        }
        if body.occurred_at > recorded_at + MAX_CLOCK_SKEW_MICROS {
            return Err(Rejection::OccurredInFuture { occurred_at: body.occurred_at, recorded_at });
        }
        if !verified {
            for s in signatures {
                verify_event(s, body_bytes)?;
            }
        }
        let signers = match payload {
            Payload::LedgerOpened(p) => vec![actors::genesis_signer(p, &body, signatures)?],
            _ => signatures.iter().map(|s| self.signer(&s.public_key, recorded_at)).collect::<Result<Vec<_>, _>>()?,
        };
        let author = signers
            .iter()
            .find(|s| s.actor_id == body.actor_id)
            .ok_or_else(|| Rejection::AuthorNotSigner { actor: body.actor_id.clone() })?;
        let book = self.balances_at(recorded_at);
        let ctx = Ctx { recorded_at, today: Date::of_micros(recorded_at), book: &book, author, signers: &signers };
        match payload {
            Payload::LedgerOpened(p) => actors::decide_opened(p, &ledger_id),
            Payload::ActorEnrolled(p) => self.decide_enrolled(&ctx, p),
            Payload::ActorKeyRotated(p) => self.decide_rotated(&ctx, p),
            Payload::ActorRevoked(p) => self.decide_revoked(&ctx, p),
            Payload::ActorHouseholdChanged(p) => self.decide_household_changed(&ctx, p),
            Payload::RulebookAdopted(p) => self.decide_rulebook(&ctx, p),
            Payload::HouseholdRegistered(p) => self.decide_registered(&ctx, p),
            Payload::MemberAdded(p) => self.decide_member_added(&ctx, p),
            Payload::MemberRemoved(p) => self.decide_member_removed(&ctx, p),
            Payload::HouseholdSplit(p) => self.decide_split(&ctx, p),
            Payload::HouseholdMerged(p) => self.decide_merged(&ctx, p),
            Payload::HouseholdClosed(p) => self.decide_closed(&ctx, p),
            Payload::PointsClaimed(p) => self.decide_claim(&ctx, p),
            Payload::ScoreRecorded(p) => self.decide_score(&ctx, p),
            Payload::ScoreCorrected(p) => self.decide_correction(&ctx, p),
            Payload::ClaimDeclined(p) => self.decide_claim_declined(&ctx, p),
            Payload::PublicationOpened(p) => self.decide_publication(&ctx, p),
            Payload::ObjectionFiled(p) => self.decide_objection(&ctx, p),
            Payload::ObjectionDecided(p) => self.decide_decision(&ctx, p),
            Payload::PublicationClosed(p) => self.decide_close(&ctx, p),
            Payload::PeriodSettled(p) => self.decide_settlement(&ctx, p),
            Payload::StockReceived(p) => self.decide_stock(&ctx, p),
            Payload::PricesSet(p) => self.decide_prices(&ctx, p),
            Payload::RedemptionRecorded(p) => self.decide_redemption(&ctx, p),
            Payload::RedemptionReversed(p) => self.decide_reversal(&ctx, p),
            Payload::HonourAwarded(p) => self.decide_honour(&ctx, p),
            Payload::InspectionRecorded(p) => self.decide_inspection(&ctx, p),
            Payload::SatisfactionSurveyRecorded(p) => self.decide_survey(&ctx, p),
        }?;
        Ok(Judged::Accepted(ledger_id, Box::new(body), canonical, idem))
    }

    /// Decides a command: the record to append, a duplicate, or the rule it breaks.
    ///
    /// The event is judged on the state as it stands at its `recorded_at`: when that opens a
    /// new calendar year under annual expiry, the decision sees the balances after expiry
    /// ([`VillageState::balances_at`], exactly what `apply` books before the event itself).
    pub fn decide(&self, cmd: Command) -> Result<Decision, Rejection> {
        let body = decode_body(&cmd.body)?;
        let (ledger_id, body, signatures, idem) =
            match self.judge(&cmd.body, body, &cmd.signatures, cmd.recorded_at, cmd.signatures_verified)? {
                Judged::Duplicate(seq) => return Ok(Decision::Duplicate { seq }),
                Judged::Accepted(ledger_id, body, signatures, idem) => (ledger_id, *body, signatures, idem),
            };
        let record = Record::new(ledger_id, self.next_seq, self.head, cmd.recorded_at, cmd.body, signatures)?;
        let hash = record.hash();
        Ok(Decision::Append(Box::new(Accepted { record, hash, body, idem })))
    }

    /// Decides a stored record again, its signatures taken as verified, without building it
    /// again: `Ok(Some(accepted))` if the write-model accepts it here and would produce exactly
    /// it (the same ledger, seq, previous hash and canonical signatures: what `decide` on its
    /// body, signatures and time would build), `Ok(None)` if it would produce another record
    /// or a duplicate. `hash` must be the record's hash (computed once by the caller's chain
    /// check). The same judgement as [`VillageState::decide`], at a fraction of the cost: a
    /// load decides every stored record.
    pub fn decide_stored(&self, record: Record, hash: Hash) -> Result<Option<Accepted>, Rejection> {
        let body = decode_body(record.body());
        self.decide_stored_decoded(record, hash, body.map_err(Rejection::from))
    }

    /// [`VillageState::decide_stored`] for a record whose body the caller decoded already
    /// (`body`, what [`decode_body`] gives for it: a load decodes a page's bodies on another
    /// thread while it decides the page before).
    pub fn decide_stored_decoded(
        &self,
        record: Record,
        hash: Hash,
        body: Result<EventBody, Rejection>,
    ) -> Result<Option<Accepted>, Rejection> {
        debug_assert_eq!(hash, record.hash());
        let (ledger_id, body, signatures, idem) = match self.judge(record.body(), body?, record.signatures(), record.recorded_at(), true)? {
            Judged::Duplicate(_) => return Ok(None),
            Judged::Accepted(ledger_id, body, signatures, idem) => (ledger_id, *body, signatures, idem),
        };
        let same = ledger_id == *record.ledger_id()
            && record.seq() == self.next_seq
            && *record.prev_hash() == self.head
            && signatures.as_slice() == record.signatures();
        Ok(same.then_some(Accepted { record, hash, body, idem }))
    }

    /// Applies an accepted event. It must be the event `decide` produced for this state; it
    /// books what the event did and judges nothing. Given any record instead (out of order,
    /// never decided), it never panics: what does not fit the state is left out.
    pub fn apply(&mut self, accepted: &Accepted) {
        let rec = &accepted.record;
        let recorded_at = rec.recorded_at();
        // The expiry due at this record, exactly as `balances_at` (and so `decide`) saw it.
        let (year, annual) = self.year_at(recorded_at);
        self.book.enter_year(year, annual);
        self.idempotency.insert(accepted.idem.key, (rec.seq(), accepted.idem.body));
        let seq = rec.seq();
        match accepted.payload() {
            Payload::LedgerOpened(p) => {
                self.genesis = Some(Genesis {
                    ledger_id: rec.ledger_id().clone(),
                    origin: p.origin.clone(),
                    village_name: p.village_name.clone(),
                    township_actor: p.township_actor_id.clone(),
                });
                self.apply_opened(p);
            }
            Payload::ActorEnrolled(p) => self.apply_enrolled(p, seq),
            Payload::ActorKeyRotated(p) => self.apply_rotated(p, seq),
            Payload::ActorRevoked(p) => self.apply_revoked(p, seq),
            Payload::ActorHouseholdChanged(p) => self.apply_household_changed(p, seq),
            Payload::RulebookAdopted(p) => self.apply_rulebook(p, seq),
            Payload::HouseholdRegistered(p) => self.apply_registered(p),
            Payload::MemberAdded(p) => self.apply_member_added(p),
            Payload::MemberRemoved(p) => self.apply_member_removed(p),
            Payload::HouseholdSplit(p) => self.apply_split(p, seq),
            Payload::HouseholdMerged(p) => self.apply_merged(p, seq),
            Payload::HouseholdClosed(p) => self.apply_closed(p),
            Payload::PointsClaimed(p) => self.apply_claim(p),
            Payload::ScoreRecorded(p) => self.apply_score(p, seq),
            Payload::ScoreCorrected(p) => self.apply_correction(p),
            Payload::ClaimDeclined(p) => self.apply_claim_declined(p),
            Payload::PublicationOpened(p) => self.apply_publication(p),
            Payload::ObjectionFiled(p) => self.apply_objection(p, seq),
            Payload::ObjectionDecided(p) => self.apply_decision(p),
            Payload::PublicationClosed(p) => self.apply_close(p),
            Payload::PeriodSettled(p) => self.apply_settlement(p),
            Payload::StockReceived(p) => self.apply_stock(p),
            Payload::PricesSet(p) => self.apply_prices(p),
            Payload::RedemptionRecorded(p) => self.apply_redemption(p, recorded_at),
            Payload::RedemptionReversed(p) => self.apply_reversal(p, recorded_at),
            Payload::HonourAwarded(p) => {
                self.result_ids.insert(format!("honour:{}", p.honour_id));
            }
            Payload::InspectionRecorded(p) => {
                self.result_ids.insert(format!("inspection:{}", p.inspection_id));
            }
            Payload::SatisfactionSurveyRecorded(p) => {
                self.result_ids.insert(format!("survey:{}", p.survey_id));
            }
        }
        self.next_seq += 1;
        self.head = accepted.hash;
        self.last_recorded_at = recorded_at;
        if self.batch.is_none() {
            // Outside a batch (a replay), as a batch's commit does.
            self.idempotency.compact();
            self.settled_entries.compact();
            self.answered_claims.compact();
            self.decided_objections.compact();
            self.closed_publications.compact();
        }
    }

    /// Decides and, if accepted, applies: the convenience of a single writer.
    pub fn execute(&mut self, cmd: Command) -> Result<Decision, Rejection> {
        let d = self.decide(cmd)?;
        if let Decision::Append(a) = &d {
            self.apply(a);
        }
        Ok(d)
    }

    /// The actor behind a key at `at` (µs), if the key is in force then.
    fn signer(&self, key: &PublicKey, at: i64) -> Result<Signer, Rejection> {
        let actor = self.actor_of_key(key).ok_or(Rejection::UnknownKey(*key))?;
        if let Some(seq) = actor.revoked_at {
            return Err(Rejection::KeyRevoked { actor: actor.id.clone(), seq });
        }
        if &actor.key != key {
            let seq = actor.rotations.iter().find(|(old, _)| old == key).map_or(0, |(_, s)| *s);
            return Err(Rejection::KeySuperseded { actor: actor.id.clone(), seq });
        }
        if !actor.term_covers(at) {
            return Err(Rejection::OutsideTerm { actor: actor.id.clone() });
        }
        Ok(Signer {
            actor_id: actor.id.clone(),
            roles: actor.roles,
            household: actor.household.clone(),
            household_since: actor.household_since,
        })
    }

    /// Follows merges to the household that now holds `id`'s members and points.
    pub fn resolve_household<'a>(&'a self, mut id: &'a str) -> &'a str {
        for _ in 0..self.households.len() {
            match self.households.get(id).and_then(|h| h.merged_into.as_deref()) {
                Some(next) => id = next,
                None => break,
            }
        }
        id
    }

    /// Every household an actor recorded in `household` at seq `since` may live in now: that
    /// household, the households it merged into (from the merge on), and the households split
    /// from any of these after the actor was there (a member who left in a split may be the
    /// actor: the ledger knows households, not which member an actor is). An admin narrows it
    /// again with `ActorHouseholdChanged`.
    pub fn households_of_actor<'a>(&'a self, household: &'a str, since: u64) -> Vec<&'a str> {
        let mut out: Vec<&'a str> = Vec::new();
        let mut todo: Vec<(&'a str, u64)> = vec![(household, since)];
        while let Some((id, since)) = todo.pop() {
            if out.contains(&id) {
                continue;
            }
            out.push(id);
            if let Some(h) = self.households.get(id) {
                if let (Some(into), Some(at)) = (h.merged_into.as_deref(), h.merged_at) {
                    todo.push((into, since.max(at)));
                }
            }
            for (new, at) in self.splits.get(id).into_iter().flatten() {
                if *at > since {
                    todo.push((new, *at));
                }
            }
        }
        out
    }

    /// Rejects if any signer may belong to `household`: the household now holding its members
    /// (following merges) is one the signer may live in ([`VillageState::households_of_actor`]:
    /// merges and later splits of the signer's recorded household).
    pub(crate) fn check_not_own(&self, ctx: &Ctx, household: &str) -> Result<(), Rejection> {
        let target = self.resolve_household(household);
        for s in ctx.signers {
            if let Some(h) = &s.household {
                if self.households_of_actor(h, s.household_since).contains(&target) {
                    return Err(Rejection::SelfScoring { actor: s.actor_id.clone(), household: household.to_owned() });
                }
            }
        }
        Ok(())
    }

    /// An active household, or the reason it cannot be used.
    pub(crate) fn active_household(&self, id: &str) -> Result<&Household, Rejection> {
        let h = self.households.get(id).ok_or_else(|| Rejection::Unknown { kind: "household", id: id.to_owned() })?;
        if h.closed {
            return Err(Rejection::HouseholdClosed(id.to_owned()));
        }
        Ok(h)
    }
}

/// Checks a free-text field: at most [`MAX_TEXT`] bytes, no control characters but newline.
pub(crate) fn check_text(field: &'static str, s: &str, required: bool) -> Result<(), Rejection> {
    if required && s.trim().is_empty() {
        return Err(Rejection::field(field, "is required"));
    }
    if s.len() > MAX_TEXT {
        return Err(Rejection::field(field, format!("is longer than {MAX_TEXT} bytes")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Rejection::field(field, "contains control characters"));
    }
    if let Some(what) = personal_number(s) {
        return Err(Rejection::PersonalData { field, what });
    }
    Ok(())
}

/// Finds what looks like a mainland mobile number (11 digits starting 13–19) or a resident
/// identity card number (17 digits and a digit or X) in free text.
fn personal_number(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let run = &b[start..i];
        if run.len() == 18 || (run.len() == 17 && matches!(b.get(i), Some(b'X' | b'x'))) {
            return Some("resident identity card number");
        }
        if run.len() == 11 && run[0] == b'1' && (b'3'..=b'9').contains(&run[1]) {
            return Some("mobile phone number");
        }
    }
    None
}

/// Checks an optional 32-byte hash field.
pub(crate) fn check_hash(field: &'static str, b: &[u8], required: bool) -> Result<(), Rejection> {
    match b.len() {
        32 => Ok(()),
        0 if !required => Ok(()),
        n => Err(Rejection::field(field, format!("must be a 32-byte SHA-256 hash, got {n} bytes"))),
    }
}

/// The village write-model as an esrs aggregate: commands are signed events, events are the
/// accepted records, and a duplicate submission produces no new event. (Feature `esrs`.)
#[cfg(feature = "esrs")]
pub struct Village;

#[cfg(feature = "esrs")]
impl esrs::Aggregate for Village {
    const NAME: &'static str = "village";
    type State = VillageState;
    type Command = Command;
    type Event = Accepted;
    type Error = Rejection;

    fn handle_command(state: &VillageState, command: Command) -> Result<Vec<Accepted>, Rejection> {
        Ok(match state.decide(command)? {
            Decision::Append(a) => vec![*a],
            Decision::Duplicate { .. } => vec![],
        })
    }

    fn apply_event(mut state: VillageState, event: Accepted) -> VillageState {
        state.apply(&event);
        state
    }
}
