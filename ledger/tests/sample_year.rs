//! A generated village-year is admissible, verifies end to end, and is deterministic.

use jifen_ledger::sample::{generate, SampleConfig};
use jifen_ledger::verify::{check_chain, check_signatures, verify_ledger, SignatureMode};

#[test]
fn a_generated_year_verifies_and_replays_to_the_same_state() {
    let config = SampleConfig { seed: 7, households: Some(120), months: 12, scores_per_household: 3.0 };
    let sample = generate(&config).expect("the generator only submits admissible events");
    let records = sample.records();
    assert!(records.len() > 4000, "{} records", records.len());
    let checkpoint = sample.checkpoint();
    let state = verify_ledger(records, &checkpoint, SignatureMode::Batch(jifen_ledger::signature::BatchSeed([1; 32]))).expect("verifies");
    assert_eq!(state.head(), sample.writer.state.head());
    assert_eq!(state.balances().digest(), sample.writer.state.balances().digest());
    assert_eq!(state.settled_periods().count(), 12);
    check_signatures(records, SignatureMode::SingleSerial).expect("strict one by one agrees with batch");
    check_chain(records).expect("chain");
    // Held to a checkpoint of another origin (same tree), the ledger was opened elsewhere.
    let elsewhere = jifen_ledger::checkpoint::Checkpoint { origin: "other.example/village/150602101201".into(), ..checkpoint };
    assert_eq!(
        verify_ledger(records, &elsewhere, SignatureMode::Strict).unwrap_err(),
        jifen_ledger::verify::VerifyError::WrongOrigin { seq: 0, expected: elsewhere.origin.clone(), got: sample.origin.clone() }
    );
}

#[test]
fn generation_is_deterministic_from_the_seed() {
    let config = SampleConfig { seed: 3, households: Some(40), months: 2, scores_per_household: 2.0 };
    let a = generate(&config).unwrap();
    let b = generate(&config).unwrap();
    assert_eq!(a.records(), b.records());
    let c = generate(&SampleConfig { seed: 4, ..config }).unwrap();
    assert_ne!(a.writer.state.head(), c.writer.state.head());
}

/// A ledger checked page by page (as the server loads it) gives the same hashes, and the same
/// first error at the same seq, as when checked whole.
#[test]
fn checking_the_chain_in_pages_agrees_with_checking_it_whole() {
    use jifen_ledger::verify::{check_chain_from, ChainTip};
    let s = generate(&SampleConfig { seed: 8, households: Some(10), months: 1, scores_per_household: 1.0 }).unwrap();
    let records = s.records().to_vec();
    let paged = |rs: &[jifen_ledger::Record], page: usize| {
        let mut tip = ChainTip::default();
        let mut all = Vec::new();
        for chunk in rs.chunks(page) {
            let h = check_chain_from(&tip, chunk)?;
            tip = tip.after(chunk, &h);
            all.extend(h);
        }
        Ok::<_, jifen_ledger::verify::VerifyError>(all)
    };
    let mut cases = vec![records.clone()];
    let mut gap = records.clone();
    gap.remove(23);
    cases.push(gap);
    let mut swapped = records.clone();
    swapped.swap(30, 31);
    cases.push(swapped);
    let mut relinked = records.clone();
    let r = &records[40];
    relinked[40] = jifen_ledger::Record::new(
        r.ledger_id().clone(),
        r.seq(),
        records[38].hash(),
        r.recorded_at(),
        r.body().to_vec(),
        r.signatures().to_vec(),
    )
    .unwrap();
    cases.push(relinked);
    let mut earlier = records.clone();
    let r = &records[17];
    earlier[17] = jifen_ledger::Record::new(
        r.ledger_id().clone(),
        r.seq(),
        *r.prev_hash(),
        records[16].recorded_at() - 1,
        r.body().to_vec(),
        r.signatures().to_vec(),
    )
    .unwrap();
    cases.push(earlier);
    for case in &cases {
        for page in [1, 7, 16, 1000] {
            assert_eq!(paged(case, page), check_chain(case), "page size {page}");
        }
    }
}
