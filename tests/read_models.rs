//! The read models in PostgreSQL (docs/adr/0005-serving-from-postgresql.md), end to end on the
//! real server and PostgreSQL: written with each append, equal to an offline replay of the
//! records, read your own write, checked by VerifyLedger and by every load, and rebuilt by
//! `jifen rebuild`.

mod common;

use common::*;
use jifen::api::audit_service_client::AuditServiceClient;
use jifen::api::query_service_client::QueryServiceClient;
use jifen::api::{self};
use jifen::auth::method;
use jifen::store::embedded::SUPERUSER;
use jifen::store::read_model::Rows;
use jifen::store::storage::{APP_ROLE, DATABASE};
use jifen_ledger::ids::VillageCode;
use jifen_ledger::sample::Sample;
use jifen_ledger::time::Period;
use jifen_projections::publicity::{quarterly_column, red_black_lists};
use jifen_projections::Projections;
use std::process::Output;
use tonic::Code;

async fn jifen(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_jifen")).args(args).output().unwrap()).await.unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn query(server: &Server) -> QueryServiceClient<tonic::transport::Channel> {
    QueryServiceClient::connect(format!("http://{}", server.addr)).await.unwrap()
}

/// VerifyLedger as the sample's auditor: (ok, reason).
async fn verify(server: &Server, sample: &Sample) -> (bool, bool, String) {
    let ledger = sample.writer.ledger.clone();
    let mut audit = AuditServiceClient::connect(format!("http://{}", server.addr)).await.unwrap();
    let req = api::VerifyLedgerRequest { ledger_id: ledger.clone(), checkpoint_note: String::new() };
    let res = audit.verify_ledger(server.auth(req, method::VERIFY_LEDGER, &ledger, &sample.cast.auditor)).await.unwrap().into_inner();
    (res.ok, res.has_bad_seq, res.reason)
}

/// A server that has appended every record of `sample`.
async fn served(db: &Db, sample: &Sample) -> Server {
    let mut server = Server::start(db, sample).await;
    for r in sample.records() {
        server.replay(r).await;
    }
    server
}

/// The read-model rows an offline replay of `records` gives.
fn replayed_rows(records: &[jifen_ledger::record::Record]) -> Rows {
    let p = Projections::from_records(records).unwrap();
    Rows::all(p.state(), &p.views, &Default::default())
}

/// The `k`-th household (in id order) of a replay of `records`.
fn nth_household(records: &[jifen_ledger::record::Record], k: usize) -> String {
    let p = Projections::from_records(records).unwrap();
    let id = p.state().balances().iter().nth(k).unwrap().0.to_owned();
    id
}

