//! Year bundles: a generated village-year verified offline, and every kind of tampering found
//! with the first bad record named; split-view evidence; request tokens.

use jifen_ledger::signature::BatchSeed;
use jifen_ledger::verify::{SignatureMode, VerifyError};

/// Batch verification with a fixed seed (the tool draws one from the OS each run).
const BATCH: SignatureMode = SignatureMode::Batch(BatchSeed([3; 32]));
use jifen_ledger::bundle::{verify_bundle, witness_key_name, Bundle, BundleError, ConsistencyStep, Trust};
use jifen_ledger::checkpoint::Checkpoint;
use jifen_ledger::merkle::Tree;
use jifen_ledger::note::{NoteSigner, NoteVerifier};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{generate, ActorKey, Sample, SampleConfig};
use jifen_ledger::token::{sign_token, RequestToken, TokenError};
use jifen_ledger::witness::{check_step, Evidence, EvidenceError, Finding, Step, StepError};
use jifen_ledger::VillageCode;
use std::sync::OnceLock;

fn sample() -> &'static Sample {
    static S: OnceLock<Sample> = OnceLock::new();
    S.get_or_init(|| generate(&SampleConfig { seed: 11, households: Some(30), months: 3, scores_per_household: 2.0 }).unwrap())
}

fn witness(s: &Sample, k: &ActorKey) -> NoteSigner {
    NoteSigner::new(&witness_key_name(&s.origin, &k.id), k.key.clone()).unwrap()
}

/// Checkpoints of `records` at `sizes`, each cosigned by the first `cosigners` supervisors.
fn bundle_of(s: &Sample, records: &[Record], sizes: &[u64], cosigners: usize) -> Bundle {
    let tree = Tree::from_record_hashes(records.iter().map(Record::hash).collect::<Vec<_>>().iter());
    Bundle { records: records[..*sizes.last().unwrap() as usize].to_vec(), ..checkpoints_of(s, &tree, records, sizes, cosigners) }
}

/// A bundle of `records` with checkpoints of `tree` (whatever records it is the tree of) at
/// `sizes`, each cosigned by the first `cosigners` supervisors, and the proofs between them.
fn checkpoints_of(s: &Sample, tree: &Tree, records: &[Record], sizes: &[u64], cosigners: usize) -> Bundle {
    let mut checkpoints = Vec::new();
    for &size in sizes {
        let c = Checkpoint { origin: s.origin.clone(), size, root: tree.root(size).unwrap() };
        let mut signed = c.sign(&s.log_key);
        for k in &s.cast.supervisors[..cosigners] {
            signed.cosign(&witness(s, k));
        }
        checkpoints.push(signed.encode());
    }
    let proofs =
        sizes.windows(2).map(|w| ConsistencyStep { old: w[0], new: w[1], proof: tree.consistency_proof(w[0], w[1]).unwrap() }).collect();
    Bundle {
        ledger: records[0].ledger_id().clone(),
        origin: s.origin.clone(),
        log_key: s.log_key.verifier().to_string(),
        year: 2025,
        records: records.to_vec(),
        checkpoints,
        proofs,
    }
}

fn full(s: &Sample) -> Bundle {
    let n = s.records().len() as u64;
    bundle_of(s, s.records(), &[n / 3, n / 2 + 1, n], 2)
}

fn trust(s: &Sample) -> Trust {
    Trust { log_key: Some(s.log_key.verifier().clone()), witness_keys: vec![] }
}

#[test]
fn a_village_year_bundle_round_trips_and_verifies_offline() {
    let s = sample();
    let b = full(s);
    let bytes = b.encode();
    let decoded = Bundle::decode(&bytes).unwrap();
    assert_eq!(decoded, b);
    let mut seen = 0;
    let report = verify_bundle(&decoded, &trust(s), BATCH, |_| seen += 1).unwrap();
    assert_eq!((report.records, seen), (s.records().len() as u64, s.records().len()));
    assert_eq!(report.checkpoints.len(), 3);
    assert!(report.checkpoints.iter().all(|c| c.witnessed() && c.cosigners.len() == 2 && c.quorum == 2));
    assert!(report.log_key_given);
    assert_eq!(report.state.balances().digest(), s.writer.state.balances().digest());
    // Without the auditor's keys the bundle's own log key and the ledger's supervisors serve.
    assert!(!verify_bundle(&decoded, &Trust::default(), BATCH, |_| {}).unwrap().log_key_given);
    // With explicitly trusted witness keys, only those count.
    let only_first = Trust { witness_keys: vec![witness(s, &s.cast.supervisors[0]).verifier().clone()], ..trust(s) };
    assert_eq!(
        verify_bundle(&decoded, &only_first, BATCH, |_| {}).unwrap_err(),
        BundleError::NotWitnessed { size: s.records().len() as u64, needed: 2, got: 1 }
    );
}

#[test]
fn a_bundle_whose_last_checkpoint_lacks_the_quorum_is_refused() {
    let s = sample();
    let n = s.records().len() as u64;
    let b = bundle_of(s, s.records(), &[n], 1);
    assert_eq!(verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::NotWitnessed { size: n, needed: 2, got: 1 });
}

