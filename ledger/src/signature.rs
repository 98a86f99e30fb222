//! Event signatures: Ed25519 over `"jifen/event/v1" || 0x00 || body` (docs/FORMAT.md).
//!
//! A signature is judged with `verify_strict` (RFC 8032 verification that also rejects
//! small-order keys and small-order `R`); that is the definition of validity (FORMAT.md §3),
//! and the append path uses it. Bulk verification first refuses outright every signature
//! §3.1 refuses by its encoding alone ([`refused_outright`]), then uses a batch equation with
//! weights derived from a [`BatchSeed`] the caller draws from the operating system for each
//! run, and falls back to one-by-one `verify_strict` to name the first bad signature. Batch
//! verification accepts every valid batch; a signature its own signer crafted with a
//! small-order component in `R` passes a run with probability at most 1/2 (FORMAT.md §3.2),
//! and never deterministically, since the weights do not follow from the data.
//! `verify --strict` checks one by one.

use crate::hash::EVENT_TAG;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::fmt;
use thiserror::Error;

/// An Ed25519 public key, as its 32-byte encoding.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// The keys of many signatures, each decompressed once: a request's events are signed by a
/// few keys, and decompressing a key is a field exponentiation, about a sixth of
/// `verify_strict`'s work. [`Keys::verify`] is [`verify_event`], exactly.
pub struct Keys(std::collections::HashMap<[u8; 32], Option<VerifyingKey>>);

impl Keys {
    /// The keys of `signatures`.
    pub fn of<'a>(signatures: impl IntoIterator<Item = &'a EventSignature>) -> Keys {
        let mut keys = std::collections::HashMap::new();
        for sig in signatures {
            keys.entry(sig.public_key.0).or_insert_with(|| VerifyingKey::from_bytes(&sig.public_key.0).ok());
        }
        Keys(keys)
    }

    /// [`verify_event`] with the key decompressed once (or decompressed now, if `sig`'s key
    /// was not among those given).
    pub fn verify(&self, sig: &EventSignature, body: &[u8]) -> Result<(), SignatureError> {
        match self.0.get(&sig.public_key.0) {
            Some(Some(key)) => key
                .verify_strict(&signing_message(body), &Signature::from_bytes(&sig.signature))
                .map_err(|_| SignatureError::Invalid(sig.public_key)),
            Some(None) => Err(SignatureError::BadKey(sig.public_key)),
            None => verify_event(sig, body),
        }
    }
}

/// 32 secret random bytes from which a batch verification derives its weights. The caller
/// draws a fresh seed from the operating system for every run (this crate does no I/O): the
/// weights never follow from the data verified, so whoever made the data cannot grind a
/// signature past them.
#[derive(Clone, Copy)]
pub struct BatchSeed(pub [u8; 32]);

impl fmt::Debug for BatchSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BatchSeed(..)")
    }
}

/// Verifies many `(signature, body)` pairs at once with the batch equation, weighted from
/// `seed`.
///
/// A batch of valid signatures always passes. A batch with a signature that fails
/// `verify_strict` passes with probability at most 2^-127 over the seed, except a signature
/// whose `R` has a small-order component (made on purpose by the key's holder), which passes
/// with probability at most 1/2 (FORMAT.md §3.2). A batch holding a signature
/// [`refused_outright`] never passes. On failure the pairs are checked one by one with
/// `verify_strict` and the index of the first invalid one is returned, as the strict mode
/// would name it.
pub fn verify_batch(items: &[(&EventSignature, &[u8])], seed: &BatchSeed) -> Result<(), (usize, SignatureError)> {
    if batch_equation_holds(items, seed) {
        return Ok(());
    }
    for (i, (sig, body)) in items.iter().enumerate() {
        verify_event(sig, body).map_err(|e| (i, e))?;
    }
    // The batch equation failed but every signature verifies strictly: this cannot happen for
    // valid inputs; report the first item rather than accept.
    Err((0, SignatureError::Invalid(items[0].0.public_key)))
}

/// Whether FORMAT.md §3.2 refuses `sig` outright, before any batch equation, exactly as §3.1
/// refuses it: `S ≥ ℓ`, `A_bytes` or `R_bytes` not a point, `A` or `R` of small order, or
/// `R_bytes` not the canonical encoding of `R`. The batch equation takes only signatures this
/// does not refuse; a chunk holding one is checked one by one with `verify_strict` instead.
pub fn refused_outright(sig: &EventSignature) -> bool {
    batch_key(&sig.public_key).is_none() || batch_r_s(&sig.signature).is_none()
}

/// The key as the batch equation takes it: §3.1 steps 2–3 (a non-canonical encoding of `A` is
/// read modulo `p`, as `VerifyingKey::from_bytes` reads it; the hash takes the bytes as given).
fn batch_key(key: &PublicKey) -> Option<curve25519_dalek::edwards::EdwardsPoint> {
    curve25519_dalek::edwards::CompressedEdwardsY(key.0).decompress().filter(|a| !a.is_small_order())
}

/// `R` and `S` as the batch equation takes them: `S < ℓ` (§3.1 step 1), `R_bytes` a point not
/// of small order (steps 2–3), and `R_bytes` the canonical encoding of that point. Step 5
/// compares the canonical encoding of `[S]B − [k]A` with `R_bytes`, so an `R_bytes` with
/// `y ≥ p` (or with the sign bit set on `x = 0`, a small-order point in any case) never passes
/// it, while the batch equation, which works on the decoded point, would not see the difference.
fn batch_r_s(signature: &[u8; 64]) -> Option<(curve25519_dalek::edwards::EdwardsPoint, curve25519_dalek::scalar::Scalar)> {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    let r_bytes: [u8; 32] = signature[..32].try_into().expect("32 bytes");
    let s_bytes: [u8; 32] = signature[32..].try_into().expect("32 bytes");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    if y_at_least_p(&r_bytes) {
        return None;
    }
    // With y < p, the only other non-canonical encodings set the sign bit on x = 0, that is
    // y = ±1: small-order points, refused here anyway.
    let r = CompressedEdwardsY(r_bytes).decompress().filter(|r| !r.is_small_order())?;
    Some((r, s))
}