async fn stored_rows(db: &Db, ledger: &str) -> (u64, Rows) {
    let store = db.store(1).unwrap();
    let (head, rows) = store.read_model(&VillageCode::parse(ledger).unwrap()).await.unwrap().expect("a read model");
    (head.tree_size, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_append_stores_its_read_model_rows_and_a_signed_checkpoint_so_a_client_reads_its_own_write() {
    let db = Db::start().await;
    let sample = small_year(31, 6);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let mut server = Server::start(&db, &sample).await;
    let mut q = query(&server).await;
    let household = nth_household(records, 0);
    for (i, r) in records.iter().enumerate() {
        let appended = server.replay(r).await;
        let size = appended.seq + 1;
        if i % 37 != 0 && i != records.len() - 1 {
            continue;
        }
        // Right after the append, no waiting: the read model and the checkpoint of this tree
        // were stored in the append's transaction.
        let all = q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: size }).await.unwrap().into_inner();
        let as_of = all.as_of.unwrap();
        assert_eq!(as_of.tree_size, size);
        let checkpoint = server
            .client
            .get_checkpoint(api::GetCheckpointRequest { ledger_id: ledger.clone(), tree_size: size, min_tree_size: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(checkpoint.checkpoint.unwrap().root_hash, as_of.root_hash);
        // Every row is what an offline replay of the same records gives.
        let (tree_size, rows) = stored_rows(&db, &ledger).await;
        assert_eq!(tree_size, size);
        assert_eq!(rows, replayed_rows(&records[..=i]), "after seq {i}");
        let acts = db.store(1).unwrap().read_acts(&VillageCode::parse(&ledger).unwrap(), 0, size + 1).await.unwrap();
        assert_eq!(acts, Projections::from_records(&records[..=i]).unwrap().audit.acts(), "the acts after seq {i}");
    }
    let n = records.len() as u64;
    // A household's balance and months, from the read model.
    let one = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: household.clone(), min_tree_size: n })
        .await
        .unwrap()
        .into_inner();
    let replay = Projections::from_records(records).unwrap();
    let b = replay.state().balances().get(&household).unwrap();
    assert_eq!(one.balance.unwrap().available, b.available());
    assert_eq!(
        one.periods.len(),
        replay.balances.known_periods().into_iter().filter(|p| replay.balances.period(*p, &household) != Default::default()).count()
    );
    // A tree the ledger has not reached is refused, not answered from an older one.
    let e = q
        .get_balance(api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: household.clone(), min_tree_size: n + 1 })
        .await
        .unwrap_err();
    assert_status(e, Code::OutOfRange, "TREE_SIZE_NOT_REACHED");
    let e = q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: n + 1 }).await.unwrap_err();
    assert_status(e, Code::OutOfRange, "TREE_SIZE_NOT_REACHED");
    // The 红黑榜 and the quarterly column of every month, from the read model, are the
    // offline replay's.
    assert!(replay.balances.known_periods().len() >= 3);
    for p in replay.balances.known_periods() {
        let req = api::GetRankingsRequest { ledger_id: ledger.clone(), period: p.to_string(), size: 10, min_tree_size: n };
        let served = q.get_rankings(req).await.unwrap().into_inner();
        assert_eq!(served.as_of.unwrap().tree_size, n);
        let (red, black) = red_black_lists(&replay.balances, p, 10);
        let column = quarterly_column(&replay.balances, p.year(), p.quarter());
        let pairs = |list: &[api::Ranked]| list.iter().map(|r| (r.household_id.clone(), r.points)).collect::<Vec<_>>();
        assert_eq!(pairs(&served.red_list), red, "{p}");
        assert_eq!(pairs(&served.black_list), black, "{p}");
        assert_eq!(pairs(&served.quarterly_column), column, "{p}");
    }
    // Every 公示 board, from the read model: its entries in board order with their status and
    // points now, and its objections with what became of them, as the offline replay has them.
    let boards: Vec<_> = replay.publicity.boards().collect();
    assert!(
        boards.len() >= 2 && boards.iter().any(|b| b.objections.iter().any(|o| o.outcome.is_some())),
        "the sample has decided objections"
    );
    for b in boards {
        let req = api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: b.id.clone(), min_tree_size: n };
        let served = q.get_publication(req).await.unwrap().into_inner();
        assert_eq!((served.as_of.unwrap().tree_size, served.closed, served.period.clone()), (n, b.closed, b.period.to_string()));
        let entries: Vec<_> = served.entries.iter().map(|e| (e.entry_id.clone(), e.points, e.status.clone())).collect();
        let want: Vec<_> = b.entries.iter().map(|e| (e.entry_id.clone(), e.points, e.status.label().to_owned())).collect();
        assert_eq!(entries, want, "{}", b.id);
        let objections: Vec<_> = served.objections.iter().map(|o| (o.objection_id.clone(), o.finding.clone(), o.decided_at)).collect();
        let want: Vec<_> = b.objections.iter().map(|o| (o.id.clone(), o.finding.clone(), o.decided_at.unwrap_or(0))).collect();
        assert_eq!(objections, want, "{}", b.id);
    }
    // Every month of the supermarket, from the read model, as the offline replay posts it: a
    // month with activity, a month without (carried from the one before), and one before the
    // supermarket had anything.
    let months: Vec<_> = replay.supermarket.months().map(|(p, _)| p).collect();
    let ran = |f: &dyn Fn(&jifen_projections::supermarket::Month) -> bool| replay.supermarket.months().any(|(_, m)| f(m));
    assert!(months.len() >= 2, "{months:?}");
    assert!(ran(&|m| !m.receipts.is_empty()), "the sample receives stock");
    assert!(ran(&|m| m.exchanges > 0), "the sample redeems");
    let first = months[0];
    let mut asked = months.clone();
    asked.extend([Period::from_ym(first.year() - 1, 12).unwrap(), months.last().unwrap().next().next()]);
    for p in asked {
        let req = api::GetSupermarketLedgerRequest { ledger_id: ledger.clone(), period: p.to_string(), min_tree_size: n };
        let served = q.get_supermarket_ledger(req).await.unwrap().into_inner();
        let want = replay.supermarket.month_view(p);
        assert_eq!(served.as_of.unwrap().tree_size, n);
        assert_eq!(
            (served.exchanges, served.reversals, served.points_spent, served.points_returned),
            (want.exchanges, want.reversals, want.points, want.points_returned),
            "{p}"
        );
        let receipts: Vec<_> = served.receipts.iter().map(|r| (r.receipt_id.clone(), r.quantity)).collect();
        assert_eq!(receipts, want.receipts.iter().map(|r| (r.receipt_id.clone(), r.quantity)).collect::<Vec<_>>(), "{p}");
        let stock: Vec<_> = served.stock.iter().map(|g| (g.goods_code.clone(), g.quantity, g.price)).collect();
        let want_stock: Vec<_> = want.goods.iter().map(|(c, g)| (c.clone(), g.stock as i64, g.price.unwrap_or(0))).collect();
        assert_eq!(stock, want_stock, "{p}");
        let out: Vec<_> = served.goods_out.iter().map(|g| (g.goods_code.clone(), g.quantity)).collect();
        assert_eq!(out, want.goods_out.iter().map(|(c, q)| (c.clone(), *q)).collect::<Vec<_>>(), "{p}");
    }
    // The audit trail of every actor and household, and the lineage of every entry that was
    // objected to, with every red flag, from the read model, as the offline replay has them.
    use api::get_audit_trail_request::Subject;
    let monthly: Vec<String> = replay.audit.monthly_red_flags(&replay.balances).iter().map(|f| f.describe()).collect();
    let all_flags: Vec<String> = replay.audit.red_flags(&replay.balances).iter().map(|f| f.describe()).collect();
    assert!(all_flags.len() > monthly.len(), "the sample has acts that raise red flags");
    let actors: Vec<String> = replay.audit.actors().map(|(a, _)| a.to_owned()).collect();
    let households: Vec<String> = replay.state().balances().iter().map(|(h, _)| h.to_owned()).collect();
    let objected: Vec<String> = replay.publicity.boards().flat_map(|b| b.objections.iter().map(|o| o.entry_id.clone())).collect();
    assert!(!objected.is_empty());
    let subjects = actors.iter().map(|a| Subject::ActorId(a.clone())).chain(households.iter().map(|h| Subject::HouseholdId(h.clone())));
    for subject in subjects.chain(objected.iter().map(|e| Subject::EntryId(e.clone()))) {
        let acts: Vec<&jifen_projections::audit::Act> = match &subject {
            Subject::ActorId(a) => replay.audit.by_actor(a).collect(),
            Subject::HouseholdId(h) => replay.audit.by_household(h).collect(),
            Subject::EntryId(e) => replay.audit.lineage(e).collect(),
        };
        let want: Vec<(u64, String, Vec<String>, String)> =
            acts.iter().map(|a| (a.seq, a.kind.clone(), a.signers.clone(), a.household().unwrap_or_default().to_owned())).collect();
        // The flags its acts raise, then the ledger's monthly flags.
        let mut flags: Vec<String> = acts.iter().filter_map(|a| a.red_flag()).map(|f| f.describe()).collect();
        flags.extend(monthly.iter().cloned());
        let req =
            api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject: Some(subject.clone()), min_tree_size: n, ..Default::default() };
        let served =
            q.get_audit_trail(server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)).await.unwrap().into_inner();
        assert_eq!(served.as_of.unwrap().tree_size, n);
        let got: Vec<_> = served.acts.iter().map(|a| (a.seq, a.kind.clone(), a.signers.clone(), a.household_id.clone())).collect();
        assert!(!got.is_empty(), "{subject:?}");
        assert_eq!(got, want, "{subject:?}");
        assert_eq!(served.red_flags.iter().map(|f| f.description.clone()).collect::<Vec<_>>(), flags);
    }
    // Page by page (7 acts a page), an actor's trail is the same acts; a page too large is
    // refused.
    let actor = actors.iter().max_by_key(|a| replay.audit.by_actor(a).count()).unwrap().clone();
    let (mut paged, mut from_seq, mut pages) = (Vec::new(), 0, 0);
    loop {
        let subject = Some(Subject::ActorId(actor.clone()));
        let req = api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject, page_size: 7, from_seq, ..Default::default() };
        let page = q.get_audit_trail(server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)).await.unwrap().into_inner();
        assert!(page.acts.len() <= 7);
        paged.extend(page.acts.iter().map(|a| a.seq));
        pages += 1;
        if page.next_from_seq == 0 {
            break;
        }
        from_seq = page.next_from_seq;
    }
    assert_eq!(paged, replay.audit.by_actor(&actor).map(|a| a.seq).collect::<Vec<_>>());
    assert!(pages > 2, "{pages} pages");
    let req = api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject: None, page_size: 10_001, ..Default::default() };
    let e = q.get_audit_trail(server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)).await.unwrap_err();
    assert_status(e, Code::InvalidArgument, "INVALID_REQUEST");
    // Asked about no subject: every act that raises a flag, and every flag.
    let req = api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject: None, min_tree_size: n, ..Default::default() };
    let served = q.get_audit_trail(server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)).await.unwrap().into_inner();
    let flagged: Vec<u64> = replay.audit.acts().iter().filter(|a| a.flag.is_some()).map(|a| a.seq).collect();
    assert_eq!(served.acts.iter().map(|a| a.seq).collect::<Vec<_>>(), flagged);
    assert_eq!(served.red_flags.iter().map(|f| f.description.clone()).collect::<Vec<_>>(), all_flags);
    let req = api::GetAuditTrailRequest {
        ledger_id: ledger.clone(),
        subject: Some(Subject::EntryId(objected[0].clone())),
        min_tree_size: n + 1,
        ..Default::default()
    };
    let e = q.get_audit_trail(server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)).await.unwrap_err();
    assert_status(e, Code::OutOfRange, "TREE_SIZE_NOT_REACHED");
    let req = api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: "P-1999-01".into(), min_tree_size: 0 };
    assert_status(q.get_publication(req).await.unwrap_err(), Code::NotFound, "UNKNOWN_PUBLICATION");
    let req = api::GetRankingsRequest { ledger_id: ledger.clone(), period: "2025-01".into(), size: 10, min_tree_size: n + 1 };
    assert_status(q.get_rankings(req).await.unwrap_err(), Code::OutOfRange, "TREE_SIZE_NOT_REACHED");
    assert!(verify(&server, &sample).await.0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_act_forged_beyond_the_records_or_an_index_on_another_function_is_named_and_never_served() {
    let db = Db::start().await;
    let sample = small_year(33, 2);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let mut server = served(&db, &sample).await;
    let last = records.last().unwrap().recorded_at();
    let mut q = query(&server).await;
    let flagged = |server: &Server| {
        let req = api::GetAuditTrailRequest { ledger_id: ledger.clone(), subject: None, ..Default::default() };
        server.auth(req, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)
    };
    let honest: Vec<u64> = q.get_audit_trail(flagged(&server)).await.unwrap().into_inner().acts.iter().map(|a| a.seq).collect();

    // The superuser adds a flagged act far beyond the records (a back-dated score by a panel
    // member), where no page of a load's replay looks.
    let owner = db.superuser().await.unwrap();
    owner
        .execute(
            "INSERT INTO rm_acts SELECT ledger_id, 1000000000000, kind, author, signers, recorded_at, occurred_at, households, entry_id, \
             0, 99, NULL FROM rm_acts WHERE ledger_id = $1 AND kind = 'ScoreRecorded' ORDER BY seq LIMIT 1",
            &[&ledger],
        )
        .await
        .unwrap();
    // Warm: never served, and VerifyLedger names it.
    let served: Vec<u64> = q.get_audit_trail(flagged(&server)).await.unwrap().into_inner().acts.iter().map(|a| a.seq).collect();
    assert_eq!(served, honest);
    let (ok, has_seq, reason) = verify(&server, &sample).await;
    assert!(!ok && !has_seq && reason.contains("rm_acts: seq 1000000000000 is stored but no record gives it"), "{reason}");
    server.shutdown().await;
    // Cold: refused from the load on.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let mut q = query(&server).await;
    assert_status(
        q.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: 0 }).await.unwrap_err(),
        Code::DataLoss,
        "LEDGER_CORRUPT",
    );
    server.shutdown().await;
    owner.execute("DELETE FROM rm_acts WHERE ledger_id = $1 AND seq = 1000000000000", &[&ledger]).await.unwrap();

    // The index rebuilt on a function that forgets a panel member: their acts would vanish
    // from their audit trail while every row stays as it was.
    owner
        .batch_execute(
            "CREATE OR REPLACE FUNCTION jifen_act_keys(ledger text, signers text, households text) RETURNS text[] \
             LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ \
             SELECT ARRAY(SELECT ledger || ' a ' || s FROM unnest(string_to_array(signers, ' ')) AS s WHERE s <> 'panel-01' \
             UNION ALL SELECT ledger || ' h ' || h FROM unnest(string_to_array(households, ' ')) AS h) $$; \
             REINDEX INDEX rm_acts_subjects;",
        )
        .await
        .unwrap();
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let (ok, _, reason) = verify(&server, &sample).await;
    assert!(!ok && reason.contains("jifen_act_keys"), "{reason}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_balance_row_is_named_warm_and_cold_and_jifen_rebuild_repairs_it_from_the_records() {
    let db = Db::start().await;
    let sample = small_year(32, 2);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let mut server = served(&db, &sample).await;
    let last = records.last().unwrap().recorded_at();
    let mut q = query(&server).await;
    let all = || api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: 0 };
    let honest = q.list_balances(all()).await.unwrap().into_inner();
    let household = nth_household(records, 3);

    // The superuser gives a household 100 points back (its `redeemed` lowered).
    let owner = db.superuser().await.unwrap();
    owner
        .execute("UPDATE rm_balances SET redeemed = redeemed - 100 WHERE ledger_id = $1 AND household_id = $2", &[&ledger, &household])
        .await
        .unwrap();
    // Warm: VerifyLedger names the row (the records verify), and queries stop.
    let (ok, has_seq, reason) = verify(&server, &sample).await;
    assert!(!ok && !has_seq, "{reason}");
    assert!(reason.contains(&format!("rm_balances: household {household} is stored as")), "{reason}");
    assert_eq!(q.list_balances(all()).await.unwrap_err().code(), Code::DataLoss);
    server.shutdown().await;

    // Cold: a server started after the edit refuses the village from its load on.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let mut q = query(&server).await;
    let e = q.list_balances(all()).await.unwrap_err();
    assert_status(e, Code::DataLoss, "LEDGER_CORRUPT");
    let (ok, _, reason) = verify(&server, &sample).await;
    assert!(!ok && reason.contains(&household), "{reason}");
    server.shutdown().await;

    // The operator rebuilds the read model from the records.
    let url_args = |db: &Db| {
        vec![
            "--database-url".to_owned(),
            db.cluster.connection_string(SUPERUSER, DATABASE),
            "--app-database-url".to_owned(),
            db.cluster.connection_string(APP_ROLE, DATABASE),
        ]
    };
    // The log key, which the rebuild checks the stored checkpoint against, in a data directory.
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("log.key"), jifen_ledger::hex(&LOG_SEED)).unwrap();
    let mut args =
        vec!["rebuild".to_owned(), "--village".to_owned(), ledger.clone(), "--data-dir".to_owned(), data.path().display().to_string()];
    args.extend(url_args(&db));
    let out = jifen(args.clone()).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("repaired: read model rm_balances: household {household}")), "{}", text(&out));
    let again = jifen(args.clone()).await;
    assert!(again.status.success() && text(&again).contains("already what the records give"), "{}", text(&again));

    // Served again, with the honest balances.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let mut q = query(&server).await;
    let repaired = q.list_balances(all()).await.unwrap().into_inner();
    assert_eq!(repaired.balances, honest.balances);
    assert_eq!(repaired.balance_digest, honest.balance_digest);
    assert!(verify(&server, &sample).await.0);
    server.shutdown().await;

    // A rebuild never trusts records that fail their checks: an edited record stops it, and
    // the read model is left as it was.
    owner.batch_execute("CREATE TABLE saved_records AS SELECT * FROM records").await.unwrap();
    let before = db.fingerprint().await.unwrap();
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE records SET body = set_byte(body, 5, get_byte(body, 5) # 1) WHERE ledger_id = '{ledger}' AND seq = 20;"
        ))
        .await
        .unwrap();
    owner.execute("UPDATE rm_balances SET basic = basic + 1 WHERE ledger_id = $1", &[&ledger]).await.unwrap();
    let rm_before: i64 =
        owner.query_one("SELECT sum(basic)::bigint FROM rm_balances WHERE ledger_id = $1", &[&ledger]).await.unwrap().get(0);
    let refused = jifen(args.clone()).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("fail their checks at seq 20"), "{}", text(&refused));
    let rm_after: i64 =
        owner.query_one("SELECT sum(basic)::bigint FROM rm_balances WHERE ledger_id = $1", &[&ledger]).await.unwrap().get(0);
    assert_eq!(rm_before, rm_after);
    restore_saved_records(&owner, &ledger).await;
    // Nor from a ledger whose tail was cut off: the stored checkpoint covers more records.
    owner
        .batch_execute(&format!("SET session_replication_role = replica; DELETE FROM records WHERE ledger_id = '{ledger}' AND seq >= 50;"))
        .await
        .unwrap();
    let refused = jifen(args.clone()).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("fail their checks at seq 50"), "{}", text(&refused));
    restore_saved_records(&owner, &ledger).await;
    // Nor with a log key that is not the deployment's: the stored checkpoint does not open.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("log.key"), jifen_ledger::hex(&[9u8; 32])).unwrap();
    let mut wrong = args.clone();
    wrong[4] = other.path().display().to_string();
    let refused = jifen(wrong).await;
    assert!(!refused.status.success() && text(&refused).contains("their checkpoint"), "{}", text(&refused));
    let out = jifen(args).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(db.fingerprint().await.unwrap(), before);

    // A read model that is gone (removed, or never written by an older version) is built by
    // the next load, from the records.
    drop_read_model(&owner, &ledger).await;
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let mut q = query(&server).await;
    assert_eq!(q.list_balances(all()).await.unwrap().into_inner().balances, honest.balances);
    assert_eq!(db.fingerprint().await.unwrap(), before);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_months_board_that_the_server_no_longer_keeps_is_still_checked_named_and_rebuilt() {
    // Given a village whose January is settled (its closed 公示 left the server's memory at the
    // settlement: only their digests stay),
    let db = Db::start().await;
    let sample = small_year(33, 3);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let last = records.last().unwrap().recorded_at();
    assert!(sample.writer.state.settled_periods().any(|(p, _)| p == Period::parse("p", "2025-01").unwrap()), "January is settled");
    let mut server = served(&db, &sample).await;
    let owner = db.superuser().await.unwrap();
    let row = owner
        .query_one(
            "SELECT b.publication_id, b.entry_id, b.position FROM rm_board_entries b JOIN rm_publications p USING (ledger_id, publication_id)
             WHERE ledger_id = $1 AND p.period = '2025-01' AND p.closed ORDER BY b.publication_id, b.position LIMIT 1",
            &[&ledger],
        )
        .await
        .unwrap();
    let (publication, entry, position): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
    let board = |n: u64| api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: publication.clone(), min_tree_size: n };
    let honest = query(&server).await.get_publication(board(0)).await.unwrap().into_inner();
    assert!(verify(&server, &sample).await.0);

    // when the superuser raises one of its lines,
    owner
        .execute(
            "UPDATE rm_board_entries SET points = points + 5 WHERE ledger_id = $1 AND publication_id = $2 AND position = $3",
            &[&ledger, &publication, &position],
        )
        .await
        .unwrap();
    // then VerifyLedger names the row (folding the board again from the records),
    let named = format!("rm_board_entries: publication {publication} position {position} (entry {entry}) is stored as");
    let (ok, has_seq, reason) = verify(&server, &sample).await;
    assert!(!ok && !has_seq && reason.contains(&named), "{reason}");
    server.shutdown().await;
    // and so does a server started after the edit, which serves nothing of the village.
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let e = query(&server).await.get_publication(board(0)).await.unwrap_err();
    assert_status(e, Code::DataLoss, "LEDGER_CORRUPT");
    let (ok, _, reason) = verify(&server, &sample).await;
    assert!(!ok && reason.contains(&named), "{reason}");
    server.shutdown().await;

    // A read model that is gone is built again by the next load, boards of settled months
    // whole: the board reads as it did, and the read model equals an offline replay.
    drop_read_model(&owner, &ledger).await;
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(last);
    let rebuilt = query(&server).await.get_publication(board(0)).await.unwrap().into_inner();
    assert_eq!(rebuilt.entries, honest.entries);
    assert_eq!(stored_rows(&db, &ledger).await.1, replayed_rows(records));
    assert!(verify(&server, &sample).await.0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_reads_and_verifies_what_the_first_one_appended() {
    let db = Db::start().await;
    let sample = small_year(33, 2);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let mut a = Server::start(&db, &sample).await;
    let b = Server::start(&db, &sample).await;
    let k = records.len() - 20;
    for r in &records[..k] {
        a.replay(r).await;
    }
    b.clock.advance_to(records[k - 1].recorded_at());
    let mut qb = query(&b).await;
    let household = nth_household(records, 1);
    let get = |min: u64| api::GetBalanceRequest { ledger_id: ledger.clone(), household_id: household.clone(), min_tree_size: min };
    // B loads the village as it stands.
    assert_eq!(qb.get_balance(get(k as u64)).await.unwrap().into_inner().as_of.unwrap().tree_size, k as u64);
    // A appends more; B's copy in memory is behind, but the read model B reads is not: a
    // client that wrote through A reads its write through B.
    for r in &records[k..] {
        a.replay(r).await;
    }
    let n = records.len() as u64;
    let one = qb.get_balance(get(n)).await.unwrap().into_inner();
    assert_eq!(one.as_of.unwrap().tree_size, n);
    let replay = Projections::from_records(records).unwrap();
    assert_eq!(one.balance.unwrap().available, replay.state().balances().get(&household).unwrap().available());
    // B's VerifyLedger compares the read model with a replay of every stored record (it loads
    // the village again), not with its stale copy, and a superuser's edit is still named.
    let (ok, _, reason) = verify(&b, &sample).await;
    assert!(ok, "{reason}");
    let owner = db.superuser().await.unwrap();
    owner
        .execute("UPDATE rm_period_figures SET basic = basic + 7 WHERE ledger_id = $1 AND household_id = $2", &[&ledger, &household])
        .await
        .unwrap();
    let (ok, has_seq, reason) = verify(&b, &sample).await;
    assert!(!ok && !has_seq && reason.contains("rm_period_figures") && reason.contains(&household), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_the_boards_schema_rebuilds_the_read_models_written_before_it() {
    // A database at V2: a village's records, and a read model of that version (balances, no
    // boards; written here by hand, stale on purpose).
    let db = Db(jifen::campaign::harness::Db::start_at(Some(2)).await.unwrap());
    let sample = small_year(34, 2);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let owner = db.superuser().await.unwrap();
    owner.execute("INSERT INTO ledgers (ledger_id, origin) VALUES ($1, $2)", &[&ledger, &sample.origin]).await.unwrap();
    db.store(1).unwrap().append(None, records).await.unwrap();
    let n = records.len() as i64;
    owner
        .execute(
            "INSERT INTO read_models (ledger_id, tree_size, root_hash, last_recorded_at, book_year) VALUES ($1, $2, $3, 0, 2025)",
            &[&ledger, &n, &vec![7u8; 32]],
        )
        .await
        .unwrap();
    owner.execute("INSERT INTO rm_balances VALUES ($1, 'H0001', 1, 2, 3, 4, 5, 6, 7, 8, 9)", &[&ledger]).await.unwrap();
    // The upgrade, then a server: the village is served, with its boards.
    db.migrate().await.unwrap();
    let mut server = Server::start(&db, &sample).await;
    server.clock.advance_to(records.last().unwrap().recorded_at());
    let mut q = query(&server).await;
    let replay = Projections::from_records(records).unwrap();
    let board = replay.publicity.boards().next().expect("the sample publishes").id.clone();
    let req = api::GetPublicationRequest { ledger_id: ledger.clone(), publication_id: board, min_tree_size: n as u64 };
    assert_eq!(q.get_publication(req).await.unwrap().into_inner().as_of.unwrap().tree_size, n as u64);
    let (tree_size, rows) = stored_rows(&db, &ledger).await;
    assert_eq!((tree_size, rows), (n as u64, replayed_rows(records)));
    assert!(verify(&server, &sample).await.0);
    server.shutdown().await;
}

/// The digest of what a server holds of a village (state, views, retired boards, tree), and
/// the size of the snapshot it was loaded from.
async fn held(server: &Server, ledger: &str) -> (jifen_ledger::hash::Hash, Option<u64>, u64) {
    let arc = server.villages.village(&VillageCode::parse(ledger).unwrap()).await.unwrap();
    let v = arc.lock().await;
    (v.digest().unwrap(), v.loaded_from_snapshot(), v.len())
}

/// A server that seals a snapshot every 40 records (and an eighth of the ledger).
async fn snapshotting(db: &Db, sample: &Sample) -> Server {
    let server = Server::start(db, sample).await;
    server.villages.set_snapshot_every(40);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_from_a_sealed_snapshot_decides_as_a_full_replay_and_a_forged_or_stale_history_is_found() {
    // Given a village served by a server that seals snapshots as it appends,
    let db = Db::start().await;
    let sample = small_year(34, 3);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let last = records.last().unwrap().recorded_at();
    let k = records.len() * 2 / 3;
    let mut a = snapshotting(&db, &sample).await;
    for r in &records[..k] {
        a.replay(r).await;
    }
    a.shutdown().await;
    let owner = db.superuser().await.unwrap();

    // when a server starts again, it loads the village from the latest snapshot (sealed by a
    // load if no append left one), replays what follows, and appends the rest,
    let mut b = snapshotting(&db, &sample).await;
    b.clock.advance_to(records[k - 1].recorded_at());
    let (_, from, len) = held(&b, &ledger).await;
    assert_eq!(len, k as u64);
    let rows = owner.query("SELECT tree_size FROM snapshots WHERE ledger_id = $1", &[&ledger]).await.unwrap();
    let first: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
    assert!(from.is_some() || first == vec![k as u64], "loaded from {from:?}, snapshots {first:?}");
    for r in &records[k..] {
        b.replay(r).await;
    }
    b.villages.history_checked().await;
    let (from_b, _, _) = held(&b, &ledger).await;
    let honest =
        query(&b).await.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: 0 }).await.unwrap().into_inner();
    assert!(verify(&b, &sample).await.0);
    b.shutdown().await;

    // then it holds exactly what a full replay of every record holds (the same bytes),
    let saved_snapshots = "CREATE TABLE saved_snapshots AS SELECT * FROM snapshots";
    owner.batch_execute(saved_snapshots).await.unwrap();
    owner.batch_execute("DELETE FROM snapshots").await.unwrap();
    let mut c = Server::start(&db, &sample).await;
    c.clock.advance_to(last);
    let (from_c, loaded_c, _) = held(&c, &ledger).await;
    assert_eq!(loaded_c, None, "no snapshot: every record replayed");
    assert_eq!(from_b, from_c, "the village continued from a snapshot is the village replayed");
    c.shutdown().await;
    let restore = "DELETE FROM snapshots; INSERT INTO snapshots SELECT * FROM saved_snapshots";
    owner.batch_execute(restore).await.unwrap();
    let mut d = Server::start(&db, &sample).await;
    d.clock.advance_to(last);
    let (from_d, loaded_d, _) = held(&d, &ledger).await;
    assert!(loaded_d.is_some_and(|s| s > 0 && s <= records.len() as u64), "{loaded_d:?}");
    assert_eq!(from_d, from_c);
    let answer =
        query(&d).await.list_balances(api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: 0 }).await.unwrap().into_inner();
    assert_eq!(answer.balances, honest.balances);
    d.shutdown().await;
    let size = loaded_d.unwrap();
    let all = || api::ListBalancesRequest { ledger_id: ledger.clone(), min_tree_size: 0 };

    // A snapshot whose body was changed, or sealed by another key, or another village's, stops
    // the village at its load, naming the snapshot.
    let forged_body = format!(
        "UPDATE snapshots SET body = set_byte(body, length(body) / 2, get_byte(body, length(body) / 2) # 1) WHERE ledger_id = '{ledger}'"
    );
    let other_key = jifen_ledger::note::NoteSigner::new(
        &format!("jifen.example.cn/village/{ledger}"),
        ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
    )
    .unwrap();
    let seal: String = owner.query_one("SELECT seal FROM snapshots WHERE ledger_id = $1", &[&ledger]).await.unwrap().get(0);
    let mut resealed = jifen_ledger::note::Note::new(jifen_ledger::note::Note::parse(seal.as_bytes()).unwrap().text().to_owned()).unwrap();
    resealed.sign(&other_key);
    let forged_seal = format!("UPDATE snapshots SET seal = '{}' WHERE ledger_id = '{ledger}'", resealed.encode());
    for (forgery, named) in
        [(forged_body, "its body is not the one the log sealed"), (forged_seal, "its seal is not signed by the log key")]
    {
        owner.batch_execute(&forgery).await.unwrap();
        let mut s = Server::start(&db, &sample).await;
        s.clock.advance_to(last);
        assert_status(query(&s).await.list_balances(all()).await.unwrap_err(), Code::DataLoss, "LEDGER_CORRUPT");
        let (ok, _, reason) = verify(&s, &sample).await;
        assert!(!ok && reason.contains(&format!("the snapshot of size {size}: {named}")), "{reason}");
        s.shutdown().await;
        owner.batch_execute(restore).await.unwrap();
    }

    // A snapshot the log sealed in another format (an older version's) is not opened: the
    // records are replayed, and a snapshot in this format replaces it.
    let log_key = jifen_ledger::note::NoteSigner::new(
        &format!("jifen.example.cn/village/{ledger}"),
        ed25519_dalek::SigningKey::from_bytes(&LOG_SEED),
    )
    .unwrap();
    let older_text = jifen_ledger::note::Note::parse(seal.as_bytes()).unwrap().text().replacen("jifen snapshot v1", "jifen snapshot v0", 1);
    let mut older = jifen_ledger::note::Note::new(older_text).unwrap();
    older.sign(&log_key);
    owner.batch_execute(&format!("UPDATE snapshots SET seal = '{}' WHERE ledger_id = '{ledger}'", older.encode())).await.unwrap();
    let mut s = snapshotting(&db, &sample).await;
    s.clock.advance_to(last);
    assert_eq!(query(&s).await.list_balances(all()).await.unwrap().into_inner().balances, honest.balances);
    assert_eq!(held(&s, &ledger).await.1, None, "replayed, not loaded from the older format");
    let seal_now: String = owner.query_one("SELECT seal FROM snapshots WHERE ledger_id = $1", &[&ledger]).await.unwrap().get(0);
    assert!(seal_now.starts_with("jifen snapshot v1\n"), "{seal_now}");
    s.shutdown().await;
    owner.batch_execute(restore).await.unwrap();

    // A record before the snapshot, changed by the superuser: the load starts from the sealed
    // state and answers, and the check of the history behind it stops the village, naming the
    // record, without a restart.
    owner.batch_execute("CREATE TABLE saved_records AS SELECT * FROM records").await.unwrap();
    let seq = size / 2;
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE records SET body = set_byte(body, 5, get_byte(body, 5) # 1) WHERE ledger_id = '{ledger}' AND seq = {seq};"
        ))
        .await
        .unwrap();
    let mut s = Server::start(&db, &sample).await;
    s.clock.advance_to(last);
    let _ = query(&s).await.list_balances(all()).await;
    s.villages.history_checked().await;
    assert_status(query(&s).await.list_balances(all()).await.unwrap_err(), Code::DataLoss, "LEDGER_CORRUPT");
    let (ok, has_seq, reason) = verify(&s, &sample).await;
    assert!(!ok && has_seq && reason.contains(&format!("seq {seq}")), "{reason}");
    s.shutdown().await;
    restore_saved_records(&owner, &ledger).await;

    // An act before the snapshot, deleted: balances are answered from the sealed state (and
    // the read model compared with it), but the audit trail, which serves the stored acts as
    // they are, waits for the history check, which names the act.
    owner.batch_execute("CREATE TABLE saved_acts AS SELECT * FROM rm_acts").await.unwrap();
    owner.execute("DELETE FROM rm_acts WHERE ledger_id = $1 AND seq = $2", &[&ledger, &(seq as i64)]).await.unwrap();
    let mut s = Server::start(&db, &sample).await;
    s.clock.advance_to(last);
    assert_eq!(query(&s).await.list_balances(all()).await.unwrap().into_inner().balances, honest.balances);
    let trail = api::GetAuditTrailRequest { ledger_id: ledger.clone(), ..Default::default() };
    let e = query(&s).await.get_audit_trail(s.auth(trail, method::GET_AUDIT_TRAIL, &ledger, &sample.cast.auditor)).await.unwrap_err();
    assert_status(e, Code::DataLoss, "LEDGER_CORRUPT");
    let (ok, _, reason) = verify(&s, &sample).await;
    assert!(!ok && reason.contains(&format!("rm_acts: seq {seq} is missing")), "{reason}");
    // VerifyLedger loaded the stopped village again (from the same snapshot): its history is
    // checked again, and it stays stopped.
    s.villages.history_checked().await;
    assert_status(query(&s).await.list_balances(all()).await.unwrap_err(), Code::DataLoss, "LEDGER_CORRUPT");
    s.shutdown().await;
    owner
        .batch_execute(&format!("DELETE FROM rm_acts WHERE ledger_id = '{ledger}'; INSERT INTO rm_acts SELECT * FROM saved_acts"))
        .await
        .unwrap();

    // Records cut off below the snapshot: the load finds the snapshot covering more than is
    // stored.
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica; DELETE FROM records WHERE ledger_id = '{ledger}' AND seq >= {};",
            size - 3
        ))
        .await
        .unwrap();
    let mut s = Server::start(&db, &sample).await;
    s.clock.advance_to(last);
    assert_status(query(&s).await.list_balances(all()).await.unwrap_err(), Code::DataLoss, "LEDGER_CORRUPT");
    s.shutdown().await;
    restore_saved_records(&owner, &ledger).await;

    // A read-model row edited while the server was down: named at the load from the snapshot.
    let household = nth_household(records, 2);
    owner
        .execute("UPDATE rm_balances SET basic = basic + 3 WHERE ledger_id = $1 AND household_id = $2", &[&ledger, &household])
        .await
        .unwrap();
    let mut s = Server::start(&db, &sample).await;
    s.clock.advance_to(last);
    assert_status(query(&s).await.list_balances(all()).await.unwrap_err(), Code::DataLoss, "LEDGER_CORRUPT");
    assert!(held(&s, &ledger).await.1.is_some(), "loaded from the snapshot");
    s.shutdown().await;
    owner
        .execute("UPDATE rm_balances SET basic = basic - 3 WHERE ledger_id = $1 AND household_id = $2", &[&ledger, &household])
        .await
        .unwrap();

    // A forged snapshot is repaired like a read model: `jifen rebuild` checks the records,
    // deletes the village's snapshots with its read model, and the next start replays whole.
    let forged = format!("UPDATE snapshots SET body = body || '\\x00'::bytea WHERE ledger_id = '{ledger}'");
    owner.batch_execute(&forged).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("log.key"), jifen_ledger::hex(&LOG_SEED)).unwrap();
    let args = vec![
        "rebuild".to_owned(),
        "--village".to_owned(),
        ledger.clone(),
        "--data-dir".to_owned(),
        data.path().display().to_string(),
        "--database-url".to_owned(),
        db.cluster.connection_string(SUPERUSER, DATABASE),
        "--app-database-url".to_owned(),
        db.cluster.connection_string(APP_ROLE, DATABASE),
    ];
    let out = jifen(args).await;
    assert!(out.status.success(), "{}", text(&out));
    let left: i64 = owner.query_one("SELECT count(*) FROM snapshots WHERE ledger_id = $1", &[&ledger]).await.unwrap().get(0);
    assert_eq!(left, 0);

    // And with every snapshot gone, the village is replayed whole and served as before.
    owner.batch_execute("DELETE FROM snapshots").await.unwrap();
    let mut s = Server::start(&db, &sample).await;
    s.clock.advance_to(last);
    assert_eq!(query(&s).await.list_balances(all()).await.unwrap().into_inner().balances, honest.balances);
    assert!(verify(&s, &sample).await.0);
    s.shutdown().await;
}

