//! The record: what the ledger appends, its canonical byte layout and its hash.
//!
//! Layout (docs/FORMAT.md, "Record"), all integers big-endian:
//!
//! ```text
//! u16 len(ledger_id) || ledger_id          12 ASCII digits
//! u64 seq
//! [32] prev_hash                            32 zero bytes at seq 0
//! i64 recorded_at                           µs since the Unix epoch, server time
//! u32 len(body) || body                     canonical protobuf EventBody
//! u16 n || n × ([32] public key || [64] signature)   keys strictly ascending
//! ```
//!
//! `record_hash = SHA-256("jifen/record/v1" || 0x00 || record bytes)`.

use crate::hash::{Hash, RECORD_TAG};
use crate::ids::VillageCode;
use crate::signature::{EventSignature, PublicKey};
use thiserror::Error;

/// The largest event body the ledger accepts, in bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// The most signatures one event may carry.
pub const MAX_SIGNATURES: usize = 16;

/// Why record bytes or a record's fields were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("record is truncated: needed {needed} more bytes for {field}")]
    Truncated { field: &'static str, needed: usize },
    #[error("record has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("ledger id is not a 12-digit village code")]
    BadLedgerId,
    #[error("body is {0} bytes, more than the limit of {MAX_BODY_LEN}")]
    BodyTooLarge(usize),
    #[error("event has no signature")]
    NoSignatures,
    #[error("event has {0} signatures, more than the limit of {MAX_SIGNATURES}")]
    TooManySignatures(usize),
    #[error("signatures are not in strictly ascending order of public key (duplicate or unsorted signer)")]
    UnsortedSignatures,
}

/// A ledger record. Fields are private: a record is built by the write-model or decoded from
/// its canonical bytes, and is never modified.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    ledger_id: VillageCode,
    seq: u64,
    prev_hash: Hash,
    recorded_at: i64,
    body: Vec<u8>,
    signatures: Vec<EventSignature>,
}

/// Sorts signatures by public key and checks the count and uniqueness rules of the format.
pub fn canonical_signatures(mut sigs: Vec<EventSignature>) -> Result<Vec<EventSignature>, RecordError> {
    sigs.sort_by_key(|a| a.public_key);
    check_signatures(&sigs)?;
    Ok(sigs)
}

fn check_signatures(sigs: &[EventSignature]) -> Result<(), RecordError> {
    if sigs.is_empty() {
        return Err(RecordError::NoSignatures);
    }
    if sigs.len() > MAX_SIGNATURES {
        return Err(RecordError::TooManySignatures(sigs.len()));
    }
    if sigs.windows(2).any(|w| w[0].public_key >= w[1].public_key) {
        return Err(RecordError::UnsortedSignatures);
    }
    Ok(())
}

impl Record {
    /// Builds a record from its fields, checking the format's limits.
    pub fn new(
        ledger_id: VillageCode,
        seq: u64,
        prev_hash: Hash,
        recorded_at: i64,
        body: Vec<u8>,
        signatures: Vec<EventSignature>,
    ) -> Result<Record, RecordError> {
        if body.len() > MAX_BODY_LEN {
            return Err(RecordError::BodyTooLarge(body.len()));
        }
        check_signatures(&signatures)?;
        Ok(Record { ledger_id, seq, prev_hash, recorded_at, body, signatures })
    }

    pub fn ledger_id(&self) -> &VillageCode {
        &self.ledger_id
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn prev_hash(&self) -> &Hash {
        &self.prev_hash
    }
    pub fn recorded_at(&self) -> i64 {
        self.recorded_at
    }
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    pub fn signatures(&self) -> &[EventSignature] {
        &self.signatures
    }

    /// The canonical record bytes (the layout in the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let id = self.ledger_id.as_str().as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + 8 + 32 + 8 + 4 + self.body.len() + 2 + 96 * self.signatures.len());
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.prev_hash.as_bytes());
        out.extend_from_slice(&self.recorded_at.to_be_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&(self.signatures.len() as u16).to_be_bytes());
        for s in &self.signatures {
            out.extend_from_slice(&s.public_key.0);
            out.extend_from_slice(&s.signature);
        }
        out
    }

    /// The record hash, the link of the chain and the data of the Merkle leaf.
    pub fn hash(&self) -> Hash {
        Hash::tagged(RECORD_TAG, &self.encode())
    }

    /// Decodes canonical record bytes strictly: every length in range, nothing left over.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader { bytes, pos: 0 };
        let id_len = u16::from_be_bytes(r.take("ledger id length")?) as usize;
        let id = r.slice("ledger id", id_len)?;
        let ledger_id = std::str::from_utf8(id).ok().and_then(|s| VillageCode::parse(s).ok()).ok_or(RecordError::BadLedgerId)?;
        let seq = u64::from_be_bytes(r.take("seq")?);
        let prev_hash = Hash(r.take("prev_hash")?);
        let recorded_at = i64::from_be_bytes(r.take("recorded_at")?);
        let body_len = u32::from_be_bytes(r.take("body length")?) as usize;
        if body_len > MAX_BODY_LEN {
            return Err(RecordError::BodyTooLarge(body_len));
        }
        let body = r.slice("body", body_len)?.to_vec();
        let n = u16::from_be_bytes(r.take("signature count")?) as usize;
        if n > MAX_SIGNATURES {
            return Err(RecordError::TooManySignatures(n));
        }
        let mut signatures = Vec::with_capacity(n);
        for _ in 0..n {
            let public_key = PublicKey(r.take("public key")?);
            let signature = r.take("signature")?;
            signatures.push(EventSignature { public_key, signature });
        }
        if r.pos != bytes.len() {
            return Err(RecordError::TrailingBytes(bytes.len() - r.pos));
        }
        Record::new(ledger_id, seq, prev_hash, recorded_at, body, signatures)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn slice(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], RecordError> {
        let rest = self.bytes.len() - self.pos;
        if rest < n {
            return Err(RecordError::Truncated { field, needed: n - rest });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let s = self.slice(field, N)?;
        Ok(s.try_into().expect("slice has length N"))
    }
}
