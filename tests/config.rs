//! `jifen serve --config`: every setting from a TOML file, the environment over the file, the
//! command line over both; database passwords from files, never on the command line; and the
//! mistakes an operator makes (a misspelt setting, a missing file, a wrong password, a TLS key
//! without its certificate) stop the start with an error that names them.

mod common;

use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::{AppendRequest, GetLogKeyRequest, SignedEvent};
use jifen::campaign::harness::{openers_file, Db};
use jifen::store::embedded::SUPERUSER;
use jifen::store::storage::{APP_ROLE, DATABASE};
use jifen_ledger::sample::DEPLOYMENT_ORIGIN;
use std::path::Path;
use std::process::{Command, Stdio};

fn jifen() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jifen"));
    command.env_remove("JIFEN_CONFIG").env("RUST_LOG", "info");
    command
}

/// Runs a `serve` that must fail, and returns what it said.
fn refused(command: &mut Command) -> String {
    let out = command.stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
    assert!(!out.status.success(), "started: {}", String::from_utf8_lossy(&out.stdout));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_settings_from_a_file_the_environment_and_the_command_line() {
    let db = Db::start().await.unwrap();
    // Password authentication for every role, on the cluster's socket.
    let admin = db.superuser().await.unwrap();
    admin
        .batch_execute(&format!("ALTER ROLE {SUPERUSER} PASSWORD 'owner-secret'; ALTER ROLE {APP_ROLE} PASSWORD 'app-secret'"))
        .await
        .unwrap();
    db.cluster.write_file("pg_hba.conf", b"local all all scram-sha-256\n", 0o600).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    drop(admin);

    let dir = tempfile::tempdir().unwrap();
    let owner_pw = write(dir.path(), "owner.pw", "owner-secret\n");
    let app_pw = write(dir.path(), "app.pw", "app-secret\n");
    let data = dir.path().join("data");
    let url = db.cluster.connection_string(SUPERUSER, DATABASE);
    let settings = |extra: &str| {
        format!(
            "data_dir = {data:?}\ndatabase_url = {url:?}\ndatabase_password_file = {owner_pw:?}\napp_database_password_file = {app_pw:?}\n\
             listen = \"192.0.2.1:50051\"\ndeployment_origin = \"from-the-file.example\"\nlog_format = \"json\"\nsnapshot_every = 7\n{extra}"
        )
    };
    let config = write(dir.path(), "jifen.toml", &settings(""));

    // A village its township may open: the townships file in the file's data directory.
    let sample = common::small_year(41, 1);
    let genesis = &sample.records()[0];
    let ledger = sample.writer.ledger.clone();
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("townships"), openers_file([genesis])).unwrap();

    // The file's listen address is not this machine's: the environment's must win; the
    // command line's origin (the sample's) wins over the file's.
    let mut serve = jifen()
        .args(["serve", "--config", &config, "--deployment-origin", DEPLOYMENT_ORIGIN])
        .env("JIFEN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, addr) = common::serve_lines(&mut serve, 1);
    assert!(lines[0].contains("external PostgreSQL"), "{lines:?}");
    let mut client = LedgerServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let event = SignedEvent::new(genesis.body().to_vec(), genesis.signatures());
    client.append(AppendRequest { event: Some(event) }).await.unwrap();
    let key = client.get_log_key(GetLogKeyRequest { ledger_id: ledger.clone() }).await.unwrap().into_inner();
    assert_eq!(key.origin, format!("{DEPLOYMENT_ORIGIN}/village/{ledger}"));
    assert!(data.join("log.key").exists(), "the log key is in the file's data directory");
    // No password on the command line.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", serve.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("secret"));
    serve.kill().unwrap();
    serve.wait().unwrap();
    // The file's log format: JSON lines.
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    let line = stderr.lines().find(|l| l.contains("serving jifen.v1")).unwrap_or_else(|| panic!("{stderr}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(json["fields"]["message"], "serving jifen.v1");

    // Mistakes, each named.
    let misspelt = write(dir.path(), "misspelt.toml", &settings("snapshot_evry = 9\n"));
    let said = refused(jifen().args(["serve", "--config", &misspelt]));
    assert!(said.contains("snapshot_evry") && said.contains("misspelt.toml"), "{said}");
    let said = refused(jifen().args(["serve", "--config", &dir.path().join("absent.toml").display().to_string()]));
    assert!(said.contains("absent.toml") && said.contains("No such file"), "{said}");
    let wrong = write(dir.path(), "wrong.pw", "not-the-password\n");
    let said = refused(jifen().args(["serve", "--config", &config, "--database-password-file", &wrong]).env("JIFEN_LISTEN", "127.0.0.1:0"));
    assert!(said.contains("password authentication failed"), "{said}");
    let said = refused(jifen().args(["serve", "--config", &config]).env("JIFEN_TLS_KEY", "/etc/jifen/tls/server.key"));
    assert!(said.contains("tls_cert and tls_key go together"), "{said}");
    let said = refused(jifen().args(["serve", "--config", &config]).env("JIFEN_SNAPSHOT_EVERY", "many"));
    assert!(said.contains("snapshot_every") && said.contains("JIFEN_SNAPSHOT_EVERY"), "{said}");
    // The same file tells `log-key` where the key is and under which origin.
    let out = jifen().args(["log-key", "--config", &config, "--village", &ledger]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&format!("origin: from-the-file.example/village/{ledger}")), "{text}");
    let out = jifen().args(["log-key", "--data-dir", &data.display().to_string(), "--village", &ledger]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--village needs the deployment origin"));
}
