//! `jifen serve --metrics-listen`: a scrape of the Prometheus endpoint shows appends by outcome
//! and refusal reason, their latency, the records past the last witnessed checkpoint, the
//! villages loaded, the database pool and the process's memory; and each call's log line names
//! its village.

mod common;
use common::*;

use jifen::api::{self, ledger_service_client::LedgerServiceClient};
use jifen::campaign::harness::openers_file;
use jifen::server::villages::LogKey;
use jifen::store::embedded::SUPERUSER;
use jifen::store::storage::{APP_ROLE, DATABASE};
use jifen_ledger::sample::{ActorKey, Sample};
use std::path::Path;
use std::process::{Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET http://<addr>/metrics, the body.
async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of a sample line, `name{labels} value`, exactly as named.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

fn key_file(dir: &Path, a: &ActorKey) -> String {
    let p = dir.join(format!("{}.key", a.id));
    std::fs::write(&p, jifen_ledger::hex(&a.key.to_bytes())).unwrap();
    p.display().to_string()
}

fn cosign(addr: &std::net::SocketAddr, sample: &Sample, dir: &Path, who: &ActorKey) {
    let log_key = LogKey::from_seed(LOG_SEED).signer(&sample.origin).verifier().to_string();
    let state = dir.join(format!("{}.state.json", who.id)).display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_jifen"))
        .args(["cosign", "--key", &key_file(dir, who), "--actor", &who.id, "--server", &format!("http://{addr}")])
        .args(["--village", &sample.writer.ledger, "--log-key", &log_key, "--state", &state])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_appends_backlogs_the_pool_and_memory() {
    // A village of 170 records; two supervisors (the quorum) witnessed the first 150.
    let db = Db::start().await;
    let sample = small_year(51, 2);
    let records = sample.records();
    let ledger = sample.writer.ledger.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&db, &sample).await;
    for r in &records[..150] {
        server.replay(r).await;
    }
    server.wait_checkpoint(&ledger, 150).await.unwrap();
    for s in &sample.cast.supervisors[..2] {
        cosign(&server.addr, &sample, dir.path(), s);
    }
    for r in &records[150..170] {
        server.replay(r).await;
    }
    server.wait_checkpoint(&ledger, 170).await.unwrap();
    server.shutdown().await;

    // `jifen serve` on that database, with metrics.
    let data = dir.path().join("server");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("log.key"), jifen_ledger::hex(&LOG_SEED)).unwrap();
    std::fs::write(data.join("townships"), openers_file(&records[..1])).unwrap();
    let url = |user: &str| db.cluster.connection_string(user, DATABASE);
    let mut serve = Command::new(env!("CARGO_BIN_EXE_jifen"))
        .env("RUST_LOG", "info")
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--database-url", &url(SUPERUSER), "--app-database-url", &url(APP_ROLE)])
        .args(["--deployment-origin", jifen_ledger::sample::DEPLOYMENT_ORIGIN, "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, grpc) = serve_lines(&mut serve, 2);
    let metrics = lines[1].trim().strip_prefix("metrics on http://").and_then(|r| r.strip_suffix("/metrics")).expect(&lines[1]).to_owned();

    // Before any call: no village loaded, the pool bounded, memory measured.
    let body = scrape(&metrics).await;
    assert_eq!(value(&body, "jifen_loaded_villages"), 0.0);
    assert_eq!(value(&body, "jifen_appends_total{outcome=\"accepted\",reason=\"\"}"), 0.0);
    assert!(value(&body, "jifen_db_pool_max") >= 1.0);
    assert!(value(&body, "process_resident_memory_bytes") > 1e6);

    // A resent event (a duplicate), and an event signed by a key nobody enrolled (refused).
    let mut client = LedgerServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let last = &records[169];
    let resent = client.append(api::AppendRequest { event: Some(event(last.body().to_vec(), last.signatures())) }).await.unwrap();
    assert!(resent.into_inner().result.unwrap().duplicate);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let next = &records[170];
    let forged = jifen_ledger::signature::sign_event(&stranger, next.body());
    let refused = client.append(api::AppendRequest { event: Some(event(next.body().to_vec(), &[forged])) }).await.unwrap_err();
    let reason = tonic_types::StatusExt::get_details_error_info(&refused).unwrap().reason;

    let body = scrape(&metrics).await;
    assert_eq!(value(&body, "jifen_appends_total{outcome=\"duplicate\",reason=\"\"}"), 1.0);
    assert_eq!(value(&body, &format!("jifen_appends_total{{outcome=\"refused\",reason=\"{reason}\"}}")), 1.0);
    assert_eq!(value(&body, "jifen_append_duration_seconds_count"), 2.0);
    assert_eq!(value(&body, "jifen_loaded_villages"), 1.0);
    let village = format!("{{village=\"{ledger}\"}}");
    assert_eq!(value(&body, &format!("jifen_unsigned_records{village}")), 0.0);
    assert_eq!(value(&body, &format!("jifen_unsigned_records_age_seconds{village}")), 0.0);
    assert_eq!(value(&body, &format!("jifen_unwitnessed_tree_size{village}")), 20.0);
    assert_eq!(value(&body, "jifen_db_pool_connections{state=\"in_use\"}"), 0.0);

    // The log: each call's line names its village.
    serve.kill().unwrap();
    serve.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    let calls: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["target"] == "jifen::request")
        .collect();
    assert_eq!(calls.len(), 2, "{stderr}");
    for call in &calls {
        assert_eq!(call["fields"]["village"], ledger.as_str(), "{call}");
        assert_eq!(call["fields"]["method"], "/jifen.v1.LedgerService/Append", "{call}");
    }
}
