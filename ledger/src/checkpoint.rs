//! Checkpoints: the C2SP tlog-checkpoint text (c2sp.org/tlog-checkpoint) in a signed note.
//!
//! ```text
//! <origin>\n                       "<deployment origin>/village/<12-digit code>"
//! <tree size>\n                    decimal, no leading zeros
//! <base64 root hash>\n             standard base64 of the 32-byte RFC 9162 root
//! ```
//!
//! The log key signs the note; supervisors (the witnesses) add cosignatures as further
//! Ed25519 note signatures under their own key names.

use crate::hash::Hash;
use crate::note::{Note, NoteError, NoteSigner, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("checkpoint text must have an origin, a tree size and a root hash line")]
    MissingLines,
    #[error("origin line is empty")]
    EmptyOrigin,
    #[error("origin {got:?} is not the expected {want:?}")]
    WrongOrigin { got: String, want: String },
    #[error("tree size {0:?} is not a decimal number without leading zeros")]
    BadTreeSize(String),
    #[error("root hash {0:?} is not base64 of 32 bytes")]
    BadRootHash(String),
    #[error("empty extension line")]
    EmptyExtension,
    #[error("checkpoint is not signed by the log key {0}")]
    NotSignedByLog(String),
}

/// The checkpoint body: what the log commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint text, ending in a newline.
    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root.as_bytes()))
    }

    /// Parses checkpoint text strictly. Extension lines (non-empty) are allowed and ignored.
    pub fn parse_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::MissingLines)?;
        let mut lines = body.split('\n');
        let origin = lines.next().ok_or(CheckpointError::MissingLines)?;
        let size = lines.next().ok_or(CheckpointError::MissingLines)?;
        let root = lines.next().ok_or(CheckpointError::MissingLines)?;
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size_n: u64 = crate::canonical_decimal(size).ok_or_else(|| CheckpointError::BadTreeSize(size.to_owned()))?;
        let root_bytes = B64.decode(root).map_err(|_| CheckpointError::BadRootHash(root.to_owned()))?;
        let root_hash = Hash::from_slice(&root_bytes).ok_or_else(|| CheckpointError::BadRootHash(root.to_owned()))?;
        if B64.encode(root_hash.as_bytes()) != root {
            return Err(CheckpointError::BadRootHash(root.to_owned()));
        }
        if lines.any(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyExtension);
        }
        Ok(Checkpoint { origin: origin.to_owned(), size: size_n, root: root_hash })
    }

    /// A new signed note of this checkpoint, signed by the log key.
    pub fn sign(&self, log: &NoteSigner) -> SignedCheckpoint {
        let mut note = Note::new(self.to_text()).expect("checkpoint text is a valid note text");
        note.sign(log);
        SignedCheckpoint { checkpoint: self.clone(), note }
    }
}

/// A checkpoint with its signatures (log signature and cosignatures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The note.
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// Adds a cosignature by a witness.
    pub fn cosign(&mut self, witness: &NoteSigner) {
        self.note.sign(witness);
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        self.note.encode()
    }

    /// Parses a signed checkpoint and verifies it: the origin must be `origin`, the log key
    /// must have signed, and every signature by a known witness must verify. Returns the
    /// checkpoint and the witnesses whose cosignatures verified.
    pub fn open<'a>(
        msg: &[u8],
        origin: &str,
        log: &NoteVerifier,
        witnesses: &'a [NoteVerifier],
    ) -> Result<(SignedCheckpoint, Vec<&'a NoteVerifier>), CheckpointError> {
        let note = Note::parse(msg)?;
        let checkpoint = Checkpoint::parse_text(note.text())?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin { got: checkpoint.origin, want: origin.to_owned() });
        }
        let mut known = vec![log.clone()];
        known.extend(witnesses.iter().cloned());
        let signed = note.verify(&known)?;
        if !signed.contains(&log) {
            return Err(CheckpointError::NotSignedByLog(log.name().to_owned()));
        }
        let cosigners = witnesses.iter().filter(|w| signed.iter().any(|s| s == w)).collect();
        Ok((SignedCheckpoint { checkpoint, note }, cosigners))
    }
}
