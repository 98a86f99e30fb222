//! The year bundle: one file an auditor verifies and replays offline (docs/FORMAT.md §11).
//!
//! ```text
//! "JIFENBDL" (8 bytes) || u16 version (= 1) || u16 flags (= 0)
//! sections, each: u8 tag || u64 length || payload, in this order, each exactly once:
//!   0x01 HEADER       u8 len || ledger id · u16 len || origin · u16 len || log verifier key
//!                     · u16 year · u64 record count · u32 checkpoint count
//!   0x02 RECORDS      record count × (u32 len || canonical record bytes), seq 0, 1, 2, …
//!   0x03 CHECKPOINTS  checkpoint count × (u32 len || signed note, with its cosignatures)
//!   0x04 PROOFS       (checkpoint count − 1) × (u64 old || u64 new || u8 n || n × 32-byte hash)
//!   0xFF END          32 bytes: SHA-256 of every byte of the file before this section
//! ```
//!
//! All integers are big-endian. The decoder is strict: the tags in order, every length within
//! its limit and equal to what its payload uses, nothing after END. The checksum only guards
//! against damage in transit; what makes the bundle trustworthy is [`verify_bundle`].

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::hash::Hash;
use crate::ids::VillageCode;
use crate::merkle::{verify_consistency, ProofError, Tree};
use crate::note::{Note, NoteError, NoteVerifier};
use crate::record::{Record, RecordError};
use crate::verify::{check_chain_from, check_signatures, replay_observed, ChainTip, SignatureMode, VerifyError};
use crate::village::{RoleSet, VillageState};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"JIFENBDL";
/// The format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// The most records a bundle may hold.
pub const MAX_RECORDS: u64 = 1 << 26;
/// The longest encoded record (a 64 KiB body, 16 signatures and the fixed fields).
pub const MAX_RECORD_LEN: u32 = 70_000;
/// The most checkpoints a bundle may hold.
pub const MAX_CHECKPOINTS: u32 = 1 << 20;
/// The longest signed checkpoint note.
pub const MAX_CHECKPOINT_LEN: u32 = 64 * 1024;
/// The most hashes in one consistency proof (a tree of 2^64 leaves needs fewer than 128).
pub const MAX_PROOF_HASHES: u8 = 128;
/// The longest header section.
pub const MAX_HEADER_LEN: u64 = 4096;

const TAG_HEADER: u8 = 0x01;
const TAG_RECORDS: u8 = 0x02;
const TAG_CHECKPOINTS: u8 = 0x03;
const TAG_PROOFS: u8 = 0x04;
const TAG_END: u8 = 0xFF;

/// A consistency proof between two consecutive checkpoints of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyStep {
    pub old: u64,
    pub new: u64,
    pub proof: Vec<Hash>,
}

/// A decoded bundle. Nothing in it is trusted until [`verify_bundle`] says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub ledger: VillageCode,
    pub origin: String,
    /// The log verifier key the exporter names (`<origin>+<id>+<key>`); an auditor should
    /// pass the key they trust instead.
    pub log_key: String,
    pub year: u16,
    pub records: Vec<Record>,
    /// Signed checkpoint notes, ascending in tree size, the last covering every record.
    pub checkpoints: Vec<String>,
    /// One proof between each pair of consecutive checkpoints.
    pub proofs: Vec<ConsistencyStep>,
}

