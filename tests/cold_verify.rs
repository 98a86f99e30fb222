//! Verification when it matters most: a server started *after* the database superuser changed
//! stored rows (the order of events a tamperer would choose). Supervisors and auditors can
//! still verify, read and export the village, and are told the first bad seq; writes and
//! public queries get DATA_LOSS / LEDGER_CORRUPT, never INTERNAL and never an answer built
//! from rows at or past the first bad one. Also: the strict, single check of cosignatures, and
//! who may open a village.

mod common;

use base64::Engine;
use common::*;
use jifen::api::audit_service_client::AuditServiceClient;
use jifen::api::query_service_client::QueryServiceClient;
use jifen::api::{self};
use jifen::auth::method;
use jifen_ledger::bundle::{verify_bundle, Bundle, Trust};
use jifen_ledger::note::{key_id, Note, NoteSigner};
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::record::Record;
use jifen_ledger::sample::{ActorKey, Sample, DEPLOYMENT_ORIGIN};
use jifen_ledger::time::Date;
use jifen_ledger::verify::SignatureMode;
use jifen_ledger::village::Accepted;
use tonic::Code;
use tonic_types::StatusExt;

fn payload(r: &Record) -> Payload {
    Accepted::from_verified_record(r.clone()).unwrap().payload().clone()
}

/// A cosignature line by supervisor `who` on a checkpoint note.
fn cosignature(note: &str, who: &ActorKey) -> String {
    let text = Note::parse(note.as_bytes()).unwrap().text().to_owned();
    let signer = NoteSigner::new(&format!("{DEPLOYMENT_ORIGIN}/witness/{}", who.id), who.key.clone()).unwrap();
    signer.sign_line(&text).line()
}

async fn audit_client(server: &Server) -> AuditServiceClient<tonic::transport::Channel> {
    AuditServiceClient::connect(format!("http://{}", server.addr)).await.unwrap()
}

/// VerifyLedger by `reader`: (ok, first bad seq if named, reason).
async fn verify(server: &Server, ledger: &str, reader: &ActorKey) -> Result<(bool, Option<u64>, String), tonic::Status> {
    let req = api::VerifyLedgerRequest { ledger_id: ledger.to_owned(), checkpoint_note: String::new() };
    let res = audit_client(server).await.verify_ledger(server.auth(req, method::VERIFY_LEDGER, ledger, reader)).await?.into_inner();
    Ok((res.ok, res.has_bad_seq.then_some(res.first_bad_seq), res.reason))
}

fn assert_corrupt(e: tonic::Status, seq: Option<u64>) {
    assert_status(e.clone(), Code::DataLoss, "LEDGER_CORRUPT");
    let info = e.get_details_error_info().unwrap();
    assert_eq!(info.metadata.get("first_bad_seq").map(|s| s.parse::<u64>().unwrap()), seq, "{e:?}");
}

/// Rows `from..` of `records` as stored after `moved` is put at `to` (later rows shifted up),
/// with prev_hash and record_hash recomputed: a reordering a careful tamperer makes.
fn reordered(records: &[Record], moved: usize, to: usize) -> Vec<Record> {
    let mut order: Vec<&Record> = records.iter().collect();
    let r = order.remove(moved);
    order.insert(to, r);
    let mut out: Vec<Record> = Vec::new();
    for (seq, r) in order.into_iter().enumerate() {
        let prev = out.last().map_or(*records[0].prev_hash(), Record::hash);
        out.push(
            Record::new(r.ledger_id().clone(), seq as u64, prev, r.recorded_at(), r.body().to_vec(), r.signatures().to_vec()).unwrap(),
        );
    }
    out
}

