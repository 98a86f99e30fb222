//! # jifen (the service)
//!
//! Adapters around the pure core (`jifen-ledger`, `jifen-projections`): PostgreSQL storage, the
//! embedded, managed PostgreSQL cluster, and the gRPC server.
//!
//! # Layout
//!
//! - [`campaign`] — the crash, tamper and bad-input campaigns (tests and `jifen campaign`).
//! - [`codec`] — the gRPC codec: malformed protobuf is the caller's INVALID_ARGUMENT.
//! - [`auth`] — request tokens for the guarded reads: the client helper and the server's check.
//! - [`store`] — our ledger-shaped schema, the append path, the esrs `EventStore` adapter, the
//!   private PostgreSQL cluster `jifen serve` and the tests run (`store::embedded`), and
//!   starting storage, embedded or external (`store::storage`).
//! - [`server`] — the gRPC server: village writers, checkpointer, `LedgerService`.
//! - [`townships`] — the township authority keys the deployment enrols: who may open a village.
//! - [`api`] — the generated protobuf/gRPC types.

pub mod campaign;
pub mod server;
// The gRPC layer's guard and codec, under their old paths (clients sign tokens with `auth`).
pub use server::{auth, codec};
pub mod store;
pub mod townships;

/// `N` bytes of the operating system's randomness.
pub fn os_random<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out)).expect("reading /dev/urandom");
    out
}

/// Batch signature verification weighted from a fresh seed of the operating system's
/// randomness (FORMAT.md §3.2): never from the data, so nobody can grind a signature past it.
pub fn batch_mode() -> jifen_ledger::verify::SignatureMode {
    jifen_ledger::verify::SignatureMode::Batch(jifen_ledger::signature::BatchSeed(os_random()))
}

/// The generated gRPC API (`proto/jifen/v1/ledger.proto`).
/// 32 bytes written as exactly 64 hex digits (either case), as key files and the townships
/// file hold them; anything else (a sign, a space, a non-ASCII character, another length) is
/// `None`.
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

pub mod api {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("jifen.v1");

    /// The encoded descriptor set of the whole API, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("jifen_descriptor");
}

impl api::SignedEvent {
    /// A signed event from its body bytes and signatures.
    pub fn new(body: Vec<u8>, signatures: &[jifen_ledger::EventSignature]) -> api::SignedEvent {
        api::SignedEvent {
            body,
            signatures: signatures
                .iter()
                .map(|s| api::EventSignature { public_key: s.public_key.0.to_vec(), signature: s.signature.to_vec() })
                .collect(),
        }
    }
}

impl api::Record {
    /// The API form of a record.
    pub fn from_record(r: &jifen_ledger::Record) -> api::Record {
        api::Record {
            ledger_id: r.ledger_id().to_string(),
            seq: r.seq(),
            prev_hash: r.prev_hash().0.to_vec(),
            recorded_at: r.recorded_at(),
            body: r.body().to_vec(),
            signatures: r
                .signatures()
                .iter()
                .map(|s| api::EventSignature { public_key: s.public_key.0.to_vec(), signature: s.signature.to_vec() })
                .collect(),
            record_hash: r.hash().0.to_vec(),
        }
    }

    /// The record a server sent, checked against the format's field sizes.
    pub fn to_record(&self) -> Result<jifen_ledger::Record, String> {
        let signatures = self
            .signatures
            .iter()
            .map(|s| {
                Ok(jifen_ledger::EventSignature {
                    public_key: jifen_ledger::PublicKey(s.public_key.clone().try_into().map_err(|_| "public key is not 32 bytes")?),
                    signature: s.signature.clone().try_into().map_err(|_| "signature is not 64 bytes")?,
                })
            })
            .collect::<Result<Vec<_>, &str>>()?;
        let ledger = jifen_ledger::VillageCode::parse(&self.ledger_id).map_err(|e| e.to_string())?;
        let prev = jifen_ledger::Hash::from_slice(&self.prev_hash).ok_or("prev_hash is not 32 bytes")?;
        jifen_ledger::Record::new(ledger, self.seq, prev, self.recorded_at, self.body.clone(), signatures).map_err(|e| e.to_string())
    }
}