/// Why bundle bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleFormatError {
    #[error("not a jifen bundle (bad magic)")]
    BadMagic,
    #[error("bundle version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u16),
    #[error("unknown flags {0:#06x}")]
    UnknownFlags(u16),
    #[error("bundle is truncated in {0}")]
    Truncated(&'static str),
    #[error("expected section {expected:#04x}, found {found:#04x}")]
    UnexpectedSection { expected: u8, found: u8 },
    #[error("section {section:#04x}: {what}")]
    Limit { section: u8, what: String },
    #[error("section {section:#04x} declares {declared} bytes but its content uses {used}")]
    SectionLength { section: u8, declared: u64, used: u64 },
    #[error("header: {0}")]
    BadHeader(&'static str),
    #[error("record {index}: {error}")]
    BadRecord { index: u64, error: RecordError },
    #[error("checkpoint {index} is not UTF-8")]
    BadCheckpointText { index: u32 },
    #[error("checksum does not match: the file is damaged")]
    Checksum,
    #[error("{0} bytes after the end section")]
    TrailingBytes(usize),
}

impl Bundle {
    /// The bundle's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.records.len() * 400);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());

        let mut header = Vec::new();
        header.push(self.ledger.as_str().len() as u8);
        header.extend_from_slice(self.ledger.as_str().as_bytes());
        for s in [&self.origin, &self.log_key] {
            header.extend_from_slice(&(s.len() as u16).to_be_bytes());
            header.extend_from_slice(s.as_bytes());
        }
        header.extend_from_slice(&self.year.to_be_bytes());
        header.extend_from_slice(&(self.records.len() as u64).to_be_bytes());
        header.extend_from_slice(&(self.checkpoints.len() as u32).to_be_bytes());
        section(&mut out, TAG_HEADER, &header);

        let mut records = Vec::with_capacity(self.records.len() * 400);
        for r in &self.records {
            let bytes = r.encode();
            records.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            records.extend_from_slice(&bytes);
        }
        section(&mut out, TAG_RECORDS, &records);

        let mut cps = Vec::new();
        for c in &self.checkpoints {
            cps.extend_from_slice(&(c.len() as u32).to_be_bytes());
            cps.extend_from_slice(c.as_bytes());
        }
        section(&mut out, TAG_CHECKPOINTS, &cps);

        let mut proofs = Vec::new();
        for p in &self.proofs {
            proofs.extend_from_slice(&p.old.to_be_bytes());
            proofs.extend_from_slice(&p.new.to_be_bytes());
            proofs.push(p.proof.len() as u8);
            for h in &p.proof {
                proofs.extend_from_slice(h.as_bytes());
            }
        }
        section(&mut out, TAG_PROOFS, &proofs);

        Bundle::seal(out)
    }

    /// Appends the END section (the SHA-256 of every byte before it) to the bytes of the
    /// sections before it. Tests and fuzzing use it to reach past the checksum.
    pub fn seal(mut unsealed: Vec<u8>) -> Vec<u8> {
        let sum: [u8; 32] = Sha256::digest(&unsealed).into();
        section(&mut unsealed, TAG_END, &sum);
        unsealed
    }

    /// Decodes bundle bytes strictly (see the module docs), refusing them at the first fault in
    /// FORMAT.md §11's order. Records are decoded in parallel; of several malformed records the
    /// one at the lowest position is named.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleFormatError> {
        use rayon::prelude::*;
        let mut r = Cursor { bytes, pos: 0 };
        if r.take::<8>("magic")? != *MAGIC {
            return Err(BundleFormatError::BadMagic);
        }
        let version = u16::from_be_bytes(r.take("version")?);
        if version != VERSION {
            return Err(BundleFormatError::UnsupportedVersion(version));
        }
        let flags = u16::from_be_bytes(r.take("flags")?);
        if flags != 0 {
            return Err(BundleFormatError::UnknownFlags(flags));
        }

        let mut h = r.section(TAG_HEADER, MAX_HEADER_LEN)?;
        let id_len = h.take::<1>("header")?[0] as usize;
        let id = std::str::from_utf8(h.slice("header", id_len)?).map_err(|_| BundleFormatError::BadHeader("ledger id is not UTF-8"))?;
        let ledger = VillageCode::parse(id).map_err(|_| BundleFormatError::BadHeader("ledger id is not a 12-digit village code"))?;
        let origin = h.string16()?;
        let log_key = h.string16()?;
        let year = u16::from_be_bytes(h.take("header")?);
        let record_count = u64::from_be_bytes(h.take("header")?);
        let checkpoint_count = u32::from_be_bytes(h.take("header")?);
        h.finish(TAG_HEADER)?;
        if record_count > MAX_RECORDS {
            return Err(limit(TAG_HEADER, format!("{record_count} records, more than {MAX_RECORDS}")));
        }
        if checkpoint_count == 0 || checkpoint_count > MAX_CHECKPOINTS {
            return Err(limit(TAG_HEADER, format!("{checkpoint_count} checkpoints, not between 1 and {MAX_CHECKPOINTS}")));
        }

        let mut rs = r.section(TAG_RECORDS, u64::MAX)?;
        let mut slices = Vec::with_capacity(record_count.min(1 << 20) as usize);
        for index in 0..record_count {
            let len = u32::from_be_bytes(rs.take("records")?);
            if len > MAX_RECORD_LEN {
                return Err(limit(TAG_RECORDS, format!("record {index} is {len} bytes, more than {MAX_RECORD_LEN}")));
            }
            slices.push(rs.slice("records", len as usize)?);
        }
        rs.finish(TAG_RECORDS)?;
        // Decoded in parallel, then the malformed record at the lowest position is named
        // (FORMAT.md §11), not whichever a thread met first.
        let decoded: Vec<Result<Record, RecordError>> = slices.par_iter().map(|b| Record::decode(b)).collect();
        let mut records = Vec::with_capacity(decoded.len());
        for (index, r) in (0u64..).zip(decoded) {
            records.push(r.map_err(|error| BundleFormatError::BadRecord { index, error })?);
        }

        let mut cs = r.section(TAG_CHECKPOINTS, u64::MAX)?;
        let mut checkpoints = Vec::with_capacity(checkpoint_count as usize);
        for index in 0..checkpoint_count {
            let len = u32::from_be_bytes(cs.take("checkpoints")?);
            if len > MAX_CHECKPOINT_LEN {
                return Err(limit(TAG_CHECKPOINTS, format!("checkpoint {index} is {len} bytes, more than {MAX_CHECKPOINT_LEN}")));
            }
            let text =
                std::str::from_utf8(cs.slice("checkpoints", len as usize)?).map_err(|_| BundleFormatError::BadCheckpointText { index })?;
            checkpoints.push(text.to_owned());
        }
        cs.finish(TAG_CHECKPOINTS)?;

        let mut ps = r.section(TAG_PROOFS, u64::MAX)?;
        let mut proofs = Vec::with_capacity(checkpoint_count as usize - 1);
        for _ in 1..checkpoint_count {
            let old = u64::from_be_bytes(ps.take("proofs")?);
            let new = u64::from_be_bytes(ps.take("proofs")?);
            let n = ps.take::<1>("proofs")?[0];
            if n > MAX_PROOF_HASHES {
                return Err(limit(TAG_PROOFS, format!("a proof of {n} hashes, more than {MAX_PROOF_HASHES}")));
            }
            let proof = (0..n).map(|_| ps.take::<32>("proofs").map(Hash)).collect::<Result<Vec<_>, _>>()?;
            proofs.push(ConsistencyStep { old, new, proof });
        }
        ps.finish(TAG_PROOFS)?;

        let before_end = r.pos;
        let mut end = r.section(TAG_END, 32)?;
        let sum = end.take::<32>("end")?;
        end.finish(TAG_END)?;
        if r.pos != bytes.len() {
            return Err(BundleFormatError::TrailingBytes(bytes.len() - r.pos));
        }
        if <[u8; 32]>::from(Sha256::digest(&bytes[..before_end])) != sum {
            return Err(BundleFormatError::Checksum);
        }
        Ok(Bundle { ledger, origin, log_key, year, records, checkpoints, proofs })
    }
}

