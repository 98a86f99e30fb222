//! Witnessing: a supervisor's check before cosigning, and split-view evidence (docs/FORMAT.md §10).
//!
//! A supervisor cosigns a new checkpoint only if it extends the last one they cosigned: same
//! origin, a larger (or equal) tree, and a consistency proof between the two. When the log
//! offers a checkpoint that is not consistent with one it signed before, the two signed
//! checkpoints and the log's own proof are kept as [`Evidence`]: a file anyone can check with
//! nothing but the log's public key.

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::hash::Hash;
use crate::merkle::{roots_from_consistency_proof, verify_consistency, ProofError};
use crate::note::{NoteError, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

/// How a new checkpoint relates to the last one a witness cosigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The same checkpoint again.
    Same,
    /// A larger tree, proven to extend the last one.
    Extends,
}

/// Why a witness will not cosign.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StepError {
    #[error("the checkpoint is for {got}, the last cosigned one for {want}")]
    OtherOrigin { got: String, want: String },
    #[error("the log offers size {offered}, older than the size {last} already cosigned (a stale view)")]
    Stale { last: u64, offered: u64 },
    #[error("two checkpoints of size {size} with different roots: the log forked")]
    Fork { size: u64 },
    #[error("the checkpoint of size {new} is not proven to extend the cosigned one of size {old}: {error}")]
    Inconsistent { old: u64, new: u64, error: ProofError },
    /// A checkpoint of size 0: no log signs one (docs/FORMAT.md §5), and no consistency
    /// proof starts or ends there, so it is neither cosigned nor evidence of anything.
    #[error("a checkpoint of size 0 is offered; no log signs one")]
    EmptyCheckpoint,
}

/// Checks that `new` extends `last`, with `proof` the log's consistency proof between them
/// (from `last.size` to `new.size` when new is larger; from `new.size` to `last.size` when
/// the log offers an older one, which then must still be a prefix of `last`).
pub fn check_step(last: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Result<Step, StepError> {
    if last.origin != new.origin {
        return Err(StepError::OtherOrigin { got: new.origin.clone(), want: last.origin.clone() });
    }
    if new.size == 0 || last.size == 0 {
        return Err(StepError::EmptyCheckpoint);
    }
    use std::cmp::Ordering::*;
    match new.size.cmp(&last.size) {
        Equal if new.root == last.root => Ok(Step::Same),
        Equal => Err(StepError::Fork { size: new.size }),
        Greater => verify_consistency(last.size, new.size, &last.root, &new.root, proof)
            .map(|_| Step::Extends)
            .map_err(|error| StepError::Inconsistent { old: last.size, new: new.size, error }),
        Less => match verify_consistency(new.size, last.size, &new.root, &last.root, proof) {
            Ok(()) => Err(StepError::Stale { last: last.size, offered: new.size }),
            Err(error) => Err(StepError::Inconsistent { old: new.size, new: last.size, error }),
        },
    }
}

/// What split-view evidence shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Two signed checkpoints of one size with different roots.
    Fork { size: u64 },
    /// The log's proof leads to the larger checkpoint's signed root, and the prefix of that
    /// tree it reveals is not the smaller checkpoint's tree: the larger tree does not extend
    /// the smaller one.
    Proven { old: u64, new: u64, prefix_root: Hash, signed_root: Hash },
    /// The log's proof fails without revealing the prefix (it does not lead to the larger
    /// root, or the smaller size is a power of two). No valid proof exists if the log lied:
    /// ask it for one.
    Unanswered { old: u64, new: u64 },
}

