//! # jifen-ledger
//!
//! The pure core of jifen: the record format, event signatures, the hash chain, RFC 9162
//! Merkle proofs, C2SP checkpoints, and the village write-model that decides which signed
//! events a village ledger accepts. It does no I/O, reads no clock and knows nothing of gRPC
//! or SQL: the same records in give the same state out, online in the server and offline in
//! an auditor's replay.
//!
//! # Layout
//!
//! - [`pb`] — the protobuf event schema (`proto/jifen/v1/events.proto`), generated.
//! - [`body`] — strict, canonical decoding of event bodies.
//! - [`hash`] — SHA-256 and the domain-separation tags.
//! - [`ids`], [`time`] — validated identifiers; dates and periods as data (China Standard Time).
//! - [`signature`] — Ed25519 event signatures, single and batch verification.
//! - [`record`] — the record, its canonical bytes and its hash (the chain link).
//! - [`merkle`] — the RFC 9162 tree, inclusion and consistency proofs.
//! - [`note`], [`checkpoint`] — C2SP signed notes and tlog checkpoints.
//! - [`balance`] — balance accounting and the balance digest, the one implementation used by
//!   both the write-model and the balances projection.
//! - [`village`] — the village write-model (`esrs::Aggregate`): trust model and lifecycle rules.
//! - [`verify`] — full verification of a ledger: chain, batch signatures, Merkle root, replay.
//! - [`bundle`] — the year bundle: its format and its offline verification.
//! - [`witness`] — a supervisor's checks before cosigning, and split-view evidence.
//! - [`token`] — signed request tokens for the audit services.
//! - `sample` (feature `sample`) — a deterministic generator of realistic village-years for
//!   tests, the demo, benchmarks and campaigns.
//!
//! The byte formats are specified in `docs/FORMAT.md`; test vectors in `ledger/testdata/`.

pub mod balance;
pub mod body;
pub mod bundle;
pub mod checkpoint;
pub mod fuzzing;
pub mod hash;
pub mod ids;
pub mod journal;
pub mod merkle;
pub mod note;
pub mod pb;
pub mod record;
#[cfg(feature = "sample")]
pub mod sample;
pub mod signature;
pub mod time;
pub mod token;
pub mod verify;
pub mod village;
pub mod witness;

pub use hash::Hash;
pub use ids::VillageCode;
pub use record::Record;
pub use signature::{EventSignature, PublicKey};

/// Lower-case hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A number in canonical decimal: ASCII digits only, no sign, no leading zero (but "0"),
/// within the type's range. Every text format's numbers are read with it, so that each value
/// has exactly one spelling.
pub fn canonical_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}