fn section(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
}

fn limit(section: u8, what: String) -> BundleFormatError {
    BundleFormatError::Limit { section, what }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn slice(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], BundleFormatError> {
        if self.bytes.len() - self.pos < n {
            return Err(BundleFormatError::Truncated(what));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], BundleFormatError> {
        Ok(self.slice(what, N)?.try_into().expect("N bytes"))
    }

    fn string16(&mut self) -> Result<String, BundleFormatError> {
        let n = u16::from_be_bytes(self.take("header")?) as usize;
        let s = self.slice("header", n)?;
        String::from_utf8(s.to_vec()).map_err(|_| BundleFormatError::BadHeader("a string is not UTF-8"))
    }

    /// The next section, which must be `tag`, no longer than `max`.
    fn section(&mut self, tag: u8, max: u64) -> Result<Cursor<'a>, BundleFormatError> {
        let found = self.take::<1>("section tag")?[0];
        if found != tag {
            return Err(BundleFormatError::UnexpectedSection { expected: tag, found });
        }
        let len = u64::from_be_bytes(self.take("section length")?);
        if len > max {
            return Err(limit(tag, format!("section is {len} bytes, more than {max}")));
        }
        if len > (self.bytes.len() - self.pos) as u64 {
            return Err(BundleFormatError::Truncated("section"));
        }
        Ok(Cursor { bytes: self.slice("section", len as usize)?, pos: 0 })
    }

    /// Checks the section's content used every byte it declared.
    fn finish(&self, tag: u8) -> Result<(), BundleFormatError> {
        if self.pos != self.bytes.len() {
            return Err(BundleFormatError::SectionLength { section: tag, declared: self.bytes.len() as u64, used: self.pos as u64 });
        }
        Ok(())
    }
}