/// A record rebuilt with one field changed.
fn with(r: &Record, seq: Option<u64>, recorded_at: Option<i64>, flip_body: bool) -> Record {
    relinked(r, seq, recorded_at, flip_body, *r.prev_hash())
}

fn relinked(r: &Record, seq: Option<u64>, recorded_at: Option<i64>, flip_body: bool, prev: jifen_ledger::Hash) -> Record {
    let mut body = r.body().to_vec();
    if flip_body {
        let last = body.len() - 1;
        body[last] ^= 1;
    }
    Record::new(r.ledger_id().clone(), seq.unwrap_or(r.seq()), prev, recorded_at.unwrap_or(r.recorded_at()), body, r.signatures().to_vec())
        .unwrap()
}

fn first_bad(records: Vec<Record>, s: &Sample) -> Option<u64> {
    let n = s.records().len() as u64;
    let mut b = full(s);
    b.records = records;
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    if let BundleError::RecordCount { .. } = e {
        return None;
    }
    assert!(e.seq().is_some_and(|q| q < n), "{e}");
    e.seq()
}

#[test]
fn each_kind_of_record_tampering_is_found_at_the_first_bad_seq() {
    let s = sample();
    let orig = s.records().to_vec();
    for n in [1usize, 57, 200, orig.len() - 2] {
        let mut edited = orig.clone();
        edited[n] = with(&orig[n], None, None, true);
        assert_eq!(first_bad(edited, s), Some(n as u64), "edited body at {n}");

        let mut retimed = orig.clone();
        retimed[n] = with(&orig[n], None, Some(orig[n].recorded_at() + 1), false);
        assert_eq!(first_bad(retimed, s), Some(n as u64), "edited recorded_at at {n}");

        let mut reordered = orig.clone();
        reordered.swap(n, n + 1);
        assert_eq!(first_bad(reordered, s), Some(n as u64), "swapped {n} and {}", n + 1);

        // Deleted: the seqs now have a gap at n.
        let mut deleted = orig.clone();
        deleted.remove(n);
        deleted.push(orig[n].clone());
        assert_eq!(first_bad(deleted.clone(), s), Some(n as u64), "deleted {n}");
        // Deleted and the later records renumbered: the chain breaks between n - 1 and n,
        // and nothing in the bundle says which side was altered, so n - 1 is named, the
        // first record that may be bad (the message names both).
        for (i, r) in deleted.iter_mut().enumerate().skip(n) {
            *r = with(r, Some(i as u64), None, false);
        }
        assert_eq!(first_bad(deleted, s), Some(n as u64 - 1), "deleted {n}, renumbered");

        // Inserted: a copy of record n, linked after it as seq n + 1; the rest renumbered.
        let mut inserted = orig.clone();
        inserted.insert(n + 1, relinked(&orig[n], Some(n as u64 + 1), None, false, orig[n].hash()));
        inserted.pop();
        for (i, r) in inserted.iter_mut().enumerate().skip(n + 2) {
            *r = with(r, Some(i as u64), None, false);
        }
        assert_eq!(first_bad(inserted, s), Some(n as u64 + 1), "inserted at {}", n + 1);
    }
    // Truncated: the last checkpoint covers records the bundle lacks; named at the first
    // missing seq.
    let mut truncated = orig.clone();
    truncated.truncate(orig.len() - 3);
    assert_eq!(first_bad(truncated, s), Some(orig.len() as u64 - 3));
    let mut b = full(s);
    b.records.truncate(orig.len() - 3);
    assert_eq!(
        verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(),
        BundleError::Record(VerifyError::Truncated { size: orig.len() as u64, have: orig.len() as u64 - 3 })
    );
    // Deleted in the middle, the bundle one record short: named at the gap, not as a count.
    for n in [0usize, 57, orig.len() - 2] {
        let mut deleted = orig.clone();
        deleted.remove(n);
        assert_eq!(first_bad(deleted, s), Some(n as u64), "deleted {n}, nothing put in its place");
    }
}

#[test]
fn forged_checkpoints_cosignatures_and_proofs_are_refused() {
    let s = sample();
    let n = s.records().len() as u64;
    // Signed by another log key.
    let forger = NoteSigner::new(&s.origin, ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap();
    let mut b = full(s);
    let c = Checkpoint::parse_text(jifen_ledger::note::Note::parse(b.checkpoints[1].as_bytes()).unwrap().text()).unwrap();
    b.checkpoints[1] = c.sign(&forger).encode();
    assert!(matches!(verify_bundle(&b, &trust(s), BATCH, |_| {}), Err(BundleError::Checkpoint { index: 1, .. })));
    // A checkpoint whose root is not that of the records: a fork.
    let mut b = full(s);
    let wrong = Checkpoint { origin: s.origin.clone(), size: n, root: jifen_ledger::Hash::of(b"another history") };
    let mut signed = wrong.sign(&s.log_key);
    for k in &s.cast.supervisors[..2] {
        signed.cosign(&witness(s, k));
    }
    *b.checkpoints.last_mut().unwrap() = signed.encode();
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::Inconsistent { .. }), "{e}");
    b.proofs.clear();
    b.checkpoints.drain(..2);
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::Fork { from: 0, size, .. } if size == n), "{e}");
    // A cosignature under a supervisor's name by a key that is not theirs.
    let mut b = full(s);
    let mut signed = s.checkpoint().sign(&s.log_key);
    signed.cosign(&witness(s, &s.cast.supervisors[0]));
    let impostor = ActorKey { key: s.cast.villagers[0].key.clone(), ..s.cast.supervisors[1].clone() };
    signed.cosign(&witness(s, &impostor));
    *b.checkpoints.last_mut().unwrap() = signed.encode();
    assert_eq!(verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::NotWitnessed { size: n, needed: 2, got: 1 });
    // A missing proof.
    let mut b = full(s);
    b.proofs.pop();
    assert_eq!(verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::ProofCount { proofs: 1, checkpoints: 3 });
    // A consistency proof with a flipped bit.
    let mut b = full(s);
    b.proofs[0].proof[0].0[0] ^= 1;
    assert!(matches!(verify_bundle(&b, &trust(s), BATCH, |_| {}), Err(BundleError::Inconsistent { .. })));
}

