//! Read access control: request tokens (docs/FORMAT.md §12) on both sides of the wire.
//!
//! Public to anyone: appends (signed anyway), checkpoints and proofs, cosignatures, and the
//! village's 公示 views and balances. Guarded, for an enrolled supervisor, township or auditor
//! key: the audit trail, the raw records (ReadRecords, Subscribe), VerifyLedger and
//! ExportBundle. The server ([`Guard`]) refuses missing, malformed, forged, expired, replayed
//! and misdirected tokens, and keys that are not enrolled in the ledger with such a role.

use crate::server::status;
use crate::server::villages::{Village, Villages};
use jifen_ledger::signature::PublicKey;
use jifen_ledger::token::{sign_token, RequestToken, TokenError, MAX_AGE_SECS, MAX_SKEW_SECS, METADATA_KEY};
use jifen_ledger::village::{RoleSet, VillageState};
use jifen_ledger::VillageCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

/// The full gRPC paths of the guarded methods.
pub mod method {
    pub const READ_RECORDS: &str = "/jifen.v1.LedgerService/ReadRecords";
    pub const SUBSCRIBE: &str = "/jifen.v1.LedgerService/Subscribe";
    pub const GET_AUDIT_TRAIL: &str = "/jifen.v1.QueryService/GetAuditTrail";
    pub const VERIFY_LEDGER: &str = "/jifen.v1.AuditService/VerifyLedger";
    pub const EXPORT_BUNDLE: &str = "/jifen.v1.AuditService/ExportBundle";
}

/// The roles whose keys may read guarded data.
pub const READER_ROLES: RoleSet = RoleSet::SUPERVISOR.or(RoleSet::TOWNSHIP).or(RoleSet::AUDITOR);

/// The most nonces remembered at once (tokens live five minutes).
const MAX_NONCES: usize = 1 << 20;

/// 16 random bytes from the operating system.
pub fn random_nonce() -> [u8; 16] {
    crate::os_random()
}

/// A request for a guarded `method` on `ledger`, with a fresh token signed by `key`, issued at
/// `now` (Unix seconds).
pub fn authorized<T>(message: T, key: &ed25519_dalek::SigningKey, method: &str, ledger: &str, now: i64) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(code) = VillageCode::parse(ledger) {
        let token = sign_token(key, method, &code, now, random_nonce());
        request.metadata_mut().insert(METADATA_KEY, token.parse().expect("tokens are ASCII"));
    }
    request
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The server side: checks tokens and remembers nonces until they expire.
#[derive(Default)]
pub struct Guard {
    nonces: Mutex<HashMap<[u8; 16], i64>>,
}

fn denied(code: Code, reason: &str, message: impl Into<String>) -> Status {
    status::plain(code, reason, message)
}

impl Guard {
    /// Checks the token of a call of `method` on `ledger` at `now` (Unix seconds), against the
    /// ledger's current state, or a key the deployment enrolled for the ledger's township
    /// (`deployment_key`). Consumes the token's nonce.
    pub fn check(
        &self,
        metadata: &MetadataMap,
        method: &str,
        ledger: &VillageCode,
        state: &VillageState,
        now: i64,
        deployment_key: &dyn Fn(&PublicKey) -> bool,
    ) -> Result<(), Status> {
        let raw = metadata.get(METADATA_KEY).ok_or_else(|| {
            denied(Code::Unauthenticated, "TOKEN_MISSING", format!("{method} needs a request token in \"{METADATA_KEY}\""))
        })?;
        let raw = raw.to_str().map_err(|_| denied(Code::Unauthenticated, "TOKEN_MALFORMED", "token is not ASCII"))?;
        let token = RequestToken::parse(raw).map_err(token_status)?;
        token.check(method, ledger, now).map_err(token_status)?;
        if !deployment_key(&token.public_key) {
            self.check_actor(state, &token, now)?;
        }
        self.consume(&token, now)
    }

