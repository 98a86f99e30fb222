//! Full verification of a village ledger: the chain, every signature, the Merkle root against
//! a checkpoint, and a replay of the write-model showing every record was admissible.
//!
//! The stages are separate functions so a caller can time them and show progress (this crate
//! reads no clock). [`verify_ledger`] runs them all and names the first bad record.
//!
//! Signatures are checked with the batch equation in chunks spread over all cores (rayon);
//! a failing chunk is re-checked one by one with `verify_strict` to name the bad signature.
//!
//! A bad record is named by its position in the records given (FORMAT.md §11.3 step 4), which
//! is its seq wherever the seqs are right: a record that claims another seq (a deletion, an
//! insertion or a reordering) is named where it stands, never at the seq it claims.

use crate::checkpoint::Checkpoint;
use crate::hash::Hash;
use crate::merkle::Tree;
use crate::record::Record;
use crate::signature::{verify_batch, verify_event, BatchSeed, EventSignature, SignatureError};
use crate::village::{Accepted, Rejection, VillageState};
use rayon::prelude::*;
use thiserror::Error;

/// Records per batch-verification chunk.
pub const SIGNATURE_CHUNK: usize = 1024;

/// The first reason a ledger fails verification.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("seq {expected}: found the record of seq {seq} where seq {expected} belongs (a deletion, an insertion or a reordering)")]
    Gap { seq: u64, expected: u64 },
    #[error("seq {seq}: ledger id {got} differs from {expected}")]
    WrongLedger { seq: u64, expected: String, got: String },
    /// The link from `seq` back to `prev` (= seq − 1) is broken: record `prev` was altered,
    /// or the `prev_hash` of record `seq` was. The first bad record named is `prev`.
    #[error("seq {prev}: the chain breaks between records {prev} and {seq} (record {prev} was altered, or the prev_hash of record {seq})")]
    BrokenLink { seq: u64, prev: u64 },
    #[error("seq {seq}: recorded_at goes backwards")]
    TimeRegressed { seq: u64 },
    #[error("seq {seq}: {error}")]
    BadSignature { seq: u64, error: SignatureError },
    /// The `LedgerOpened` at seq 0 names another origin than the one the ledger is verified
    /// as (a bundle's header, FORMAT.md §11.3 step 4).
    #[error("seq {seq}: the ledger was opened as {got:?}, not as {expected:?}")]
    WrongOrigin { seq: u64, expected: String, got: String },
    #[error("seq {seq}: inadmissible event: {rejection}")]
    Inadmissible { seq: u64, rejection: Rejection },
    #[error("seq {seq}: replay does not reproduce the stored record")]
    NotReproduced { seq: u64 },
    #[error("seq {seq}: the stored row no longer matches the record hash written with it (altered in place)")]
    AlteredRow { seq: u64 },
    #[error("seq {seq}: prev_hash is not the hash of record {prev}, which is intact as stored (the prev_hash was altered)")]
    BadPrevHash { seq: u64, prev: u64 },
    #[error("seq {have}: checkpoint covers {size} records but only {have} are present (truncated)")]
    Truncated { size: u64, have: u64 },
    #[error("Merkle root of the first {size} records is {computed}, the checkpoint says {expected}")]
    RootMismatch { size: u64, computed: Hash, expected: Hash },
}

impl VerifyError {
    /// This failure of the record at `position` (0-based) named there rather than at the seq
    /// the record claims (FORMAT.md §11.3 step 4): replay and signature failures of records
    /// whose seq is wrong are named where they stand.
    fn at_position(self, position: u64) -> VerifyError {
        match self {
            VerifyError::Inadmissible { rejection, .. } => VerifyError::Inadmissible { seq: position, rejection },
            VerifyError::NotReproduced { .. } => VerifyError::NotReproduced { seq: position },
            VerifyError::BadSignature { error, .. } => VerifyError::BadSignature { seq: position, error },
            other => other,
        }
    }

    /// The seq of the bad record, where one is named: for a ledger read from seq 0, the
    /// record's position, which is its seq wherever the seqs are right.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Gap { expected, .. } => Some(*expected),
            VerifyError::WrongLedger { seq, .. }
            | VerifyError::WrongOrigin { seq, .. }
            | VerifyError::TimeRegressed { seq }
            | VerifyError::BadSignature { seq, .. }
            | VerifyError::Inadmissible { seq, .. }
            | VerifyError::NotReproduced { seq } => Some(*seq),
            VerifyError::BrokenLink { prev, .. } => Some(*prev),
            VerifyError::AlteredRow { seq } | VerifyError::BadPrevHash { seq, .. } => Some(*seq),
            VerifyError::Truncated { have, .. } => Some(*have),
            VerifyError::RootMismatch { .. } => None,
        }
    }
}

