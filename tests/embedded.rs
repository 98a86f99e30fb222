//! The embedded, managed PostgreSQL: initdb on first start, reuse on the next, data durable
//! across a stop, no TCP port, and a clean stop.

use jifen::store::embedded::{Cluster, SUPERUSER};
use tokio_postgres::NoTls;

async fn query_one(cluster: &Cluster, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(&cluster.connection_string(SUPERUSER, "postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query(sql, &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restarts_on_its_data_and_listens_on_no_tcp_port() {
    let dir = tempfile::tempdir().unwrap();
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

#[test]
fn a_data_dir_the_server_user_cannot_reach_is_a_clear_error_under_root() {
    use std::os::unix::fs::PermissionsExt;
    let outer = tempfile::tempdir().unwrap();
    let private = outer.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let result = Cluster::start(&private.join("data"));
    if is_root {
        // PostgreSQL would run as `nobody`, who cannot enter `private`.
        let err = result.unwrap_err().to_string();
        assert!(err.contains("is not searchable by others") && err.contains("private"), "{err}");
    } else {
        // Running as the directory's owner, the server can reach it.
        let mut cluster = result.expect("starts in the owner's private directory");
        cluster.stop().unwrap();
    }
}