#[test]
fn damaged_bundle_files_never_verify() {
    let s = sample();
    let bytes = full(s).encode();
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut bad = bytes.clone();
        let at = (rng % bad.len() as u64) as usize;
        bad[at] ^= 1 << (rng % 8);
        assert!(Bundle::decode(&bad).is_err(), "a bit flip at byte {at} went unnoticed");
    }
    for cut in [0, 7, 12, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(Bundle::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Bundle::decode(&longer).is_err());
}

/// Two histories sharing their first `common` records: the sample's, and one whose records
/// from `common` on are re-timed (as a log that rolled back and appended again would have).
fn diverged(s: &Sample, common: usize) -> (Tree, Tree) {
    let a: Vec<_> = s.records().iter().map(Record::hash).collect();
    let mut b = a.clone();
    for h in b.iter_mut().skip(common) {
        *h = jifen_ledger::Hash::of(h.as_bytes());
    }
    (Tree::from_record_hashes(a.iter()), Tree::from_record_hashes(b.iter()))
}

#[test]
fn a_witness_cosigns_only_extensions_and_split_views_leave_evidence() {
    let s = sample();
    let (honest, forked) = diverged(s, 100);
    let cp = |t: &Tree, size: u64| Checkpoint { origin: s.origin.clone(), size, root: t.root(size).unwrap() };
    let last = cp(&honest, 150);
    assert!(s.records().len() >= 250);
    assert_eq!(check_step(&last, &cp(&honest, 150), &[]), Ok(Step::Same));
    assert_eq!(check_step(&last, &cp(&honest, 250), &honest.consistency_proof(150, 250).unwrap()), Ok(Step::Extends));
    assert_eq!(
        check_step(&last, &cp(&honest, 120), &honest.consistency_proof(120, 150).unwrap()),
        Err(StepError::Stale { last: 150, offered: 120 })
    );
    // A checkpoint of size 0, offered or remembered, is never cosigned and is no evidence.
    let empty = cp(&honest, 0);
    assert_eq!(check_step(&last, &empty, &[]), Err(StepError::EmptyCheckpoint));
    assert_eq!(check_step(&empty, &empty, &[]), Err(StepError::EmptyCheckpoint));
    assert_eq!(check_step(&empty, &last, &[]), Err(StepError::EmptyCheckpoint));
    // The forked log offers a larger checkpoint and its own (honest for its tree) proof.
    let proof = forked.consistency_proof(150, 250).unwrap();
    let offered = cp(&forked, 250);
    assert!(matches!(check_step(&last, &offered, &proof), Err(StepError::Inconsistent { old: 150, new: 250, .. })));
    let evidence = Evidence {
        log_key: s.log_key.verifier().to_string(),
        older: last.sign(&s.log_key).encode(),
        newer: offered.sign(&s.log_key).encode(),
        proof,
    };
    let file = evidence.encode();
    let parsed = Evidence::parse(&file).unwrap();
    assert_eq!(parsed, evidence);
    match parsed.verify().unwrap() {
        Finding::Proven { old: 150, new: 250, prefix_root, signed_root } => {
            assert_eq!(prefix_root, forked.root(150).unwrap());
            assert_eq!(signed_root, last.root);
        }
        other => panic!("{other:?}"),
    }
    // Same size, different roots.
    let fork = Evidence { newer: cp(&forked, 150).sign(&s.log_key).encode(), proof: vec![], ..evidence.clone() };
    assert_eq!(fork.verify(), Ok(Finding::Fork { size: 150 }));
    // A power-of-two old size: the proof cannot reveal the prefix.
    let pow = Evidence {
        older: cp(&honest, 128).sign(&s.log_key).encode(),
        proof: forked.consistency_proof(128, 250).unwrap(),
        ..evidence.clone()
    };
    assert_eq!(pow.verify(), Ok(Finding::Unanswered { old: 128, new: 250 }));
    // Honest checkpoints are not evidence; nor are notes the log did not sign.
    let honest_pair = Evidence {
        newer: cp(&honest, 250).sign(&s.log_key).encode(),
        proof: honest.consistency_proof(150, 250).unwrap(),
        ..evidence.clone()
    };
    assert_eq!(honest_pair.verify(), Err(EvidenceError::Consistent));
    let forger = NoteSigner::new(&s.origin, ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap();
    let framed = Evidence { newer: offered.sign(&forger).encode(), ..evidence.clone() };
    assert!(matches!(framed.verify(), Err(EvidenceError::BadCheckpoint { which: "newer", .. })));
    for cut in [0, 10, file.len() / 2, file.len() - 1] {
        assert!(Evidence::parse(&file[..cut]).is_err() || Evidence::parse(&file[..cut]).unwrap().verify().is_err());
    }
}

#[test]
fn request_tokens_bind_method_ledger_time_and_key() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let ledger = VillageCode::parse("150602101201").unwrap();
    let other = VillageCode::parse("150602101202").unwrap();
    let method = "/jifen.v1.AuditService/VerifyLedger";
    let t = sign_token(&key, method, &ledger, 1_760_000_000, [7; 16]);
    // The committed vector (FORMAT.md §12), made independently with Python's `cryptography`.
    assert_eq!(t, include_str!("../testdata/token.txt").trim());
    let parsed = RequestToken::parse(&t).unwrap();
    assert_eq!(parsed.public_key.0, key.verifying_key().to_bytes());
    assert_eq!((parsed.issued_at, parsed.nonce), (1_760_000_000, [7; 16]));
    assert_eq!(parsed.check(method, &ledger, 1_760_000_100), Ok(()));
    assert!(matches!(parsed.check("/jifen.v1.QueryService/GetAuditTrail", &ledger, 1_760_000_100), Err(TokenError::WrongMethod { .. })));
    assert!(matches!(parsed.check(method, &other, 1_760_000_100), Err(TokenError::WrongLedger { .. })));
    assert!(matches!(parsed.check(method, &ledger, 1_760_000_301), Err(TokenError::Expired { .. })));
    assert!(matches!(parsed.check(method, &ledger, 1_759_999_960), Err(TokenError::Expired { .. })));
    // Every single-character change is refused.
    for i in 0..t.len() {
        let mut bad = t.clone().into_bytes();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        if bad != t {
            assert!(RequestToken::parse(&bad).is_err(), "changed at {i}: {bad}");
        }
    }
    assert!(matches!(RequestToken::parse("v1.x.y"), Err(TokenError::Malformed(_))));
    assert!(RequestToken::parse(&format!("{t}.extra")).is_err());
}

