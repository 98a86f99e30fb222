//! Supervision and audit end to end: supervisors cosign with `jifen cosign` (2-of-3 quorum), a
//! split view leaves evidence that verifies on its own, a year bundle is exported, verified
//! and replayed offline, and tampering with stored rows is pinpointed by VerifyLedger.

mod common;
use common::*;

use jifen::api::audit_service_client::AuditServiceClient;
use jifen::api::query_service_client::QueryServiceClient;
use jifen::api::{self};
use jifen::auth::method;
use jifen::server::villages::LogKey;
use jifen_ledger::bundle::Bundle;
use jifen_ledger::record::Record;
use jifen_ledger::sample::{ActorKey, Sample};
use std::path::{Path, PathBuf};
use std::process::Output;

fn log_key(sample: &Sample) -> String {
    LogKey::from_seed(LOG_SEED).signer(&sample.origin).verifier().to_string()
}

fn key_file(dir: &Path, a: &ActorKey) -> PathBuf {
    let p = dir.join(format!("{}.key", a.id));
    std::fs::write(&p, jifen_ledger::hex(&a.key.to_bytes())).unwrap();
    p
}

async fn jifen(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_jifen")).args(args).output().unwrap()).await.unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `jifen cosign` by `who`, with its own state file in `dir`.
fn cosign_args(server: &Server, sample: &Sample, dir: &Path, who: &ActorKey) -> Vec<String> {
    let mut args: Vec<String> =
        vec!["cosign".into(), "--key".into(), key_file(dir, who).display().to_string(), "--actor".into(), who.id.clone()];
    args.extend(["--server".into(), format!("http://{}", server.addr), "--village".into(), sample.writer.ledger.clone()]);
    args.extend(["--log-key".into(), log_key(sample), "--state".into(), dir.join(format!("{}.state.json", who.id)).display().to_string()]);
    args
}

async fn wait_checkpoint(server: &mut Server, ledger: &str, size: u64) -> api::Checkpoint {
    server.wait_checkpoint(ledger, size).await.unwrap()
}

async fn superuser(db: &Db) -> tokio_postgres::Client {
    db.superuser().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_witness_and_an_auditor_verifies_and_replays_the_year_offline() {
    let db = Db::start().await;
    let sample = small_year(21, 3);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let n = records.len() as u64;
    let dir = tempfile::tempdir().unwrap();
    let k = 150usize;
    for r in &records[..k] {
        server.replay(r).await;
    }
    wait_checkpoint(&mut server, &ledger, k as u64).await;

    // A 2-of-3 round: the first cosignature is not enough, the second reaches the quorum.
    let sups = &sample.cast.supervisors;
    let first = jifen(cosign_args(&server, &sample, dir.path(), &sups[0])).await;
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("1 cosignature(s) — quorum not yet reached"), "{}", text(&first));
    let second = jifen(cosign_args(&server, &sample, dir.path(), &sups[1])).await;
    assert!(text(&second).contains("2 cosignature(s) — witnessed"), "{}", text(&second));
    let cp = wait_checkpoint(&mut server, &ledger, k as u64).await;
    assert!(cp.witnessed && cp.cosignatures == 2 && cp.tree_size == k as u64);
    let third = jifen(cosign_args(&server, &sample, dir.path(), &sups[2])).await;
    assert!(text(&third).contains("3 cosignature(s) — witnessed"), "{}", text(&third));
    // Only supervisors witness.
    let villager = jifen(cosign_args(&server, &sample, dir.path(), &sample.cast.villagers[0])).await;
    assert!(!villager.status.success() && text(&villager).contains("not an enrolled supervisor"), "{}", text(&villager));

    // The rest of the quarter; two supervisors witness again, each checking consistency with
    // the checkpoint they cosigned before.
    for r in &records[k..] {
        server.replay(r).await;
    }
    wait_checkpoint(&mut server, &ledger, n).await;
    for s in &sups[..2] {
        let again = jifen(cosign_args(&server, &sample, dir.path(), s)).await;
        assert!(again.status.success(), "{}", text(&again));
        assert!(text(&again).contains(&format!("extends the last cosigned one ({k})")), "{}", text(&again));
    }

    // The auditor exports 2025 (tokens are signed with the real clock).
    server.clock.advance_to(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64);
    let auditor = key_file(dir.path(), &sample.cast.auditor);
    let bundle = dir.path().join("v-2025.jfb");
    let export = |year: &str, out: &Path, key: &Path| -> Vec<String> {
        ["export", "--server", &format!("http://{}", server.addr), "--village", &ledger, "--year", year, "--out"]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string(), "--key".into(), key.display().to_string()])
            .collect()
    };
    let out = jifen(export("2025", &bundle, &auditor)).await;
    assert!(out.status.success(), "{}", text(&out));
    let decoded = Bundle::decode(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(decoded.records.len() as u64, n);
    assert_eq!(decoded.checkpoints.len(), 2, "the two witnessed checkpoints");
    // No witnessed checkpoint of 2024; a villager may not export.
    let none = jifen(export("2024", &dir.path().join("v-2024.jfb"), &auditor)).await;
    assert!(!none.status.success() && text(&none).contains("no checkpoint of 2024"), "{}", text(&none));
    let villager_key = key_file(dir.path(), &sample.cast.villagers[0]);
    let refused = jifen(export("2025", &dir.path().join("x.jfb"), &villager_key)).await;
    assert!(!refused.status.success() && text(&refused).contains("not a supervisor, township or auditor"), "{}", text(&refused));

    // Offline verification, with the keys the auditor trusts.
    let lk = log_key(&sample);
    let verify = jifen(vec!["verify".into(), "--bundle".into(), bundle.display().to_string(), "--log-key".into(), lk.clone()]).await;
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains(&format!("{n} records")) && text(&verify).contains("witnessed by 2 of 2"), "{}", text(&verify));

    // A bundle with one body bit flipped names that record.
    let mut bad = decoded.clone();
    let r = &bad.records[77];
    let mut body = r.body().to_vec();
    body[3] ^= 0x10;
    bad.records[77] = Record::new(r.ledger_id().clone(), 77, *r.prev_hash(), r.recorded_at(), body, r.signatures().to_vec()).unwrap();
    let bad_file = dir.path().join("bad.jfb");
    std::fs::write(&bad_file, bad.encode()).unwrap();
    let refused = jifen(vec!["verify".into(), "--bundle".into(), bad_file.display().to_string(), "--log-key".into(), lk.clone()]).await;
    assert!(!refused.status.success() && text(&refused).contains("first bad record seq 77"), "{}", text(&refused));

    // The replay's balances are the server's.
    let replay = jifen(vec![
        "replay".into(),
        "--bundle".into(),
        bundle.display().to_string(),
        "--year".into(),
        "2025".into(),
        "--json".into(),
        "--log-key".into(),
        lk.clone(),
    ])
    .await;
    assert!(replay.status.success(), "{}", text(&replay));
    let json: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut q = QueryServiceClient::new(ch.clone());
    let served = q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap().into_inner();
    let replayed = json["balances"].as_array().unwrap();
    assert_eq!(replayed.len(), served.balances.len());
    for b in &served.balances {
        let r = replayed.iter().find(|x| x["household"] == b.household_id.as_str()).unwrap();
        assert_eq!(
            (r["available"].as_i64(), r["ever_earned"].as_i64(), r["redeemed"].as_i64()),
            (Some(b.available), Some(b.ever_earned), Some(b.redeemed)),
            "{}",
            b.household_id
        );
    }
    let settlements = json["settlements"].as_array().unwrap();
    assert_eq!(settlements.len(), 3);
    assert!(settlements.iter().all(|s| s["matches_replay"] == true));
    assert!(!json["publications"].as_array().unwrap().is_empty());
    // As of the end of January: only January's settlement.
    let jan = jifen(vec![
        "replay".into(),
        "--bundle".into(),
        bundle.display().to_string(),
        "--year".into(),
        "2025".into(),
        "--as-of".into(),
        "2025-02-28".into(),
    ])
    .await;
    assert!(jan.status.success(), "{}", text(&jan));
    assert!(text(&jan).contains("截至 2025-02-28") && text(&jan).contains("一致 ✓"), "{}", text(&jan));
    // ExportBundle without a token is refused.
    let mut audit = AuditServiceClient::new(ch);
    let e = audit.export_bundle(api::ExportBundleRequest { ledger_id: ledger.clone(), year: 2025 }).await.unwrap_err();
    assert_status(e, tonic::Code::Unauthenticated, "TOKEN_MISSING");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_rolls_back_and_appends_differently_is_caught_with_evidence() {
    let db = Db::start().await;
    let sample = small_year(22, 3);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let dir = tempfile::tempdir().unwrap();
    for r in &records[..150] {
        server.replay(r).await;
    }
    wait_checkpoint(&mut server, &ledger, 150).await;
    let sup = &sample.cast.supervisors[0];
    let ok = jifen(cosign_args(&server, &sample, dir.path(), sup)).await;
    assert!(ok.status.success(), "{}", text(&ok));
    server.shutdown().await;

    // The operator rolls the database back to 140 records, behind the triggers' back, and
    // drops the read model that would give it away (the next load builds it from the records).
    let owner = superuser(&db).await;
    drop_read_model(&owner, &ledger).await;
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             DELETE FROM cosignatures WHERE ledger_id = '{ledger}' AND tree_size > 140;
             DELETE FROM checkpoints WHERE ledger_id = '{ledger}' AND tree_size > 140;
             DELETE FROM records WHERE ledger_id = '{ledger}' AND seq >= 140;"
        ))
        .await
        .unwrap();
    // …and appends again, differently: record 140 a microsecond later, then more.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(records[140].recorded_at() + 1);
    for r in &records[140..200] {
        server.replay(r).await;
    }
    let forked = wait_checkpoint(&mut server, &ledger, 200).await;
    assert_eq!(forked.tree_size, 200);

    let refused = jifen(cosign_args(&server, &sample, dir.path(), sup)).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("split view"), "{}", text(&refused));
    let evidence = dir.path().join(format!("split-view-{ledger}-150-200.evidence"));
    assert!(evidence.exists(), "{}", text(&refused));
    // The evidence stands on its own: a third party needs only the file.
    let check = jifen(vec!["verify".into(), "--evidence".into(), evidence.display().to_string()]).await;
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("EVIDENCE HOLDS") && text(&check).contains("does not contain the tree of 150"), "{}", text(&check));
    // The state file still holds the honest checkpoint: nothing was cosigned.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{}.state.json", sup.id))).unwrap()).unwrap();
    let held = state["villages"][ledger.as_str()]["checkpoint"].as_str().unwrap().to_owned();
    assert!(held.contains("\n150\n"));
    // The server's own audit, given the checkpoint the supervisor holds, fails too.
    let mut audit = AuditServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap(),
    );
    let req = api::VerifyLedgerRequest { ledger_id: ledger.clone(), checkpoint_note: held };
    let res = audit.verify_ledger(server.auth(req, method::VERIFY_LEDGER, &ledger, &sample.cast.auditor)).await.unwrap().into_inner();
    assert!(!res.ok, "{}", res.reason);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ledger_names_the_first_bad_row_for_each_kind_of_tampering() {
    let db = Db::start().await;
    let sample = small_year(23, 1);
    let mut server = Server::start(&db, &sample).await;
    let ledger = sample.writer.ledger.clone();
    for r in sample.records() {
        server.replay(r).await;
    }
    let n = sample.records().len() as u64;
    let witnessed = wait_checkpoint(&mut server, &ledger, n).await;
    let owner = superuser(&db).await;
    owner
        .batch_execute(
            "CREATE TABLE saved_records AS SELECT * FROM records;
             CREATE TABLE saved_checkpoints AS SELECT * FROM checkpoints;",
        )
        .await
        .unwrap();
    let mut audit = AuditServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap(),
    );
    let l = ledger.clone();
    let tamper_cases: Vec<(&str, String, u64)> = vec![
        ("edited body", format!("UPDATE records SET body = set_byte(body, 2, get_byte(body, 2) # 4) WHERE ledger_id = '{l}' AND seq = 40"), 40),
        ("edited recorded_at", format!("UPDATE records SET recorded_at = recorded_at + 1 WHERE ledger_id = '{l}' AND seq = 40"), 40),
        ("edited prev_hash", format!("UPDATE records SET prev_hash = set_byte(prev_hash, 0, get_byte(prev_hash, 0) # 1) WHERE ledger_id = '{l}' AND seq = 41"), 41),
        (
            "signatures no longer a valid set (a signer twice)",
            format!("UPDATE records SET signatures = signatures || signatures WHERE ledger_id = '{l}' AND seq = 40"),
            40,
        ),
        ("deleted", format!("DELETE FROM records WHERE ledger_id = '{l}' AND seq = 40"), 40),
        (
            "reordered",
            format!(
                "UPDATE records SET seq = 1000000 WHERE ledger_id = '{l}' AND seq = 40;
                 UPDATE records SET seq = 40 WHERE ledger_id = '{l}' AND seq = 41;
                 UPDATE records SET seq = 41 WHERE ledger_id = '{l}' AND seq = 1000000;"
            ),
            40,
        ),
        (
            "inserted",
            format!(
                "UPDATE records SET seq = seq + 1000000 WHERE ledger_id = '{l}' AND seq >= 40;
                 UPDATE records SET seq = seq - 999999 WHERE ledger_id = '{l}' AND seq >= 1000000;
                 INSERT INTO records (ledger_id, seq, prev_hash, recorded_at, body, signatures, record_hash)
                   SELECT ledger_id, 40, record_hash, recorded_at, body, signatures, record_hash FROM records WHERE ledger_id = '{l}' AND seq = 39;"
            ),
            40,
        ),
        ("truncated", format!("DELETE FROM records WHERE ledger_id = '{l}' AND seq >= {}", n - 5), n - 5),
    ];
    let verify = |server: &Server, note: String| {
        let req = api::VerifyLedgerRequest { ledger_id: ledger.clone(), checkpoint_note: note };
        server.auth(req, method::VERIFY_LEDGER, &ledger, &sample.cast.auditor)
    };
    let clean = audit.verify_ledger(verify(&server, String::new())).await.unwrap().into_inner();
    assert!(clean.ok, "{}", clean.reason);
    for (what, sql, want) in tamper_cases {
        owner.batch_execute(&format!("SET session_replication_role = replica; {sql}")).await.unwrap();
        let res = audit.verify_ledger(verify(&server, String::new())).await.unwrap().into_inner();
        assert!(!res.ok, "{what}: not detected");
        assert_eq!((res.has_bad_seq, res.first_bad_seq), (true, want), "{what}: {}", res.reason);
        restore_saved_records(&owner, &l).await;
    }
    // A truncation that also removes the stored checkpoints covering the lost tail is still
    // given away by the read model, which still reflects the whole tree…
    let cut = n - 5;
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             DELETE FROM records WHERE ledger_id = '{l}' AND seq >= {cut};
             DELETE FROM cosignatures WHERE ledger_id = '{l}' AND tree_size > {cut};
             DELETE FROM checkpoints WHERE ledger_id = '{l}' AND tree_size > {cut};"
        ))
        .await
        .unwrap();
    let head = audit.verify_ledger(verify(&server, String::new())).await.unwrap().into_inner();
    assert!(
        !head.ok && head.reason.contains(&format!("read model: it reflects a tree of {n} records, but {cut} are stored")),
        "{}",
        head.reason
    );
    // …and, with the read model removed as well (the next load builds it from what is left),
    // the stored rows pass every check: only the witnessed checkpoint a supervisor holds
    // catches it.
    drop_read_model(&owner, &l).await;
    let blind = audit.verify_ledger(verify(&server, String::new())).await.unwrap().into_inner();
    assert!(blind.ok, "{}", blind.reason);
    let caught = audit.verify_ledger(verify(&server, witnessed.note.clone())).await.unwrap().into_inner();
    assert!(!caught.ok);
    assert_eq!((caught.has_bad_seq, caught.first_bad_seq), (true, n - 5), "{}", caught.reason);
    // A checkpoint the log did not sign is refused as input.
    let e = audit.verify_ledger(verify(&server, witnessed.note.replace(&format!("\n{n}\n"), "\n1\n"))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    server.shutdown().await;
}

