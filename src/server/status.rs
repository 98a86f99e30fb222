//! The one mapping from domain and store errors to gRPC statuses with rich details.
//!
//! Every write-model rejection becomes a status whose code fits its class and whose
//! `ErrorInfo` reason names the rule (`SELF_SCORING`, `OVERDRAFT`, …, the `Rejection`
//! variant in upper snake case), domain `jifen.v1`, with the message in the metadata. Invalid
//! fields also carry a `BadRequest` field violation. Unexpected store errors become an opaque
//! INTERNAL and are logged.

use super::villages::{AppendError, Refusal, VillageError};
use crate::store::StoreError;
use crate::townships::OpenRefusal;
use jifen_ledger::village::Rejection;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The error domain of jifen's statuses.
pub const DOMAIN: &str = "jifen.v1";

/// `RoleNotAllowed { .. }` → `ROLE_NOT_ALLOWED`.
pub fn reason_of(debug: &str) -> String {
    let name: String = debug.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The status code of a rejection.
pub fn code_of(r: &Rejection) -> Code {
    use Rejection::*;
    match r {
        Body(_) | Record(_) | Id(_) | Time(_) | InvalidField { .. } | PersonalData { .. } | WrongLedger { .. } | CongressResolution(_) => {
            Code::InvalidArgument
        }
        Signature(_) | UnknownKey(_) | KeyRevoked { .. } | KeySuperseded { .. } | OutsideTerm { .. } | AuthorNotSigner { .. } | WeakKey => {
            Code::Unauthenticated
        }
        RoleNotAllowed { .. }
        | QuorumNotMet { .. }
        | SelfScoring { .. }
        | CannotRevokeTownship
        | ConflictingRoles { .. }
        | SupervisorNotIndependent { .. }
        | ObjectorMismatch { .. } => Code::PermissionDenied,
        Duplicate { .. } | IdempotencyConflict { .. } | KeyInUse { .. } | AlreadyOpened => Code::AlreadyExists,
        Unknown { .. } | NotOpened => Code::NotFound,
        PointsOutOfRange { .. } | OutsideWindow { .. } => Code::OutOfRange,
        _ => Code::FailedPrecondition,
    }
}

/// A rejection as a status with details.
pub fn rejection(r: &Rejection) -> Status {
    let message = r.to_string();
    let mut details = ErrorDetails::new();
    let metadata = HashMap::from([("message".to_owned(), message.clone())]);
    details.set_error_info(reason_of(&format!("{r:?}")), DOMAIN, metadata);
    if let Rejection::InvalidField { field, reason } = r {
        details.add_bad_request_violation(*field, reason.clone());
    }
    if let Rejection::PersonalData { field, what } = r {
        details.add_bad_request_violation(*field, format!("contains a {what}"));
    }
    Status::with_error_details(code_of(r), message, details)
}

/// A malformed request, refused before it reaches the write-model.
pub fn invalid(field: &str, why: impl Into<String>) -> Status {
    let why = why.into();
    let mut details = ErrorDetails::new();
    details.set_error_info("INVALID_REQUEST", DOMAIN, HashMap::from([("field".to_owned(), field.to_owned())]));
    details.add_bad_request_violation(field, why.clone());
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {why}"), details)
}

/// A status with a reason but no rejection behind it (not found, unavailable …).
pub fn plain(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, DOMAIN, HashMap::from([("message".to_owned(), message.clone())]));
    Status::with_error_details(code, message, details)
}

/// A ledger whose stored rows failed verification: `DATA_LOSS`, reason `LEDGER_CORRUPT`, with
/// the first bad seq (metadata `first_bad_seq`, where one is named) and why.
pub fn corrupt(ledger: &jifen_ledger::VillageCode, seq: Option<u64>, why: &str) -> Status {
    let message = match seq {
        Some(seq) => format!("the stored rows of ledger {ledger} fail verification from seq {seq} on: {why}; supervisors and auditors can still verify, read and export it"),
        None => format!("the stored rows of ledger {ledger} fail verification: {why}; supervisors and auditors can still verify, read and export it"),
    };
    let mut metadata = HashMap::from([("message".to_owned(), message.clone()), ("ledger_id".to_owned(), ledger.to_string())]);
    if let Some(seq) = seq {
        metadata.insert("first_bad_seq".to_owned(), seq.to_string());
    }
    let mut details = ErrorDetails::new();
    details.set_error_info("LEDGER_CORRUPT", DOMAIN, metadata);
    Status::with_error_details(Code::DataLoss, message, details)
}