/// Computes every record hash (in parallel) and checks seq continuity, ledger id, the
/// `prev_hash` links and monotone time. Returns the record hashes.
pub fn check_chain(records: &[Record]) -> Result<Vec<Hash>, VerifyError> {
    check_chain_from(&ChainTip::default(), records)
}

/// Where a chain checked so far ends: the next seq, the last record's hash and time, and the
/// ledger. The default is the empty chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainTip {
    pub next_seq: u64,
    pub head: Hash,
    pub last_recorded_at: i64,
    pub ledger: Option<crate::ids::VillageCode>,
}

impl ChainTip {
    /// The tip after `records` (which [`check_chain_from`] accepted after `self`, with `hashes`).
    pub fn after(&self, records: &[Record], hashes: &[Hash]) -> ChainTip {
        match (records.last(), hashes.last()) {
            (Some(r), Some(h)) => {
                ChainTip { next_seq: r.seq() + 1, head: *h, last_recorded_at: r.recorded_at(), ledger: Some(r.ledger_id().clone()) }
            }
            _ => self.clone(),
        }
    }
}

/// [`check_chain`] for the records that continue a chain ending at `tip`: a ledger read in
/// pages is checked page by page, with the same errors at the same seqs.
pub fn check_chain_from(tip: &ChainTip, records: &[Record]) -> Result<Vec<Hash>, VerifyError> {
    let hashes: Vec<Hash> = records.par_iter().map(Record::hash).collect();
    let Some(first) = records.first() else { return Ok(hashes) };
    let ledger = tip.ledger.as_ref().unwrap_or(first.ledger_id());
    for (i, r) in records.iter().enumerate() {
        let expected = tip.next_seq + i as u64;
        if r.seq() != expected {
            return Err(VerifyError::Gap { seq: r.seq(), expected });
        }
        if r.ledger_id() != ledger {
            return Err(VerifyError::WrongLedger { seq: expected, expected: ledger.to_string(), got: r.ledger_id().to_string() });
        }
        let prev = if i == 0 { tip.head } else { hashes[i - 1] };
        if *r.prev_hash() != prev {
            return Err(VerifyError::BrokenLink { seq: expected, prev: expected.saturating_sub(1) });
        }
        let last = if i == 0 { (expected > 0).then_some(tip.last_recorded_at) } else { Some(records[i - 1].recorded_at()) };
        if last.is_some_and(|t| r.recorded_at() < t) {
            return Err(VerifyError::TimeRegressed { seq: expected });
        }
    }
    Ok(hashes)
}

/// How signatures are checked (FORMAT.md §3.2).
#[derive(Clone, Copy, Debug)]
pub enum SignatureMode {
    /// The batch equation per chunk of [`SIGNATURE_CHUNK`] records, chunks on all cores, with
    /// weights from a seed the caller drew from the operating system for this run.
    Batch(BatchSeed),
    /// Every signature one by one with `verify_strict`, exactly FORMAT.md §3, on all cores.
    Strict,
    /// `verify_strict` one by one on the calling thread (the baseline).
    SingleSerial,
}

/// Checks every signature of every record. Returns the first bad record, named by its position
/// in `records` (its seq when `records` starts at seq 0 and the chain holds), whatever seq it
/// claims (FORMAT.md §11.3 step 4).
pub fn check_signatures(records: &[Record], mode: SignatureMode) -> Result<(), VerifyError> {
    let check_chunk = |(index, chunk): (usize, &[Record])| -> Result<(), VerifyError> {
        let first = (index * SIGNATURE_CHUNK) as u64;
        let items: Vec<(&EventSignature, &[u8], u64)> =
            chunk.iter().zip(first..).flat_map(|(r, position)| r.signatures().iter().map(move |s| (s, r.body(), position))).collect();
        let pairs: Vec<(&EventSignature, &[u8])> = items.iter().map(|(s, b, _)| (*s, *b)).collect();
        match mode {
            SignatureMode::Batch(seed) => verify_batch(&pairs, &seed),
            _ => pairs.iter().enumerate().try_for_each(|(i, (s, b))| verify_event(s, b).map_err(|e| (i, e))),
        }
        .map_err(|(i, error)| VerifyError::BadSignature { seq: items[i].2, error })
    };
    match mode {
        SignatureMode::Batch(_) | SignatureMode::Strict => {
            let failures: Vec<VerifyError> = records.par_chunks(SIGNATURE_CHUNK).enumerate().filter_map(|c| check_chunk(c).err()).collect();
            failures.into_iter().min_by_key(|e| e.seq()).map_or(Ok(()), Err)
        }
        SignatureMode::SingleSerial => {
            for (r, position) in records.iter().zip(0u64..) {
                for s in r.signatures() {
                    verify_event(s, r.body()).map_err(|error| VerifyError::BadSignature { seq: position, error })?;
                }
            }
            Ok(())
        }
    }
}

