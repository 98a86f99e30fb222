//! The batch equation (`signature::verify_batch`, used by every offline verification) agrees
//! with `verify_strict` one by one: it accepts a set exactly when each signature in it is
//! strictly valid, and on failure names the first bad one.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{SigningKey, Verifier};
use jifen_ledger::signature::{refused_outright, sign_event, signing_message, verify_batch, verify_event, BatchSeed, EventSignature};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha512};

/// ℓ, the order of the base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x10,
];

fn keys(n: u8) -> Vec<SigningKey> {
    (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
}

/// `count` bodies signed by `keys` in turn.
fn signed(keys: &[SigningKey], count: usize) -> Vec<(EventSignature, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let body = format!("body {i} of a village ledger").into_bytes();
            (sign_event(&keys[i % keys.len()], &body), body)
        })
        .collect()
}

fn check(items: &[(EventSignature, Vec<u8>)]) -> Result<(), usize> {
    let refs: Vec<(&EventSignature, &[u8])> = items.iter().map(|(s, b)| (s, b.as_slice())).collect();
    verify_batch(&refs, &BatchSeed([5; 32])).map_err(|(i, _)| i)
}

#[test]
fn valid_sets_from_few_or_many_keys_verify() {
    for (k, n) in [(1, 1), (1, 64), (5, 500), (40, 300), (300, 300)] {
        assert_eq!(check(&signed(&keys(k as u8), n)), Ok(()), "{k} keys, {n} signatures");
    }
}

#[test]
fn any_single_corruption_is_found_and_named() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let good = signed(&keys(7), 200);
    for _ in 0..60 {
        let mut items = good.clone();
        let i = rng.random_range(0..items.len());
        match rng.random_range(0..4) {
            0 => items[i].0.signature[rng.random_range(0..32)] ^= 1 << rng.random_range(0..8),
            1 => items[i].0.signature[32 + rng.random_range(0..31)] ^= 1 << rng.random_range(0..8),
            2 => items[i].1[0] ^= 0x01,
            _ => {
                // Another signer's key named on a good signature.
                let j = (i + 1) % items.len();
                items[i].0.public_key = good[j].0.public_key;
                if good[j].0.public_key == good[i].0.public_key {
                    continue;
                }
            }
        }
        assert_eq!(check(&items), Err(i));
    }
}

#[test]
fn what_verify_strict_refuses_the_batch_refuses_too() {
    let key = SigningKey::from_bytes(&[9; 32]);
    let body = b"a score".to_vec();
    let mut items = signed(&keys(3), 20);

    // s + l: the same point, a non-canonical scalar.
    let mut noncanonical = sign_event(&key, &body);
    let s = Scalar::from_bytes_mod_order(noncanonical.signature[32..].try_into().unwrap());
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for (i, byte) in sum.iter_mut().enumerate() {
        let v = u16::from(s.as_bytes()[i]) + u16::from(L[i]) + carry;
        *byte = v as u8;
        carry = v >> 8;
    }
    noncanonical.signature[32..].copy_from_slice(&sum);
    assert!(verify_event(&noncanonical, &body).is_err());
    items.insert(7, (noncanonical, body.clone()));
    assert_eq!(check(&items), Err(7));
    items.remove(7);

    // R of small order (the identity) with s = k·a: the cofactorless equation holds exactly,
    // a plain `verify` accepts it, `verify_strict` does not, and neither does the batch.
    let identity = CompressedEdwardsY::from_slice(&{
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    })
    .unwrap();
    let a = key.to_scalar();
    let mut h = Sha512::new();
    h.update(identity.as_bytes());
    h.update(key.verifying_key().as_bytes());
    h.update(signing_message(&body));
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(identity.as_bytes());
    signature[32..].copy_from_slice((k * a).as_bytes());
    let forged = EventSignature { public_key: jifen_ledger::PublicKey(key.verifying_key().to_bytes()), signature };
    let plain = key.verifying_key().verify(&signing_message(&body), &ed25519_dalek::Signature::from_bytes(&signature));
    assert!(plain.is_ok(), "the construction satisfies the plain equation");
    assert!(verify_event(&forged, &body).is_err());
    items.insert(3, (forged, body));
    assert_eq!(check(&items), Err(3));
}

