//! Writes the test vectors of docs/FORMAT.md to standard output as JSON:
//! `cargo run -p jifen-ledger --example vectors > ledger/testdata/vectors.json`.
//!
//! The vectors are generated once and committed; `tests/vectors.rs` checks that the code still
//! reproduces every byte, and `docs/verify_vectors.py` re-derives them from docs/FORMAT.md alone.

use jifen_ledger::balance::{BalanceBook, Category};
use jifen_ledger::checkpoint::Checkpoint;
use jifen_ledger::hash::Hash;
use jifen_ledger::merkle::{leaf_hash, Tree};
use jifen_ledger::note::NoteSigner;
use jifen_ledger::record::Record;
use jifen_ledger::sample::{open_village, ActorKey};
use jifen_ledger::signature::signing_message;
use serde_json::{json, Value};

fn hex(b: &[u8]) -> String {
    jifen_ledger::hex(b)
}

fn record_json(r: &Record) -> Value {
    json!({
        "ledger_id": r.ledger_id().as_str(),
        "seq": r.seq(),
        "prev_hash": r.prev_hash().to_hex(),
        "recorded_at": r.recorded_at(),
        "body": hex(r.body()),
        "signatures": r.signatures().iter().map(|s| json!({
            "public_key": hex(&s.public_key.0),
            "signature": hex(&s.signature),
        })).collect::<Vec<_>>(),
        "signing_message": hex(&signing_message(r.body())),
        "record_bytes": hex(&r.encode()),
        "record_hash": r.hash().to_hex(),
        "leaf_hash": leaf_hash(&r.hash()).to_hex(),
    })
}

fn main() {
    let households = vec![
        ("H0001".to_string(), vec!["H0001-01".to_string()]),
        ("H0002".to_string(), vec!["H0002-01".to_string(), "H0002-02".to_string()]),
    ];
    let (cast, w) = open_village(1, &households, 3).expect("fixture opens");
    let records: Vec<Record> = w.records.iter().take(7).cloned().collect();
    let hashes: Vec<Hash> = records.iter().map(Record::hash).collect();
    let tree = Tree::from_record_hashes(&hashes);
    let origin = w.state.genesis().unwrap().origin.clone();
    let log = NoteSigner::new(&origin, ActorKey::derive(1, "log", None).key).unwrap();
    let witness = NoteSigner::new("jifen.example.cn/witness/supervisor-01", cast.supervisors[0].key.clone()).unwrap();
    let cp = Checkpoint { origin: origin.clone(), size: 7, root: tree.root(7).unwrap() };
    let mut signed = cp.sign(&log);
    signed.cosign(&witness);

    let mut book = BalanceBook::new();
    book.open("H0001");
    book.post_score("H0001", Category::Basic, 12);
    book.post_score("H0001", Category::Contribution, 20);
    book.post_score("H0001", Category::Deduction, -3);
    book.post_redemption("H0001", 9);
    book.open("H0002");
    book.split("H0001", "H0002", 5);

    let r0 = &records[0];
    let mut truncated = r0.encode();
    truncated.pop();
    let mut trailing = r0.encode();
    trailing.push(0);
    let mut bad_id = r0.encode();
    bad_id[2] = b'x';
    let mut flipped_sig = r0.encode();
    let last = flipped_sig.len() - 1;
    flipped_sig[last] ^= 1;
    let two = &records[1];
    let mut unsorted = two.encode();
    // Duplicate the one signature: count 2, same key twice (not strictly ascending).
    let sig_block = unsorted[unsorted.len() - 96..].to_vec();
    let n = unsorted.len();
    unsorted[n - 98..n - 96].copy_from_slice(&2u16.to_be_bytes());
    unsorted.extend_from_slice(&sig_block);

    let out = json!({
        "description": "jifen format test vectors (docs/FORMAT.md). Hex is lower-case; integers are JSON numbers.",
        "records": records.iter().map(record_json).collect::<Vec<_>>(),
        "merkle": {
            "size": 7,
            "root": tree.root(7).unwrap().to_hex(),
            "roots_by_size": (0..=7).map(|n| tree.root(n).unwrap().to_hex()).collect::<Vec<_>>(),
            "inclusion": [
                {"index": 3, "size": 7, "proof": tree.inclusion_proof(3, 7).unwrap().iter().map(Hash::to_hex).collect::<Vec<_>>()},
                {"index": 6, "size": 7, "proof": tree.inclusion_proof(6, 7).unwrap().iter().map(Hash::to_hex).collect::<Vec<_>>()},
                {"index": 0, "size": 5, "proof": tree.inclusion_proof(0, 5).unwrap().iter().map(Hash::to_hex).collect::<Vec<_>>()}
            ],
            "consistency": [
                {"old": 3, "new": 7, "proof": tree.consistency_proof(3, 7).unwrap().iter().map(Hash::to_hex).collect::<Vec<_>>()},
                {"old": 4, "new": 7, "proof": tree.consistency_proof(4, 7).unwrap().iter().map(Hash::to_hex).collect::<Vec<_>>()},
                {"old": 1, "new": 5, "proof": tree.consistency_proof(1, 5).unwrap().iter().map(Hash::to_hex).collect::<Vec<_>>()}
            ]
        },
        "checkpoint": {
            "origin": origin,
            "text": cp.to_text(),
            "note": signed.encode(),
            "log_verifier_key": log.verifier().to_string(),
            "witness_verifier_keys": [witness.verifier().to_string()],
        },
        "balance_digest": {
            "households": book.iter().map(|(h, b)| json!({
                "id": h, "basic": b.basic, "contribution": b.contribution, "deducted": b.deducted,
                "redeemed": b.redeemed, "carried_in": b.carried_in, "carried_out": b.carried_out, "expired": b.expired,
            })).collect::<Vec<_>>(),
            "digest": book.digest().to_hex(),
        },
        "bad_records": [
            {"desc": "truncated by one byte", "record_bytes": hex(&truncated), "want_err": "truncated"},
            {"desc": "a trailing byte", "record_bytes": hex(&trailing), "want_err": "trailing"},
            {"desc": "ledger id not 12 digits", "record_bytes": hex(&bad_id), "want_err": "ledger id"},
            {"desc": "the same signer twice", "record_bytes": hex(&unsorted), "want_err": "ascending"},
            {"desc": "last signature bit flipped (decodes; the signature fails)", "record_bytes": hex(&flipped_sig), "want_err": "signature"},
        ],
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