/// Builds the Merkle tree over the record hashes and checks the checkpoint's root.
pub fn check_root(hashes: &[Hash], checkpoint: &Checkpoint) -> Result<Tree, VerifyError> {
    if checkpoint.size > hashes.len() as u64 {
        return Err(VerifyError::Truncated { size: checkpoint.size, have: hashes.len() as u64 });
    }
    let tree = Tree::from_record_hashes(hashes);
    let computed = tree.root(checkpoint.size).expect("size checked");
    if computed != checkpoint.root {
        return Err(VerifyError::RootMismatch { size: checkpoint.size, computed, expected: checkpoint.root });
    }
    Ok(tree)
}

/// Decides a stored record again on `state`, its signatures taken as verified: the accepted
/// event if the write-model admits it where it stands and reproduces it byte for byte. This
/// is what a replay and a server's load both do before applying a record, so no stored row
/// reaches `apply` (whose `expect`s rely on `decide`) without being decided first.
pub fn replay_one(state: &VillageState, record: &Record) -> Result<Accepted, VerifyError> {
    replay_stored_one(state, record.clone(), record.hash())
}

/// [`replay_one`] for a record the caller owns, whose hash it computed already (a load's
/// chain check): nothing is copied or hashed again.
pub fn replay_stored_one(state: &VillageState, record: Record, hash: Hash) -> Result<Accepted, VerifyError> {
    let body = crate::body::decode_body(record.body()).map_err(Rejection::from);
    replay_stored_decoded(state, record, hash, body)
}

/// [`replay_stored_one`] for a record whose body the caller decoded already
/// ([`VillageState::decide_stored_decoded`]).
pub fn replay_stored_decoded(
    state: &VillageState,
    record: Record,
    hash: Hash,
    body: Result<crate::pb::EventBody, Rejection>,
) -> Result<Accepted, VerifyError> {
    let seq = record.seq();
    match state.decide_stored_decoded(record, hash, body) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(VerifyError::NotReproduced { seq }),
        Err(rejection) => Err(VerifyError::Inadmissible { seq, rejection }),
    }
}

/// The checks of stored rows that need no signature work, for records continuing a chain at
/// `tip`: [`check_chain_from`] plus each row's stored `record_hash` column, with the same
/// attribution as [`verify_stored`] (a broken link after an intact row is blamed on the later
/// row's `prev_hash`). Returns the hashes of the rows before the first fault, and the fault.
pub fn check_stored_from(tip: &ChainTip, records: &[Record], stored_hashes: &[Hash]) -> (Vec<Hash>, Option<VerifyError>) {
    let mut hashes: Vec<Hash> = records.par_iter().map(Record::hash).collect();
    let intact = |i: usize| stored_hashes.get(i).is_some_and(|s| *s == hashes[i]);
    let altered = (0..records.len()).find(|&i| !intact(i)).map(|i| VerifyError::AlteredRow { seq: tip.next_seq + i as u64 });
    let chain = match check_chain_from(tip, records) {
        Ok(_) => None,
        Err(VerifyError::BrokenLink { seq, prev })
            if prev >= tip.next_seq && intact((prev - tip.next_seq) as usize) && !intact((seq - tip.next_seq) as usize) =>
        {
            Some(VerifyError::BadPrevHash { seq, prev })
        }
        Err(e) => Some(e),
    };
    let fault = [altered, chain].into_iter().flatten().min_by_key(|e| e.seq().unwrap_or(u64::MAX));
    if let Some(seq) = fault.as_ref().and_then(VerifyError::seq) {
        hashes.truncate(seq.saturating_sub(tip.next_seq) as usize);
    }
    (hashes, fault)
}

