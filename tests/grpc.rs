//! End to end over gRPC: the real server on port 0 against a real (embedded) PostgreSQL.

use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{self, SignedEvent};
use jifen::auth::method;
use jifen::server::villages::LogKey;
use jifen::store::embedded::SUPERUSER;
use jifen::store::Store;
use jifen_ledger::checkpoint::SignedCheckpoint;
use jifen_ledger::hash::Hash;
use jifen_ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use jifen_ledger::note::{NoteSigner, NoteVerifier};
use jifen_ledger::pb::{self, event_body::Payload};
use jifen_ledger::record::Record;
use jifen_ledger::sample::{sign, ActorKey, DEPLOYMENT_ORIGIN};
use tonic::transport::Channel;
use tonic::Code;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_village_over_grpc_is_byte_for_byte_the_write_models_and_provable() {
    let db = Db::start().await;
    let sample = small_year(3, 2);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    for r in records {
        let res = server.replay(r).await;
        assert_eq!((res.seq, res.record_hash.as_slice(), res.duplicate), (r.seq(), r.hash().0.as_slice(), false));
    }
    let ledger = jifen_ledger::sample::VILLAGE_CODE.to_string();
    let n = records.len() as u64;

    // Every record reads back exactly.
    let read = server.read_all(&ledger, &sample.cast.auditor).await;
    assert_eq!(read, records);

    // A checkpoint covering every record is signed promptly, by the log key, over the right root.
    let started = std::time::Instant::now();
    let cp = server
        .client
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: 0, min_tree_size: n })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "checkpoint took {:?}", started.elapsed());
    let log = LogKey::from_seed(LOG_SEED).signer(&sample.origin);
    let (opened, _) = SignedCheckpoint::open(cp.note.as_bytes(), &sample.origin, log.verifier(), &[]).unwrap();
    assert_eq!((opened.checkpoint().size, opened.checkpoint().root), (n, sample.checkpoint().root));

    // Inclusion of a record and consistency with an earlier tree, checked as a client would.
    let proof = server
        .client
        .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq: 17, tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<Hash> = proof.proof.iter().map(|h| Hash::from_slice(h).unwrap()).collect();
    verify_inclusion(&leaf_hash(&records[17].hash()), 17, n, &path, &opened.checkpoint().root).unwrap();
    let old =
        jifen_ledger::merkle::Tree::from_record_hashes(&records[..100].iter().map(|r| r.hash()).collect::<Vec<_>>()).root(100).unwrap();
    let c = server
        .client
        .get_consistency_proof(api::GetConsistencyProofRequest { ledger_id: ledger.clone(), old_size: 100, new_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<Hash> = c.proof.iter().map(|h| Hash::from_slice(h).unwrap()).collect();
    verify_consistency(100, n, &old, &opened.checkpoint().root, &path).unwrap();

    // Two supervisors cosign: the checkpoint becomes witnessed (the rulebook's quorum is 2).
    let text = opened.checkpoint().to_text();
    let witness = |i: usize| {
        NoteSigner::new(&format!("{DEPLOYMENT_ORIGIN}/witness/{}", sample.cast.supervisors[i].id), sample.cast.supervisors[i].key.clone())
            .unwrap()
    };
    let line = |w: &NoteSigner| {
        let mut note = jifen_ledger::note::Note::new(text.clone()).unwrap();
        note.sign(w);
        note.encode().lines().last().unwrap().to_owned()
    };
    let first = server
        .client
        .add_cosignature(api::AddCosignatureRequest { ledger_id: ledger.clone(), tree_size: n, signature_line: line(&witness(0)) })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_eq!((first.cosignatures, first.witnessed), (1, false));
    let second = server
        .client
        .add_cosignature(api::AddCosignatureRequest { ledger_id: ledger.clone(), tree_size: n, signature_line: line(&witness(1)) })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_eq!((second.cosignatures, second.witnessed), (2, true));
    let verifiers: Vec<NoteVerifier> = (0..2).map(|i| witness(i).verifier().clone()).collect();
    let (_, cosigners) = SignedCheckpoint::open(second.note.as_bytes(), &sample.origin, log.verifier(), &verifiers).unwrap();
    assert_eq!(cosigners.len(), 2);
    // A stranger's cosignature is refused.
    let stranger =
        NoteSigner::new(&format!("{DEPLOYMENT_ORIGIN}/witness/{}", sample.cast.keeper.id), sample.cast.keeper.key.clone()).unwrap();
    let e = server
        .client
        .add_cosignature(api::AddCosignatureRequest { ledger_id: ledger.clone(), tree_size: n, signature_line: line(&stranger) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    server.shutdown().await;

    // A restarted server loads the village from PostgreSQL and carries on the same chain.
    let mut again = Server::start(&db, &sample).await;
    // Tokens are judged at the server's time, which must fall in the auditor's term.
    again.clock.advance_to(records.last().unwrap().recorded_at());
    assert_eq!(again.len(&ledger, &sample.cast.auditor).await, records.len());
    let cp2 = again
        .client
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: n, min_tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_eq!((cp2.tree_size, cp2.cosignatures, cp2.witnessed), (n, 2, true));
    again.shutdown().await;
}

/// Asserts a call failed with `code` and the ErrorInfo reason `reason`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_class_is_its_own_status_and_appends_nothing() {
    let db = Db::start().await;
    let sample = small_year(4, 1);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    // Open the village and its cast, up to the first score.
    let first_score = records
        .iter()
        .position(|r| {
            jifen_ledger::village::Accepted::from_verified_record(r.clone())
                .unwrap()
                .body()
                .payload
                .as_ref()
                .is_some_and(|p| matches!(p, Payload::ScoreRecorded(_)))
        })
        .unwrap();
    for r in &records[..first_score] {
        server.replay(r).await;
    }
    let ledger = sample.writer.ledger.clone();
    let before = server.len(&ledger, &sample.cast.auditor).await;
    let now = records[first_score].recorded_at();
    server.clock.advance_to(now);
    let cast = &sample.cast;
    let submit = |author: &ActorKey, cos: &[&ActorKey], key: &str, p: Payload| {
        let (body, sigs) = sign(&ledger, author, cos, now - 1, key, p);
        api::AppendRequest { event: Some(event(body, &sigs)) }
    };
    let score = |h: &str, pts: i64| {
        Payload::ScoreRecorded(pb::ScoreRecorded {
            entry_id: "X1".into(),
            household_id: h.into(),
            member_id: String::new(),
            item_code: "B01".into(),
            rulebook_version: 1,
            points: pts,
            occurred_on: jifen_ledger::time::Date::of_micros(now).to_string(),
            source: pb::ScoreSource::Inspection as i32,
            evidence_hashes: vec![],
            claim_id: String::new(),
        })
    };
    let panel_home = cast.panel[0].household.clone().unwrap();
    let stranger = ActorKey::derive(77, "stranger", None);
    let cases: Vec<(api::AppendRequest, Code, &str)> = vec![
        (submit(&stranger, &[], "a", score("H0020", 2)), Code::Unauthenticated, "UNKNOWN_KEY"),
        (submit(&cast.panel[0], &[], "b", score(&panel_home, 2)), Code::PermissionDenied, "SELF_SCORING"),
        (submit(&cast.keeper, &[], "c", score("H0020", 2)), Code::PermissionDenied, "ROLE_NOT_ALLOWED"),
        (submit(&cast.panel[1], &[], "d", score("H0020", 9)), Code::OutOfRange, "POINTS_OUT_OF_RANGE"),
        (submit(&cast.panel[1], &[], "e", score("H9999", 2)), Code::NotFound, "UNKNOWN"),
        (
            submit(
                &cast.keeper,
                &[],
                "f",
                Payload::RedemptionRecorded(pb::RedemptionRecorded {
                    redemption_id: "R1".into(),
                    household_id: "H0020".into(),
                    lines: vec![pb::RedemptionLine { goods_code: "G-SOAP".into(), quantity: 1 }],
                    total_points: 3,
                }),
            ),
            Code::FailedPrecondition,
            "OVERDRAFT",
        ),
        (
            submit(
                &cast.admin,
                &[],
                "g",
                Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0020".into(), reason: "电话13912345678".into() }),
            ),
            Code::InvalidArgument,
            "PERSONAL_DATA",
        ),
    ];
    for (req, code, reason) in cases {
        let e = server.client.append(req).await.unwrap_err();
        assert_status(e, code, reason);
    }
    // The panel member's attempt on their own household is in the refusal log: a red flag in
    // their audit trail and in the village's flagged list, and in no one else's.
    {
        use jifen::api::get_audit_trail_request::Subject;
        let mut query = jifen::api::query_service_client::QueryServiceClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap(),
        );
        let mut flags = async |subject: Option<Subject>| {
            let req = api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject, ..Default::default() };
            let trail =
                query.get_audit_trail(server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &cast.auditor)).await.unwrap().into_inner();
            trail.red_flags.into_iter().filter(|f| f.kind == "SELF_SCORING_ATTEMPT").collect::<Vec<_>>()
        };
        let theirs = flags(Some(Subject::ActorId(cast.panel[0].id.clone()))).await;
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert!(theirs[0].description.starts_with(&format!("{} 试图为本户记分", cast.panel[0].id)), "{theirs:?}");
        let village = flags(None).await;
        assert_eq!(village.len(), 1, "{village:?}");
        assert_eq!(village[0].description, theirs[0].description);
        assert!(flags(Some(Subject::ActorId(cast.panel[1].id.clone()))).await.is_empty());
    }
    // Malformed requests are refused before the write-model.
    let (body, sigs) = sign(&ledger, &cast.admin, &[], now - 1, "h", score("H0020", 2));
    let mut short = event(body.clone(), &sigs);
    short.signatures[0].signature.pop();
    assert_status(
        server.client.append(api::AppendRequest { event: Some(short) }).await.unwrap_err(),
        Code::InvalidArgument,
        "INVALID_REQUEST",
    );
    let mut bad_body = body.clone();
    bad_body.extend_from_slice(&[0x98, 0x06, 0x01]);
    let sig = jifen_ledger::signature::sign_event(&cast.admin.key, &bad_body);
    assert_status(
        server.client.append(api::AppendRequest { event: Some(event(bad_body, &[sig])) }).await.unwrap_err(),
        Code::InvalidArgument,
        "BODY",
    );
    assert_status(server.client.append(api::AppendRequest { event: None }).await.unwrap_err(), Code::InvalidArgument, "INVALID_REQUEST");
    // An all-or-nothing batch with one bad event appends none of them, and costs only itself:
    // the village is not reloaded, and nothing of the first event shows anywhere.
    let loads = server.villages.loads();
    let good = submit(&cast.panel[1], &[], "i", score("H0020", 2)).event.unwrap();
    let bad = submit(&stranger, &[], "j", score("H0021", 2)).event.unwrap();
    let e = server
        .client
        .append_batch(api::AppendBatchRequest { ledger_id: ledger.clone(), events: vec![good.clone(), bad] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().starts_with("event 1:"), "{}", e.message());
    assert_eq!(server.len(&ledger, &sample.cast.auditor).await, before, "nothing was appended by any rejected request");
    assert_eq!(server.villages.loads(), loads, "a refused batch is dropped, not undone by a reload");
    let arc = server.villages.existing(&jifen_ledger::VillageCode::parse(&ledger).unwrap()).await.unwrap();
    {
        let v = arc.lock().await;
        assert_eq!(v.len() as usize, before);
        assert!(v.views().audit.acts().iter().all(|a| a.entry.as_deref() != Some("X1")), "the refused batch's first event reached no view");
        assert!(v.state().entry("X1").is_none());
    }

    // An idempotent retry returns the same record; the same key with another body conflicts.
    let first = server.client.append(api::AppendRequest { event: Some(good.clone()) }).await.unwrap().into_inner().result.unwrap();
    let again = server.client.append(api::AppendRequest { event: Some(good.clone()) }).await.unwrap().into_inner().result.unwrap();
    assert_eq!((again.seq, again.record_hash.clone(), again.duplicate), (first.seq, first.record_hash.clone(), true));
    // A server restarted after the refused batch and the append that followed it holds the
    // same village as the warm one: same tree, same balances, and the retry is the same record.
    use jifen::api::query_service_client::QueryServiceClient;
    let balances = |addr: std::net::SocketAddr, ledger: String| async move {
        let mut q = QueryServiceClient::connect(format!("http://{addr}")).await.unwrap();
        let r = q.list_balances(api::ListBalancesRequest { ledger_id: ledger, ..Default::default() }).await.unwrap().into_inner();
        (r.as_of.unwrap().tree_size, r.balance_digest)
    };
    let warm = balances(server.addr, ledger.clone()).await;
    assert_eq!(warm.0, first.seq + 1);
    server.shutdown().await;
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(now);
    assert_eq!(balances(server.addr, ledger.clone()).await, warm, "the cold load equals the warm state");
    let retried = server.client.append(api::AppendRequest { event: Some(good) }).await.unwrap().into_inner().result.unwrap();
    assert_eq!((retried.seq, retried.record_hash, retried.duplicate), (first.seq, first.record_hash.clone(), true));
    let other = submit(&cast.panel[1], &[], "i", score("H0022", 2));
    assert_status(server.client.append(other).await.unwrap_err(), Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    assert_eq!(server.len(&ledger, &sample.cast.auditor).await, before + 1);
    // An unknown ledger is NOT_FOUND everywhere, and nothing is kept for it.
    let e = server.client.subscribe(api::SubscribeRequest { ledger_id: "150602109999".into(), from_seq: 0 }).await.unwrap_err();
    assert_status(e, Code::NotFound, "UNKNOWN_LEDGER");
    let e = server
        .client
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: "150602109999".into(), tree_size: 0, min_tree_size: 0 })
        .await
        .unwrap_err();
    assert_status(e, Code::NotFound, "UNKNOWN_LEDGER");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_village_never_fork_the_chain() {
    let db = Db::start().await;
    let sample = small_year(5, 1);
    let mut a = Server::start(&db, &sample).await;
    let mut b = Server::start(&db, &sample).await;
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    for r in &records[..30] {
        a.replay(r).await;
    }
    // B loads the village now, then A appends more: B's view is stale.
    b.clock.advance_to(records[29].recorded_at());
    assert_eq!(b.len(&ledger, &sample.cast.auditor).await, 30);
    let _ =
        b.client.get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: 0, min_tree_size: 30 }).await.unwrap();
    for r in &records[30..40] {
        a.replay(r).await;
    }
    // A checkpoint A signed beyond what B holds is served by B after catching up (B judges a
    // checkpoint's witnesses on the state after its records, so it loads them first).
    a.wait_checkpoint(&ledger, 40).await.unwrap();
    let loads = b.villages.loads();
    let cp = b
        .client
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: 40, min_tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_eq!(cp.tree_size, 40);
    assert_eq!(b.villages.loads(), loads + 1, "B reloaded to reach the checkpoint");
    let code = jifen_ledger::VillageCode::parse(&ledger).unwrap();
    assert_eq!(b.villages.existing(&code).await.unwrap().lock().await.len(), 40);
    // A appends again; B's next append loses the race on (ledger, seq), reloads, and lands
    // after A's records.
    for r in &records[40..45] {
        a.replay(r).await;
    }
    for r in &records[45..50] {
        let res = b.replay(r).await;
        assert_eq!((res.seq, res.record_hash.as_slice()), (r.seq(), r.hash().0.as_slice()));
    }
    // Both servers submit the same events at once: each lands exactly once, in one chain.
    a.clock.advance_to(records[89].recorded_at());
    b.clock.advance_to(records[89].recorded_at());
    let evs: Vec<SignedEvent> = records[50..90].iter().map(|r| event(r.body().to_vec(), r.signatures())).collect();
    let racer = |mut client: LedgerServiceClient<Channel>, evs: Vec<SignedEvent>| {
        tokio::spawn(async move {
            for e in evs {
                match client.append(api::AppendRequest { event: Some(e) }).await {
                    Ok(_) => {}
                    // Lost the race twice in a row: the other server has it; fine.
                    Err(s) if s.code() == Code::Aborted => {}
                    Err(s) => panic!("{s:?}"),
                }
            }
        })
    };
    let (ta, tb) = (racer(a.client.clone(), evs.clone()), racer(b.client.clone(), evs));
    ta.await.unwrap();
    tb.await.unwrap();
    let stored = a.read_all(&ledger, &sample.cast.auditor).await;
    assert_eq!(stored.len(), 90, "every event exactly once");
    for (s, r) in stored.iter().zip(records) {
        assert_eq!(s.body(), r.body(), "in submission order");
    }
    jifen_ledger::verify::check_chain(&stored).expect("one unbroken chain");
    jifen_ledger::verify::replay(&stored, |_| {}).expect("every stored record admissible");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_catches_up_from_the_middle_and_follows_live_appends() {
    let db = Db::start().await;
    let sample = small_year(6, 1);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    for r in &records[..60] {
        server.replay(r).await;
    }
    let request = server.auth(
        api::SubscribeRequest { ledger_id: ledger.clone(), from_seq: 25 },
        method::SUBSCRIBE,
        &ledger,
        &sample.cast.supervisors[0],
    );
    let mut sub = server.client.subscribe(request).await.unwrap().into_inner();
    for r in &records[60..90] {
        server.replay(r).await;
    }
    let mut prev: Option<Record> = None;
    for want in 25..90u64 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), sub.message())
            .await
            .unwrap_or_else(|_| panic!("no record {want} within 10 s"));
        let got = record_of(&msg.unwrap().unwrap().record.unwrap());
        assert_eq!(got.seq(), want);
        if let Some(p) = &prev {
            assert_eq!(*got.prev_hash(), p.hash(), "the consumer can check chain continuity");
        }
        assert_eq!(&got, &records[want as usize]);
        prev = Some(got);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_from_the_projections_with_names_and_verify_finds_tampering() {
    use jifen::api::audit_service_client::AuditServiceClient;
    use jifen::api::query_service_client::QueryServiceClient;
    let db = Db::start().await;
    let sample = small_year(9, 2);
    let mut server = Server::start(&db, &sample).await;
    for r in sample.records() {
        server.replay(r).await;
    }
    let ledger = sample.writer.ledger.clone();
    let code = jifen_ledger::VillageCode::parse(&ledger).unwrap();
    let store = Store::connect(&db.cluster.connection_string("jifen_app", "jifen"), 1).unwrap();
    store.set_profile(&code, "H0001", "张三").await.unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap();
    let ch = endpoint.connect().await.unwrap();
    let mut q = QueryServiceClient::new(ch.clone());
    let mut audit = AuditServiceClient::new(ch);
    let n = sample.records().len() as u64;

    // Balances: the server's figures are the write-model's, names come from the profile table.
    let all = q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(all.as_of.as_ref().unwrap().tree_size, n);
    assert_eq!(all.balance_digest, sample.writer.state.balances().digest().0.to_vec());
    let one = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: "H0001".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let b = one.balance.unwrap();
    assert_eq!((b.display_name.as_str(), b.available), ("张三", sample.writer.state.balances().available("H0001")));
    let e = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: "H9999".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_status(e, Code::NotFound, "UNKNOWN_HOUSEHOLD");
    // Erasing the profile breaks nothing: the name is gone, the ledger unchanged.
    assert!(store.erase_profile(&code, "H0001").await.unwrap());
    let one = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: "H0001".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.balance.unwrap().display_name, "");

    // The January 公示 board, the 红黑榜 and the supermarket month.
    let board = q
        .get_publication(api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: "P-2025-01".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(board.closed && !board.entries.is_empty());
    assert!(board.entries.iter().all(|e| e.status == "已生效" || e.status == "已作废"));
    let ranks = q
        .get_rankings(api::GetRankingsRequest { ledger_id: ledger.clone(), period: "2025-01".into(), size: 5, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ranks.red_list.len(), 5);
    assert!(ranks.red_list.windows(2).all(|w| w[0].points >= w[1].points));
    assert_status(
        q.get_rankings(api::GetRankingsRequest { ledger_id: ledger.clone(), period: "2025-1".into(), size: 5, ..Default::default() })
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "INVALID_REQUEST",
    );
    let shop = q
        .get_supermarket_ledger(api::GetSupermarketLedgerRequest {
            ledger_id: ledger.clone(),
            period: "2025-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!shop.receipts.is_empty() && !shop.stock.is_empty());

    // The audit trail: an entry's lineage and the red flags.
    let objected = board.objections.first().map(|o| o.entry_id.clone()).unwrap_or_else(|| board.entries[0].entry_id.clone());
    let trail_request = api::GetAuditTrailRequest {
        ledger_id: ledger.clone(),
        subject: Some(api::get_audit_trail_request::Subject::EntryId(objected)),
        ..Default::default()
    };
    // Refused without a token, with a stranger's, a villager's, a replayed or an expired one.
    let e = q.get_audit_trail(trail_request.clone()).await.unwrap_err();
    assert_status(e, Code::Unauthenticated, "TOKEN_MISSING");
    let stranger = ActorKey::derive(999, "stranger", None);
    let e = q.get_audit_trail(server.auth(trail_request.clone(), method::GET_AUDIT_TRAIL, &ledger, &stranger)).await.unwrap_err();
    assert_status(e, Code::PermissionDenied, "TOKEN_UNKNOWN_KEY");
    let e = q
        .get_audit_trail(server.auth(trail_request.clone(), method::GET_AUDIT_TRAIL, &ledger, &sample.cast.villagers[0]))
        .await
        .unwrap_err();
    assert_status(e, Code::PermissionDenied, "TOKEN_ROLE_NOT_ALLOWED");
    let e = q.get_audit_trail(server.auth(trail_request.clone(), method::VERIFY_LEDGER, &ledger, &sample.cast.auditor)).await.unwrap_err();
    assert_status(e, Code::Unauthenticated, "TOKEN_WRONG_METHOD");
    let once = server.auth(trail_request.clone(), method::GET_AUDIT_TRAIL, &ledger, &sample.cast.supervisors[1]);
    let token = once.metadata().clone();
    let trail = q.get_audit_trail(once).await.unwrap().into_inner();
    assert_eq!(trail.acts[0].kind, "ScoreRecorded");
    let mut replayed = tonic::Request::new(trail_request.clone());
    *replayed.metadata_mut() = token;
    assert_status(q.get_audit_trail(replayed).await.unwrap_err(), Code::Unauthenticated, "TOKEN_REPLAYED");
    let stale = server.auth(trail_request.clone(), method::GET_AUDIT_TRAIL, &ledger, &sample.cast.township);
    server.clock.advance(301_000_000);
    assert_status(q.get_audit_trail(stale).await.unwrap_err(), Code::Unauthenticated, "TOKEN_EXPIRED");
    // The public views need none.
    assert!(q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.is_ok());

    // VerifyLedger: all good, then a superuser edits a stored row behind the triggers' back.
    let verify = |server: &Server| {
        server.auth(
            api::VerifyLedgerRequest { ledger_id: ledger.clone(), ..Default::default() },
            method::VERIFY_LEDGER,
            &ledger,
            &sample.cast.auditor,
        )
    };
    let ok = audit.verify_ledger(verify(&server)).await.unwrap().into_inner();
    assert!(ok.ok, "{}", ok.reason);
    assert_eq!(ok.records, n);
    // An auditor's own check with the CLI, against this server and the log's verifier key.
    let log_key = LogKey::from_seed(LOG_SEED).signer(&sample.origin).verifier().to_string();
    // The CLI signs its request token with the real clock: bring the server's clock to now.
    server.clock.advance_to(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64);
    let keys = tempfile::tempdir().unwrap();
    let auditor_key = keys.path().join("auditor.key");
    std::fs::write(&auditor_key, jifen_ledger::hex(&sample.cast.auditor.key.to_bytes())).unwrap();
    let cli = move |addr: std::net::SocketAddr, ledger: String, log_key: String, key: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jifen"))
            .args(["verify", "--server", &format!("http://{addr}"), "--village", &ledger, "--log-key", &log_key, "--key"])
            .arg(&key)
            .output()
            .unwrap()
    };
    let (addr, l, k) = (server.addr, ledger.clone(), log_key.clone());
    let out = tokio::task::spawn_blocking({
        let key = auditor_key.clone();
        move || cli(addr, l, k, key)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(log signature checked)"));
    let (owner, conn) = tokio_postgres::connect(&db.cluster.connection_string(SUPERUSER, "jifen"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    owner
        .batch_execute(
            "ALTER TABLE records DISABLE TRIGGER records_append_only; \
             UPDATE records SET body = set_byte(body, length(body) - 1, get_byte(body, length(body) - 1) # 1) WHERE seq = 42; \
             ALTER TABLE records ENABLE TRIGGER records_append_only;",
        )
        .await
        .unwrap();
    let bad = audit.verify_ledger(verify(&server)).await.unwrap().into_inner();
    assert!(!bad.ok);
    assert_eq!((bad.has_bad_seq, bad.first_bad_seq), (true, 42), "{}", bad.reason);
    let (addr, l, k) = (server.addr, ledger.clone(), log_key);
    let out = tokio::task::spawn_blocking({
        let key = auditor_key.clone();
        move || cli(addr, l, k, key)
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOT verified: seq 42"), "{err}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_signed_json_events_and_queries_tables() {
    let db = Db::start().await;
    let sample = small_year(12, 1);
    let mut server = Server::start(&db, &sample).await;
    for r in sample.records() {
        server.replay(r).await;
    }
    // The CLI stamps occurred_at with the real clock: bring the server's clock to now.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    server.clock.advance_to(now);
    let dir = tempfile::tempdir().unwrap();
    let key_file = |a: &ActorKey| {
        let p = dir.path().join(format!("{}.key", a.id));
        std::fs::write(&p, jifen_ledger::hex(&a.key.to_bytes())).unwrap();
        p
    };
    let panel = &sample.cast.panel[1];
    let (panel_key, own) = (key_file(panel), panel.household.clone().unwrap());
    let other = sample.households.iter().find(|h| **h != own).unwrap().clone();
    let today = jifen_ledger::time::Date::of_micros(now).to_string();
    let event = |h: &str, entry: &str| {
        let p = dir.path().join(format!("{entry}.json"));
        std::fs::write(
            &p,
            format!(r#"{{"scoreRecorded": {{"entryId": "{entry}", "householdId": "{h}", "itemCode": "B01", "rulebookVersion": 1, "points": 3, "occurredOn": "{today}", "source": "SCORE_SOURCE_INSPECTION"}}}}"#),
        )
        .unwrap();
        p
    };
    let addr = format!("http://{}", server.addr);
    let ledger = sample.writer.ledger.clone();
    let jifen = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_jifen")).args(args).output().unwrap())
    };
    let submit = |file: std::path::PathBuf| {
        vec![
            "submit".into(),
            "--server".into(),
            addr.clone(),
            "--village".into(),
            ledger.clone(),
            "--actor".into(),
            panel.id.clone(),
            "--key".into(),
            panel_key.display().to_string(),
            file.display().to_string(),
        ]
    };
    let ok = jifen(submit(event(&other, "CLI-1"))).await.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("appended: seq"));
    // The same description again is the same event.
    let again = jifen(submit(event(&other, "CLI-1"))).await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("already recorded:"), "{}", String::from_utf8_lossy(&again.stdout));
    // YAML works the same way.
    let yaml = dir.path().join("cli-3.yaml");
    std::fs::write(&yaml, format!("scoreRecorded:\n  entryId: CLI-3\n  householdId: {other}\n  itemCode: B02\n  rulebookVersion: 1\n  points: 2\n  occurredOn: \"{today}\"\n  source: SCORE_SOURCE_REPORT\n")).unwrap();
    let y = jifen(submit(yaml)).await.unwrap();
    assert!(String::from_utf8_lossy(&y.stdout).starts_with("appended: seq"), "{}", String::from_utf8_lossy(&y.stderr));
    // An unknown field is refused before anything is signed.
    let typo = dir.path().join("typo.json");
    std::fs::write(&typo, r#"{"scoreRecorded": {"entryId": "CLI-4", "houseHoldId": "H0001"}}"#).unwrap();
    let t = jifen(submit(typo)).await.unwrap();
    assert!(
        !t.status.success() && String::from_utf8_lossy(&t.stderr).contains("not a jifen.v1.EventBody"),
        "{}",
        String::from_utf8_lossy(&t.stderr)
    );
    // Scoring one's own household is refused with the rule's name.
    let refused = jifen(submit(event(&own, "CLI-2"))).await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SELF_SCORING"), "{}", String::from_utf8_lossy(&refused.stderr));

    let query = |what: &[&str]| {
        let mut args = vec!["query".to_string(), "--server".into(), addr.clone(), "--village".into(), ledger.clone()];
        args.extend(what.iter().map(|s| s.to_string()));
        args
    };
    let balances = jifen(query(&["balances"])).await.unwrap();
    assert!(balances.status.success(), "{}", String::from_utf8_lossy(&balances.stderr));
    assert!(String::from_utf8_lossy(&balances.stdout).contains("可用积分"));
    let board = jifen(query(&["publication", "P-2025-01"])).await.unwrap();
    assert!(String::from_utf8_lossy(&board.stdout).contains("【2025-01 积分公示】"), "{}", String::from_utf8_lossy(&board.stderr));
    // The audit trail needs a reader's key; a panel member's is refused.
    let refused = jifen(query(&["audit", "--entry", "CLI-1", "--key", &panel_key.display().to_string()])).await.unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("TOKEN_ROLE_NOT_ALLOWED")
            || String::from_utf8_lossy(&refused.stderr).contains("not a supervisor")
    );
    let supervisor_key = key_file(&sample.cast.supervisors[0]);
    let audit = jifen(query(&["audit", "--entry", "CLI-1", "--key", &supervisor_key.display().to_string()])).await.unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(audit.contains("ScoreRecorded") && audit.contains(&panel.id), "{audit}");
    server.shutdown().await;
}

/// Query answers: the tree an answer names has a signed checkpoint the moment it is given;
/// balances are judged now (an annual expiry due shows before a record of the new year books
/// it); the supermarket's month is that month's stock and prices; malformed ids and periods
/// without data are said to be so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_name_signed_trees_judge_balances_now_and_say_what_names_nothing() {
    use jifen::api::query_service_client::QueryServiceClient;
    use jifen_ledger::time::{Date, Period};
    let db = Db::start().await;
    let mut sample = small_year(12, 2);
    // The congress adopts annual expiry, in force from the next day.
    let today = Date::of_micros(sample.writer.now);
    let mut v2 = jifen_ledger::sample::rulebook(2, &today.add_days(1).to_string(), &today.to_string());
    v2.expiry = pb::ExpiryPolicy::Annual as i32;
    sample.writer.submit(&sample.cast.admin, &[], Payload::RulebookAdopted(v2)).unwrap();
    let mut server = Server::start(&db, &sample).await;
    let ledger = sample.writer.ledger.clone();
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut q = QueryServiceClient::new(ch.clone());
    let mut l = LedgerServiceClient::new(ch);
    let records = sample.records().to_vec();
    let n = records.len() as u64;

    // Every answer right after an append names a tree whose signed checkpoint can be fetched.
    for r in &records {
        server.replay(r).await;
        if r.seq() % 97 == 0 || r.seq() + 1 == n {
            let all =
                q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap().into_inner();
            let size = all.as_of.unwrap().tree_size;
            assert_eq!(size, r.seq() + 1);
            let cp = l
                .get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: size, min_tree_size: 0 })
                .await
                .unwrap_or_else(|e| panic!("the answer named tree {size}, which has no signed checkpoint: {e:?}"))
                .into_inner();
            assert_eq!(cp.checkpoint.unwrap().tree_size, size);
        }
    }

    // Before the new year, balances as the records leave them.
    let state = &sample.writer.state;
    let all = q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(all.balance_digest, state.balances().digest().0.to_vec());
    // Once 2026 has begun, the annual expiry shows though no record of 2026 exists yet: the
    // digest is the one a settlement recorded now must carry.
    let new_year = Date::parse("d", "2026-01-05").unwrap().start_micros();
    server.clock.advance_to(new_year);
    let all = q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(all.balance_digest, state.balance_digest_at(new_year).0.to_vec());
    assert_ne!(all.balance_digest, state.balances().digest().0.to_vec(), "the sample has points to expire");
    let rich = state.balances().iter().find(|(_, b)| b.available() > 0).map(|(h, _)| h.to_owned()).unwrap();
    let before = state.balances().get(&rich).unwrap().available();
    let one = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: rich.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let b = one.balance.unwrap();
    assert_eq!((b.available, b.expired - state.balances().get(&rich).unwrap().expired), (0, before));

    // The supermarket's January: that month's closing stock and prices, as a fold of the
    // records gives them, not today's stock with no prices.
    let mut folded = jifen_projections::Projections::new();
    for r in &records {
        folded.apply(&jifen_ledger::village::Accepted::from_verified_record(r.clone()).unwrap());
    }
    let jan = folded.views.supermarket.month_view(Period::from_ym(2025, 1).unwrap());
    let shop = q
        .get_supermarket_ledger(api::GetSupermarketLedgerRequest {
            ledger_id: ledger.clone(),
            period: "2025-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let served: Vec<(String, i64, i64)> = shop.stock.iter().map(|g| (g.goods_code.clone(), g.quantity, g.price)).collect();
    let want: Vec<(String, i64, i64)> = jan.goods.iter().map(|(c, g)| (c.clone(), g.stock as i64, g.price.unwrap_or(0))).collect();
    assert_eq!(served, want);
    assert!(served.iter().any(|(_, _, price)| *price > 0), "{served:?}");
    assert!(shop.goods_out.iter().all(|g| g.price > 0), "{:?}", shop.goods_out);
    assert_eq!((shop.points_spent, shop.points_returned), (jan.points, jan.points_returned));

    // Malformed ids are INVALID_ARGUMENT, an unknown well-formed one NOT_FOUND.
    for bad in ["H 0001", "", "户0001", "H0001/../x"] {
        let e = q
            .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: bad.into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_status(e, Code::InvalidArgument, "INVALID_REQUEST");
    }
    let e = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: "H9999".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_status(e, Code::NotFound, "UNKNOWN_HOUSEHOLD");
    let e = q
        .get_publication(api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: "P 2025".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_status(e, Code::InvalidArgument, "INVALID_REQUEST");
    // A ranking of a month with no scores says so, and a month with some still ranks.
    let e = q
        .get_rankings(api::GetRankingsRequest { ledger_id: ledger.clone(), period: "2025-07".into(), size: 5, ..Default::default() })
        .await
        .unwrap_err();
    assert_status(e, Code::NotFound, "UNKNOWN_PERIOD");
    assert!(q
        .get_rankings(api::GetRankingsRequest { ledger_id: ledger.clone(), period: "2025-02".into(), size: 5, ..Default::default() })
        .await
        .is_ok());
    server.shutdown().await;
}

/// Concurrent first appends to a new ledger share one copy of it in memory (so the cached
/// village holds every record that landed), and an append that lands nothing on an unknown
/// ledger leaves nothing cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_appends_to_a_new_ledger_share_one_copy_and_failed_ones_cache_nothing() {
    let db = Db::start().await;
    let sample = small_year(14, 1);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    server.clock.advance_to(records[1].recorded_at());
    let ev = |r: &Record| event(r.body().to_vec(), r.signatures());
    // An event of a ledger that has no genesis yet is refused, and the code is not kept.
    let e = server.client.append(api::AppendRequest { event: Some(ev(&records[1])) }).await.unwrap_err();
    assert_status(e, Code::NotFound, "NOT_OPENED");
    assert_eq!(server.villages.loaded_villages(), 0);
    // Two first appends at once: the genesis alone, and the genesis with the next event.
    let batch = |rs: &[Record]| api::AppendBatchRequest { ledger_id: ledger.clone(), events: rs.iter().map(ev).collect() };
    let (mut c1, mut c2) = (server.client.clone(), server.client.clone());
    let (a, b) = tokio::join!(c1.append_batch(batch(&records[..1])), c2.append_batch(batch(&records[..2])));
    a.unwrap();
    b.unwrap();
    let stored = server.read_all(&ledger, &sample.cast.township).await;
    assert_eq!(stored.len(), 2);
    let code = jifen_ledger::VillageCode::parse(&ledger).unwrap();
    assert_eq!(server.villages.existing(&code).await.unwrap().lock().await.len(), 2, "the cached village has every stored record");
    assert_eq!(server.villages.loaded_villages(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_a_tree_that_keeps_only_its_upper_levels_verify_and_a_changed_stored_node_is_refused() {
    // Given a village of several hundred records, served by a server started after they were
    // appended (its tree keeps only the nodes of 256 leaves and more, and the last leaves),
    let db = Db::start().await;
    let sample = jifen_ledger::sample::generate(&jifen_ledger::sample::SampleConfig {
        seed: 35,
        households: Some(60),
        months: 2,
        scores_per_household: 6.0,
    })
    .unwrap();
    let records = sample.records();
    let n = records.len() as u64;
    assert!(n > 600, "{n} records");
    let ledger = sample.writer.ledger.clone();
    let mut server = Server::start(&db, &sample).await;
    for r in records {
        server.replay(r).await;
    }
    server.shutdown().await;
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(records.last().unwrap().recorded_at());
    let hashes: Vec<Hash> = records.iter().map(|r| r.hash()).collect();
    let root = |size: u64| jifen_ledger::merkle::Tree::from_record_hashes(&hashes[..size as usize]).root(size).unwrap();

    // when a client asks for proofs of early and late records, at the latest and older sizes,
    // then each is the whole tree's (the forgotten nodes computed from the stored records'
    // hashes) and verifies;
    for (seq, size) in [(0, 0), (17, 0), (255, 0), (256, 300), (300, 513), (n - 1, 0), (17, 257), (100, 101)] {
        let p = server
            .client
            .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq, tree_size: size })
            .await
            .unwrap()
            .into_inner();
        let size = if size == 0 { n } else { size };
        assert_eq!((p.tree_size, p.record_hash.as_slice()), (size, hashes[seq as usize].0.as_slice()));
        let path: Vec<Hash> = p.proof.iter().map(|h| Hash::from_slice(h).unwrap()).collect();
        verify_inclusion(&leaf_hash(&hashes[seq as usize]), seq, size, &path, &root(size)).unwrap();
    }
    for (old, new) in [(1, 0), (100, 0), (256, 0), (300, 600), (17, 255)] {
        let c = server
            .client
            .get_consistency_proof(api::GetConsistencyProofRequest { ledger_id: ledger.clone(), old_size: old, new_size: new })
            .await
            .unwrap()
            .into_inner();
        let new = if new == 0 { n } else { new };
        let path: Vec<Hash> = c.proof.iter().map(|h| Hash::from_slice(h).unwrap()).collect();
        verify_consistency(old, new, &root(old), &root(new), &path).unwrap();
    }

    // and when the superuser changes a stored record hash under a node that the tree forgot, a
    // proof that needs the node is refused as DATA_LOSS rather than served wrong (one that does
    // not need it still is).
    let owner = db.superuser().await.unwrap();
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE records SET record_hash = sha256(record_hash) WHERE ledger_id = '{ledger}' AND seq = 17;"
        ))
        .await
        .unwrap();
    let e = server
        .client
        .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq: 16, tree_size: 0 })
        .await
        .unwrap_err();
    assert_status(e, Code::DataLoss, "LEDGER_CORRUPT");
    let e = server
        .client
        .get_consistency_proof(api::GetConsistencyProofRequest { ledger_id: ledger.clone(), old_size: 17, new_size: 0 })
        .await
        .unwrap_err();
    assert_status(e, Code::DataLoss, "LEDGER_CORRUPT");
    assert!(server
        .client
        .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq: n - 1, tree_size: 0 })
        .await
        .is_ok());
    // At an older size, a changed hash that both the proof and that size's root use cannot
    // vouch for itself: the root is proved consistent with the signed one first.
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE records SET record_hash = sha256(record_hash) WHERE ledger_id = '{ledger}' AND seq = 697;"
        ))
        .await
        .unwrap();
    let e = server
        .client
        .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq: 650, tree_size: 700 })
        .await
        .unwrap_err();
    assert_status(e, Code::DataLoss, "LEDGER_CORRUPT");
    server.shutdown().await;
    // A server started after the change compares each stored record hash with the record's on
    // its load, names the first altered one, and serves nothing of the village.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(records.last().unwrap().recorded_at());
    let e = server
        .client
        .get_inclusion_proof(api::GetInclusionProofRequest { ledger_id: ledger.clone(), seq: n - 1, tree_size: 0 })
        .await
        .unwrap_err();
    assert_status(e.clone(), Code::DataLoss, "LEDGER_CORRUPT");
    assert!(e.message().contains("seq 17: the stored row no longer matches the record hash"), "{}", e.message());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_log_key_names_the_key_that_verifies_the_served_checkpoints_and_only_that_one() {
    let db = Db::start().await;
    let sample = small_year(5, 1);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    for r in &records[..20] {
        server.replay(r).await;
    }
    let ledger = jifen_ledger::sample::VILLAGE_CODE.to_string();
    let key = server.client.get_log_key(api::GetLogKeyRequest { ledger_id: ledger.clone() }).await.unwrap().into_inner();
    assert_eq!(key.origin, sample.origin);
    let expected = LogKey::from_seed(LOG_SEED);
    assert_eq!(key.public_key, expected.public_key().to_vec());
    assert_eq!(key.note_verifier_key, expected.verifier(&sample.origin).unwrap().to_string());

    // The key it names opens the checkpoint the server serves; under another origin it opens
    // nothing (a verifier key is bound to its name).
    let verifier = NoteVerifier::parse(&key.note_verifier_key).unwrap();
    let cp = server
        .client
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: 0, min_tree_size: 20 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    let (opened, _) = SignedCheckpoint::open(cp.note.as_bytes(), &sample.origin, &verifier, &[]).unwrap();
    assert_eq!(opened.checkpoint().size, 20);
    let elsewhere = expected.verifier("jifen.example.cn/village/150602101299").unwrap();
    assert!(SignedCheckpoint::open(cp.note.as_bytes(), &sample.origin, &elsewhere, &[]).is_err());

    // An unknown village and a malformed id are named as such.
    let unknown = server.client.get_log_key(api::GetLogKeyRequest { ledger_id: "150602101299".into() }).await.unwrap_err();
    assert_status(unknown, Code::NotFound, "UNKNOWN_LEDGER");
    let malformed = server.client.get_log_key(api::GetLogKeyRequest { ledger_id: "15060210".into() }).await.unwrap_err();
    assert_status(malformed, Code::InvalidArgument, "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_postgresql_is_down_and_serving_again_once_it_is_back() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut db = Db::start().await;
    let sample = small_year(6, 1);
    let server = Server::start(&db, &sample).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    let services = ["", "jifen.v1.LedgerService", "jifen.v1.QueryService", "jifen.v1.AuditService"];
    let mut check = async |want: ServingStatus| {
        for s in services {
            let got = health.check(HealthCheckRequest { service: s.into() }).await.unwrap().into_inner().status;
            assert_eq!(got, want as i32, "service {s:?}");
        }
    };
    check(ServingStatus::Serving).await;
    // The server's own stream of changes, not a timer, says when it noticed.
    let mut client = HealthClient::new(channel);
    let mut changes = client.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    let mut next = async || {
        let m = tokio::time::timeout(std::time::Duration::from_secs(30), changes.message()).await.expect("a change within 30 s");
        ServingStatus::try_from(m.unwrap().unwrap().status).unwrap()
    };
    assert_eq!(next().await, ServingStatus::Serving);

    db.0.cluster.stop().unwrap();
    assert_eq!(next().await, ServingStatus::NotServing);
    check(ServingStatus::NotServing).await;

    db.0.cluster.start_again().unwrap();
    assert_eq!(next().await, ServingStatus::Serving);
    check(ServingStatus::Serving).await;
    // And the service answers from its database again.
    let mut ledger = server.client.clone();
    let unknown = ledger
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: "150602101299".into(), tree_size: 0, min_tree_size: 0 })
        .await
        .unwrap_err();
    assert_status(unknown, Code::NotFound, "UNKNOWN_LEDGER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_a_json_line_per_call_and_per_refused_event_without_colours() {
    use jifen::campaign::harness::{openers_file, Child};
    let db = Db::start().await;
    let sample = small_year(7, 1);
    let genesis = &sample.records()[0];
    let dir = db.0.dir().join("server");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("townships"), openers_file(&sample.records()[..1])).unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_jifen"));
    let server = Child::start_logging_with(exe, &db.0, &dir, "info", &["--log-format", "json"]).await.unwrap();
    let mut logs = server.logs().unwrap();
    let mut client = server.client().await.unwrap();

    // The genesis with its first signature spoiled: refused by the write-model.
    let mut sigs = genesis.signatures().to_vec();
    sigs[0].signature[10] ^= 1;
    let refused = client.append(api::AppendRequest { event: Some(SignedEvent::new(genesis.body().to_vec(), &sigs)) }).await.unwrap_err();
    let reason = tonic_types::StatusExt::get_details_error_info(&refused).unwrap().reason;

    let (mut call, mut refusal) = (None, None);
    while call.is_none() || refusal.is_none() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), logs.recv()).await.expect("log lines").unwrap();
        assert!(!line.contains('\u{1b}'), "no colour codes off a terminal: {line}");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let fields = &json["fields"];
        if json["target"] == "jifen::request" && fields["method"] == "/jifen.v1.LedgerService/Append" {
            call = Some(fields.clone());
        }
        if fields["message"] == "event refused" {
            refusal = Some(fields.clone());
        }
    }
    let (call, refusal) = (call.unwrap(), refusal.unwrap());
    assert_eq!(call["status"], format!("{:?}", refused.code()), "{call}");
    assert!(call["ms"].as_str().is_some_and(|ms| ms.parse::<f64>().is_ok()), "{call}");
    assert_eq!(refusal["village"], jifen_ledger::sample::VILLAGE_CODE.to_string(), "{refusal}");
    assert_eq!(refusal["reason"], reason, "{refusal}");
    assert_eq!(refusal["event"], 0, "{refusal}");
    assert!(refusal["signers"].as_str().unwrap().contains(&jifen_ledger::hex(&sigs[0].public_key.0)), "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_kept_in_an_append_only_refusal_log_bounded_per_signer_and_shown_as_attempts() {
    let db = Db::start().await;
    let sample = small_year(8, 1);
    let mut server = Server::start(&db, &sample).await;
    let records = sample.records();
    for r in &records[..20] {
        server.replay(r).await;
    }
    let ledger = jifen_ledger::sample::VILLAGE_CODE.to_string();
    let next = &records[20];
    let mut sigs = next.signatures().to_vec();
    sigs[0].signature[7] ^= 1;
    let spoiled = SignedEvent::new(next.body().to_vec(), &sigs);
    let refused = server.client.append(api::AppendRequest { event: Some(spoiled.clone()) }).await.unwrap_err();
    let reason = tonic_types::StatusExt::get_details_error_info(&refused).unwrap().reason;

    let owner = db.superuser().await.unwrap();
    let rows = owner
        .query("SELECT ledger_id, reason, message, event_index, body, signatures, signer FROM refusals ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, String>("ledger_id"), ledger);
    assert_eq!(row.get::<_, String>("reason"), reason);
    assert_eq!(row.get::<_, String>("message"), refused.message());
    assert_eq!(row.get::<_, i32>("event_index"), 0);
    assert_eq!(row.get::<_, Vec<u8>>("body"), next.body());
    let stored_sigs: Vec<u8> = row.get("signatures");
    assert_eq!(stored_sigs.len(), 96 * sigs.len());
    assert_eq!(&stored_sigs[..32], &sigs[0].public_key.0);
    assert_eq!(&stored_sigs[32..96], &sigs[0].signature);
    assert_eq!(row.get::<_, Vec<u8>>("signer"), sigs[0].public_key.0.to_vec());
    // Nothing was appended: the ledger is as it was.
    let cp = server.wait_checkpoint(&ledger, 20).await.unwrap();
    assert_eq!(cp.tree_size, 20);

    // A restarted server (the village loaded cold) still shows it: the log is in PostgreSQL,
    // and the signer's keys come from the reloaded state.
    server.shutdown().await;
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(records[19].recorded_at());
    // The audit trail of the signer shows the attempt beside its acts; another actor's does not.
    let c = &sample.cast;
    let everyone: Vec<&jifen_ledger::sample::ActorKey> =
        [&c.township, &c.admin, &c.keeper, &c.auditor].into_iter().chain(&c.panel).chain(&c.supervisors).chain(&c.villagers).collect();
    let signer = everyone.iter().find(|a| a.key.verifying_key().to_bytes() == sigs[0].public_key.0).expect("the signer is in the cast");
    let other = everyone.iter().find(|a| a.id != signer.id && a.id != c.auditor.id).unwrap();
    let mut audit = jifen::api::query_service_client::QueryServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap(),
    );
    let trail = |who: &str| {
        use jifen::api::get_audit_trail_request::Subject;
        let req =
            api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject: Some(Subject::ActorId(who.to_owned())), ..Default::default() };
        server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &c.auditor)
    };
    let mine = audit.get_audit_trail(trail(&signer.id)).await.unwrap().into_inner();
    assert_eq!(mine.attempts.len(), 1, "{mine:?}");
    let attempt = &mine.attempts[0];
    assert_eq!((attempt.reason.as_str(), attempt.message.as_str()), (reason.as_str(), refused.message()));
    assert_eq!(attempt.signer, sigs[0].public_key.0.to_vec());
    let decoded = jifen_ledger::body::decode_body(next.body()).unwrap().payload.unwrap();
    assert_eq!(attempt.kind, jifen_ledger::body::event_kind(&decoded));
    let theirs = audit.get_audit_trail(trail(&other.id)).await.unwrap().into_inner();
    assert!(theirs.attempts.is_empty(), "{theirs:?}");

    // A flood by one signer keeps at most REFUSALS_PER_SIGNER a day.
    for _ in 0..jifen::store::REFUSALS_PER_SIGNER + 20 {
        server.client.append(api::AppendRequest { event: Some(spoiled.clone()) }).await.unwrap_err();
    }
    let kept: i64 = owner.query_one("SELECT count(*) FROM refusals", &[]).await.unwrap().get(0);
    assert_eq!(kept, jifen::store::REFUSALS_PER_SIGNER);
    // Nobody changes or removes a kept refusal, not even the database's superuser.
    for sql in ["UPDATE refusals SET reason = 'x'", "DELETE FROM refusals", "TRUNCATE refusals"] {
        let e = owner.batch_execute(sql).await.unwrap_err();
        assert!(e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
    }
}
