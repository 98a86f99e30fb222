//! Projections agree with the write-model's own figures and show the lifecycle faithfully.

use jifen_ledger::pb::{self, event_body::Payload};
use jifen_ledger::sample::{generate, open_village, SampleConfig};
use jifen_ledger::time::{Date, Period};
use jifen_projections::audit::RedFlag;
use jifen_projections::publicity::{quarterly_column, red_black_lists, EntryStatus};
use jifen_projections::Projections;

#[test]
fn a_generated_year_projects_consistently() {
    let sample = generate(&SampleConfig { seed: 21, households: Some(150), months: 12, scores_per_household: 3.0 }).unwrap();
    let p = Projections::from_records(sample.records()).unwrap();
    let state = &sample.writer.state;
    assert_eq!(p.state().balances().digest(), state.balances().digest());

    // Per-period scores add up to the book's totals for every household.
    for (h, b) in state.balances().iter() {
        let (mut basic, mut contribution, mut deducted, mut redeemed) = (0, 0, 0, 0);
        for period in p.balances.known_periods() {
            let f = p.balances.period(period, h);
            basic += f.basic;
            contribution += f.contribution;
            deducted += f.deducted;
            redeemed += f.redeemed - f.returned;
        }
        assert_eq!((basic, contribution, deducted, redeemed), (b.basic, b.contribution, b.deducted, b.redeemed), "household {h}");
    }

    // Every board is closed, every line final or void, decisions recorded.
    let boards: Vec<_> = p.publicity.boards().collect();
    assert_eq!(boards.len(), 12);
    let mut objections = 0;
    for b in &boards {
        assert!(b.closed);
        assert!(b.entries.iter().all(|e| matches!(e.status, EntryStatus::Final | EntryStatus::Void)));
        for o in &b.objections {
            objections += 1;
            assert!(o.outcome.is_some() && o.decided_at.unwrap() > o.filed_at);
            let lineage: Vec<&str> = p.audit.lineage(&o.entry_id).map(|a| a.kind.as_str()).collect();
            assert_eq!(&lineage[..3], ["ScoreRecorded", "ObjectionFiled", "ObjectionDecided"], "{lineage:?}");
        }
    }
    assert!(objections > 0);

    // 红黑榜 and the quarterly column are ordered.
    let march = Period::from_ym(2025, 3).unwrap();
    let (red, black) = red_black_lists(&p.balances, march, 10);
    assert_eq!(red.len(), 10);
    assert!(red.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(black.windows(2).all(|w| w[0].1 >= w[1].1));
    let q1 = quarterly_column(&p.balances, 2025, 1);
    assert!(q1.windows(2).all(|w| w[0].1 >= w[1].1));
    let h = &q1[0].0;
    let sum: i64 = (1..=3).map(|m| p.balances.period(Period::from_ym(2025, m).unwrap(), h).net()).sum();
    assert_eq!(sum, q1[0].1);

    // The supermarket ledger reconciles with the stock the write-model keeps.
    for (goods, g) in state.goods() {
        let received: i64 =
            p.supermarket.months().flat_map(|(_, m)| m.receipts.iter()).filter(|r| r.goods == goods).map(|r| r.quantity as i64).sum();
        let out: i64 = p.supermarket.months().map(|(_, m)| m.goods_out.get(goods).copied().unwrap_or(0)).sum();
        assert_eq!(received - out, g.stock as i64, "goods {goods}");
    }

    // The generator back-dates about 1% of scores and corrects a few outside objections.
    let flags = p.audit.red_flags(&p.balances);
    assert!(flags.iter().any(|f| matches!(f, RedFlag::BackDated { days, .. } if *days > 14)));
    assert!(flags.iter().any(|f| matches!(f, RedFlag::CorrectionWithoutObjection { .. })));
    assert!(flags.iter().all(|f| !f.describe().is_empty()));

    // Folding again gives the same views.
    let again = Projections::from_records(sample.records()).unwrap();
    assert_eq!(again.audit.red_flags(&again.balances), flags);
}

#[test]
fn a_board_follows_an_entry_through_objection_correction_and_close() {
    let hs: Vec<(String, Vec<String>)> = (1..=4).map(|i| (format!("H000{i}"), vec![format!("H000{i}-01")])).collect();
    let (cast, mut w) = open_village(5, &hs, 3).unwrap();
    let today = Date::of_micros(w.now).to_string();
    let score = |id: &str, h: &str, pts: i64| {
        Payload::ScoreRecorded(pb::ScoreRecorded {
            entry_id: id.into(),
            household_id: h.into(),
            member_id: String::new(),
            item_code: "B01".into(),
            rulebook_version: 1,
            points: pts,
            occurred_on: today.clone(),
            source: pb::ScoreSource::Inspection as i32,
            evidence_hashes: vec![],
            claim_id: String::new(),
        })
    };
    let p3 = &cast.panel[2];
    w.submit(p3, &[], score("E1", "H0004", 5)).unwrap();
    w.submit(p3, &[], score("E2", "H0002", 3)).unwrap();
    let start = w.now;
    w.submit(
        &cast.admin,
        &[],
        Payload::PublicationOpened(pb::PublicationOpened {
            publication_id: "P1".into(),
            period: "2025-01".into(),
            entry_ids: vec!["E1".into(), "E2".into()],
            window_start: start,
            window_end: start + 7 * 86_400_000_000,
        }),
    )
    .unwrap();
    w.submit(
        &cast.villagers[0],
        &[],
        Payload::ObjectionFiled(pb::ObjectionFiled {
            objection_id: "O1".into(),
            publication_id: "P1".into(),
            entry_id: "E1".into(),
            objector: "H0001".into(),
            reason: "打分偏高".into(),
            evidence_hash: vec![],
        }),
    )
    .unwrap();
    let mid = Projections::from_records(&w.records).unwrap();
    let board = mid.publicity.board("P1").unwrap();
    assert_eq!(board.entries.iter().map(|e| e.status).collect::<Vec<_>>(), [EntryStatus::Objected, EntryStatus::Published]);
    w.submit(
        &cast.panel[1],
        &[&cast.supervisors[0]],
        Payload::ObjectionDecided(pb::ObjectionDecided {
            objection_id: "O1".into(),
            outcome: pb::ObjectionOutcome::Upheld as i32,
            finding: "核实后应为 2 分".into(),
            correction: Some(pb::Correction { change: Some(pb::correction::Change::NewPoints(2)) }),
        }),
    )
    .unwrap();
    let decided = Projections::from_records(&w.records).unwrap();
    let board = decided.publicity.board("P1").unwrap();
    assert_eq!((board.entries[0].status, board.entries[0].scored_points, board.entries[0].points), (EntryStatus::Upheld, 5, 2));
    assert_eq!(board.objections[0].correction.as_deref(), Some("改为 2"));
    w.advance_to(start + 7 * 86_400_000_000);
    w.submit(&cast.admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P1".into() })).unwrap();
    let closed = Projections::from_records(&w.records).unwrap();
    let board = closed.publicity.board("P1").unwrap();
    assert!(board.closed && board.entries.iter().all(|e| e.status == EntryStatus::Final));
    let jan = Period::from_ym(2025, 1).unwrap();
    assert_eq!(closed.balances.period(jan, "H0004").basic, 2);
    assert_eq!(closed.state().balances().available("H0004"), 2);
    let signers: Vec<Vec<String>> = closed.audit.lineage("E1").map(|a| a.signers.clone()).collect();
    let mut decision_signers = signers[2].clone();
    decision_signers.sort();
    assert_eq!(decision_signers, [cast.panel[1].id.clone(), cast.supervisors[0].id.clone()]);
    assert_eq!(closed.audit.by_household("H0004").count(), 4, "registered, scored, objected, decided");
}

#[test]
fn a_reversal_in_a_later_month_is_a_return_of_that_month_not_negative_spending() {
    // Given H0004 with 5 final points in January who spends 3 in January,
    let (cast, mut w) = village_with_points();
    let line = pb::RedemptionLine { goods_code: "G-SOAP".into(), quantity: 1 };
    let r = pb::RedemptionRecorded { redemption_id: "R1".into(), household_id: "H0004".into(), lines: vec![line], total_points: 3 };
    w.submit(&cast.keeper, &[], Payload::RedemptionRecorded(r)).unwrap();
    // when the redemption is reversed in February,
    w.advance_to(Date::parse("d", "2025-02-03").unwrap().start_micros());
    let rev = pb::RedemptionReversed { redemption_id: "R1".into(), reason: "退货".into() };
    w.submit(&cast.keeper, &[], Payload::RedemptionReversed(rev)).unwrap();
    let p = Projections::from_records(&w.records).unwrap();
    // then January keeps its spending, February shows a return, and nothing is negative.
    let (jan, feb) = (Period::from_ym(2025, 1).unwrap(), Period::from_ym(2025, 2).unwrap());
    let (j, f) = (p.balances.period(jan, "H0004"), p.balances.period(feb, "H0004"));
    assert_eq!((j.redeemed, j.returned), (3, 0));
    assert_eq!((f.redeemed, f.returned), (0, 3));
    assert_eq!(p.state().balances().get("H0004").unwrap().redeemed, j.redeemed + f.redeemed - j.returned - f.returned);
}

/// A fixture village (four households of one member each … H0004 with two) whose H0004 has 5
/// final January points; returns the cast and writer.
fn village_with_points() -> (jifen_ledger::sample::Cast, jifen_ledger::sample::Writer) {
    let mut hs: Vec<(String, Vec<String>)> = (1..=4).map(|i| (format!("H000{i}"), vec![format!("H000{i}-01")])).collect();
    hs[3].1.push("H0004-02".into());
    let (cast, mut w) = open_village(5, &hs, 3).unwrap();
    let today = Date::of_micros(w.now).to_string();
    let score = pb::ScoreRecorded {
        entry_id: "E1".into(),
        household_id: "H0004".into(),
        member_id: String::new(),
        item_code: "B01".into(),
        rulebook_version: 1,
        points: 5,
        occurred_on: today,
        source: pb::ScoreSource::Inspection as i32,
        evidence_hashes: vec![],
        claim_id: String::new(),
    };
    w.submit(&cast.panel[2], &[], Payload::ScoreRecorded(score)).unwrap();
    let start = w.now;
    let publication = pb::PublicationOpened {
        publication_id: "P1".into(),
        period: "2025-01".into(),
        entry_ids: vec!["E1".into()],
        window_start: start,
        window_end: start + 7 * 86_400_000_000,
    };
    w.submit(&cast.admin, &[], Payload::PublicationOpened(publication)).unwrap();
    w.advance_to(start + 7 * 86_400_000_000);
    w.submit(&cast.admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P1".into() })).unwrap();
    (cast, w)
}

#[test]
fn a_households_audit_trail_shows_its_splits_merges_and_the_reversals_credited_to_it() {
    // Given H0004 redeeming, splitting off H0005, then merging into H0002, and its redemption
    // reversed after the merge (credited to H0002),
    let (cast, mut w) = village_with_points();
    let line = pb::RedemptionLine { goods_code: "G-SOAP".into(), quantity: 1 };
    let r = pb::RedemptionRecorded { redemption_id: "R1".into(), household_id: "H0004".into(), lines: vec![line], total_points: 3 };
    w.submit(&cast.keeper, &[], Payload::RedemptionRecorded(r)).unwrap();
    let split = pb::HouseholdSplit {
        from_household_id: "H0004".into(),
        new_household_id: "H0005".into(),
        group: "G01".into(),
        residency: pb::Residency::Registered as i32,
        member_ids: vec!["H0004-02".into()],
        points_transferred: 1,
    };
    w.submit(&cast.admin, &[], Payload::HouseholdSplit(split)).unwrap();
    let merge = pb::HouseholdMerged { from_household_id: "H0004".into(), into_household_id: "H0002".into() };
    w.submit(&cast.admin, &[], Payload::HouseholdMerged(merge)).unwrap();
    let rev = pb::RedemptionReversed { redemption_id: "R1".into(), reason: "退货".into() };
    w.submit(&cast.keeper, &[], Payload::RedemptionReversed(rev)).unwrap();
    // when the audit trail is read by household,
    let p = Projections::from_records(&w.records).unwrap();
    let kinds = |h: &str| p.audit.by_household(h).map(|a| a.kind.clone()).collect::<Vec<_>>();
    // then the new household shows the split that made it, the absorbing household the merge
    // and the reversal credited to it, and the redeemer every one of its acts.
    assert_eq!(kinds("H0005"), ["HouseholdSplit"]);
    assert_eq!(kinds("H0002"), ["HouseholdRegistered", "HouseholdMerged", "RedemptionReversed"]);
    assert_eq!(
        kinds("H0004"),
        ["HouseholdRegistered", "ScoreRecorded", "RedemptionRecorded", "HouseholdSplit", "HouseholdMerged", "RedemptionReversed"]
    );
    let merge_act = p.audit.by_household("H0002").nth(1).unwrap();
    assert_eq!((merge_act.household(), merge_act.households.clone()), (Some("H0004"), vec!["H0004".to_owned(), "H0002".to_owned()]));
}

#[test]
fn the_supermarket_month_shows_each_goods_stock_at_month_end_price_then_and_its_flows() {
    // Given H0004 (5 points) redeeming soap at 3 points in January, the price cut to 2, a second
    // soap at 2; in February soap received and the first redemption reversed; nothing in March;
    let (cast, mut w) = village_with_points();
    let redeem = |id: &str, total: i64| {
        let line = pb::RedemptionLine { goods_code: "G-SOAP".into(), quantity: 1 };
        Payload::RedemptionRecorded(pb::RedemptionRecorded {
            redemption_id: id.into(),
            household_id: "H0004".into(),
            lines: vec![line],
            total_points: total,
        })
    };
    w.submit(&cast.keeper, &[], redeem("R1", 3)).unwrap();
    let price = pb::Price { goods_code: "G-SOAP".into(), points: 2 };
    w.submit(&cast.keeper, &[], Payload::PricesSet(pb::PricesSet { prices: vec![price] })).unwrap();
    w.submit(&cast.keeper, &[], redeem("R2", 2)).unwrap();
    w.advance_to(Date::parse("d", "2025-02-03").unwrap().start_micros());
    let receipt = jifen_ledger::sample::stock("R-2025-02", "G-SOAP", "", 10, pb::StockSource::Donation, "东胜区妇联");
    w.submit(&cast.keeper, &[], Payload::StockReceived(receipt)).unwrap();
    let rev = pb::RedemptionReversed { redemption_id: "R1".into(), reason: "退货".into() };
    w.submit(&cast.keeper, &[], Payload::RedemptionReversed(rev)).unwrap();
    let p = Projections::from_records(&w.records).unwrap();
    let month = |y, m| p.supermarket.month_view(Period::from_ym(y, m).unwrap());
    // when a month is viewed, then each goods shows its stock at the month's end, the price in
    // force then, and the month's own movements;
    let jan = month(2025, 1);
    let soap = &jan.goods["G-SOAP"];
    assert_eq!((soap.stock, soap.price, soap.out, soap.returned, soap.points, soap.points_returned), (198, Some(2), 2, 0, 5, 0));
    assert_eq!(soap.name, "洗衣皂");
    let oil = &jan.goods["G-OIL"];
    assert_eq!((oil.stock, oil.price, oil.out, oil.received), (40, Some(40), 0, 0), "goods untouched in the month still show");
    let feb = month(2025, 2);
    let soap = &feb.goods["G-SOAP"];
    assert_eq!(
        (soap.stock, soap.price, soap.received, soap.out, soap.returned, soap.points, soap.points_returned),
        (209, Some(2), 10, 0, 1, 0, 3)
    );
    // a month without activity shows the stock and prices it ended with, and no movement;
    let mar = month(2025, 3);
    let soap = &mar.goods["G-SOAP"];
    assert_eq!((soap.stock, soap.price, soap.received, soap.out, soap.returned), (209, Some(2), 0, 0, 0));
    assert_eq!((mar.exchanges, mar.receipts.len()), (0, 0));
    // The month's points: spent in January, given back in February, never negative.
    assert_eq!((jan.points, jan.points_returned, feb.points, feb.points_returned, feb.reversals), (5, 0, 0, 3, 1));
    // before the supermarket had anything, nothing.
    assert!(month(2024, 11).goods.is_empty());
    // The month's stock is the write-model's at the end of the last month with activity.
    for (code, g) in p.state().goods() {
        assert_eq!(mar.goods[code].stock, g.stock, "{code}");
    }
}

#[test]
fn the_views_never_panic_on_any_record_sequence() {
    use jifen_ledger::record::{canonical_signatures, Record};
    use jifen_ledger::village::Accepted;
    // Given a generated ledger and records no write-model would accept (an id reused with
    // fewer entries, references to nothing, extreme numbers),
    let sample = generate(&SampleConfig { seed: 3, households: Some(12), months: 2, scores_per_household: 2.0 }).unwrap();
    let mut records = sample.records().to_vec();
    let code = records[0].ledger_id().clone();
    // (An entry of a settled month: the write-model has forgotten it, the records have not.)
    let first_entry = records
        .iter()
        .filter_map(|r| match Accepted::from_verified_record(r.clone()).ok()?.payload() {
            Payload::ScoreRecorded(s) => Some(s.entry_id.clone()),
            _ => None,
        })
        .min()
        .unwrap();
    let hostile = vec![
        Payload::PublicationOpened(pb::PublicationOpened {
            publication_id: "P-2025-01".into(),
            period: "2025-01".into(),
            ..Default::default()
        }),
        Payload::ObjectionFiled(pb::ObjectionFiled {
            objection_id: "OX".into(),
            publication_id: "P-2025-01".into(),
            entry_id: first_entry.clone(),
            ..Default::default()
        }),
        Payload::ObjectionDecided(pb::ObjectionDecided { objection_id: "OX".into(), outcome: 1, ..Default::default() }),
        Payload::ScoreCorrected(pb::ScoreCorrected { entry_id: "nope".into(), ..Default::default() }),
        Payload::PublicationClosed(pb::PublicationClosed { publication_id: "nope".into() }),
        Payload::ScoreRecorded(pb::ScoreRecorded { entry_id: "X".into(), occurred_on: "never".into(), ..Default::default() }),
        Payload::RedemptionRecorded(pb::RedemptionRecorded {
            redemption_id: "RX".into(),
            household_id: "H0001".into(),
            lines: vec![pb::RedemptionLine { goods_code: "G-OIL".into(), quantity: u32::MAX }],
            total_points: i64::MAX,
        }),
        Payload::RedemptionRecorded(pb::RedemptionRecorded { redemption_id: "RY".into(), total_points: i64::MAX, ..Default::default() }),
        Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "RX".into(), reason: String::new() }),
        Payload::StockReceived(jifen_ledger::sample::stock("RZ", "G-NEW", "", u32::MAX, pb::StockSource::Subsidy, "")),
        Payload::ClaimDeclined(pb::ClaimDeclined { claim_id: "nope".into(), reason: String::new() }),
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0001".into(), into_household_id: "H0002".into() }),
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0002".into(), into_household_id: "H0001".into() }),
        Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "RX".into(), reason: String::new() }),
    ];
    let now = sample.writer.now;
    for (i, p) in hostile.into_iter().enumerate() {
        let (body, sigs) = jifen_ledger::sample::sign(&sample.writer.ledger, &sample.cast.admin, &[], now, &format!("h{i}"), p);
        let seq = records.len() as u64;
        records.push(Record::new(code.clone(), seq, jifen_ledger::Hash([0; 32]), now, body, canonical_signatures(sigs).unwrap()).unwrap());
    }
    // when the views fold them in order, reversed and shuffled, then nothing panics.
    Projections::from_records(&records).unwrap();
    Projections::from_records(records.iter().rev()).unwrap();
    let mut x: u64 = 88172645463325252;
    for _ in 0..5 {
        let mut shuffled = records.clone();
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let p = Projections::from_records(&shuffled).unwrap();
        let _ = p.audit.red_flags(&p.balances);
        let _ = p.supermarket.month_view(Period::from_ym(2025, 2).unwrap());
        let _ = quarterly_column(&p.balances, 2025, 1);
    }
    let _ = Accepted::from_verified_record(records[0].clone()).unwrap();
}

