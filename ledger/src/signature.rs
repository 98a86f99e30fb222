//! Event signatures: Ed25519 over `"jifen/event/v1" || 0x00 || body` (docs/FORMAT.md).
//!
//! A signature is judged with `verify_strict` (RFC 8032 verification that also rejects
//! small-order keys and small-order `R`); that is the definition of validity, and the append
//! path uses it. Bulk verification uses ed25519-dalek's batch equation and falls back to
//! one-by-one `verify_strict` to name the first bad signature. Batch verification accepts every
//! valid batch, but may miss a signature its own signer crafted with a small-order component in
//! `R` (docs/FORMAT.md section 3); such a signature cannot enter a ledger through the write-model.

use crate::hash::EVENT_TAG;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::fmt;
use thiserror::Error;

/// An Ed25519 public key, as its 32-byte encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", crate::hex(&self.0))
    }
}

impl PublicKey {
    /// Parses exactly 32 bytes (the encoding is checked when the key is used or enrolled).
    pub fn from_slice(bytes: &[u8]) -> Option<PublicKey> {
        <[u8; 32]>::try_from(bytes).ok().map(PublicKey)
    }

    /// Whether this is a usable Ed25519 key: a valid point encoding, not of small order, and
    /// in the prime-order subgroup (so batch and strict verification agree on it).
    pub fn is_acceptable(&self) -> bool {
        let compressed = curve25519_dalek::edwards::CompressedEdwardsY(self.0);
        match compressed.decompress() {
            Some(point) => !point.is_small_order() && point.is_torsion_free() && point.compress().0 == self.0,
            None => false,
        }
    }
}

/// One signature on an event: the signer's public key and the 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EventSignature {
    pub public_key: PublicKey,
    pub signature: [u8; 64],
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("public key {0:?} is not a valid Ed25519 key")]
    BadKey(PublicKey),
    #[error("signature by {0:?} does not verify")]
    Invalid(PublicKey),
}

/// The message an event signature signs: `"jifen/event/v1" || 0x00 || body`.
pub fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(EVENT_TAG.len() + 1 + body.len());
    m.extend_from_slice(EVENT_TAG);
    m.push(0);
    m.extend_from_slice(body);
    m
}

/// Signs an event body.
pub fn sign_event(key: &SigningKey, body: &[u8]) -> EventSignature {
    let sig = key.sign(&signing_message(body));
    EventSignature { public_key: PublicKey(key.verifying_key().to_bytes()), signature: sig.to_bytes() }
}

/// Verifies one event signature with `verify_strict`.
pub fn verify_event(sig: &EventSignature, body: &[u8]) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&sig.public_key.0).map_err(|_| SignatureError::BadKey(sig.public_key))?;
    key.verify_strict(&signing_message(body), &Signature::from_bytes(&sig.signature)).map_err(|_| SignatureError::Invalid(sig.public_key))
}

/// Verifies many `(signature, body)` pairs at once with the batch equation.
///
/// On success every signature is valid. On failure the pairs are checked one by one with
/// `verify_strict` and the index of the first invalid one is returned.
pub fn verify_batch(items: &[(&EventSignature, &[u8])]) -> Result<(), (usize, SignatureError)> {
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (i, (sig, body)) in items.iter().enumerate() {
        let key = VerifyingKey::from_bytes(&sig.public_key.0).map_err(|_| (i, SignatureError::BadKey(sig.public_key)))?;
        keys.push(key);
        signatures.push(Signature::from_bytes(&sig.signature));
        messages.push(signing_message(body));
    }
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    if ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok() {
        return Ok(());
    }
    for (i, (sig, body)) in items.iter().enumerate() {
        verify_event(sig, body).map_err(|e| (i, e))?;
    }
    // The batch equation failed but every signature verifies strictly: this cannot happen for
    // valid inputs; report the first item rather than accept.
    Err((0, SignatureError::Invalid(items[0].0.public_key)))
}
