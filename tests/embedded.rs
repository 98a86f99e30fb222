//! The embedded, managed PostgreSQL: initdb on first start, reuse on the next, data durable
//! across a stop, no TCP port, and a clean stop.

use jifen::embedded::{Cluster, SUPERUSER};
use tokio_postgres::NoTls;

async fn query_one(cluster: &Cluster, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(&cluster.connection_string(SUPERUSER, "postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query(sql, &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restarts_on_its_data_and_listens_on_no_tcp_port() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut cluster = Cluster::start(dir.path()).expect("first start runs initdb");
    let (client, conn) = tokio_postgres::connect(&cluster.connection_string(SUPERUSER, "postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)").await.unwrap();
    let listen: String = client.query_one("SHOW listen_addresses", &[]).await.unwrap().get(0);
    assert_eq!(listen, "", "no TCP listener");
    drop(client);
    cluster.stop().unwrap();
    assert!(!dir.path().join("pgdata/postmaster.pid").exists(), "stopped cleanly");

    let cluster = Cluster::start(dir.path()).expect("second start reuses the cluster");
    let rows = query_one(&cluster, "SELECT v FROM kept").await;
    assert_eq!(rows[0].get::<_, i32>(0), 42);
}