#[test]
fn witness_keys_are_named_under_the_deployment() {
    assert_eq!(witness_key_name("jifen.example.cn/village/150602101201", "sup-1"), "jifen.example.cn/witness/sup-1");
    let v = NoteVerifier::new(&witness_key_name("a.cn/village/150602101201", "s"), [1; 32]);
    assert!(v.is_ok());
}

// ---- witnesses judged at the checkpoint's time ------------------------------------------------

/// A village opened by the fixture, with its log key, for bundles of a few records.
fn small_village() -> (jifen_ledger::sample::Cast, jifen_ledger::sample::Writer, NoteSigner, String) {
    let hs: Vec<(String, Vec<String>)> = (1..=3).map(|i| (format!("H000{i}"), vec![format!("H000{i}-01")])).collect();
    let (cast, w) = jifen_ledger::sample::open_village(17, &hs, 3).unwrap();
    let origin = w.state.genesis().unwrap().origin.clone();
    let log = NoteSigner::new(&origin, ActorKey::derive(17, "log", None).key).unwrap();
    (cast, w, log, origin)
}

/// One checkpoint of all `records`, cosigned by `cosigners`.
fn one_checkpoint(records: &[Record], log: &NoteSigner, origin: &str, cosigners: &[&ActorKey]) -> Bundle {
    let tree = Tree::from_record_hashes(records.iter().map(Record::hash).collect::<Vec<_>>().iter());
    let c = Checkpoint { origin: origin.to_owned(), size: tree.len(), root: tree.root(tree.len()).unwrap() };
    let mut signed = c.sign(log);
    for k in cosigners {
        signed.cosign(&NoteSigner::new(&witness_key_name(origin, &k.id), k.key.clone()).unwrap());
    }
    Bundle {
        ledger: records[0].ledger_id().clone(),
        origin: origin.to_owned(),
        log_key: log.verifier().to_string(),
        year: 2025,
        records: records.to_vec(),
        checkpoints: vec![signed.encode()],
        proofs: vec![],
    }
}