/// Replays the write-model over records whose signatures were verified, showing each record
/// was admissible where it stands. `on_record` is called after each record with its position
/// (for progress). The first refused or differing record is named by its position in
/// `records`, whatever seq it claims (FORMAT.md §11.3 step 4).
pub fn replay(records: &[Record], mut on_record: impl FnMut(u64)) -> Result<VillageState, VerifyError> {
    replay_observed(records, |position, _| on_record(position))
}

/// [`replay`], showing `on_record` the position of each record and the state right after it.
pub fn replay_observed(records: &[Record], mut on_record: impl FnMut(u64, &VillageState)) -> Result<VillageState, VerifyError> {
    let mut state = VillageState::new();
    for (r, position) in records.iter().zip(0u64..) {
        let a = replay_one(&state, r).map_err(|e| e.at_position(position))?;
        state.apply(&a);
        on_record(position, &state);
    }
    Ok(state)
}

/// Runs every stage and returns the replayed state, or the failure at the lowest seq.
pub fn verify_ledger(records: &[Record], checkpoint: &Checkpoint, mode: SignatureMode) -> Result<VillageState, VerifyError> {
    verify_ledger_with_progress(records, checkpoint, mode, |_| {})
}

/// [`verify_ledger`], calling `on_record` after each record of the replay (for progress).
pub fn verify_ledger_with_progress(
    records: &[Record],
    checkpoint: &Checkpoint,
    mode: SignatureMode,
    on_record: impl FnMut(u64) + Send,
) -> Result<VillageState, VerifyError> {
    let chain = check_chain(records);
    // The replay is sequential: it runs on its own thread while the signature chunks share
    // the remaining cores.
    let (sigs, replayed) = rayon::join(|| check_signatures(records, mode), || replay(records, on_record));
    let mut failures: Vec<VerifyError> =
        [chain.as_ref().err(), sigs.as_ref().err(), replayed.as_ref().err()].into_iter().flatten().cloned().collect();
    if let Ok(hashes) = &chain {
        if let Err(e) = check_root(hashes, checkpoint) {
            failures.push(e);
        }
    }
    // The ledger must have been opened under the checkpoint's origin (an empty origin: no
    // checkpoint to hold it to).
    if let Some(g) = replayed.as_ref().ok().and_then(VillageState::genesis) {
        if !checkpoint.origin.is_empty() && g.origin != checkpoint.origin {
            failures.push(VerifyError::WrongOrigin { seq: 0, expected: checkpoint.origin.clone(), got: g.origin.clone() });
        }
    }
    match failures.into_iter().min_by_key(|e| e.seq().unwrap_or(u64::MAX)) {
        Some(e) => Err(e),
        None => replayed,
    }
}

/// Verifies records as a database stored them, with the `record_hash` each row was written
/// with, against every checkpoint given (the latest stored one and any the caller holds, e.g.
/// a witnessed one). The stored hashes sharpen the diagnosis of edits to unsigned fields: a
/// broken link between `n` and `n + 1` is blamed on `n + 1` when row `n` still matches its
/// stored hash and row `n + 1` does not.
pub fn verify_stored(
    records: &[Record],
    stored_hashes: &[Hash],
    checkpoints: &[Checkpoint],
    mode: SignatureMode,
) -> Result<VillageState, VerifyError> {
    let hashes: Vec<Hash> = records.par_iter().map(Record::hash).collect();
    let altered = hashes.iter().zip(stored_hashes).position(|(h, stored)| h != stored).map(|i| i as u64);
    let intact = |i: u64| hashes.get(i as usize).zip(stored_hashes.get(i as usize)).is_some_and(|(h, stored)| h == stored);
    let mut failures = Vec::new();
    if let Some(seq) = altered {
        failures.push(VerifyError::AlteredRow { seq });
    }
    let largest = checkpoints.iter().max_by_key(|c| c.size);
    let empty = Checkpoint { origin: String::new(), size: 0, root: crate::merkle::empty_root() };
    match verify_ledger(records, largest.unwrap_or(&empty), mode) {
        Ok(state) if failures.is_empty() => {
            // Every other checkpoint must match too.
            for c in checkpoints {
                check_root(&hashes, c)?;
            }
            return Ok(state);
        }
        Ok(_) => {}
        Err(VerifyError::BrokenLink { seq, prev }) if intact(prev) && !intact(seq) => failures.push(VerifyError::BadPrevHash { seq, prev }),
        Err(e) => failures.push(e),
    }
    Err(failures.into_iter().min_by_key(|e| e.seq().unwrap_or(u64::MAX)).expect("a failure"))
}