    /// The token's key must be the current key of an actor of the ledger, unrevoked, in term
    /// at `now`, with a reader role.
    fn check_actor(&self, state: &VillageState, token: &RequestToken, now: i64) -> Result<(), Status> {
        let actor = state.actor_of_key(&token.public_key).filter(|a| a.key == token.public_key).ok_or_else(|| {
            denied(Code::PermissionDenied, "TOKEN_UNKNOWN_KEY", "the token's key is not the current key of an actor of this ledger")
        })?;
        if actor.revoked_at.is_some() {
            return Err(denied(Code::PermissionDenied, "TOKEN_KEY_REVOKED", format!("{} was revoked", actor.id)));
        }
        let at = now.saturating_mul(1_000_000);
        if at < actor.term_start || (actor.term_end != 0 && at >= actor.term_end) {
            return Err(denied(Code::PermissionDenied, "TOKEN_OUTSIDE_TERM", format!("{}'s term does not cover this time", actor.id)));
        }
        if !actor.roles.intersects(READER_ROLES) {
            return Err(denied(
                Code::PermissionDenied,
                "TOKEN_ROLE_NOT_ALLOWED",
                format!("{} is not a supervisor, township or auditor of this ledger", actor.id),
            ));
        }
        Ok(())
    }

    /// Remembers the token's nonce: a second use is refused.
    fn consume(&self, token: &RequestToken, now: i64) -> Result<(), Status> {
        let mut nonces = self.nonces.lock().expect("nonces");
        if nonces.len() >= MAX_NONCES / 2 {
            nonces.retain(|_, t| *t >= now - MAX_AGE_SECS - MAX_SKEW_SECS);
        }
        if nonces.len() >= MAX_NONCES {
            return Err(denied(Code::ResourceExhausted, "TOO_MANY_TOKENS", "too many tokens in flight; try again shortly"));
        }
        if nonces.insert(token.nonce, token.issued_at).is_some() {
            return Err(denied(Code::Unauthenticated, "TOKEN_REPLAYED", "this token was used before; sign a new one for each call"));
        }
        Ok(())
    }
}

fn token_status(e: TokenError) -> Status {
    let reason = match &e {
        TokenError::Malformed(_) => "TOKEN_MALFORMED",
        TokenError::BadSignature => "TOKEN_BAD_SIGNATURE",
        TokenError::WrongMethod { .. } => "TOKEN_WRONG_METHOD",
        TokenError::WrongLedger { .. } => "TOKEN_WRONG_LEDGER",
        TokenError::Expired { .. } => "TOKEN_EXPIRED",
    };
    denied(Code::Unauthenticated, reason, e.to_string())
}

/// The longest a call that serves stored history waits for its village's history check.
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Villages {
    /// A village that must exist, for a guarded call of `method`: the request must carry a
    /// valid token of an enrolled supervisor, township or auditor (module docs). A village
    /// whose stored rows failed verification is refused (`DATA_LOSS`).
    pub async fn authorized<T>(
        &self,
        request: &Request<T>,
        method: &str,
        code: &VillageCode,
    ) -> Result<Arc<tokio::sync::Mutex<Village>>, Status> {
        let arc = self.authorized_audit(request, method, code).await?;
        arc.lock().await.serving()?;
        Ok(arc)
    }

    /// [`Villages::authorized`] for the calls that must work when the stored rows fail
    /// verification (VerifyLedger, ReadRecords, ExportBundle): the token is checked against
    /// the state replayed up to the last good record, and the deployment's township keys for
    /// the village's township are accepted as well.
    pub async fn authorized_audit<T>(
        &self,
        request: &Request<T>,
        method: &str,
        code: &VillageCode,
    ) -> Result<Arc<tokio::sync::Mutex<Village>>, Status> {
        let arc = self.loaded(code).await?;
        let now = self.now().div_euclid(1_000_000);
        let deployment_key = |key: &PublicKey| self.townships().is_enrolled_for(code, key);
        self.guard().check(request.metadata(), method, code, arc.lock().await.state(), now, &deployment_key)?;
        // These calls serve the stored history (records, acts, bundles) or verify it: never
        // before the check of a history behind a snapshot (quick for most villages).
        if tokio::time::timeout(HISTORY_WAIT, self.history_checked_for(code)).await.is_err() {
            return Err(Status::unavailable(format!(
                "the history of ledger {code} behind its snapshot is still being checked since the server started; retry in a while"
            )));
        }
        Ok(arc)
    }
}
