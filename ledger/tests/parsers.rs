//! Every parser of untrusted input (event bodies, records, notes and checkpoints, bundles,
//! evidence, request tokens) is total: arbitrary and mutated inputs give a value or an error,
//! never a panic, and what decodes re-encodes to the same bytes where the format is canonical.
//! Property tests in the suite; issue 5's coverage-guided fuzzing builds on these targets.

use jifen_ledger::body::{decode_body, encode_body};
use jifen_ledger::bundle::Bundle;
use jifen_ledger::checkpoint::Checkpoint;
use jifen_ledger::note::{Note, NoteVerifier};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{generate, Sample, SampleConfig};
use jifen_ledger::token::{sign_token, RequestToken};
use jifen_ledger::witness::Evidence;
use proptest::prelude::*;
use std::sync::OnceLock;

fn sample() -> &'static (Sample, Vec<u8>, String) {
    static S: OnceLock<(Sample, Vec<u8>, String)> = OnceLock::new();
    S.get_or_init(|| {
        let s = generate(&SampleConfig { seed: 41, households: Some(8), months: 1, scores_per_household: 1.0 }).unwrap();
        let mut cp = s.checkpoint().sign(&s.log_key);
        cp.cosign(&s.log_key);
        let bundle = Bundle {
            ledger: s.records()[0].ledger_id().clone(),
            origin: s.origin.clone(),
            log_key: s.log_key.verifier().to_string(),
            year: 2025,
            records: s.records().to_vec(),
            checkpoints: vec![cp.encode()],
            proofs: vec![],
        }
        .encode();
        let note = cp.encode();
        (s, bundle, note)
    })
}

/// Applies up to four byte edits (set, flip, delete, insert) at positions drawn from `edits`.
fn mutate(mut bytes: Vec<u8>, edits: &[(u32, u8, u8)]) -> Vec<u8> {
    for &(at, op, val) in edits {
        if bytes.is_empty() {
            bytes.push(val);
            continue;
        }
        let i = at as usize % bytes.len();
        match op % 4 {
            0 => bytes[i] = val,
            1 => bytes[i] ^= 1 << (val % 8),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, val),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(u32, u8, u8)>> {
    proptest::collection::vec((any::<u32>(), any::<u8>(), any::<u8>()), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_body(&bytes);
        let _ = Record::decode(&bytes);
        let _ = Note::parse(&bytes);
        let _ = Bundle::decode(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Checkpoint::parse_text(&text);
        let _ = NoteVerifier::parse(&text);
        let _ = RequestToken::parse(&text);
        if let Ok(e) = Evidence::parse(&text) {
            let _ = e.verify();
        }
    }

    #[test]
    fn mutated_bodies_and_records_decode_canonically_or_not_at_all(index in 0usize..200, edits in edits()) {
        let (s, _, _) = sample();
        let r = &s.records()[index % s.records().len()];
        let body = mutate(r.body().to_vec(), &edits);
        if let Ok(b) = decode_body(&body) {
            prop_assert_eq!(encode_body(&b), body, "a body decodes only from its canonical bytes");
        }
        let bytes = mutate(r.encode(), &edits);
        if let Ok(d) = Record::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes, "a record decodes only from its canonical bytes");
        }
    }

    #[test]
    fn mutated_bundles_never_decode_into_something_else(edits in edits()) {
        let (_, bundle, _) = sample();
        let bad = mutate(bundle.clone(), &edits);
        if bad != *bundle {
            prop_assert!(Bundle::decode(&bad).is_err(), "the checksum or a section check refuses it");
        }
    }

    #[test]
    fn mutated_notes_and_tokens_never_verify(edits in edits()) {
        let (s, _, note) = sample();
        let bad = mutate(note.clone().into_bytes(), &edits);
        if bad != note.as_bytes() {
            if let Ok(n) = Note::parse(&bad) {
                let known = [s.log_key.verifier().clone()];
                // A changed text fails; a changed signature block can only drop or break lines.
                if n.text() != Note::parse(note.as_bytes()).unwrap().text() {
                    prop_assert!(n.verify(&known).is_err());
                }
            }
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let ledger = jifen_ledger::VillageCode::parse("150602101201").unwrap();
        let token = sign_token(&key, "/jifen.v1.AuditService/VerifyLedger", &ledger, 1_760_000_000, [1; 16]);
        let bad = mutate(token.clone().into_bytes(), &edits);
        if bad != token.as_bytes() {
            prop_assert!(RequestToken::parse(&String::from_utf8_lossy(&bad)).is_err());
        }
    }
}

/// The corpus the fuzzers kept (`ledger/fuzz/corpus/<target>/`), replayed through the same
/// checks as the fuzz targets: a regression test for everything fuzzing ever found.
#[test]
fn the_kept_fuzz_corpus_passes_every_fuzz_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 5] = [
        ("body", jifen_ledger::fuzzing::body),
        ("note", jifen_ledger::fuzzing::note),
        ("bundle", jifen_ledger::fuzzing::bundle),
        ("token", jifen_ledger::fuzzing::token),
        ("evidence", jifen_ledger::fuzzing::evidence),
    ];
    for (target, check) in targets {
        let dir = root.join(target);
        let inputs: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).collect();
        assert!(!inputs.is_empty(), "no kept corpus for {target}");
        for entry in inputs {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| check(&bytes)) {
                std::panic::resume_unwind(Box::new(format!("{}: {panic:?}", path.display())));
            }
        }
    }
}
