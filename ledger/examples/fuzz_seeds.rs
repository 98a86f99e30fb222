//! Writes the seed inputs of the fuzz targets (ledger/fuzz/corpus/<target>/seed-*) from a
//! small generated village: bodies and records of every kind present, a cosigned checkpoint
//! note, a verifier key, a request token, split-view evidence and a year bundle.
//!
//! `cargo run -p jifen-ledger --example fuzz_seeds -- ledger/fuzz/corpus`

use jifen_ledger::bundle::{Bundle, ConsistencyStep};
use jifen_ledger::checkpoint::Checkpoint;
use jifen_ledger::merkle::Tree;
use jifen_ledger::sample::{generate, SampleConfig};
use jifen_ledger::token::sign_token;
use jifen_ledger::village::Accepted;
use jifen_ledger::witness::Evidence;
use std::collections::BTreeSet;
use std::path::Path;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus directory");
    std::fs::write(d.join(format!("seed-{name}")), bytes).expect("seed written");
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "ledger/fuzz/corpus".into());
    let dir = Path::new(&dir);
    let s = generate(&SampleConfig { seed: 5, households: Some(6), months: 2, scores_per_household: 1.0 }).expect("generates");
    let records = s.records();
    let mut kinds = BTreeSet::new();
    for r in records {
        let a = Accepted::from_verified_record(r.clone()).expect("decodes");
        let kind = format!("{:?}", a.payload()).split('(').next().unwrap_or("x").to_owned();
        if kinds.insert(kind.clone()) {
            write(dir, "body", &format!("body-{kind}"), r.body());
            write(dir, "body", &format!("record-{kind}"), &r.encode());
        }
    }
    let hashes: Vec<_> = records.iter().map(|r| r.hash()).collect();
    let tree = Tree::from_record_hashes(&hashes);
    let note_at = |size: u64| {
        let cp = Checkpoint { origin: s.origin.clone(), size, root: tree.root(size).expect("size") };
        let mut signed = cp.sign(&s.log_key);
        signed.cosign(&s.log_key);
        signed.encode()
    };
    let n = records.len() as u64;
    write(dir, "note", "checkpoint", note_at(n).as_bytes());
    write(dir, "note", "verifier-key", s.log_key.verifier().to_string().as_bytes());

    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let token = sign_token(&key, "/jifen.v1.AuditService/VerifyLedger", records[0].ledger_id(), 1_760_000_000, [1; 16]);
    write(dir, "token", "verify-ledger", token.as_bytes());

    let evidence = Evidence {
        log_key: s.log_key.verifier().to_string(),
        older: note_at(5),
        newer: note_at(11),
        proof: tree.consistency_proof(5, 11).expect("proof"),
    };
    write(dir, "evidence", "consistent", evidence.encode().as_bytes());

    let small = 12u64;
    let bundle = Bundle {
        ledger: records[0].ledger_id().clone(),
        origin: s.origin.clone(),
        log_key: s.log_key.verifier().to_string(),
        year: 2025,
        records: records[..small as usize].to_vec(),
        checkpoints: vec![note_at(7), note_at(small)],
        proofs: vec![ConsistencyStep { old: 7, new: small, proof: tree.consistency_proof(7, small).expect("proof") }],
    }
    .encode();
    write(dir, "bundle", "sealed", &bundle);
    // The target seals its input again: the unsealed form lets it mutate the sections.
    write(dir, "bundle", "unsealed", &bundle[..bundle.len() - 41]);
    println!("seeds written under {}", dir.display());
}
