//! The committed test vectors (ledger/testdata/vectors.json) are reproduced byte for byte.

use jifen_ledger::balance::{Balance, BalanceBook};
use jifen_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use jifen_ledger::hash::Hash;
use jifen_ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion, Tree};
use jifen_ledger::note::NoteVerifier;
use jifen_ledger::record::Record;
use jifen_ledger::signature::{signing_message, verify_event};
use jifen_ledger::verify::check_chain;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).expect("vectors parse")
}

fn h(v: &Value) -> Hash {
    Hash::from_slice(&hex::decode(v.as_str().unwrap()).unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(h).collect()
}

#[test]
fn records_decode_hash_and_verify_as_recorded() {
    let v = vectors();
    let mut records = Vec::new();
    for rv in v["records"].as_array().unwrap() {
        let bytes = hex::decode(rv["record_bytes"].as_str().unwrap()).unwrap();
        let r = Record::decode(&bytes).unwrap();
        assert_eq!(r.encode(), bytes, "re-encoding is identical");
        assert_eq!(r.seq(), rv["seq"].as_u64().unwrap());
        assert_eq!(r.ledger_id().as_str(), rv["ledger_id"].as_str().unwrap());
        assert_eq!(r.recorded_at(), rv["recorded_at"].as_i64().unwrap());
        assert_eq!(*r.prev_hash(), h(&rv["prev_hash"]));
        assert_eq!(hex::encode(r.body()), rv["body"].as_str().unwrap());
        assert_eq!(hex::encode(signing_message(r.body())), rv["signing_message"].as_str().unwrap());
        assert_eq!(r.hash(), h(&rv["record_hash"]));
        assert_eq!(leaf_hash(&r.hash()), h(&rv["leaf_hash"]));
        for (s, sv) in r.signatures().iter().zip(rv["signatures"].as_array().unwrap()) {
            assert_eq!(hex::encode(s.public_key.0), sv["public_key"].as_str().unwrap());
            verify_event(s, r.body()).unwrap();
        }
        records.push(r);
    }
    check_chain(&records).unwrap();
}

#[test]
fn merkle_roots_and_proofs_are_reproduced() {
    let v = vectors();
    let record_hashes: Vec<Hash> = v["records"].as_array().unwrap().iter().map(|r| h(&r["record_hash"])).collect();
    let tree = Tree::from_record_hashes(&record_hashes);
    let m = &v["merkle"];
    for (n, root) in hashes(&m["roots_by_size"]).iter().enumerate() {
        assert_eq!(tree.root(n as u64).unwrap(), *root);
    }
    for p in m["inclusion"].as_array().unwrap() {
        let (i, n) = (p["index"].as_u64().unwrap(), p["size"].as_u64().unwrap());
        let proof = hashes(&p["proof"]);
        assert_eq!(tree.inclusion_proof(i, n).unwrap(), proof);
        verify_inclusion(&leaf_hash(&record_hashes[i as usize]), i, n, &proof, &tree.root(n).unwrap()).unwrap();
    }
    for p in m["consistency"].as_array().unwrap() {
        let (o, n) = (p["old"].as_u64().unwrap(), p["new"].as_u64().unwrap());
        let proof = hashes(&p["proof"]);
        assert_eq!(tree.consistency_proof(o, n).unwrap(), proof);
        verify_consistency(o, n, &tree.root(o).unwrap(), &tree.root(n).unwrap(), &proof).unwrap();
    }
}

#[test]
fn checkpoint_note_opens_with_the_published_keys() {
    let v = vectors();
    let c = &v["checkpoint"];
    let log = NoteVerifier::parse(c["log_verifier_key"].as_str().unwrap()).unwrap();
    let witnesses: Vec<NoteVerifier> =
        c["witness_verifier_keys"].as_array().unwrap().iter().map(|k| NoteVerifier::parse(k.as_str().unwrap()).unwrap()).collect();
    let (signed, cosigners) =
        SignedCheckpoint::open(c["note"].as_str().unwrap().as_bytes(), c["origin"].as_str().unwrap(), &log, &witnesses).unwrap();
    assert_eq!(cosigners.len(), 1);
    assert_eq!(signed.checkpoint().to_text(), c["text"].as_str().unwrap());
    assert_eq!(signed.checkpoint().root, h(&v["merkle"]["root"]));
    assert_eq!(signed.encode(), c["note"].as_str().unwrap());
    assert_eq!(Checkpoint::parse_text(c["text"].as_str().unwrap()).unwrap(), *signed.checkpoint());
}

#[test]
fn balance_digest_is_reproduced() {
    let v = vectors();
    let d = &v["balance_digest"];
    let mut book = BalanceBook::new();
    for row in d["households"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        let b = Balance {
            basic: row["basic"].as_i64().unwrap(),
            contribution: row["contribution"].as_i64().unwrap(),
            deducted: row["deducted"].as_i64().unwrap(),
            redeemed: row["redeemed"].as_i64().unwrap(),
            carried_in: row["carried_in"].as_i64().unwrap(),
            carried_out: row["carried_out"].as_i64().unwrap(),
            expired: row["expired"].as_i64().unwrap(),
            ..Balance::default()
        };
        book.open(id);
        use jifen_ledger::balance::Category;
        book.post_score(id, Category::Basic, b.basic);
        book.post_score(id, Category::Contribution, b.contribution);
        book.post_score(id, Category::Deduction, -b.deducted);
        book.post_redemption(id, b.redeemed);
        assert_eq!(b.carried_in * b.carried_out, 0, "vectors carry one way per household");
        if b.carried_out > 0 {
            book.split(id, "H0002", b.carried_out);
        }
    }
    assert_eq!(book.digest(), h(&d["digest"]));
}

#[test]
fn bad_records_are_refused_with_the_named_error() {
    let v = vectors();
    for bad in v["bad_records"].as_array().unwrap() {
        let desc = bad["desc"].as_str().unwrap();
        let want = bad["want_err"].as_str().unwrap();
        let bytes = hex::decode(bad["record_bytes"].as_str().unwrap()).unwrap();
        let err = match Record::decode(&bytes) {
            Err(e) => e.to_string(),
            Ok(r) => r.signatures().iter().find_map(|s| verify_event(s, r.body()).err()).map(|e| e.to_string()).unwrap_or_default(),
        };
        assert!(err.contains(want), "{desc}: got {err:?}, want {want:?}");
    }
}