#[test]
fn a_supervisor_whose_term_ended_before_the_checkpoint_does_not_count_as_witness() {
    use jifen_ledger::pb::{self, event_body::Payload};
    // Given supervisor-04, whose term ended an hour before the last record,
    let (cast, mut w, log, origin) = small_village();
    let late = ActorKey::derive(17, "supervisor-04", None);
    let now = w.now;
    let enrol = pb::ActorEnrolled {
        actor_id: late.id.clone(),
        public_key: late.public(),
        roles: vec![pb::Role::Supervisor as i32],
        term_start: now - 86_400_000_000,
        term_end: now + 3_600_000_000,
        household_id: String::new(),
    };
    w.submit(&cast.admin, &[], Payload::ActorEnrolled(enrol)).unwrap();
    w.advance_to(now + 2 * 3_600_000_000);
    w.submit(&cast.keeper, &[], Payload::StockReceived(jifen_ledger::sample::stock("R-9", "G-SOAP", "", 5, pb::StockSource::Subsidy, "")))
        .unwrap();
    // when the checkpoint is cosigned by supervisor-01 and supervisor-04, it lacks the quorum
    // of 2: only supervisor-01 was in term at the checkpoint's time;
    let b = one_checkpoint(&w.records, &log, &origin, &[&cast.supervisors[0], &late]);
    let n = w.records.len() as u64;
    assert_eq!(verify_bundle(&b, &Trust::default(), BATCH, |_| {}).unwrap_err(), BundleError::NotWitnessed { size: n, needed: 2, got: 1 });
    // with two supervisors in term it is witnessed.
    let b = one_checkpoint(&w.records, &log, &origin, &[&cast.supervisors[0], &cast.supervisors[1]]);
    assert!(verify_bundle(&b, &Trust::default(), BATCH, |_| {}).unwrap().checkpoints[0].witnessed());
}

#[test]
fn the_witness_quorum_of_a_checkpoint_is_the_rulebooks_in_force_at_its_time() {
    use jifen_ledger::pb::{self, event_body::Payload};
    // Given rulebook v2 (witness quorum 3) adopted to take effect in February,
    let (cast, mut w, log, origin) = small_village();
    let mut v2 = jifen_ledger::sample::rulebook(2, "2025-02-01", "2025-01-01");
    v2.witness_quorum = 3;
    w.submit(&cast.admin, &[], Payload::RulebookAdopted(v2)).unwrap();
    let two = [&cast.supervisors[0], &cast.supervisors[1]];
    // when a January checkpoint is cosigned by two supervisors, v1's quorum of 2 applies;
    let b = one_checkpoint(&w.records, &log, &origin, &two);
    let report = verify_bundle(&b, &Trust::default(), BATCH, |_| {}).unwrap();
    assert_eq!((report.checkpoints[0].quorum, report.checkpoints[0].witnessed()), (2, true));
    // in February, v2's quorum of 3.
    w.advance_to(jifen_ledger::time::Date::parse("d", "2025-02-01").unwrap().start_micros() + 3_600_000_000);
    w.submit(&cast.keeper, &[], Payload::StockReceived(jifen_ledger::sample::stock("R-9", "G-SOAP", "", 5, pb::StockSource::Subsidy, "")))
        .unwrap();
    let b = one_checkpoint(&w.records, &log, &origin, &two);
    let n = w.records.len() as u64;
    assert_eq!(verify_bundle(&b, &Trust::default(), BATCH, |_| {}).unwrap_err(), BundleError::NotWitnessed { size: n, needed: 3, got: 2 });
}

/// The witnesses of a checkpoint are a function of the records it covers: the state the server
/// holds (every record since) names the same keys and quorum as the state a verifier replays up
/// to the checkpoint, through a key rotation, a revocation, an enrolment and a rulebook that
/// raises the quorum on the day it is adopted.
#[test]
fn a_checkpoints_witnesses_are_the_same_on_every_later_state() {
    use jifen_ledger::bundle::witnesses;
    use jifen_ledger::pb::{self, event_body::Payload};
    use jifen_ledger::sample::rulebook;
    use jifen_ledger::time::Date;
    use jifen_ledger::village::VillageState;
    let mut s = generate(&SampleConfig { seed: 5, households: Some(12), months: 1, scores_per_household: 1.0 }).unwrap();
    let (cast, w) = (&s.cast, &mut s.writer);
    let sups = &cast.supervisors;
    let rotated = ActorKey::derive(77, &sups[0].id, None);
    w.advance_to(w.now + 3_600_000_000);
    w.submit(
        &sups[0],
        &[],
        Payload::ActorKeyRotated(pb::ActorKeyRotated { actor_id: sups[0].id.clone(), new_public_key: rotated.public() }),
    )
    .unwrap();
    w.submit(&cast.admin, &[], Payload::ActorRevoked(pb::ActorRevoked { actor_id: sups[1].id.clone(), reason: "任期内调离".into() }))
        .unwrap();
    let newcomer = ActorKey::derive(77, "supervisor-new", None);
    w.submit(
        &cast.admin,
        &[],
        Payload::ActorEnrolled(pb::ActorEnrolled {
            actor_id: newcomer.id.clone(),
            public_key: newcomer.public(),
            roles: vec![pb::Role::Supervisor as i32],
            term_start: w.now,
            term_end: 0,
            household_id: String::new(),
        }),
    )
    .unwrap();
    let today = Date::of_micros(w.now).to_string();
    let mut v2 = rulebook(2, &today, &today);
    v2.witness_quorum = 3;
    w.submit(&cast.admin, &[], Payload::RulebookAdopted(v2)).unwrap();

    let records = s.writer.records.clone();
    let last = &s.writer.state;
    let key_set = |(keys, quorum): (Vec<NoteVerifier>, u32)| (keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(), quorum);
    let mut state = VillageState::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        let a = jifen_ledger::village::Accepted::from_verified_record(r.clone()).unwrap();
        state.apply(&a);
        let size = i as u64 + 1;
        let at = r.recorded_at();
        let then = key_set(witnesses(&state, &s.origin, size, at));
        assert_eq!(key_set(witnesses(last, &s.origin, size, at)), then, "checkpoint of size {size}");
        seen.insert((then.0.len(), then.1));
    }
    // Each change showed: no witness yet, the quorum of 2, the revocation, the newcomer, 3.
    let end = key_set(witnesses(last, &s.origin, records.len() as u64, records.last().unwrap().recorded_at()));
    assert_eq!(end.1, 3);
    assert!(end.0.contains(
        &NoteVerifier::new(&witness_key_name(&s.origin, &sups[0].id), rotated.key.verifying_key().to_bytes()).unwrap().to_string()
    ));
    assert!(!end.0.iter().any(|k| k.contains(&format!("/witness/{}+", sups[1].id))));
    assert!(seen.len() >= 4, "{seen:?}");
}