/// The keys an auditor trusts. Without a log key the bundle's own is used (and reported as
/// such); without witness keys, the supervisors of the ledger in term at each checkpoint's time.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub log_key: Option<NoteVerifier>,
    pub witness_keys: Vec<NoteVerifier>,
}

/// Why a bundle does not verify: the first bad record or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    #[error("the bundle's log key {0:?} is malformed: {1}")]
    BadLogKey(String, NoteError),
    #[error("the log key's name {got:?} is not the bundle's origin {want:?}")]
    LogKeyOrigin { got: String, want: String },
    #[error("the bundle is for ledger {header} but its origin is {origin:?}")]
    OriginMismatch { header: String, origin: String },
    #[error(transparent)]
    Record(VerifyError),
    #[error("checkpoint {index}: {error}")]
    Checkpoint { index: usize, error: CheckpointError },
    #[error("the bundle holds no checkpoint")]
    NoCheckpoint,
    #[error("checkpoint {index} has size 0: the log never signs an empty tree, and no consistency proof starts from one")]
    EmptyCheckpoint { index: usize },
    #[error("checkpoint {index} (size {size}) does not follow size {previous}: checkpoints must grow")]
    CheckpointOrder { index: usize, size: u64, previous: u64 },
    #[error("the last checkpoint covers {size} records but the bundle holds {records}")]
    RecordCount { size: u64, records: u64 },
    #[error("fork: the records {from}..{size} are not those checkpoint of size {size} commits to (its root {expected}, the records give {computed})")]
    Fork { from: u64, size: u64, computed: Hash, expected: Hash },
    #[error("checkpoint inconsistency: the proof between sizes {old} and {new} does not verify: {error}")]
    Inconsistent { old: u64, new: u64, error: ProofError },
    #[error("the bundle has {proofs} consistency proofs for {checkpoints} checkpoints (one per consecutive pair is needed)")]
    ProofCount { proofs: usize, checkpoints: usize },
    #[error("proof {index} is for sizes {got_old}→{got_new}, not the checkpoints' {old}→{new}")]
    ProofSizes { index: usize, old: u64, new: u64, got_old: u64, got_new: u64 },
    #[error("checkpoint of size {size}: a cosignature by {name} does not verify")]
    BadCosignature { size: u64, name: String },
    #[error("the last checkpoint (size {size}) is not witnessed: {got} of the {needed} supervisor cosignatures needed")]
    NotWitnessed { size: u64, needed: u32, got: u32 },
}