/// The projections as bytes (the state and views as a snapshot serialises them) and the acts
/// with each actor's, household's and entry's index, which the snapshot leaves out.
fn fingerprint(p: &Projections) -> (Vec<u8>, Vec<u8>, Vec<jifen_projections::audit::Act>, Vec<Vec<u64>>) {
    let acts = p.audit.acts().to_vec();
    let mut keys: Vec<String> = acts.iter().flat_map(|a| a.signers.iter().chain(&a.households).chain(&a.entry).cloned()).collect();
    keys.sort();
    keys.dedup();
    let seqs = |it: &mut dyn Iterator<Item = &jifen_projections::audit::Act>| it.map(|a| a.seq).collect::<Vec<u64>>();
    let index = keys
        .iter()
        .flat_map(|k| [seqs(&mut p.audit.by_actor(k)), seqs(&mut p.audit.by_household(k)), seqs(&mut p.audit.lineage(k))])
        .collect();
    (postcard::to_allocvec(p.state()).unwrap(), postcard::to_allocvec(&p.views).unwrap(), acts, index)
}

#[test]
fn the_pipelined_replay_folds_exactly_as_the_serial_fold() {
    use jifen_ledger::record::Record;
    use jifen_ledger::village::Accepted;
    use jifen_projections::replay::{replay_with, CHUNK};
    // Given a generated year of several chunks, its last one short,
    let sample = generate(&SampleConfig { seed: 21, households: Some(150), months: 12, scores_per_household: 3.0 }).unwrap();
    let records = sample.records();
    assert!(records.len() > 3 * CHUNK && !records.len().is_multiple_of(CHUNK), "{} records", records.len());
    // when the pipeline folds it, or any prefix (empty, one record, whole chunks, a chunk and
    // one), then the state, the views, the acts and their index are the serial fold's,
    for n in [records.len(), 0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK] {
        let piped = Projections::from_records(&records[..n]).unwrap();
        assert!(fingerprint(&piped) == fingerprint(&Projections::from_records_serially(&records[..n]).unwrap()), "{n} records");
    }
    // and the records in another order (which no write-model would accept) too,
    let shuffled: Vec<Record> = records.iter().rev().take(2 * CHUNK + 7).chain(records.iter().take(9)).cloned().collect();
    let piped = Projections::from_records(&shuffled).unwrap();
    assert!(fingerprint(&piped) == fingerprint(&Projections::from_records_serially(&shuffled).unwrap()), "out of order");

    // and each event is shown, in order, with the state before it.
    let mut shown = Vec::new();
    replay_with(records.iter().cloned(), |a, state| shown.push((a.record().seq(), state.next_seq()))).unwrap();
    assert_eq!(shown, (0..records.len() as u64).map(|s| (s, s)).collect::<Vec<_>>());

    // Given a record whose body does not decode in the third chunk,
    let bad = 2 * CHUNK + 5;
    let r = &records[bad];
    let mut broken = records.to_vec();
    broken[bad] =
        Record::new(r.ledger_id().clone(), r.seq(), *r.prev_hash(), r.recorded_at(), vec![0xff; 9], r.signatures().to_vec()).unwrap();
    // when the pipeline folds the records, then it fails as the serial fold fails, and no
    // event from the bad one on reaches the state.
    let serial = Projections::from_records_serially(&broken).err().expect("the serial fold refuses it");
    let mut seen = 0;
    let piped = replay_with(broken.iter().cloned(), |_, _| seen += 1).err().expect("the pipeline refuses it");
    assert_eq!(piped.to_string(), serial.to_string());
    assert_eq!(piped.to_string(), Accepted::from_verified_record(broken[bad].clone()).err().unwrap().to_string());
    assert!(seen <= bad, "{seen} events shown, the bad one is {bad}");
    assert_eq!(seen % CHUNK, 0, "whole chunks before the bad one's");
}