/// A store error: a lost race is ABORTED (retry), anything else is logged and opaque.
pub fn store(e: &StoreError) -> Status {
    match e {
        StoreError::Conflict { .. } => plain(Code::Aborted, "CONCURRENT_APPEND", format!("{e}; retry the request")),
        // A row no code wrote that way (edited in the database): the data is lost, not the
        // server broken; VerifyLedger names it.
        StoreError::Corrupt { ledger, error, .. } => {
            tracing::error!(error = %e, "a stored row is malformed");
            plain(Code::DataLoss, "STORED_ROW_MALFORMED", format!("a stored row of ledger {ledger} is malformed: {error}"))
        }
        _ => {
            tracing::error!(error = %e, "store error");
            Status::internal("internal error (logged on the server)")
        }
    }
}

impl From<AppendError> for Status {
    fn from(e: AppendError) -> Status {
        match e {
            AppendError::Rejected { index, rejection: r } => {
                let s = rejection(&r);
                if index == 0 {
                    s
                } else {
                    Status::with_details(s.code(), format!("event {index}: {}", s.message()), s.details().to_vec().into())
                }
            }
            AppendError::Store(e) => store(&e),
            AppendError::Corrupt { code, corruption } => corrupt(&code, corruption.seq, &corruption.reason),
            AppendError::Open(OpenRefusal::UnknownTownship { township }) => plain(
                Code::PermissionDenied,
                "UNKNOWN_TOWNSHIP",
                format!("this deployment enrols no authority key for township {township}: no village of it can be opened here (see `jifen serve --townships`)"),
            ),
            AppendError::Open(OpenRefusal::KeyNotEnrolled { township }) => plain(
                Code::PermissionDenied,
                "TOWNSHIP_KEY_NOT_ENROLLED",
                format!("the key that signs this LedgerOpened is not a township authority key this deployment enrolled for township {township}"),
            ),
        }
    }
}

impl From<VillageError> for Status {
    fn from(e: VillageError) -> Status {
        match e {
            VillageError::Store(e) => store(&e),
            VillageError::Corrupt { code, seq, reason } => corrupt(&code, seq, &reason),
            VillageError::UnknownLedger(code) => plain(Code::NotFound, "UNKNOWN_LEDGER", format!("no ledger {code}")),
            VillageError::Invalid { field, reason } => invalid(field, reason),
            VillageError::Refused { refusal, message } => {
                let (code, reason) = match refusal {
                    Refusal::UnknownCheckpoint => (Code::NotFound, "UNKNOWN_CHECKPOINT"),
                    Refusal::UnknownWitness => (Code::NotFound, "UNKNOWN_WITNESS"),
                    Refusal::NotAWitness => (Code::PermissionDenied, "NOT_A_WITNESS"),
                    Refusal::WrongWitnessKey => (Code::Unauthenticated, "WRONG_WITNESS_KEY"),
                    Refusal::BadCosignature => (Code::Unauthenticated, "BAD_COSIGNATURE"),
                    Refusal::CheckpointAhead => (Code::Unavailable, "CHECKPOINT_AHEAD"),
                    Refusal::NoWitnessedCheckpoint => (Code::FailedPrecondition, "NO_WITNESSED_CHECKPOINT"),
                    Refusal::BadProofRequest => (Code::OutOfRange, "BAD_PROOF_REQUEST"),
                    Refusal::Busy => (Code::Unavailable, "BUSY"),
                    Refusal::Internal => return Status::internal(message),
                };
                plain(code, reason, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_upper_snake_variant_names() {
        assert_eq!(reason_of("RoleNotAllowed { actor: \"x\" }"), "ROLE_NOT_ALLOWED");
        assert_eq!(reason_of("NotOpened"), "NOT_OPENED");
        assert_eq!(reason_of("Body(NotCanonical)"), "BODY");
    }
}