impl BundleError {
    /// The first record the failure concerns, where one is known.
    pub fn seq(&self) -> Option<u64> {
        match self {
            BundleError::Record(e) => e.seq(),
            BundleError::Fork { from, .. } => Some(*from),
            _ => None,
        }
    }
}

/// One checkpoint as verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointReport {
    pub size: u64,
    pub root: Hash,
    /// Key names of the witnesses whose cosignatures verified.
    pub cosigners: Vec<String>,
    pub quorum: u32,
}

impl CheckpointReport {
    /// Whether the cosignatures reach the quorum.
    pub fn witnessed(&self) -> bool {
        self.cosigners.len() as u32 >= self.quorum
    }
}

/// What a verified bundle showed.
#[derive(Debug)]
pub struct BundleReport {
    pub records: u64,
    pub signatures: u64,
    pub checkpoints: Vec<CheckpointReport>,
    /// Whether the log key was the auditor's (true) or the bundle's own (false).
    pub log_key_given: bool,
    /// The write-model state after the last record.
    pub state: VillageState,
}

/// The witness key name of a supervisor: `<deployment>/witness/<actor id>`, where the
/// deployment is the origin without its `/village/<code>` suffix.
pub fn witness_key_name(origin: &str, actor_id: &str) -> String {
    let deployment = origin.rsplit_once("/village/").map_or(origin, |(d, _)| d);
    format!("{deployment}/witness/{actor_id}")
}

/// The witnesses of a checkpoint of `size` records whose last was recorded at `at` (µs): the
/// keys, as they were after those records, of the supervisors enrolled and not revoked by then
/// ([`Actor::active_after`], [`Actor::key_after`]) with `at` in their term, and the quorum of
/// the rulebook in force then among those adopted by then
/// ([`VillageState::witness_quorum_after`], 1 before any). A checkpoint's time is the
/// `recorded_at` of the last record it covers: the checkpoint text carries no time of its own,
/// and that is the latest time the records vouch for. The answer is the same on any state that
/// holds the first `size` records (keys in name order), so the server (whose state has moved on) and a verifier
/// (replaying up to the checkpoint) agree.
///
/// [`Actor::active_after`]: crate::village::Actor::active_after
/// [`Actor::key_after`]: crate::village::Actor::key_after
pub fn witnesses(state: &VillageState, origin: &str, size: u64, at: i64) -> (Vec<NoteVerifier>, u32) {
    let mut keys: Vec<NoteVerifier> = state
        .actors()
        .filter(|a| a.roles.intersects(RoleSet::SUPERVISOR) && a.active_after(size) && a.term_covers(at))
        .filter_map(|a| NoteVerifier::new(&witness_key_name(origin, &a.id), a.key_after(size).0).ok())
        .collect();
    keys.sort_by(|a, b| a.name().cmp(b.name()));
    (keys, state.witness_quorum_after(size, at))
}

/// The distinct witnesses whose cosignatures on a checkpoint note verify, in the order of the
/// note's lines, or the name of the first witness line that does not verify. Lines by keys
/// that are not witnesses are not counted (FORMAT.md §11).
pub fn cosigners(note: &Note, witnesses: &[NoteVerifier]) -> Result<Vec<String>, String> {
    let mut cosigners = Vec::new();
    for s in note.signatures() {
        let Some(w) = witnesses.iter().find(|w| w.name() == s.name && w.id() == s.id) else { continue };
        let ok = <[u8; 64]>::try_from(s.signature.as_slice()).is_ok_and(|sig| w.verify(note.text().as_bytes(), &sig));
        if !ok {
            return Err(s.name.clone());
        }
        if !cosigners.contains(&s.name) {
            cosigners.push(s.name.clone());
        }
    }
    Ok(cosigners)
}