/// A signed append of `payload` by `author` at `now`.
fn append_of(
    ledger: &str,
    author: &jifen_ledger::sample::ActorKey,
    key: &str,
    now: i64,
    payload: jifen_ledger::pb::event_body::Payload,
) -> api::AppendRequest {
    let (body, sigs) = jifen_ledger::sample::sign(ledger, author, &[], now - 1, key, payload);
    api::AppendRequest { event: Some(event(body, &sigs)) }
}

/// In an adversary's order: scores up to an item's monthly cap, a restart, then one more score
/// and a correction past the cap, to a server that opened the village from its sealed snapshot
/// (whose write-model's shared ids are not in the snapshot). Both are refused, as the server
/// that took the scores refuses them, and nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_used_before_a_restart_from_a_snapshot_still_hold() {
    use jifen_ledger::pb::{self, event_body::Payload};
    let db = Db::start().await;
    let sample = small_year(35, 1);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let first_score = records
        .iter()
        .position(|r| {
            matches!(jifen_ledger::village::Accepted::from_verified_record(r.clone()).unwrap().payload(), Payload::ScoreRecorded(_))
        })
        .unwrap();
    let now = records[first_score].recorded_at();
    let panel = &sample.cast.panel[1];
    let score = |entry: &str, household: &str, points: i64| {
        Payload::ScoreRecorded(pb::ScoreRecorded {
            entry_id: entry.into(),
            household_id: household.into(),
            member_id: String::new(),
            item_code: "B01".into(),
            rulebook_version: 1,
            points,
            occurred_on: jifen_ledger::time::Date::of_micros(now).to_string(),
            source: pb::ScoreSource::Inspection as i32,
            evidence_hashes: vec![],
            claim_id: String::new(),
        })
    };
    // Given H0020 scored to B01's cap of 15 this month,
    let mut a = Server::start(&db, &sample).await;
    for r in &records[..first_score] {
        a.replay(r).await;
    }
    a.clock.advance_to(now);
    for (entry, points) in [("CAP-1", 1), ("CAP-2", 5), ("CAP-3", 5), ("CAP-4", 4)] {
        a.client.append(append_of(&ledger, panel, entry, now, score(entry, "H0020", points))).await.unwrap();
    }
    let over = score("CAP-5", "H0020", 1);
    assert_status(
        a.client.append(append_of(&ledger, panel, "CAP-5", now, over.clone())).await.unwrap_err(),
        Code::FailedPrecondition,
        "CAP_EXCEEDED",
    );
    a.shutdown().await;
    // and a restart that seals a snapshot of every record (its load replayed them), then
    // another that opens the village from it,
    let mut b = snapshotting(&db, &sample).await;
    b.villages.set_snapshot_every(1);
    b.clock.advance_to(now);
    let (_, _, len) = held(&b, &ledger).await;
    b.shutdown().await;
    let mut c = Server::start(&db, &sample).await;
    c.clock.advance_to(now);
    assert_eq!(held(&c, &ledger).await.1, Some(len), "opened from the snapshot of every record");
    // when a score and a correction go past the cap, both are refused and nothing is appended;
    assert_status(
        c.client.append(append_of(&ledger, panel, "CAP-5", now, over)).await.unwrap_err(),
        Code::FailedPrecondition,
        "CAP_EXCEEDED",
    );
    let raise = Payload::ScoreCorrected(pb::ScoreCorrected {
        entry_id: "CAP-1".into(),
        correction: Some(pb::score_corrected::Correction::NewPoints(2)),
        reason: "复核".into(),
    });
    assert_status(
        c.client.append(append_of(&ledger, panel, "CAP-6", now, raise)).await.unwrap_err(),
        Code::FailedPrecondition,
        "CAP_EXCEEDED",
    );
    assert_eq!(held(&c, &ledger).await.2, len);
    // another household's cap is its own.
    c.client.append(append_of(&ledger, panel, "CAP-7", now, score("CAP-7", "H0021", 5))).await.unwrap();
    c.shutdown().await;
}