/// Whether the 255-bit y-coordinate of a compressed point (the sign bit cleared) is at least
/// `p = 2²⁵⁵ − 19`: byte 0 at least `0xed`, bytes 1–30 all `0xff`, byte 31 `0x7f` once the
/// sign bit is cleared. A byte check: re-encoding the point to compare would cost a field
/// inversion per signature.
fn y_at_least_p(bytes: &[u8; 32]) -> bool {
    bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f
}

/// The Ed25519 batch equation over `items`, with the terms of each signer's key combined.
///
/// For signatures `(R_i, s_i)` by keys `A_i` on messages `M_i`, with `k_i = H(R_i‖A_i‖M_i)`
/// and 128-bit weights `z_i`, it checks
/// `[-Σ z_i s_i]B + Σ z_i R_i + Σ_A [Σ_{i: A_i = A} z_i k_i] A = 0`.
/// A ledger's signatures come from a few dozen keys, so the multiscalar multiplication has
/// about `n + keys + 1` points instead of the `2n + 1` of ed25519-dalek's `verify_batch`
/// (which decompresses every key again, too). The weights are 128-bit values derived from
/// the caller's secret random `seed` and the item's index only, never from the data (a
/// transcript of the data, as ed25519-dalek uses, lets the signer grind the weights). The
/// equation is cofactorless. Before it, every signature [`refused_outright`] makes it fail.
fn batch_equation_holds(items: &[(&EventSignature, &[u8])], seed: &BatchSeed) -> bool {
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use sha2::{Digest, Sha512};
    use std::collections::HashMap;

    if items.is_empty() {
        return true;
    }
    let mut keys: HashMap<[u8; 32], usize> = HashMap::new();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut r_points: Vec<EdwardsPoint> = Vec::with_capacity(items.len());
    let mut hrams: Vec<Scalar> = Vec::with_capacity(items.len());
    let mut ss: Vec<Scalar> = Vec::with_capacity(items.len());
    let mut signer: Vec<usize> = Vec::with_capacity(items.len());
    for (sig, body) in items {
        let key = match keys.get(&sig.public_key.0) {
            Some(&k) => k,
            None => {
                let Some(a) = batch_key(&sig.public_key) else { return false };
                key_points.push(a);
                keys.insert(sig.public_key.0, key_points.len() - 1);
                key_points.len() - 1
            }
        };
        let Some((r, s)) = batch_r_s(&sig.signature) else { return false };
        let mut h = Sha512::new();
        h.update(&sig.signature[..32]);
        h.update(sig.public_key.0);
        h.update(EVENT_TAG);
        h.update([0u8]);
        h.update(body);
        let hram: [u8; 64] = h.finalize().into();
        r_points.push(r);
        hrams.push(Scalar::from_bytes_mod_order_wide(&hram));
        ss.push(s);
        signer.push(key);
    }
    // Weights: 128-bit values from the secret seed and the index.
    let weight = |i: usize| {
        let mut h = Sha512::new();
        h.update(b"jifen batch weights v2");
        h.update(seed.0);
        h.update((i as u64).to_le_bytes());
        let d: [u8; 64] = h.finalize().into();
        let mut w = [0u8; 32];
        w[..16].copy_from_slice(&d[..16]);
        Scalar::from_bytes_mod_order(w)
    };
    let mut b_coefficient = Scalar::ZERO;
    let mut key_coefficients = vec![Scalar::ZERO; key_points.len()];
    let mut scalars: Vec<Scalar> = Vec::with_capacity(items.len() + key_points.len() + 1);
    for i in 0..items.len() {
        let z = weight(i);
        b_coefficient -= z * ss[i];
        key_coefficients[signer[i]] += z * hrams[i];
        scalars.push(z);
    }
    scalars.extend(key_coefficients);
    scalars.push(b_coefficient);
    let points = r_points.iter().chain(key_points.iter()).chain(std::iter::once(&curve25519_dalek::constants::ED25519_BASEPOINT_POINT));
    EdwardsPoint::vartime_multiscalar_mul(scalars.iter(), points).is_identity()
}

#[cfg(test)]
mod y_tests {
    use super::y_at_least_p;

    #[test]
    fn y_at_least_p_is_exactly_the_encodings_from_p_to_2_255_minus_1_whatever_the_sign_bit() {
        let enc = |low: u8, top: u8| {
            let mut b = [0xffu8; 32];
            b[0] = low;
            b[31] = top;
            b
        };
        for sign in [0x00, 0x80] {
            assert!(!y_at_least_p(&enc(0xec, 0x7f | sign)), "p − 1");
            assert!(y_at_least_p(&enc(0xed, 0x7f | sign)), "p");
            assert!(y_at_least_p(&enc(0xff, 0x7f | sign)), "2²⁵⁵ − 1");
            assert!(!y_at_least_p(&enc(0xff, 0x7e | sign)), "below 2²⁵⁴ · 2 − 2⁸ … not ≥ p");
        }
        let mut mid = enc(0xff, 0x7f);
        mid[15] = 0xfe;
        assert!(!y_at_least_p(&mid));
        assert!(!y_at_least_p(&[0u8; 32]));
    }
}
