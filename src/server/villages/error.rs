//! What a village operation refuses, in the domain's terms. The villages never build a gRPC
//! status: the gRPC layer maps each error to its code, reason and details, in one place
//! (`server::status`).

use crate::store::StoreError;
use jifen_ledger::ids::VillageCode;

/// Why a village operation (other than an append: [`super::AppendError`]) did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum VillageError {
    /// The store failed, or a stored row it read is malformed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The village's stored rows fail verification (from `seq` on, where one is named).
    #[error("the stored rows of ledger {code} fail verification: {reason}")]
    Corrupt { code: VillageCode, seq: Option<u64>, reason: String },
    /// No ledger has this code.
    #[error("no ledger {0}")]
    UnknownLedger(VillageCode),
    /// A request field that cannot be right.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Refused for a reason of its own kind.
    #[error("{message}")]
    Refused { refusal: Refusal, message: String },
}

/// The kinds of [`VillageError::Refused`], each its own status and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No checkpoint of that size (or none yet).
    UnknownCheckpoint,
    /// The cosignature names an actor the ledger does not know.
    UnknownWitness,
    /// The actor is not an enrolled supervisor, unrevoked and in term, at the checkpoint.
    NotAWitness,
    /// The key ID is not the supervisor's key at the checkpoint.
    WrongWitnessKey,
    /// The cosignature does not verify over the checkpoint.
    BadCosignature,
    /// Another process signed a checkpoint beyond what this one could load.
    CheckpointAhead,
    /// A bundle needs a witnessed checkpoint the ledger does not have.
    NoWitnessedCheckpoint,
    /// A proof of sizes or an index that cannot be.
    BadProofRequest,
    /// The tree moved on while its stored nodes were read.
    Busy,
    /// A task of the server failed (a panic, a cancelled blocking task).
    Internal,
}

impl VillageError {
    /// The village's rows fail verification.
    pub fn corrupt(code: &VillageCode, seq: Option<u64>, reason: impl Into<String>) -> VillageError {
        VillageError::Corrupt { code: code.clone(), seq, reason: reason.into() }
    }
    /// An invalid request field.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> VillageError {
        VillageError::Invalid { field, reason: reason.into() }
    }
    /// A refusal of its own kind.
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> VillageError {
        VillageError::Refused { refusal, message: message.into() }
    }
}