/// Under annual expiry, December settled as the first record of the new year carries the
/// balances after the expiry; `jifen replay` checks it against the same figures (it took
/// them before the expiry, and failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_checks_a_settlement_that_opens_a_new_year_after_its_expiry() {
    use jifen_ledger::bundle::witness_key_name;
    use jifen_ledger::checkpoint::Checkpoint;
    use jifen_ledger::note::NoteSigner;
    use jifen_ledger::pb::{self, event_body::Payload};
    use jifen_ledger::time::{Date, Period};
    let mut s = jifen_ledger::sample::generate(&jifen_ledger::sample::SampleConfig {
        seed: 8,
        households: Some(12),
        months: 1,
        scores_per_household: 1.0,
    })
    .unwrap();
    let (cast, w) = (&s.cast, &mut s.writer);
    let hour = 3_600_000_000i64;
    let at = |d: &str, h: i64| Date::parse("d", d).unwrap().start_micros() + h * hour;
    // Given annual expiry from the next day and points made final in December,
    let today = Date::of_micros(w.now);
    let mut v2 = jifen_ledger::sample::rulebook(2, &today.add_days(1).to_string(), &today.to_string());
    v2.expiry = pb::ExpiryPolicy::Annual as i32;
    w.submit(&cast.admin, &[], Payload::RulebookAdopted(v2)).unwrap();
    w.advance_to(at("2025-12-10", 8));
    let scorer = &cast.panel[0];
    let household =
        w.state.households().filter(|h| !h.closed).map(|h| h.id.clone()).find(|h| Some(h) != scorer.household.as_ref()).unwrap();
    let score = pb::ScoreRecorded {
        entry_id: "E-2025-12-1".into(),
        household_id: household.clone(),
        member_id: String::new(),
        item_code: "B01".into(),
        rulebook_version: 2,
        points: 4,
        occurred_on: Date::of_micros(w.now).to_string(),
        source: pb::ScoreSource::Inspection as i32,
        evidence_hashes: vec![],
        claim_id: String::new(),
    };
    w.submit(scorer, &[], Payload::ScoreRecorded(score)).unwrap();
    let start = w.now;
    let board = pb::PublicationOpened {
        publication_id: "P-2025-12".into(),
        period: "2025-12".into(),
        entry_ids: vec!["E-2025-12-1".into()],
        window_start: start,
        window_end: start + 7 * 24 * hour,
    };
    w.submit(&cast.admin, &[], Payload::PublicationOpened(board)).unwrap();
    w.advance_to(start + 7 * 24 * hour);
    w.submit(&cast.admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P-2025-12".into() })).unwrap();
    // when December is settled as the first record of 2026, with the figures shown then,
    w.advance_to(at("2026-01-02", 9));
    let book = w.state.balances_at(w.now).into_owned();
    assert_ne!(book.digest(), w.state.balances().digest(), "points expire on entering 2026");
    let settled = pb::PeriodSettled {
        period: "2025-12".into(),
        publication_id: "P-2025-12".into(),
        households: book.len() as u32,
        period_points: w.state.period_points(Period::from_ym(2025, 12).unwrap()),
        balance_digest: book.digest().0.to_vec(),
    };
    w.submit(&cast.admin, &[&cast.supervisors[0], &cast.supervisors[1]], Payload::PeriodSettled(settled)).unwrap();
    // then the year's bundle replays with every settlement matching.
    let records = s.records().to_vec();
    let n = records.len() as u64;
    let tree = jifen_ledger::merkle::Tree::from_record_hashes(records.iter().map(|r| r.hash()).collect::<Vec<_>>().iter());
    let mut cp = Checkpoint { origin: s.origin.clone(), size: n, root: tree.root(n).unwrap() }.sign(&s.log_key);
    for k in &s.cast.supervisors[..2] {
        cp.cosign(&NoteSigner::new(&witness_key_name(&s.origin, &k.id), k.key.clone()).unwrap());
    }
    let bundle = Bundle {
        ledger: records[0].ledger_id().clone(),
        origin: s.origin.clone(),
        log_key: s.log_key.verifier().to_string(),
        year: 2025,
        records,
        checkpoints: vec![cp.encode()],
        proofs: vec![],
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("y.jfb");
    std::fs::write(&file, bundle.encode()).unwrap();
    let log_key = s.log_key.verifier().to_string();
    let out = jifen(vec![
        "replay".into(),
        "--bundle".into(),
        file.display().to_string(),
        "--year".into(),
        "2025".into(),
        "--as-of".into(),
        "2026-01-31".into(),
        "--json".into(),
        "--log-key".into(),
        log_key,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let settlements = json["settlements"].as_array().unwrap();
    assert!(settlements.iter().any(|x| x["period"] == "2025-12"), "{settlements:?}");
    assert!(settlements.iter().all(|x| x["matches_replay"] == true), "{settlements:?}");
}

/// deploy/BACKUP.md, run as written: the database dumped with `pg_dump` and the key files kept;
/// on another cluster, the key files put back into the data directory, the dump restored into a
/// new database with `pg_restore`, `jifen serve` on it, `jifen log-key` showing the pinned key,
/// and VerifyLedger passing against a checkpoint the supervisors witnessed before the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_backup_and_restore_keep_the_log_key_and_verify_against_a_checkpoint_witnessed_before_the_backup() {
    use jifen::campaign::harness::{openers_file, Child};
    use jifen::store::embedded::SUPERUSER;
    use jifen::store::storage::DATABASE;
    let db = Db::start().await;
    let sample = small_year(22, 2);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let dir = tempfile::tempdir().unwrap();
    let k = 120usize;
    for r in &records[..k] {
        server.replay(r).await;
    }
    wait_checkpoint(&mut server, &ledger, k as u64).await;
    let sups = &sample.cast.supervisors;
    for s in &sups[..2] {
        let out = jifen(cosign_args(&server, &sample, dir.path(), s)).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{}.state.json", sups[0].id))).unwrap()).unwrap();
    let held = state["villages"][ledger.as_str()]["checkpoint"].as_str().unwrap().to_owned();
    let after = k + 30;
    for r in &records[k..after] {
        server.replay(r).await;
    }
    wait_checkpoint(&mut server, &ledger, after as u64).await;
    server.shutdown().await;

    // Backup: the database, and the key files (the in-process server's log key is LOG_SEED).
    let dump = dir.path().join("jifen.dump");
    let run = |program: std::path::PathBuf, args: Vec<std::ffi::OsString>| {
        let out = std::process::Command::new(&program).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        assert!(out.status.success(), "{}: {}", program.display(), text(&out));
    };
    let source = db.0.cluster.connection_string(SUPERUSER, DATABASE);
    run(
        db.0.cluster.binary("pg_dump"),
        vec!["--format".into(), "custom".into(), "--file".into(), dump.clone().into(), "--dbname".into(), source.into()],
    );
    let secure = dir.path().join("secure");
    std::fs::create_dir(&secure).unwrap();
    std::fs::write(secure.join("log.key"), jifen_ledger::hex(&LOG_SEED)).unwrap();
    std::fs::write(secure.join("townships"), openers_file(&records[..1])).unwrap();
    drop(db);

    // Restore on another cluster (one jifen ran on: its role jifen_app exists).
    let other = Db::start().await;
    let data = other.0.dir().join("server");
    std::fs::create_dir(&data).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_jifen"));
    let restored = "jifen_restored";
    let postgres = other.0.cluster.connection_string(SUPERUSER, "postgres");
    run(other.0.cluster.binary("createdb"), vec!["--maintenance-db".into(), postgres.into(), restored.into()]);
    let target = other.0.cluster.connection_string(SUPERUSER, restored);
    run(other.0.cluster.binary("pg_restore"), vec!["--exit-on-error".into(), "--dbname".into(), target.into(), dump.into()]);
    // Started before the key files are back, serve refuses rather than make a new key.
    assert!(Child::start_on(exe, &other.0, restored, &data).await.is_err());
    assert!(!data.join("log.key").exists());
    for f in ["log.key", "townships"] {
        std::fs::copy(secure.join(f), data.join(f)).unwrap();
    }
    let child = Child::start_on(exe, &other.0, restored, &data).await.unwrap();

    // The key the supervisors pinned, and a verification against what they witnessed.
    let printed = jifen(
        [
            "log-key",
            "--data-dir",
            &data.display().to_string(),
            "--deployment-origin",
            jifen_ledger::sample::DEPLOYMENT_ORIGIN,
            "--village",
            &ledger,
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(text(&printed).contains(&format!("note verifier key: {}", log_key(&sample))), "{}", text(&printed));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", child.addr)).unwrap().connect().await.unwrap();
    let mut audit = AuditServiceClient::new(channel);
    let req = api::VerifyLedgerRequest { ledger_id: ledger.clone(), checkpoint_note: held };
    let req = jifen::auth::authorized(req, &sample.cast.auditor.key, method::VERIFY_LEDGER, &ledger, jifen::auth::unix_now());
    let res = audit.verify_ledger(req).await.unwrap().into_inner();
    assert!(res.ok, "{}", res.reason);
    let mut client = child.client().await.unwrap();
    let cp =
        client.get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger, tree_size: 0, min_tree_size: 0 }).await.unwrap().into_inner();
    assert_eq!(cp.checkpoint.unwrap().tree_size, after as u64, "every record appended before the backup is back");
}