// ---- failures named by position (FORMAT.md §11.3 step 4) --------------------------------------

/// The failure a bundle of `records` (checkpointed as `full` is) is refused with.
fn refusal(s: &Sample, records: Vec<Record>, mode: SignatureMode) -> BundleError {
    let mut b = full(s);
    b.records = records;
    verify_bundle(&b, &trust(s), mode, |_| {}).unwrap_err()
}

/// Records out of place are named at the first position whose seq is wrong, never at the seq
/// a record claims: a deletion, two records swapped, a record repeated further on (which claims
/// a seq below its position), in either signature mode.
#[test]
fn records_out_of_place_are_named_at_the_first_position_whose_seq_is_wrong() {
    let s = sample();
    let orig = s.records().to_vec();
    let n = 57usize;
    let deleted = |pad: bool| {
        let mut r = orig.clone();
        r.remove(n);
        if pad {
            r.push(orig[n].clone());
        }
        r
    };
    let swapped = |a: usize, b: usize| {
        let mut r = orig.clone();
        r.swap(a, b);
        r
    };
    // A copy of record n at position n + 1 (later records shifted, the last dropped), as is, or
    // with its body altered so that its signature fails too.
    let repeated = |flip: bool| {
        let mut r = orig.clone();
        r.insert(n + 1, with(&orig[n], None, None, flip));
        r.pop();
        r
    };
    let cases: Vec<(&str, Vec<Record>, u64, u64)> = vec![
        ("a middle record deleted, the bundle one short", deleted(false), n as u64, n as u64 + 1),
        ("a middle record deleted, moved to the end", deleted(true), n as u64, n as u64 + 1),
        ("two neighbours swapped", swapped(n, n + 1), n as u64, n as u64 + 1),
        ("two records far apart swapped", swapped(n, n + 100), n as u64, n as u64 + 100),
        ("a record repeated right after itself", repeated(false), n as u64 + 1, n as u64),
        ("a record repeated with its body altered", repeated(true), n as u64 + 1, n as u64),
    ];
    for (what, records, position, claimed) in cases {
        for mode in [BATCH, SignatureMode::Strict] {
            let e = refusal(s, records.clone(), mode);
            assert_eq!(e.seq(), Some(position), "{what}: {e}");
            assert_eq!(e, BundleError::Record(VerifyError::Gap { seq: claimed, expected: position }), "{what}");
        }
    }
    // The stages on their own name positions too.
    let repeated = repeated(true);
    let sig = jifen_ledger::verify::check_signatures(&repeated, SignatureMode::Strict).unwrap_err();
    assert!(matches!(sig, VerifyError::BadSignature { seq, .. } if seq == n as u64 + 1), "{sig}");
    let replayed = jifen_ledger::verify::replay(&repeated, |_| {}).unwrap_err();
    assert!(matches!(replayed, VerifyError::Inadmissible { seq, .. } if seq == n as u64 + 1), "{replayed}");
}

