//! External verification with Go's golang.org/x/mod/sumdb packages (tests/interop/tlogcheck.go):
//! `note.Open` opens our cosigned checkpoints and `tlog` checks our proofs and reproduces them.
//! Needs Go and golang.org/x/mod (Debian: golang-go golang-golang-x-mod-dev; see README).

use jifen_ledger::hash::Hash;
use jifen_ledger::merkle::{leaf_hash, Tree};
use jifen_ledger::note::NoteSigner;
use jifen_ledger::record::Record;
use jifen_ledger::sample::{generate, SampleConfig, DEPLOYMENT_ORIGIN};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn run_go_checker(vectors: &Path) {
    let root = env!("CARGO_MANIFEST_DIR");
    let gocache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache");
    let out = Command::new("go")
        .args(["run", &format!("{root}/tests/interop/tlogcheck.go")])
        .arg(vectors)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", gocache)
        .env("GOFLAGS", "")
        .output()
        .expect("`go` is required for the Go interop check: run the tests with `tests/run`, which installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "Go's sumdb/tlog and sumdb/note refused our output:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn go_sumdb_accepts_the_committed_vectors() {
    run_go_checker(&Path::new(env!("CARGO_MANIFEST_DIR")).join("ledger/testdata/vectors.json"));
}

#[test]
fn go_sumdb_accepts_proofs_and_a_cosigned_checkpoint_of_a_generated_ledger() {
    let sample = generate(&SampleConfig { seed: 31, households: Some(60), months: 1, scores_per_household: 3.0 }).unwrap();
    let records: Vec<&Record> = sample.records().iter().take(1000).collect();
    let n = records.len() as u64;
    assert!(n > 300);
    let hashes: Vec<Hash> = records.iter().map(|r| r.hash()).collect();
    let tree = Tree::from_record_hashes(&hashes);
    let hex = |h: &Hash| h.to_hex();
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for size in [1, 2, 3, 7, 8, 9, 63, 64, 65, 255, 256, 257, n - 1, n] {
        for index in [0, size / 3, size / 2, size - 1] {
            inclusion.push(json!({"index": index, "size": size, "proof": tree.inclusion_proof(index, size).unwrap().iter().map(hex).collect::<Vec<_>>()}));
        }
        for old in [1, size / 2 + 1, size] {
            if old <= size {
                consistency.push(json!({"old": old, "new": size, "proof": tree.consistency_proof(old, size).unwrap().iter().map(hex).collect::<Vec<_>>()}));
            }
        }
    }
    let checkpoint = jifen_ledger::checkpoint::Checkpoint { origin: sample.origin.clone(), size: n, root: tree.root(n).unwrap() };
    let mut signed = checkpoint.sign(&sample.log_key);
    let witnesses: Vec<NoteSigner> = sample
        .cast
        .supervisors
        .iter()
        .map(|s| NoteSigner::new(&format!("{DEPLOYMENT_ORIGIN}/witness/{}", s.id), s.key.clone()).unwrap())
        .collect();
    for w in &witnesses {
        signed.cosign(w);
    }
    let v = json!({
        "records": hashes.iter().map(|h| json!({"record_hash": h.to_hex(), "leaf_hash": leaf_hash(h).to_hex()})).collect::<Vec<_>>(),
        "merkle": {
            "roots_by_size": (0..=n).map(|s| tree.root(s).unwrap().to_hex()).collect::<Vec<_>>(),
            "inclusion": inclusion,
            "consistency": consistency,
        },
        "checkpoint": {
            "origin": sample.origin,
            "text": checkpoint.to_text(),
            "note": signed.encode(),
            "log_verifier_key": sample.log_key.verifier().to_string(),
            "witness_verifier_keys": witnesses.iter().map(|w| w.verifier().to_string()).collect::<Vec<_>>(),
        },
    });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("generated-vectors.json");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    run_go_checker(&path);
}
