//! The PostgreSQL store against a real, embedded PostgreSQL: appends are all-or-nothing,
//! concurrent writers lose cleanly on the unique constraint, and the database itself refuses
//! UPDATE, DELETE and TRUNCATE of ledger data.

use esrs::manager::AggregateManager;
use jifen::store::embedded::{Cluster, SUPERUSER};
use jifen::store::event_store::{aggregate_id, VillageEventStore};
use jifen::store::{create_database, migrate, Store, StoreError};
use jifen_ledger::sample::{generate, SampleConfig};
use jifen_ledger::village::Command;
use jifen_ledger::VillageCode;
use tokio_postgres::NoTls;

/// Fields drop in order: the store's connections, then the cluster, then its directory.
struct Db {
    store: Store,
    cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn start() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(dir.path()).expect("the embedded PostgreSQL starts");
        create_database(&cluster.connection_string(SUPERUSER, "postgres"), "jifen").await.unwrap();
        migrate(&cluster.connection_string(SUPERUSER, "jifen")).await.unwrap();
        let store = Store::connect(&cluster.connection_string("jifen_app", "jifen"), 4).unwrap();
        Db { store, cluster, _dir: dir }
    }

    async fn client(&self, user: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.cluster.connection_string(user, "jifen"), NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

fn village() -> VillageCode {
    VillageCode::parse(jifen_ledger::sample::VILLAGE_CODE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_and_concurrent_appends_lose_cleanly() {
    let db = Db::start().await;
    let sample = generate(&SampleConfig { seed: 5, households: Some(30), months: 1, scores_per_household: 2.0 }).unwrap();
    let records = sample.records();
    db.store.append(Some(&sample.origin), &records[..1]).await.unwrap();
    for chunk in records[1..].chunks(100) {
        db.store.append(None, chunk).await.unwrap();
    }
    assert_eq!(db.store.load(&village()).await.unwrap(), records);
    assert_eq!(db.store.read(&village(), 5, 8).await.unwrap(), &records[5..8]);
    assert_eq!(db.store.ledgers().await.unwrap(), vec![(village(), sample.origin.clone())]);

    // A second writer appending at a seq already taken loses, and nothing of its batch lands.
    let n = records.len();
    let err = db.store.append(None, &records[n - 3..]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { seq, .. } if seq == (n - 3) as u64), "{err}");
    assert_eq!(db.store.load(&village()).await.unwrap().len(), n);
    // Registering the same ledger again is a conflict too.
    assert!(matches!(db.store.append(Some(&sample.origin), &records[..1]).await, Err(StoreError::Conflict { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_change_ledger_data() {
    let db = Db::start().await;
    let sample = generate(&SampleConfig { seed: 6, households: Some(10), months: 1, scores_per_household: 1.0 }).unwrap();
    db.store.append(Some(&sample.origin), &sample.records()[..20]).await.unwrap();

    // The service's role has no UPDATE or DELETE privilege at all.
    let app = db.client("jifen_app").await;
    for sql in ["UPDATE records SET recorded_at = 0 WHERE seq = 3", "DELETE FROM records WHERE seq = 19", "TRUNCATE records"] {
        let e = app.batch_execute(sql).await.unwrap_err();
        assert!(
            e.to_string().contains("permission denied") || e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
    }
    // Even the owner (a superuser) is stopped by the append-only triggers.
    let owner = db.client(SUPERUSER).await;
    for (sql, op) in [
        ("UPDATE records SET recorded_at = 0 WHERE seq = 3", "UPDATE"),
        ("DELETE FROM records WHERE seq = 19", "DELETE"),
        ("TRUNCATE records CASCADE", "TRUNCATE"),
        ("UPDATE ledgers SET origin = 'x'", "UPDATE"),
        ("DELETE FROM ledgers", "DELETE"),
    ] {
        let e = owner.batch_execute(sql).await.unwrap_err();
        let msg = e.as_db_error().map_or(e.to_string(), |d| d.message().to_owned());
        assert!(msg.contains(&format!("{op} on")) && msg.contains("append-only"), "{sql}: {msg}");
    }
    assert_eq!(db.store.load(&village()).await.unwrap(), &sample.records()[..20]);
    // The profile table is the exception: personal data can be corrected and erased.
    app.batch_execute("INSERT INTO profiles (ledger_id, subject_id, display_name) VALUES ('150602101201', 'H0001', '张三')").await.unwrap();
    app.batch_execute("DELETE FROM profiles WHERE subject_id = 'H0001'").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_esrs_manager_runs_the_write_model_over_our_event_store() {
    let db = Db::start().await;
    let sample = generate(&SampleConfig { seed: 8, households: Some(10), months: 1, scores_per_household: 1.0 }).unwrap();
    let manager = AggregateManager::new(VillageEventStore::new(db.store.clone()));
    let id = aggregate_id(&village());
    let mut state = esrs::AggregateState::with_id(id);
    for r in &sample.records()[..40] {
        let cmd = Command::new(r.body().to_vec(), r.signatures().to_vec(), r.recorded_at());
        let inner = manager.handle_command(state, cmd).await.expect("stored").expect("admissible");
        // Reload through the event store: the state rebuilt from PostgreSQL matches.
        let loaded = manager.load(id).await.unwrap().expect("exists");
        assert_eq!(loaded.inner().head(), inner.head());
        state = loaded;
    }
    assert_eq!(db.store.load(&village()).await.unwrap(), &sample.records()[..40]);
    assert_eq!(*state.sequence_number(), 40);
    // A rejected command is the write-model's error and stores nothing.
    let r = &sample.records()[40];
    let mut forged = r.signatures().to_vec();
    forged[0].signature[0] ^= 1;
    let outcome = manager.handle_command(state, Command::new(r.body().to_vec(), forged, r.recorded_at())).await.expect("no store error");
    assert!(matches!(outcome, Err(jifen_ledger::village::Rejection::Signature(_))));
    assert_eq!(db.store.load(&village()).await.unwrap().len(), 40);
    // Deleting an aggregate is refused.
    assert!(matches!(manager.delete(id).await, Err(StoreError::AppendOnly(_))));
}
