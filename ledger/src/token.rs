//! Request tokens: short-lived, single-use, signed requests for the audit services
//! (docs/FORMAT.md §12).
//!
//! ```text
//! token   = "v1." b64url(public key) "." b64url(payload) "." b64url(Ed25519 signature over payload)
//! payload = "jifen/request/v1\n" method "\n" ledger id "\n" issued-at "\n" nonce "\n"
//! ```
//!
//! `b64url` is base64url without padding; `method` the full gRPC path
//! (`/jifen.v1.AuditService/VerifyLedger`); `issued-at` Unix seconds in decimal without
//! leading zeros; `nonce` 32 lower-case hex digits (16 random bytes). The server checks the
//! signature, the method and ledger against the call, the time window, that the nonce was not
//! seen before, and that the key is the current key of an enrolled supervisor, township or
//! auditor of that ledger.

use crate::ids::VillageCode;
use crate::signature::PublicKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

/// The first line of every payload.
pub const TOKEN_DOMAIN: &str = "jifen/request/v1";
/// The gRPC metadata key that carries the token.
pub const METADATA_KEY: &str = "jifen-token";
/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 1024;
/// How long a token is valid after it was issued, in seconds.
pub const MAX_AGE_SECS: i64 = 300;
/// How far in the future `issued-at` may be (clock skew), in seconds.
pub const MAX_SKEW_SECS: i64 = 30;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token is for {got}, not this call's {want}")]
    WrongMethod { got: String, want: String },
    #[error("token is for ledger {got}, not {want}")]
    WrongLedger { got: String, want: String },
    #[error("token was issued at {issued_at}, outside [{earliest}, {latest}] (expired or from the future)")]
    Expired { issued_at: i64, earliest: i64, latest: i64 },
}

/// A parsed token whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestToken {
    pub public_key: PublicKey,
    pub method: String,
    pub ledger: VillageCode,
    pub issued_at: i64,
    pub nonce: [u8; 16],
}

fn payload(method: &str, ledger: &VillageCode, issued_at: i64, nonce: &[u8; 16]) -> String {
    format!("{TOKEN_DOMAIN}\n{method}\n{ledger}\n{issued_at}\n{}\n", crate::hex(nonce))
}

/// A token for a call of `method` on `ledger`, signed by `key`.
pub fn sign_token(key: &SigningKey, method: &str, ledger: &VillageCode, issued_at: i64, nonce: [u8; 16]) -> String {
    let p = payload(method, ledger, issued_at, &nonce);
    let sig = key.sign(p.as_bytes()).to_bytes();
    format!("v1.{}.{}.{}", B64URL.encode(key.verifying_key().as_bytes()), B64URL.encode(p), B64URL.encode(sig))
}

fn method_ok(m: &str) -> bool {
    m.len() <= 200 && m.starts_with('/') && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"./_".contains(&b))
}

impl RequestToken {
    /// Parses a token strictly and verifies its signature.
    pub fn parse(token: &str) -> Result<RequestToken, TokenError> {
        use TokenError::Malformed;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Malformed("longer than 1024 bytes"));
        }
        let mut parts = token.split('.');
        if parts.next() != Some("v1") {
            return Err(Malformed("does not start with \"v1.\""));
        }
        let mut field = |what: &'static str| -> Result<Vec<u8>, TokenError> {
            B64URL.decode(parts.next().ok_or(Malformed(what))?).map_err(|_| Malformed(what))
        };
        let key = field("public key")?;
        let payload_bytes = field("payload")?;
        let sig = field("signature")?;
        if parts.next().is_some() {
            return Err(Malformed("more than four parts"));
        }
        let public_key = PublicKey::from_slice(&key).ok_or(Malformed("public key is not 32 bytes"))?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| Malformed("signature is not 64 bytes"))?;
        let text = std::str::from_utf8(&payload_bytes).map_err(|_| Malformed("payload is not UTF-8"))?;
        let lines: Vec<&str> = text.strip_suffix('\n').ok_or(Malformed("payload does not end in a newline"))?.split('\n').collect();
        let [domain, method, ledger, issued_at, nonce] = lines[..] else {
            return Err(Malformed("payload does not have five lines"));
        };
        if domain != TOKEN_DOMAIN {
            return Err(Malformed("payload does not start with jifen/request/v1"));
        }
        if !method_ok(method) {
            return Err(Malformed("method is not a gRPC path"));
        }
        let ledger = VillageCode::parse(ledger).map_err(|_| Malformed("ledger is not a 12-digit village code"))?;
        let issued_at: i64 = crate::canonical_decimal(issued_at).ok_or(Malformed("issued-at is not decimal seconds"))?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Malformed("nonce is not 32 lower-case hex digits"));
        }
        let mut n = [0u8; 16];
        for (i, b) in n.iter_mut().enumerate() {
            *b = u8::from_str_radix(&nonce[2 * i..2 * i + 2], 16).expect("hex checked");
        }
        let vk = VerifyingKey::from_bytes(&public_key.0).map_err(|_| TokenError::BadSignature)?;
        vk.verify_strict(text.as_bytes(), &Signature::from_bytes(&sig)).map_err(|_| TokenError::BadSignature)?;
        Ok(RequestToken { public_key, method: method.to_owned(), ledger, issued_at, nonce: n })
    }

    /// Checks the token was made for this call (`method` on `ledger`) and is fresh at `now`
    /// (Unix seconds). Replay of a fresh token is the caller's to refuse (by nonce).
    pub fn check(&self, method: &str, ledger: &VillageCode, now: i64) -> Result<(), TokenError> {
        if self.method != method {
            return Err(TokenError::WrongMethod { got: self.method.clone(), want: method.to_owned() });
        }
        if &self.ledger != ledger {
            return Err(TokenError::WrongLedger { got: self.ledger.to_string(), want: ledger.to_string() });
        }
        let (earliest, latest) = (now - MAX_AGE_SECS, now + MAX_SKEW_SECS);
        if self.issued_at < earliest || self.issued_at > latest {
            return Err(TokenError::Expired { issued_at: self.issued_at, earliest, latest });
        }
        Ok(())
    }
}
