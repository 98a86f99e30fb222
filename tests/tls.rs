//! TLS end to end, with a private CA and certificates the test makes: `jifen serve
//! --tls-cert --tls-key` answers the CLI's `https://` (checked against `--ca`, and against the
//! name), refuses what a wrong CA, a wrong name or plaintext would get; a plaintext server does
//! not quietly answer an `https://` client; and the connection to PostgreSQL honours `sslmode`
//! and `sslrootcert` against a server that speaks TLS.

mod common;
use common::*;

use jifen::api;
use jifen::store::embedded::SUPERUSER;
use jifen::store::storage::{APP_ROLE, DATABASE};
use jifen::store::Connection;
use jifen_ledger::sample::ActorKey;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A CA and a certificate it issued for `names`, as PEM files in `dir` (`<tag>-ca.pem`,
/// `<tag>-cert.pem`, `<tag>-key.pem`).
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, tag: &str, names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("jifen test CA {tag}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, &ca).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(format!("{tag}-{name}.pem"));
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki { ca: write("ca", ca.pem()), cert: write("cert", cert.pem()), key: write("key", key.serialize_pem()) }
}

async fn jifen(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_jifen")).args(args).output().unwrap()).await.unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn key_file(dir: &Path, a: &ActorKey) -> String {
    let p = dir.join(format!("{}.key", a.id));
    std::fs::write(&p, jifen_ledger::hex(&a.key.to_bytes())).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_the_cli_speak_tls_and_refuse_what_is_not_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = pki(dir.path(), "good", &["localhost"]);
    let other = pki(dir.path(), "other", &["localhost"]);
    let ca = good.ca.display().to_string();

    // A village of 40 records, appended through a plaintext server.
    let db = Db::start().await;
    let sample = small_year(31, 1);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let mut server = Server::start(&db, &sample).await;
    for r in &records[..40] {
        server.replay(r).await;
    }
    server.wait_checkpoint(&ledger, 40).await.unwrap();
    // An https:// client of a plaintext server fails: it never falls back to plaintext.
    let plain = format!("https://localhost:{}", server.addr.port());
    let out = jifen(strings(&["query", "--server", &plain, "--ca", &ca, "--village", &ledger, "balances"])).await;
    assert!(!out.status.success(), "https:// to a plaintext server answered: {}", text(&out));
    server.shutdown().await;

    // The same database served over TLS by `jifen serve`.
    let data = dir.path().join("server");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("log.key"), jifen_ledger::hex(&LOG_SEED)).unwrap();
    std::fs::write(data.join("townships"), jifen::campaign::harness::openers_file(&records[..1])).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_jifen"));
    let tls_args = ["--tls-cert", good.cert.to_str().unwrap(), "--tls-key", good.key.to_str().unwrap()];
    let child = jifen::campaign::harness::Child::start_with(exe, &db.0, &data, &tls_args).await.unwrap();
    let port = child.addr.port();
    let https = format!("https://localhost:{port}");

    // The CLI over TLS: a public query, and a guarded verification with a reader's key.
    let out = jifen(strings(&["query", "--server", &https, "--ca", &ca, "--village", &ledger, "balances"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("树大小 40"), "{}", text(&out));
    let reader = key_file(dir.path(), &sample.cast.supervisors[0]);
    let log_key = jifen::server::villages::LogKey::from_seed(LOG_SEED).signer(&sample.origin).verifier().to_string();
    let verify = strings(&["verify", "--server", &https, "--ca", &ca, "--village", &ledger, "--key", &reader, "--log-key", &log_key]);
    let out = jifen(verify).await;
    assert!(out.status.success() && text(&out).contains("verified"), "{}", text(&out));

    // What is not TLS to this server, or not this server's certificate, fails.
    let refused: [(Vec<String>, &str); 4] = [
        // The system's roots do not know the private CA.
        (strings(&["--server", &https]), "certificate"),
        // Another CA.
        (strings(&["--server", &https, "--ca", other.ca.to_str().unwrap()]), "certificate"),
        // The right CA, the wrong name: the certificate is for localhost.
        (strings(&["--server", &format!("https://127.0.0.1:{port}"), "--ca", &ca]), "certificate"),
        // Plaintext to a TLS server.
        (strings(&["--server", &format!("http://127.0.0.1:{port}")]), ""),
    ];
    for (server_args, why) in refused {
        let mut args = strings(&["query"]);
        args.extend(server_args.iter().cloned());
        args.extend(strings(&["--village", &ledger, "balances"]));
        let out = jifen(args).await;
        assert!(!out.status.success(), "{server_args:?} answered: {}", text(&out));
        assert!(text(&out).to_lowercase().contains(why), "{server_args:?}: {}", text(&out));
    }
    // Plaintext beyond this machine needs --plaintext (refused before any connection).
    let out = jifen(strings(&["query", "--server", "http://192.0.2.1:50051", "--village", &ledger, "balances"])).await;
    assert!(text(&out).contains("--plaintext"), "{}", text(&out));
    drop(child);
}

#[test]
fn a_key_that_does_not_go_with_the_certificate_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let a = pki(dir.path(), "a", &["localhost"]);
    let b = pki(dir.path(), "b", &["localhost"]);
    jifen::server::tls_identity(&a.cert, &a.key).unwrap();
    let e = jifen::server::tls_identity(&a.cert, &b.key).unwrap_err().to_string();
    assert!(e.contains("does not go with") && e.contains("a-cert.pem") && e.contains("b-key.pem"), "{e}");
    let e = jifen::server::tls_identity(&a.key, &a.key).unwrap_err().to_string();
    assert!(e.contains("--tls-cert"), "{e}");
    let e = jifen::server::tls_identity(&a.cert, &dir.path().join("missing.pem")).unwrap_err().to_string();
    assert!(e.contains("--tls-key") && e.contains("missing.pem"), "{e}");
}

/// Whether the session of `client` is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_connection_honours_sslmode_and_sslrootcert() {
    let dir = tempfile::tempdir().unwrap();
    let good = pki(dir.path(), "good", &["localhost"]);
    let other = pki(dir.path(), "other", &["localhost"]);
    let mut db = Db::start().await;
    // The cluster listens on TCP too, with TLS, on a port of its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cluster = &mut db.0.cluster;
    let cert = cluster.write_file("server.crt", &std::fs::read(&good.cert).unwrap(), 0o600).unwrap();
    let key = cluster.write_file("server.key", &std::fs::read(&good.key).unwrap(), 0o600).unwrap();
    cluster.stop().unwrap();
    for (name, value) in [
        ("listen_addresses", "127.0.0.1".to_owned()),
        ("port", port.to_string()),
        ("ssl", "on".into()),
        ("ssl_cert_file", cert.display().to_string()),
        ("ssl_key_file", key.display().to_string()),
    ] {
        cluster.set(name, &value);
    }
    cluster.start_again().unwrap();
    let tcp = |host: &str, tls: &str| format!("host={host} port={port} user={SUPERUSER} dbname={DATABASE} {tls}");
    let (good_ca, other_ca) = (good.ca.display(), other.ca.display());

    for (conn, want_tls) in [
        (tcp("127.0.0.1", "sslmode=disable"), false),
        (tcp("127.0.0.1", ""), true),
        (tcp("127.0.0.1", "sslmode=require"), true),
        (tcp("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={good_ca}")), true),
        (tcp("localhost", &format!("sslmode=verify-full sslrootcert='{good_ca}'")), true),
        (format!("postgresql://{SUPERUSER}@localhost:{port}/{DATABASE}?sslmode=verify-full&sslrootcert={good_ca}"), true),
    ] {
        let (client, _task) = Connection::parse(&conn).unwrap().connect().await.unwrap_or_else(|e| panic!("{conn}: {e}"));
        assert_eq!(encrypted(&client).await, want_tls, "{conn}");
    }
    for (conn, why) in [
        // The certificate is for localhost, not 127.0.0.1.
        (tcp("127.0.0.1", &format!("sslmode=verify-full sslrootcert={good_ca}")), "NotValidForName"),
        // Another CA, with and without the name checked; and require with a root verifies it.
        (tcp("localhost", &format!("sslmode=verify-full sslrootcert={other_ca}")), "UnknownIssuer"),
        (tcp("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={other_ca}")), "UnknownIssuer"),
        (tcp("127.0.0.1", &format!("sslmode=require sslrootcert={other_ca}")), "UnknownIssuer"),
    ] {
        let e = Connection::parse(&conn).unwrap().connect().await.map(|_| ()).unwrap_err();
        let chain = format!("{e:?}");
        assert!(chain.contains(why), "{conn}: {chain}");
    }

    // `jifen serve` on it: every connection of the service's role is encrypted.
    let data = dir.path().join("server");
    let url = |user: &str| format!("host=localhost port={port} user={user} dbname={DATABASE} sslmode=verify-full sslrootcert={good_ca}");
    let exe = env!("CARGO_BIN_EXE_jifen");
    let mut serve = std::process::Command::new(exe)
        .env("RUST_LOG", "warn")
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--database-url", &url(SUPERUSER), "--app-database-url", &url(APP_ROLE)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (_, addr) = serve_lines(&mut serve, 1);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let mut query = jifen::api::query_service_client::QueryServiceClient::new(channel);
    let missing = query.list_balances(api::ListBalancesRequest { ledger_id: "110101001001".into(), ..Default::default() }).await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
    let (owner, _task) = Connection::parse(&tcp("127.0.0.1", "sslmode=require")).unwrap().connect().await.unwrap();
    let row = owner
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1",
            &[&APP_ROLE],
        )
        .await
        .unwrap();
    let (tls, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0 && tls == all, "{tls} of {all} connections of {APP_ROLE} encrypted");
    serve.kill().unwrap();
    serve.wait().unwrap();
}
