//! The embedded, managed PostgreSQL: initdb on first start, reuse on the next, data durable
//! across a stop, no TCP port, a clean stop, and one process per data directory.

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
    // The directory stays this cluster's until it is dropped.
    drop(cluster);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_on_a_data_directory_in_use_is_refused_naming_the_holder_and_touches_nothing() {
    use jifen::store::embedded::EmbeddedError;
    let dir = tempfile::tempdir().unwrap();
    let first = Cluster::start(dir.path()).expect("the first start");
    let postmaster = std::fs::read_to_string(dir.path().join("pgdata/postmaster.pid")).unwrap();

    let err = Cluster::start(dir.path()).expect_err("the directory is in use");
    let text = err.to_string();
    let me = std::process::id();
    assert!(matches!(err, EmbeddedError::InUse { pid: Some(p), .. } if p == me), "{text}");
    assert!(text.contains(&format!("in use by another jifen process (pid {me})")), "{text}");
    // The refused start neither stopped nor restarted the first one's server.
    assert_eq!(std::fs::read_to_string(dir.path().join("pgdata/postmaster.pid")).unwrap(), postmaster);
    assert_eq!(query_one(&first, "SELECT 41 + 1").await[0].get::<_, i32>(0), 42);

    // Released with the cluster: the next start takes the directory.
    drop(first);
    let again = Cluster::start(dir.path()).expect("the directory is free again");
    assert_eq!(query_one(&again, "SELECT 1").await[0].get::<_, i32>(0), 1);
}

/// `jifen serve` on the embedded cluster in `dir`, its address once it listens.
async fn serve(dir: &std::path::Path) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jifen"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("jifen serve prints its address");
    let addr = line.strip_prefix("jifen serving on ").and_then(|r| r.split_whitespace().next()).expect(&line).parse().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Whether the server at `addr` answers from its database: an unknown village is looked up
/// there and named NOT_FOUND (UNAVAILABLE if the database is gone).
async fn answers_from_its_database(addr: std::net::SocketAddr) -> bool {
    use jifen::api::ledger_service_client::LedgerServiceClient;
    let mut client = LedgerServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let req = jifen::api::GetCheckpointRequest { ledger_id: "150602101299".into(), tree_size: 0, min_tree_size: 0 };
    matches!(client.get_checkpoint(req).await, Err(s) if s.code() == tonic::Code::NotFound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_serve_per_data_directory_and_the_next_start_recovers_from_a_killed_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, addr) = serve(dir.path()).await;
    assert!(answers_from_its_database(addr).await);

    // A second serve on the same directory refuses, naming the first, and touches nothing.
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_jifen"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output();
    let second = tokio::time::timeout(std::time::Duration::from_secs(60), second).await.expect("the second serve exits").unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("in use by another jifen process (pid {})", first.id().unwrap())), "{err}");
    assert!(answers_from_its_database(addr).await, "the first server still works after the refused start");

    // SIGKILL: the server cannot stop its PostgreSQL, which keeps running on the directory.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let pid_file = dir.path().join("pgdata/postmaster.pid");
    assert!(pid_file.exists(), "the killed server's PostgreSQL is left running");

    // The next start recovers on its own, at the first attempt.
    let (mut third, addr) = serve(dir.path()).await;
    assert!(answers_from_its_database(addr).await);
    let stopped = std::process::Command::new("kill").args(["-TERM", &third.id().unwrap().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(third.wait().await.unwrap().success());
    assert!(!pid_file.exists(), "a stopped server stops its PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_makes_a_new_log_key_for_a_database_holding_checkpoints() {
    use jifen::campaign::harness::Db;
    use jifen::store::storage::{APP_ROLE, DATABASE};
    let db = Db::start().await.unwrap();
    let owner = db.superuser().await.unwrap();
    owner
        .batch_execute(
            "INSERT INTO ledgers (ledger_id, origin) VALUES ('150602101201', 'jifen.example.cn/village/150602101201'); \
             INSERT INTO checkpoints (ledger_id, tree_size, root_hash, note) \
             VALUES ('150602101201', 1, decode(repeat('00', 32), 'hex'), 'a note the old key signed')",
        )
        .await
        .unwrap();
    // A restore that forgot the key file, or names another data directory.
    let fresh = tempfile::tempdir().unwrap();
    let serve = |dir: &std::path::Path| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_jifen"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .arg("--database-url")
            .arg(db.cluster.connection_string(SUPERUSER, DATABASE))
            .arg("--app-database-url")
            .arg(db.cluster.connection_string(APP_ROLE, DATABASE))
            .kill_on_drop(true);
        c
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), serve(fresh.path()).output()).await.expect("serve exits").unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.key does not exist, but the database holds checkpoints"), "{err}");
    assert!(!fresh.path().join("log.key").exists(), "no key was made");

    // With the key put back, it serves.
    jifen::server::villages::LogKey::load_or_create(&fresh.path().join("log.key")).unwrap();
    let mut child = serve(fresh.path()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(line.starts_with("jifen serving on "), "{line}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
