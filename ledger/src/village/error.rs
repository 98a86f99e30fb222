//! Every reason the write-model refuses an event: one variant per rule, carrying the facts a
//! caller needs. A rejected event appends nothing. docs/RULES.md lists them with who may sign
//! what.

use crate::body::BodyError;
use crate::ids::IdError;
use crate::record::RecordError;
use crate::signature::{PublicKey, SignatureError};
use crate::time::TimeError;
use thiserror::Error;

/// Why the village write-model rejected an event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    // --- envelope ---------------------------------------------------------------------------
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("field {field} appears to contain a {what}; personal data never goes into the ledger")]
    PersonalData { field: &'static str, what: &'static str },
    #[error("event is for ledger {got}, this ledger is {expected}")]
    WrongLedger { expected: String, got: String },
    #[error("the ledger is not opened yet: the first event must be LedgerOpened")]
    NotOpened,
    #[error("the ledger is already opened")]
    AlreadyOpened,
    #[error("recorded_at {got} is before the previous record's {previous}")]
    RecordedAtRegressed { previous: i64, got: i64 },
    #[error("occurred_at {occurred_at} is later than recorded_at {recorded_at}")]
    OccurredInFuture { occurred_at: i64, recorded_at: i64 },
    #[error("idempotency key {key:?} was used at seq {seq} with a different body")]
    IdempotencyConflict { key: String, seq: u64 },

    // --- trust model ------------------------------------------------------------------------
    #[error("signature key {0:?} belongs to no enrolled actor")]
    UnknownKey(PublicKey),
    #[error("key of actor {actor} was revoked at seq {seq}")]
    KeyRevoked { actor: String, seq: u64 },
    #[error("key of actor {actor} was replaced by a rotation at seq {seq}")]
    KeySuperseded { actor: String, seq: u64 },
    #[error("actor {actor} is outside their term at this time")]
    OutsideTerm { actor: String },
    #[error("author {actor} did not sign the event")]
    AuthorNotSigner { actor: String },
    #[error("actor {actor} may not {action}")]
    RoleNotAllowed { actor: String, action: &'static str },
    #[error("{what} needs {needed} distinct signers, got {got}")]
    QuorumNotMet { what: &'static str, needed: u32, got: u32 },
    #[error("actor {actor} belongs to household {household} and may not score or judge it")]
    SelfScoring { actor: String, household: String },
    #[error("public key is not a usable Ed25519 key (invalid, small-order or with a torsion component)")]
    WeakKey,
    #[error("public key is already enrolled (by actor {actor})")]
    KeyInUse { actor: String },
    #[error("the township actor that opened the ledger cannot be revoked")]
    CannotRevokeTownship,
    #[error("actor {actor} cannot hold both the scoring panel and the supervision group roles")]
    ConflictingRoles { actor: String },
    #[error("supervisor {actor} also signs the decision as its author or as a panel member; a decision needs an independent supervisor")]
    SupervisorNotIndependent { actor: String },

    // --- identity of things -----------------------------------------------------------------
    #[error("{kind} {id} already exists")]
    Duplicate { kind: &'static str, id: String },
    #[error("no {kind} {id}")]
    Unknown { kind: &'static str, id: String },

    // --- rules ------------------------------------------------------------------------------
    #[error("rulebook version must be {expected}, got {got}")]
    RulebookVersion { expected: u32, got: u32 },
    #[error("rulebook cannot take effect on {effective_from}, before {earliest}")]
    RulebookRetroactive { effective_from: String, earliest: String },
    #[error("congress resolution invalid: {0}")]
    CongressResolution(&'static str),
    #[error("no rulebook is in force on {date}")]
    NoRulebook { date: String },
    #[error("score names rulebook version {got}, but version {in_force} governs {date}")]
    WrongRulebookVersion { got: u32, in_force: u32, date: String },
    #[error("item {item} allows {min}..={max} points, got {got}")]
    PointsOutOfRange { item: String, min: i64, max: i64, got: i64 },
    #[error("item {item} caps a household at {cap} points in {period}; {already} already, {got} more")]
    CapExceeded { item: String, period: String, cap: i64, already: i64, got: i64 },
    #[error("item {item} requires evidence")]
    EvidenceRequired { item: String },
    #[error("item {item} is a deduction and cannot be self-declared")]
    NotClaimable { item: String },
    #[error("the act on {date} is later than the day it is recorded")]
    ActInFuture { date: String },

    // --- households -------------------------------------------------------------------------
    #[error("household {0} is closed")]
    HouseholdClosed(String),
    #[error("member {member} is not in household {household}")]
    NotAMember { household: String, member: String },
    #[error("household {0} would be left without members")]
    LastMember(String),
    #[error("cannot carry {requested} points: household {household} has {available} available")]
    CarryOverBalance { household: String, available: i64, requested: i64 },

    // --- scoring and publication ------------------------------------------------------------
    #[error("entry {0} is void")]
    EntryVoid(String),
    #[error("entry {0} has an undecided objection")]
    EntryUnderObjection(String),
    #[error("claim {0} was already scored")]
    ClaimAlreadyScored(String),
    #[error("claim {0} was declined")]
    ClaimAlreadyDeclined(String),
    #[error("score does not match claim {claim}: {reason}")]
    ClaimMismatch { claim: String, reason: &'static str },
    #[error("entry {entry} belongs to period {entry_period}, not {period}")]
    EntryOutsidePeriod { entry: String, entry_period: String, period: String },
    #[error("entry {entry} is already in publication {publication}")]
    EntryAlreadyPublished { entry: String, publication: String },
    #[error("the 公示 window is {got_hours} hours; the rulebook requires at least {min_days} days")]
    WindowTooShort { min_days: u32, got_hours: i64 },
    #[error("villager {actor} signs only objections in the name of their own household or one of its members, not {objector}")]
    ObjectorMismatch { actor: String, objector: String },
    #[error("the 公示 window cannot start before the event is recorded")]
    WindowInPast,
    #[error("recorded at {recorded_at}, outside the 公示 window [{start}, {end})")]
    OutsideWindow { start: i64, end: i64, recorded_at: i64 },
    #[error("entry {entry} is not in publication {publication}")]
    EntryNotPublished { entry: String, publication: String },
    #[error("publication {0} is closed")]
    PublicationClosed(String),
    #[error("publication {0} is not closed yet")]
    PublicationOpen(String),
    #[error("objection {0} is already decided")]
    AlreadyDecided(String),
    #[error("an upheld objection must carry its correction")]
    CorrectionRequired,
    #[error("a dismissed objection carries no correction")]
    CorrectionNotAllowed,
    #[error("the 公示 window ends at {end}; cannot close at {recorded_at}")]
    WindowNotOver { end: i64, recorded_at: i64 },
    #[error("{0} objections are undecided")]
    ObjectionsPending(usize),
    #[error("period {0} is already settled")]
    PeriodSettled(String),
    #[error("period {period} ends at {ends_at} (µs); it cannot be settled before it is over")]
    PeriodNotOver { period: String, ends_at: i64 },
    #[error("period {period} cannot be settled before {earlier}, an earlier month with entries, is settled")]
    EarlierPeriodUnsettled { period: String, earlier: String },
    #[error("{count} entries of period {period} are not in a closed publication")]
    UnpublishedEntries { period: String, count: usize },
    #[error("settlement {field} is {got}, the ledger computes {expected}")]
    SettlementMismatch { field: &'static str, expected: String, got: String },

    // --- supermarket ------------------------------------------------------------------------
    #[error("goods {0} has no price")]
    NoPrice(String),
    #[error("goods {goods}: {requested} requested, {in_stock} in stock")]
    InsufficientStock { goods: String, in_stock: u64, requested: u64 },
    #[error("household {household} has {available} points available, redemption needs {requested}")]
    Overdraft { household: String, available: i64, requested: i64 },
    #[error("redemption total is {got}, prices give {expected}")]
    TotalMismatch { expected: i64, got: i64 },
    #[error("redemption {0} is already reversed")]
    AlreadyReversed(String),
}

impl Rejection {
    /// Shorthand for an invalid field.
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection::InvalidField { field, reason: reason.into() }
    }
}