/// A signature whose `R` has an order-2 component, made by the key's holder: `R' = [r]B + T`
/// with `T = (0, -1)` and `s = r + k'·a` for `k' = H(R'‖A‖M)`. `verify_strict` refuses it
/// (FORMAT.md §3); the cofactorless batch equation is off by `[z]T`, which vanishes exactly
/// when the weight `z` is even.
fn torsioned(key: &SigningKey, body: &[u8]) -> EventSignature {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    let mut order_two = [0xffu8; 32];
    order_two[0] = 0xec;
    order_two[31] = 0x7f;
    let t = CompressedEdwardsY(order_two).decompress().unwrap();
    assert!(t.is_small_order());
    let r = Scalar::from_bytes_mod_order([42; 32]);
    let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(key.verifying_key().as_bytes());
    h.update(signing_message(body));
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + k * key.to_scalar();
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(big_r.as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    EventSignature { public_key: jifen_ledger::PublicKey(key.verifying_key().to_bytes()), signature }
}

#[test]
fn batch_weights_come_from_the_callers_seed_never_from_the_data() {
    let key = SigningKey::from_bytes(&[11; 32]);
    let body = b"a torsioned score".to_vec();
    let forged = torsioned(&key, &body);
    assert!(verify_event(&forged, &body).is_err(), "the strict rule refuses it");
    let mut items = signed(&keys(3), 30);
    items.insert(12, (forged, body));
    let refs: Vec<(&EventSignature, &[u8])> = items.iter().map(|(s, b)| (s, b.as_slice())).collect();
    // The same data under 64 seeds: the outcome follows the seed, so nobody who made the data
    // can make it pass every run (weights from the data would give one answer every time).
    let passed = (0..64u8).filter(|i| verify_batch(&refs, &BatchSeed([*i; 32])).is_ok()).count();
    assert!(passed > 0 && passed < 64, "{passed} of 64 runs accepted");
    // When it is caught, it is named.
    let caught = (0..64u8).find(|i| verify_batch(&refs, &BatchSeed([*i; 32])).is_err()).unwrap();
    assert_eq!(verify_batch(&refs, &BatchSeed([caught; 32])).map_err(|(i, _)| i), Err(12));
    // The strict mode refuses it on every run.
    let records = jifen_ledger::sample::generate(&jifen_ledger::sample::SampleConfig {
        seed: 2,
        households: Some(5),
        months: 1,
        scores_per_household: 1.0,
    })
    .unwrap();
    let mut rs = records.records().to_vec();
    let victim = rs.len() - 1;
    let r = &rs[victim];
    let author = rs[victim].signatures()[0].public_key;
    let signer = [&records.cast.admin, &records.cast.keeper, &records.cast.township, &records.cast.auditor]
        .into_iter()
        .chain(records.cast.panel.iter())
        .chain(records.cast.supervisors.iter())
        .find(|a| a.key.verifying_key().to_bytes() == author.0)
        .expect("the last record's first signer is in the cast");
    let mut sigs = r.signatures().to_vec();
    sigs[0] = torsioned(&signer.key, r.body());
    rs[victim] =
        jifen_ledger::record::Record::new(r.ledger_id().clone(), r.seq(), *r.prev_hash(), r.recorded_at(), r.body().to_vec(), sigs)
            .unwrap();
    let strict = jifen_ledger::verify::check_signatures(&rs, jifen_ledger::verify::SignatureMode::Strict);
    assert_eq!(strict.unwrap_err().seq(), Some(victim as u64));
}

/// `p + y` as 32 little-endian bytes, for a small `y`: a non-canonical encoding (`y ≥ p`) of the
/// point whose y-coordinate is `y`, with the sign bit `sign`.
fn y_above_p(y: u8, sign: bool) -> [u8; 32] {
    let mut b = [0xffu8; 32];
    b[0] = 0xed + y;
    b[31] = 0x7f | if sign { 0x80 } else { 0 };
    b
}

/// The first `y ≥ p` encoding that decodes to a point not of small order.
fn non_canonical_point() -> [u8; 32] {
    (2..=18)
        .map(|y| y_above_p(y, false))
        .find(|b| CompressedEdwardsY(*b).decompress().is_some_and(|p| !p.is_small_order()))
        .expect("some y below 19 is on the curve")
}

/// FORMAT.md §3.2: before the batch equation, every signature is refused outright exactly as
/// §3.1 refuses it, whatever the equation would say. An `R_bytes` with `y ≥ p` decodes to a
/// point the batch equation would take, but §3.1 step 5 refuses it, so it is refused outright.
#[test]
fn the_batch_refuses_outright_what_section_3_1_refuses_by_its_encoding() {
    let key = SigningKey::from_bytes(&[21; 32]);
    let body = b"a score of the village".to_vec();
    let good = sign_event(&key, &body);
    let with_r = |r: [u8; 32]| {
        let mut s = good;
        s.signature[..32].copy_from_slice(&r);
        s
    };
    let mut s_plus_l = good;
    let s = Scalar::from_bytes_mod_order(good.signature[32..].try_into().unwrap());
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for (i, byte) in sum.iter_mut().enumerate() {
        let v = u16::from(s.as_bytes()[i]) + u16::from(L[i]) + carry;
        *byte = v as u8;
        carry = v >> 8;
    }
    s_plus_l.signature[32..].copy_from_slice(&sum);
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    let identity_signed = {
        let mut b = identity;
        b[31] |= 0x80;
        b
    };
    let minus_one_signed = {
        let mut b = [0xffu8; 32];
        b[0] = 0xec;
        b
    };
    let not_a_point = (0u8..=255).map(|i| [i; 32]).find(|b| CompressedEdwardsY(*b).decompress().is_none()).unwrap();
    let key_not_a_point = EventSignature { public_key: jifen_ledger::PublicKey(not_a_point), ..good };
    let key_above_p = EventSignature { public_key: jifen_ledger::PublicKey(non_canonical_point()), ..good };
    let cases: Vec<(&str, EventSignature, bool)> = vec![
        ("a valid signature", good, false),
        ("R with y ≥ p", with_r(non_canonical_point()), true),
        (
            "R with y ≥ p and the sign bit set",
            with_r({
                let mut b = non_canonical_point();
                b[31] |= 0x80;
                b
            }),
            true,
        ),
        ("R = (0, 1) with the sign bit set on x = 0", with_r(identity_signed), true),
        ("R = (0, −1) with the sign bit set on x = 0", with_r(minus_one_signed), true),
        ("R the identity", with_r(identity), true),
        ("R not a point", with_r(not_a_point), true),
        ("S + ℓ", s_plus_l, true),
        ("A not a point", key_not_a_point, true),
        // §3.1 step 2 reads a non-canonical key modulo p; only its equation can fail.
        ("A with y ≥ p", key_above_p, false),
    ];
    for (what, sig, refused) in cases {
        assert_eq!(refused_outright(&sig), refused, "{what}");
        if refused {
            assert!(verify_event(&sig, &body).is_err(), "§3.1 refuses {what}");
            let mut items = signed(&keys(3), 10);
            items.insert(4, (sig, body.clone()));
            assert_eq!(check(&items), Err(4), "the batch names {what} where strict does");
        }
    }
}

/// A signature whose `R_bytes` has `y ≥ p` is refused at the same position, with the same
/// error, by the batch mode and the strict mode (FORMAT.md §3.2). (Nobody can make the batch
/// equation hold for such an `R`: it decodes to one of a few fixed points whose discrete
/// logarithms nobody knows; the outright refusal, not the equation, is what makes the two
/// modes agree by construction.)
#[test]
fn a_non_canonical_r_is_refused_at_the_same_position_in_batch_and_strict_mode() {
    use jifen_ledger::record::Record;
    use jifen_ledger::verify::{check_signatures, SignatureMode, VerifyError};
    let sample = jifen_ledger::sample::generate(&jifen_ledger::sample::SampleConfig {
        seed: 4,
        households: Some(5),
        months: 1,
        scores_per_household: 1.0,
    })
    .unwrap();
    let good = sample.records().to_vec();
    for victim in [1, good.len() / 2, good.len() - 1] {
        for sign in [false, true] {
            let mut records = good.clone();
            let r = &records[victim];
            let mut sigs = r.signatures().to_vec();
            let mut bad_r = non_canonical_point();
            bad_r[31] |= if sign { 0x80 } else { 0 };
            sigs[0].signature[..32].copy_from_slice(&bad_r);
            assert!(refused_outright(&sigs[0]));
            records[victim] =
                Record::new(r.ledger_id().clone(), r.seq(), *r.prev_hash(), r.recorded_at(), r.body().to_vec(), sigs).unwrap();
            let strict = check_signatures(&records, SignatureMode::Strict).unwrap_err();
            for seed in [[0u8; 32], [3; 32], [0xa5; 32]] {
                let batch = check_signatures(&records, SignatureMode::Batch(BatchSeed(seed))).unwrap_err();
                assert_eq!(batch, strict, "record {victim}");
            }
            assert!(matches!(strict, VerifyError::BadSignature { seq, .. } if seq == victim as u64), "{strict}");
        }
    }
}

/// `Keys::verify` (each key decompressed once, as the server checks a request's events) is
/// `verify_event`, case by case: valid signatures, every kind of corruption, the signatures
/// `verify_strict` refuses though an equation holds, a key that is no point, and a key that
/// was not among those given.
#[test]
fn keys_decompressed_once_verify_exactly_as_verify_event() {
    use jifen_ledger::signature::Keys;
    let key = SigningKey::from_bytes(&[9; 32]);
    let body = b"a score".to_vec();
    let mut cases = signed(&keys(4), 12);
    let flip = |i: usize, byte: usize| {
        let mut c = cases[i].clone();
        c.0.signature[byte] ^= 0x10;
        c
    };
    let (r_flipped, s_flipped) = (flip(0, 3), flip(1, 40));
    let mut wrong_body = cases[2].clone();
    wrong_body.1[0] ^= 1;
    let mut other_key = cases[3].clone();
    other_key.0.public_key = cases[4].0.public_key;
    let mut not_a_point = cases[5].clone();
    not_a_point.0.public_key = jifen_ledger::PublicKey(y_above_p(1, false));
    let mut non_canonical_key = cases[6].clone();
    non_canonical_key.0.public_key = jifen_ledger::PublicKey(non_canonical_point());
    cases.extend([r_flipped, s_flipped, wrong_body, other_key, not_a_point, non_canonical_key]);
    cases.push((torsioned(&key, &body), body.clone()));
    let keys_given = Keys::of(cases.iter().map(|(s, _)| s));
    // A signature by a key that was not given is verified all the same.
    let stranger = sign_event(&SigningKey::from_bytes(&[77; 32]), &body);
    cases.push((stranger, body));
    let mut outcomes = (0, 0);
    for (sig, body) in &cases {
        let want = verify_event(sig, body);
        assert_eq!(keys_given.verify(sig, body), want, "{sig:?}");
        if want.is_ok() {
            outcomes.0 += 1
        } else {
            outcomes.1 += 1
        }
    }
    assert_eq!(outcomes, (13, 7));
}
