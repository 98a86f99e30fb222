//! The test vectors verify under an implementation that shares no code with ours:
//! `docs/verify_vectors.py`, written from docs/FORMAT.md with Python's hashlib and the
//! `cryptography` package.

use std::process::Command;

#[test]
fn the_vectors_verify_with_the_independent_python_verifier() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/docs/verify_vectors.py"))
        .arg(format!("{root}/ledger/testdata/vectors.json"))
        .output()
        .expect("python3 is required for the independent format check (see README: prerequisites)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "independent verifier failed (is Python's `cryptography` installed? `tests/run` installs it):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

fn python(args: &[String]) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3").arg(format!("{root}/docs/verify_vectors.py")).args(args).output().expect("python3");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_year_bundle_and_a_request_token_verify_with_the_independent_python_verifier() {
    use jifen_ledger::bundle::{witness_key_name, Bundle, ConsistencyStep};
    use jifen_ledger::checkpoint::Checkpoint;
    use jifen_ledger::merkle::Tree;
    use jifen_ledger::note::NoteSigner;
    use jifen_ledger::sample::{generate, SampleConfig};
    let s = generate(&SampleConfig { seed: 31, households: Some(20), months: 2, scores_per_household: 2.0 }).unwrap();
    let records = s.records();
    let tree = Tree::from_record_hashes(records.iter().map(|r| r.hash()).collect::<Vec<_>>().iter());
    let witnesses: Vec<NoteSigner> =
        s.cast.supervisors[..2].iter().map(|k| NoteSigner::new(&witness_key_name(&s.origin, &k.id), k.key.clone()).unwrap()).collect();
    let sizes = [77u64, records.len() as u64];
    let checkpoints = sizes
        .iter()
        .map(|&n| {
            let mut c = Checkpoint { origin: s.origin.clone(), size: n, root: tree.root(n).unwrap() }.sign(&s.log_key);
            witnesses.iter().for_each(|w| c.cosign(w));
            c.encode()
        })
        .collect();
    let bundle = Bundle {
        ledger: records[0].ledger_id().clone(),
        origin: s.origin.clone(),
        log_key: s.log_key.verifier().to_string(),
        year: 2025,
        records: records.to_vec(),
        checkpoints,
        proofs: vec![ConsistencyStep { old: sizes[0], new: sizes[1], proof: tree.consistency_proof(sizes[0], sizes[1]).unwrap() }],
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.jfb");
    std::fs::write(&file, bundle.encode()).unwrap();
    let mut args = vec!["--bundle".to_string(), file.display().to_string(), "--log-key".into(), s.log_key.verifier().to_string()];
    for w in &witnesses {
        args.extend(["--witness-key".to_string(), w.verifier().to_string()]);
    }
    args.extend(["--quorum".to_string(), "2".into()]);
    let (ok, out) = python(&args);
    assert!(ok && out.contains("passed"), "{out}");
    // One flipped bit in a body, the checksum recomputed: the Python verifier names the record.
    let mut bad = bundle.clone();
    let r = &bad.records[40];
    let mut body = r.body().to_vec();
    body[5] ^= 1;
    bad.records[40] =
        jifen_ledger::Record::new(r.ledger_id().clone(), 40, *r.prev_hash(), r.recorded_at(), body, r.signatures().to_vec()).unwrap();
    std::fs::write(&file, bad.encode()).unwrap();
    let (ok, out) = python(&args);
    assert!(!ok && out.contains("first bad record seq 40"), "{out}");

    let root = env!("CARGO_MANIFEST_DIR");
    let token = std::fs::read_to_string(format!("{root}/ledger/testdata/token.txt")).unwrap();
    let token_args = |now: &str| -> Vec<String> {
        ["--token", token.trim(), "--method", "/jifen.v1.AuditService/VerifyLedger", "--ledger", "150602101201", "--now", now]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    assert!(python(&token_args("1760000100")).0);
    assert!(!python(&token_args("1760000400")).0, "expired");
}