/// Why evidence is not evidence.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EvidenceError {
    #[error("evidence is malformed: {0}")]
    Malformed(&'static str),
    #[error("the log key: {0}")]
    BadKey(NoteError),
    #[error("the {which} checkpoint: {error}")]
    BadCheckpoint { which: &'static str, error: CheckpointError },
    #[error("the {which} checkpoint has size 0: the log never signs an empty tree, and no consistency proof starts from one")]
    EmptyCheckpoint { which: &'static str },
    #[error("the checkpoints are consistent: nothing shows the log lied")]
    Consistent,
}

/// Two checkpoints signed by one log that cannot both be honest, with the log's proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The log's note verifier key (`<origin>+<id>+<key>`).
    pub log_key: String,
    /// The checkpoint the witness cosigned earlier (signed note).
    pub older: String,
    /// The checkpoint the log offered next (signed note).
    pub newer: String,
    /// The consistency proof the log gave, from the smaller size to the larger.
    pub proof: Vec<Hash>,
}

const EVIDENCE_MAGIC: &str = "jifen/evidence/v1";
/// The largest evidence file read.
pub const MAX_EVIDENCE_LEN: usize = 256 * 1024;

impl Evidence {
    /// The evidence file: a header line, `log-key`, `proof` lines, then the two notes each
    /// after a line giving its length in bytes.
    pub fn encode(&self) -> String {
        let mut out = format!("{EVIDENCE_MAGIC}\nlog-key {}\n", self.log_key);
        for h in &self.proof {
            out.push_str(&format!("proof {}\n", B64.encode(h.as_bytes())));
        }
        out.push_str(&format!("older {}\n{}", self.older.len(), self.older));
        out.push_str(&format!("newer {}\n{}", self.newer.len(), self.newer));
        out
    }

    /// Parses an evidence file strictly.
    pub fn parse(text: &str) -> Result<Evidence, EvidenceError> {
        if text.len() > MAX_EVIDENCE_LEN {
            return Err(EvidenceError::Malformed("larger than 256 KiB"));
        }
        let mut rest = text;
        let mut line = || -> Result<&str, EvidenceError> {
            let (l, r) = rest.split_once('\n').ok_or(EvidenceError::Malformed("truncated"))?;
            rest = r;
            Ok(l)
        };
        if line()? != EVIDENCE_MAGIC {
            return Err(EvidenceError::Malformed("the first line is not jifen/evidence/v1"));
        }
        let log_key = line()?.strip_prefix("log-key ").ok_or(EvidenceError::Malformed("no log-key line"))?.to_owned();
        let mut proof = Vec::new();
        let mut l = line()?;
        while let Some(b) = l.strip_prefix("proof ") {
            let raw = B64.decode(b).map_err(|_| EvidenceError::Malformed("a proof line is not base64"))?;
            proof.push(Hash::from_slice(&raw).ok_or(EvidenceError::Malformed("a proof hash is not 32 bytes"))?);
            l = line()?;
        }
        let take = |l: &str, prefix: &str, rest: &mut &str| -> Result<String, EvidenceError> {
            let n: usize = l
                .strip_prefix(prefix)
                .and_then(crate::canonical_decimal)
                .ok_or(EvidenceError::Malformed("expected an older/newer length line"))?;
            if rest.len() < n || !rest.is_char_boundary(n) {
                return Err(EvidenceError::Malformed("a note is truncated"));
            }
            let (note, r) = rest.split_at(n);
            *rest = r;
            Ok(note.to_owned())
        };
        let older = take(l, "older ", &mut rest)?;
        let (l, r) = rest.split_once('\n').ok_or(EvidenceError::Malformed("truncated"))?;
        rest = r;
        let newer = take(l, "newer ", &mut rest)?;
        if !rest.is_empty() {
            return Err(EvidenceError::Malformed("bytes after the newer note"));
        }
        Ok(Evidence { log_key, older, newer, proof })
    }

    /// Checks the evidence on its own: both notes signed by the log key for one origin, both of
    /// size at least 1 (FORMAT.md §5: there is no checkpoint of the empty tree, nor a proof from
    /// it), and not consistent. Says what it shows.
    pub fn verify(&self) -> Result<Finding, EvidenceError> {
        let log = NoteVerifier::parse(&self.log_key).map_err(EvidenceError::BadKey)?;
        let open = |which: &'static str, note: &str| -> Result<Checkpoint, EvidenceError> {
            let c = SignedCheckpoint::open(note.as_bytes(), log.name(), &log, &[])
                .map(|(c, _)| c.checkpoint().clone())
                .map_err(|error| EvidenceError::BadCheckpoint { which, error })?;
            if c.size == 0 {
                return Err(EvidenceError::EmptyCheckpoint { which });
            }
            Ok(c)
        };
        let a = open("older", &self.older)?;
        let b = open("newer", &self.newer)?;
        if a.size == b.size {
            return if a.root == b.root { Err(EvidenceError::Consistent) } else { Ok(Finding::Fork { size: a.size }) };
        }
        let (small, large) = if a.size < b.size { (&a, &b) } else { (&b, &a) };
        if verify_consistency(small.size, large.size, &small.root, &large.root, &self.proof).is_ok() {
            return Err(EvidenceError::Consistent);
        }
        match roots_from_consistency_proof(small.size, large.size, &small.root, &self.proof) {
            Ok((prefix, root)) if root == large.root && prefix != small.root => {
                Ok(Finding::Proven { old: small.size, new: large.size, prefix_root: prefix, signed_root: small.root })
            }
            _ => Ok(Finding::Unanswered { old: small.size, new: large.size }),
        }
    }
}