fn hex(b: &[u8]) -> String {
    jifen_ledger::hex(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_after_the_tampering_verifies_reads_and_exports_it_and_refuses_the_rest() {
    let db = Db::start().await;
    let sample = small_year(41, 1);
    let ledger = sample.writer.ledger.clone();
    let records = sample.records();
    // The last record is held back: it is offered after the tampering, and must be refused.
    let (kept, held_back) = records.split_at(records.len() - 1);
    let mut server = Server::start(&db, &sample).await;
    for r in kept {
        server.replay(r).await;
    }
    let n = kept.len() as u64;
    let cp = server.wait_checkpoint(&ledger, n).await.unwrap();
    for who in &sample.cast.supervisors {
        let line = cosignature(&cp.note, who);
        let req = api::AddCosignatureRequest { ledger_id: ledger.clone(), tree_size: n, signature_line: line };
        server.client.add_cosignature(req).await.unwrap();
    }
    let year = Date::of_micros(kept.last().unwrap().recorded_at()).year() as u32;
    let now = jifen::server::clock::Clock::now_micros(&*server.clock);
    server.shutdown().await;
    let owner = db.superuser().await.unwrap();
    owner.batch_execute("CREATE TABLE saved_records AS SELECT * FROM records;").await.unwrap();

    // A score moved before its household's registration, with the chain recomputed.
    let score = kept.iter().position(|r| matches!(payload(r), Payload::ScoreRecorded(_))).unwrap();
    let Payload::ScoreRecorded(s) = payload(&kept[score]) else { unreachable!() };
    let registered =
        kept.iter().position(|r| matches!(payload(r), Payload::HouseholdRegistered(h) if h.household_id == s.household_id)).unwrap();
    let moved = reordered(kept, score, registered);
    let rewrite: String = moved[registered..=score]
        .iter()
        .map(|r| {
            format!(
                "UPDATE records SET prev_hash = '\\x{}', body = '\\x{}', signatures = '\\x{}', recorded_at = {}, record_hash = '\\x{}' \
                 WHERE ledger_id = '{ledger}' AND seq = {};",
                hex(r.prev_hash().as_bytes()),
                hex(r.body()),
                hex(&r.signatures().iter().flat_map(|s| s.public_key.0.into_iter().chain(s.signature)).collect::<Vec<u8>>()),
                r.recorded_at(),
                hex(r.hash().as_bytes()),
                r.seq()
            )
        })
        .collect();

    let l = &ledger;
    // (what, the superuser's SQL, the first bad seq, the first seq a bundle alone can blame:
    // without the stored record_hash column, a broken link is blamed on its earlier side).
    let cases: Vec<(&str, String, u64, u64)> = vec![
        (
            "a body byte",
            format!("UPDATE records SET body = set_byte(body, 2, get_byte(body, 2) # 4) WHERE ledger_id = '{l}' AND seq = 40"),
            40,
            40,
        ),
        ("recorded_at", format!("UPDATE records SET recorded_at = recorded_at + 1 WHERE ledger_id = '{l}' AND seq = 40"), 40, 40),
        (
            "a prev_hash",
            format!(
                "UPDATE records SET prev_hash = set_byte(prev_hash, 0, get_byte(prev_hash, 0) # 1) WHERE ledger_id = '{l}' AND seq = 41"
            ),
            41,
            40,
        ),
        ("a deleted row", format!("DELETE FROM records WHERE ledger_id = '{l}' AND seq = 40"), 40, 40),
        ("a reordering with the chain recomputed", rewrite, registered as u64, registered as u64),
        (
            "the genesis",
            format!("UPDATE records SET body = set_byte(body, 5, get_byte(body, 5) # 1) WHERE ledger_id = '{l}' AND seq = 0"),
            0,
            0,
        ),
    ];
    for (what, sql, bad, offline) in cases {
        owner.batch_execute(&format!("SET session_replication_role = replica; {sql}")).await.unwrap();
        let mut server = Server::start(&db, &sample).await;
        server.clock.advance_to(now);
        // The auditor is enrolled at seq 2: below that, the deployment's township key reads.
        let reader = if bad > 2 { &sample.cast.auditor } else { &sample.cast.township };

        // The supervisors' tool names the first bad seq.
        let (ok, seq, reason) = verify(&server, &ledger, reader).await.unwrap_or_else(|e| panic!("{what}: VerifyLedger failed: {e:?}"));
        assert!(!ok, "{what}: not detected");
        assert_eq!(seq, Some(bad), "{what}: {reason}");

        // The rows can be read as stored.
        let rows = server.0.read_all(&ledger, reader).await;
        match rows {
            Ok(rows) => assert!(rows.len() as u64 >= n - 1, "{what}: {} rows read", rows.len()),
            Err(e) => panic!("{what}: ReadRecords failed: {e:?}"),
        }

        // The year can be exported, and verifying the bundle offline names the same seq.
        let req = api::ExportBundleRequest { ledger_id: ledger.clone(), year };
        let mut stream = audit_client(&server)
            .await
            .export_bundle(server.auth(req, method::EXPORT_BUNDLE, &ledger, reader))
            .await
            .unwrap_or_else(|e| panic!("{what}: ExportBundle failed: {e:?}"))
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend(chunk.chunk);
        }
        let bundle = Bundle::decode(&bytes).unwrap();
        let e = verify_bundle(&bundle, &Trust::default(), SignatureMode::Strict, |_| {}).unwrap_err();
        assert_eq!(e.seq(), Some(offline), "{what}: offline {e}");

        // Public queries and writes are refused with the first bad seq the load found.
        let mut query = QueryServiceClient::connect(format!("http://{}", server.addr)).await.unwrap();
        let e = query.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap_err();
        assert_corrupt(e, Some(bad));
        let e =
            server.client.append(api::AppendRequest { event: Some(event(held_back[0].body().to_vec(), held_back[0].signatures())) }).await;
        assert_corrupt(e.unwrap_err(), Some(bad));
        let e = server.client.get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq: 1, tree_size: 0 }).await;
        assert_corrupt(e.unwrap_err(), Some(bad));
        // The log's signed checkpoints stay available to those who verify.
        let cp = server.client.get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), ..Default::default() }).await;
        assert_eq!(cp.unwrap_or_else(|e| panic!("{what}: GetCheckpoint: {e:?}")).into_inner().checkpoint.unwrap().tree_size, n);
        server.shutdown().await;

        restore_saved_records(&owner, l).await;
    }

    // Restored from the saved rows, the village verifies and takes the held-back event.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(now);
    assert!(verify(&server, &ledger, &sample.cast.auditor).await.unwrap().0);
    server.replay(&held_back[0]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_server_that_finds_its_rows_tampered_stops_writes_and_queries() {
    let db = Db::start().await;
    let sample = small_year(42, 1);
    let ledger = sample.writer.ledger.clone();
    let records = sample.records();
    let (kept, held_back) = records.split_at(records.len() - 1);
    let mut server = Server::start(&db, &sample).await;
    for r in kept {
        server.replay(r).await;
    }
    let mut query = QueryServiceClient::connect(format!("http://{}", server.addr)).await.unwrap();
    query.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap();
    let owner = db.superuser().await.unwrap();
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica; UPDATE records SET recorded_at = recorded_at + 1 WHERE ledger_id = '{ledger}' AND seq = 30"
        ))
        .await
        .unwrap();
    let (ok, seq, _) = verify(&server, &ledger, &sample.cast.auditor).await.unwrap();
    assert_eq!((ok, seq), (false, Some(30)));
    assert_corrupt(
        query.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap_err(),
        Some(30),
    );
    let e = server.client.append(api::AppendRequest { event: Some(event(held_back[0].body().to_vec(), held_back[0].signatures())) }).await;
    assert_corrupt(e.unwrap_err(), Some(30));
    // Still verifiable by its supervisors.
    assert_eq!(verify(&server, &ledger, &sample.cast.auditor).await.unwrap().1, Some(30));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_checkpoint_whose_columns_were_rewritten_is_caught_cold_and_warm() {
    let db = Db::start().await;
    let sample = small_year(43, 1);
    let ledger = sample.writer.ledger.clone();
    let mut server = Server::start(&db, &sample).await;
    for r in sample.records() {
        server.replay(r).await;
    }
    let n = sample.records().len() as u64;
    server.wait_checkpoint(&ledger, n).await.unwrap();
    let now = jifen::server::clock::Clock::now_micros(&*server.clock);
    server.shutdown().await;
    let owner = db.superuser().await.unwrap();
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE checkpoints SET root_hash = set_byte(root_hash, 0, get_byte(root_hash, 0) # 1) WHERE ledger_id = '{ledger}' AND tree_size = {n};"
        ))
        .await
        .unwrap();
    let server = Server::start(&db, &sample).await;
    server.clock.advance_to(now);
    let (ok, _, reason) = verify(&server, &ledger, &sample.cast.auditor).await.unwrap();
    assert!(!ok);
    assert!(reason.contains("not what the log signed"), "{reason}");
    let mut query = QueryServiceClient::connect(format!("http://{}", server.addr)).await.unwrap();
    assert_corrupt(
        query.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap_err(),
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_township_key_the_deployment_enrolled_opens_a_village() {
    let db = Db::start().await;
    let sample = small_year(44, 1);
    let squatter = small_year(45, 1);
    let genesis = |s: &Sample| api::AppendRequest { event: Some(event(s.records()[0].body().to_vec(), s.records()[0].signatures())) };
    // The deployment enrols sample 44's township key for township 150602101.
    let mut server = Server::start(&db, &sample).await;
    let before = db.fingerprint().await.unwrap();
    // The same village code, opened by a key of someone else's choosing.
    let e = server.client.append(genesis(&squatter)).await.unwrap_err();
    assert_status(e, Code::PermissionDenied, "TOWNSHIP_KEY_NOT_ENROLLED");
    assert_eq!(db.fingerprint().await.unwrap(), before, "a refused genesis stores nothing");
    server.shutdown().await;
    // A deployment that enrols no key for this township.
    let mut other = jifen::campaign::harness::Local::start(&db.0, jifen::townships::Townships::none()).await.unwrap();
    let e = other.client.append(genesis(&sample)).await.unwrap_err();
    assert_status(e, Code::PermissionDenied, "UNKNOWN_TOWNSHIP");
    other.shutdown().await.unwrap();
    // The enrolled key opens it.
    let mut server = Server::start(&db, &sample).await;
    server.replay(&sample.records()[0]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosignature_that_only_a_lax_verifier_accepts_is_refused() {
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let db = Db::start().await;
    let sample = small_year(46, 1);
    let ledger = sample.writer.ledger.clone();
    let mut server = Server::start(&db, &sample).await;
    for r in sample.records() {
        server.replay(r).await;
    }
    let n = sample.records().len() as u64;
    let cp = server.wait_checkpoint(&ledger, n).await.unwrap();
    let text = Note::parse(cp.note.as_bytes()).unwrap().text().to_owned();
    // R = the identity and s = k·a: the cofactorless equation holds, so ed25519-dalek's plain
    // `verify` accepts it; the strict rule (FORMAT.md §3) refuses an R of small order.
    let who = &sample.cast.supervisors[0];
    let name = format!("{DEPLOYMENT_ORIGIN}/witness/{}", who.id);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut h = Sha512::new();
    h.update(identity);
    h.update(who.key.verifying_key().as_bytes());
    h.update(text.as_bytes());
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    sig[32..].copy_from_slice((k * who.key.to_scalar()).as_bytes());
    use ed25519_dalek::Verifier;
    assert!(who.key.verifying_key().verify(text.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).is_ok());
    let mut raw = key_id(&name, &who.key.verifying_key().to_bytes()).to_be_bytes().to_vec();
    raw.extend_from_slice(&sig);
    let line = format!("\u{2014} {name} {}\n", base64::engine::general_purpose::STANDARD.encode(raw));
    let req = api::AddCosignatureRequest { ledger_id: ledger.clone(), tree_size: n, signature_line: line };
    assert_status(server.client.add_cosignature(req).await.unwrap_err(), Code::Unauthenticated, "BAD_COSIGNATURE");
    // An honest cosignature is counted.
    let req = api::AddCosignatureRequest { ledger_id: ledger.clone(), tree_size: n, signature_line: cosignature(&cp.note, who) };
    assert_eq!(server.client.add_cosignature(req).await.unwrap().into_inner().checkpoint.unwrap().cosignatures, 1);
    server.shutdown().await;
}