/// The chain of the bundle's records (FORMAT.md §11.3 step 4), whose every `ledger_id` must be
/// the header's.
fn header_chain(bundle: &Bundle) -> Result<Vec<Hash>, VerifyError> {
    check_chain_from(&ChainTip { ledger: Some(bundle.ledger.clone()), ..ChainTip::default() }, &bundle.records)
}

/// Verifies a bundle: the header, the log signature of every checkpoint, the consistency
/// proofs between them, the chain, every signature (batched, on all cores), a replay of the
/// write-model (on its own thread, alongside), every checkpoint's root, the record count, the
/// cosignatures and the last checkpoint's quorum, in FORMAT.md §11.3's order, reporting the
/// first failure there. Signatures are checked as `mode` says (FORMAT.md §3.2). `on_record` is
/// called after each replayed record, with its position.
pub fn verify_bundle(
    bundle: &Bundle,
    trust: &Trust,
    mode: SignatureMode,
    on_record: impl FnMut(u64) + Send,
) -> Result<BundleReport, BundleError> {
    // 1. Header: the origin names the ledger, the log key is named after the origin.
    let expected_origin_suffix = format!("/village/{}", bundle.ledger);
    if !bundle.origin.ends_with(&expected_origin_suffix) {
        return Err(BundleError::OriginMismatch { header: bundle.ledger.to_string(), origin: bundle.origin.clone() });
    }
    let log = match &trust.log_key {
        Some(k) => k.clone(),
        None => NoteVerifier::parse(&bundle.log_key).map_err(|e| BundleError::BadLogKey(bundle.log_key.clone(), e))?,
    };
    if log.name() != bundle.origin {
        return Err(BundleError::LogKeyOrigin { got: log.name().to_owned(), want: bundle.origin.clone() });
    }
    // 2. Checkpoints: log signatures, sizes at least 1 and growing.
    if bundle.checkpoints.is_empty() {
        return Err(BundleError::NoCheckpoint);
    }
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(bundle.checkpoints.len());
    for (index, text) in bundle.checkpoints.iter().enumerate() {
        let (signed, _) =
            SignedCheckpoint::open(text.as_bytes(), &bundle.origin, &log, &[]).map_err(|error| BundleError::Checkpoint { index, error })?;
        let c = signed.checkpoint().clone();
        if c.size == 0 {
            return Err(BundleError::EmptyCheckpoint { index });
        }
        if let Some(prev) = checkpoints.last() {
            if c.size <= prev.size {
                return Err(BundleError::CheckpointOrder { index, size: c.size, previous: prev.size });
            }
        }
        checkpoints.push(c);
    }
    // 3. Consistency proofs between consecutive checkpoints.
    if bundle.proofs.len() + 1 != checkpoints.len() {
        return Err(BundleError::ProofCount { proofs: bundle.proofs.len(), checkpoints: checkpoints.len() });
    }
    for (index, (p, pair)) in bundle.proofs.iter().zip(checkpoints.windows(2)).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        if (p.old, p.new) != (a.size, b.size) {
            return Err(BundleError::ProofSizes { index, old: a.size, new: b.size, got_old: p.old, got_new: p.new });
        }
        verify_consistency(a.size, b.size, &a.root, &b.root, &p.proof).map_err(|error| BundleError::Inconsistent {
            old: a.size,
            new: b.size,
            error,
        })?;
    }

    // 4. Records, all of them whatever their count: chain, signatures and replay; the
    // witnesses and quorum at each checkpoint are taken from the replayed state as it reaches
    // the checkpoint's size.
    let records = &bundle.records;
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    let chain = header_chain(bundle);
    let mut at_checkpoint: Vec<(Vec<NoteVerifier>, u32)> = Vec::with_capacity(sizes.len());
    let mut genesis_origin: Option<String> = None;
    let (sigs, replayed) = {
        let origin = bundle.origin.as_str();
        let at = &mut at_checkpoint;
        let genesis_origin = &mut genesis_origin;
        let mut on_record = on_record;
        let mut next = 0usize;
        rayon::join(
            || check_signatures(records, mode),
            || {
                replay_observed(records, |position, state| {
                    if position == 0 {
                        *genesis_origin = state.genesis().map(|g| g.origin.clone());
                    }
                    while next < sizes.len() && sizes[next] == position + 1 {
                        at.push(witnesses(state, origin, position + 1, state.last_recorded_at()));
                        next += 1;
                    }
                    on_record(position);
                })
            },
        )
    };
    // The replay fails at position 0 if the ledger was opened under another origin than the
    // header's (the record at position 0, once replayed, opened it).
    let replay_failure = match genesis_origin {
        Some(got) if got != bundle.origin => Some(VerifyError::WrongOrigin { seq: 0, expected: bundle.origin.clone(), got }),
        _ => replayed.as_ref().err().cloned(),
    };
    // F: the failure at the lowest position; on a tie the chain's, then the signatures', then
    // the replay's.
    let record_failure =
        [chain.as_ref().err().cloned(), sigs.as_ref().err().cloned(), replay_failure].into_iter().flatten().min_by_key(|e| e.seq());
    // 5. Roots of the checkpoints the records reach. A record's own failure below a
    // checkpoint is named before the fork it causes (the fork's range only bounds where the
    // bad records are: from the last checkpoint whose root matched).
    let count = records.len() as u64;
    if let Ok(hashes) = &chain {
        let tree = Tree::from_record_hashes(hashes);
        let mut from = 0;
        for c in checkpoints.iter().take_while(|c| c.size <= count) {
            let computed = tree.root(c.size).expect("size at most the record count");
            if computed != c.root {
                return Err(match record_failure {
                    Some(e) if e.seq().is_some_and(|s| s < c.size) => BundleError::Record(e),
                    _ => BundleError::Fork { from, size: c.size, computed, expected: c.root },
                });
            }
            from = c.size;
        }
    }
    // 6. F.
    if let Some(e) = record_failure {
        return Err(BundleError::Record(e));
    }
    let state = replayed.expect("no failure");
    // 7. The record count: a shorter bundle is a truncated tail, named at the first missing seq.
    let last = checkpoints.last().expect("at least one checkpoint").size;
    if count < last {
        return Err(BundleError::Record(VerifyError::Truncated { size: last, have: count }));
    }
    if count > last {
        return Err(BundleError::RecordCount { size: last, records: count });
    }

    // 8. Cosignatures: every one by a witness must verify; 9. the last checkpoint needs the
    // quorum.
    let mut reports = Vec::with_capacity(checkpoints.len());
    for ((c, text), (derived, quorum)) in checkpoints.iter().zip(&bundle.checkpoints).zip(at_checkpoint) {
        let witnesses = if trust.witness_keys.is_empty() { derived } else { trust.witness_keys.clone() };
        let note = Note::parse(text.as_bytes()).expect("opened above");
        let cosigners = cosigners(&note, &witnesses).map_err(|name| BundleError::BadCosignature { size: c.size, name })?;
        reports.push(CheckpointReport { size: c.size, root: c.root, cosigners, quorum });
    }
    let final_report = reports.last().expect("at least one checkpoint");
    if !final_report.witnessed() {
        return Err(BundleError::NotWitnessed {
            size: final_report.size,
            needed: final_report.quorum,
            got: final_report.cosigners.len() as u32,
        });
    }
    Ok(BundleReport {
        records: records.len() as u64,
        signatures: records.iter().map(|r| r.signatures().len() as u64).sum(),
        checkpoints: reports,
        log_key_given: trust.log_key.is_some(),
        state,
    })
}