/// FORMAT.md §11.3 step 2 (and §5): a checkpoint's size is at least 1. A bundle holding a
/// checkpoint of size 0 is refused there, whether it comes first, after another, or alone
/// in a bundle of no records.
#[test]
fn a_checkpoint_of_size_0_is_refused() {
    let s = sample();
    let n = s.records().len() as u64;
    let empty = Checkpoint { origin: s.origin.clone(), size: 0, root: jifen_ledger::merkle::empty_root() };
    let mut signed = empty.sign(&s.log_key);
    for k in &s.cast.supervisors[..2] {
        signed.cosign(&witness(s, k));
    }
    let empty = signed.encode();
    // Given the full bundle with its first checkpoint replaced by one of size 0,
    let mut first = full(s);
    first.checkpoints[0] = empty.clone();
    first.proofs[0] = ConsistencyStep { old: 0, new: first.proofs[0].new, proof: vec![] };
    // one with a checkpoint of size 0 after the first,
    let mut second = full(s);
    second.checkpoints.insert(1, empty.clone());
    second.proofs.insert(1, ConsistencyStep { old: 0, new: n / 2 + 1, proof: vec![] });
    second.proofs[0].new = 0;
    // and one of no records with a single checkpoint of size 0,
    let alone = Bundle { records: vec![], checkpoints: vec![empty], proofs: vec![], ..full(s) };
    // when each is verified (as built, and after a round trip through its bytes),
    // then the checkpoint of size 0 is named.
    for (b, index) in [(first, 0), (second, 1), (alone, 0)] {
        let decoded = Bundle::decode(&b.encode()).unwrap();
        for b in [&b, &decoded] {
            assert_eq!(verify_bundle(b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::EmptyCheckpoint { index });
        }
    }
}

/// The records of a small village in a bundle whose header says `ledger` and `origin`, its one
/// checkpoint signed by a log key named `origin` and cosigned by two supervisors under that
/// origin's deployment; with the trust that goes with it.
fn relabelled(ledger: &str, origin: &str) -> (Bundle, Trust) {
    let (cast, w, _, _) = small_village();
    let log = NoteSigner::new(origin, ActorKey::derive(17, "log", None).key).unwrap();
    let b = Bundle {
        ledger: VillageCode::parse(ledger).unwrap(),
        ..one_checkpoint(&w.records, &log, origin, &[&cast.supervisors[0], &cast.supervisors[1]])
    };
    (b, Trust { log_key: Some(log.verifier().clone()), witness_keys: vec![] })
}

/// FORMAT.md §11.3 step 4: every record's `ledger_id` is the header's (chain), and the
/// `LedgerOpened` at seq 0 names the header's origin (replay). Both fail at position 0.
#[test]
fn the_records_must_be_of_the_ledger_and_origin_the_header_names() {
    let (code, origin) = (jifen_ledger::sample::VILLAGE_CODE, format!("jifen.example.cn/village/{}", jifen_ledger::sample::VILLAGE_CODE));
    // Given the village's records under their own ledger id and origin, the bundle verifies;
    let (b, t) = relabelled(code, &origin);
    assert!(verify_bundle(&b, &t, BATCH, |_| {}).is_ok());
    // when the header names another ledger (and an origin and log key to match), the records'
    // ledger id is refused at position 0;
    let (b, t) = relabelled("150602101202", "jifen.example.cn/village/150602101202");
    assert_eq!(
        verify_bundle(&b, &t, BATCH, |_| {}).unwrap_err(),
        BundleError::Record(VerifyError::WrongLedger { seq: 0, expected: "150602101202".into(), got: code.into() })
    );
    // when the header names the same ledger under another deployment, the genesis's origin is.
    let other = format!("other.example.cn/village/{code}");
    let (b, t) = relabelled(code, &other);
    for mode in [BATCH, SignatureMode::Strict] {
        assert_eq!(
            verify_bundle(&b, &t, mode, |_| {}).unwrap_err(),
            BundleError::Record(VerifyError::WrongOrigin { seq: 0, expected: other.clone(), got: origin.clone() })
        );
    }
}

/// FORMAT.md §11: the records are decoded in parallel, but if several are malformed the one at
/// the lowest position is named. The two malformed records sit on either side of the middle,
/// where the parallel decoder splits the work: a second thread meets the higher one first.
#[test]
fn of_several_malformed_records_the_one_at_the_lowest_position_is_named() {
    use jifen_ledger::bundle::BundleFormatError;
    let s = sample();
    let many: Vec<Record> = s.records().iter().cycle().take(40 * s.records().len()).cloned().collect();
    let b = Bundle { records: many, ..full(s) };
    let bytes = b.encode();
    // Where each record's bytes start: after the fixed 12 bytes, the HEADER section and the
    // RECORDS section's tag and length, each record follows its u32 length.
    let header_len = u64::from_be_bytes(bytes[13..21].try_into().unwrap()) as usize;
    let mut at = 21 + header_len + 9;
    let mut starts = Vec::with_capacity(b.records.len());
    for _ in &b.records {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        starts.push(at + 4);
        at += 4 + len;
    }
    // A record whose ledger id is not 12 digits (its first digit made an 'x').
    let malformed = |positions: &[usize]| {
        let mut bad = bytes[..bytes.len() - 41].to_vec();
        for &p in positions {
            bad[starts[p] + 2] = b'x';
        }
        Bundle::seal(bad)
    };
    let n = b.records.len();
    let mid = n / 2;
    for positions in [vec![mid - 1, mid], vec![mid - 1, mid, mid + 1, n - 1], vec![3, mid], vec![0, n - 1], vec![mid, n - 2, n - 1]] {
        let file = malformed(&positions);
        for _ in 0..5 {
            match Bundle::decode(&file) {
                Err(BundleFormatError::BadRecord { index, .. }) => assert_eq!(index, positions[0] as u64, "malformed at {positions:?}"),
                other => panic!("malformed at {positions:?}: {other:?}"),
            }
        }
    }
}

/// FORMAT.md §10 and §5: split-view evidence holding a checkpoint of size 0 is refused (the log
/// never signs one, and no consistency proof starts from the empty tree), whichever of the two
/// it is, rather than read as an unanswered proof or a fork.
#[test]
fn split_view_evidence_with_a_checkpoint_of_size_0_is_refused() {
    let s = sample();
    let (honest, _) = diverged(s, 100);
    let note = |size: u64, root: jifen_ledger::Hash| Checkpoint { origin: s.origin.clone(), size, root }.sign(&s.log_key).encode();
    let empty = note(0, jifen_ledger::merkle::empty_root());
    let other_empty = note(0, jifen_ledger::Hash::of(b"not the empty tree"));
    let real = note(150, honest.root(150).unwrap());
    let evidence = |older: &str, newer: &str| Evidence {
        log_key: s.log_key.verifier().to_string(),
        older: older.to_owned(),
        newer: newer.to_owned(),
        proof: honest.consistency_proof(1, 150).unwrap(),
    };
    for (older, newer, which) in [(&empty, &real, "older"), (&real, &empty, "newer"), (&empty, &other_empty, "older")] {
        let e = evidence(older, newer);
        assert_eq!(Evidence::parse(&e.encode()).unwrap(), e);
        assert_eq!(e.verify(), Err(EvidenceError::EmptyCheckpoint { which }), "{which}");
    }
    // The same evidence from size 1 is answered by the proof: consistent.
    assert_eq!(evidence(&note(1, honest.root(1).unwrap()), &real).verify(), Err(EvidenceError::Consistent));
}

/// FORMAT.md §11.3: the steps in their order. The proofs (step 3) come before the records; a
/// record's own failure (step 6) before the record count (step 7), over all the records
/// whatever their count; the roots (step 5) of the checkpoints the records reach even when the
/// bundle is short.
#[test]
fn a_bundle_is_refused_at_the_first_failing_step_of_section_11_3() {
    let s = sample();
    let orig = s.records().to_vec();
    let n = orig.len() as u64;
    let short = |k: usize| orig[..orig.len() - k].to_vec();
    // The last record present with a bit of its signature's S flipped: the chain holds (no
    // record follows it), its signature fails.
    let last_resigned = |mut records: Vec<Record>| {
        let r = records.pop().unwrap();
        let mut sigs = r.signatures().to_vec();
        sigs[0].signature[40] ^= 1;
        records.push(Record::new(r.ledger_id().clone(), r.seq(), *r.prev_hash(), r.recorded_at(), r.body().to_vec(), sigs).unwrap());
        records
    };
    // Given a truncated bundle whose first proof is damaged, the proof is named (step 3);
    let mut b = Bundle { records: short(3), ..full(s) };
    b.proofs[0].proof[0].0[0] ^= 1;
    assert!(matches!(verify_bundle(&b, &trust(s), BATCH, |_| {}), Err(BundleError::Inconsistent { .. })));
    // a truncated bundle whose last present record has a bad signature: that record (step 6),
    // not the truncation (step 7);
    let b = Bundle { records: last_resigned(short(3)), ..full(s) };
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::Record(VerifyError::BadSignature { seq, .. }) if seq == n - 4), "{e}");
    // a truncated bundle whose records are not those its checkpoints commit to: the fork (step 5);
    let (_, forked) = diverged(s, 100);
    let sizes = [n / 3, n / 2 + 1, n];
    assert!(sizes[0] < 100 && sizes[1] > 100);
    let b = checkpoints_of(s, &forked, &short(3), &sizes, 2);
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::Fork { from, size, .. } if (from, size) == (sizes[0], sizes[1])), "{e}");
    // records beyond the last checkpoint are verified too: one with a bad signature (step 6),
    let mut extra = orig.clone();
    extra.push(with(&orig[5], Some(n), None, false));
    let relinked_extra = |mut records: Vec<Record>| {
        let r = records.pop().unwrap();
        let prev = records.last().unwrap().hash();
        records.push(relinked(&r, None, Some(records.last().unwrap().recorded_at()), false, prev));
        records
    };
    let b = Bundle { records: last_resigned(relinked_extra(extra.clone())), ..full(s) };
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::Record(VerifyError::BadSignature { seq, .. }) if seq == n), "{e}");
    // a repeated one (a replay failure, step 6),
    let b = Bundle { records: relinked_extra(extra), ..full(s) };
    let e = verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::Record(VerifyError::NotReproduced { seq }) if seq == n), "{e}");
    // one that claims the seq of the record it repeats (a chain failure, step 6);
    let mut repeated = orig.clone();
    repeated.push(orig[5].clone());
    let b = Bundle { records: repeated, ..full(s) };
    assert_eq!(verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::Record(VerifyError::Gap { seq: 5, expected: n }));
    // and only a bundle whose records all verify is refused for its count (step 7).
    let b = Bundle { records: short(3), ..full(s) };
    assert_eq!(
        verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(),
        BundleError::Record(VerifyError::Truncated { size: n, have: n - 3 })
    );
    let b = Bundle { records: orig.clone(), ..bundle_of(s, &orig, &[n / 3, n - 1], 2) };
    assert_eq!(verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::RecordCount { size: n - 1, records: n });
    // A bundle built without any checkpoint is refused at step 2.
    let b = Bundle { checkpoints: vec![], proofs: vec![], ..full(s) };
    assert_eq!(verify_bundle(&b, &trust(s), BATCH, |_| {}).unwrap_err(), BundleError::NoCheckpoint);
}
