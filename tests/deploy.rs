//! The files in deploy/ work as an operator uses them: the systemd unit passes `systemd-analyze
//! verify`, its sysusers.d file creates the user it runs as, its ExecStart with the example
//! config serves (over TLS, with metrics); the Dockerfile copies what exists and builds with a
//! toolchain the crate accepts, and sets only settings jifen knows.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap()
}

/// The value of `key=` lines of a unit file.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).collect()
}

#[test]
fn the_systemd_unit_verifies_and_its_user_is_created() {
    let unit = read("jifen.service");
    let dir = tempfile::tempdir().unwrap();
    // systemd-analyze checks the executables exist: the unit as shipped, with the binary
    // where this build put it.
    let exe = env!("CARGO_BIN_EXE_jifen");
    let copy = dir.path().join("jifen.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/jifen", exe)).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("systemd-analyze (tests/run installs systemd)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // It may warn about the machine it runs on (no running systemd, say), never about the unit.
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("jifen.service:"), "{said}");

    // The user it runs as comes from the sysusers.d file the unit names, and that file creates it.
    assert_eq!(unit_values(&unit, "User"), ["jifen"]);
    let pre = unit_values(&unit, "ExecStartPre");
    assert_eq!(pre, ["+/usr/bin/systemd-sysusers /usr/lib/sysusers.d/jifen.conf"]);
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let out =
        Command::new("systemd-sysusers").arg(format!("--root={}", root.display())).arg(deploy("sysusers.d/jifen.conf")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("jifen:")).unwrap_or_else(|| panic!("{passwd}"));
    assert!(line.ends_with(":/var/lib/jifen:/usr/sbin/nologin"), "{line}");
    assert!(std::fs::read_to_string(root.join("etc/group")).unwrap().lines().any(|l| l.starts_with("jifen:")));
    // Its state directory is jifen's default data directory under systemd, the one the
    // example config names.
    assert_eq!(unit_values(&unit, "StateDirectory"), ["jifen"]);
    assert!(read("jifen.toml").contains("data_dir = \"/var/lib/jifen\""));
}

#[test]
fn the_units_command_serves_with_the_example_config() {
    let unit = read("jifen.service");
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1);
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[..2], ["/usr/local/bin/jifen", "serve"]);
    assert_eq!(args[2..], ["--config", "/etc/jifen/jifen.toml"]);

    // This machine's paths for what /var/lib and /etc/jifen hold on a server; everything else
    // as deploy/jifen.toml says (TLS, metrics, JSON logs).
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_jifen"))
        .args(&args[1..2])
        .arg("--config")
        .arg(deploy("jifen.toml"))
        .env("JIFEN_DATA_DIR", dir.path().join("data"))
        .env("JIFEN_LISTEN", "127.0.0.1:0")
        .env("JIFEN_METRICS_LISTEN", "127.0.0.1:0")
        .env("JIFEN_TLS_CERT", &cert_path)
        .env("JIFEN_TLS_KEY", &key_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, _) = common::serve_lines(&mut serve, 2);
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert!(lines[0].starts_with("jifen serving on 127.0.0.1:") && lines[0].contains("(TLS, embedded PostgreSQL)"), "{lines:?}");
    assert!(lines[1].starts_with("metrics on http://127.0.0.1:"), "{lines:?}");
}

#[test]
fn the_dockerfile_copies_what_exists_and_sets_only_known_settings() {
    let dockerfile = read("Dockerfile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(root.join(source).exists(), "{line}: {source} is not in the repository");
        }
    }
    // Every source the binary is built from is copied: each top-level path Cargo.toml names.
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "proto", "src", "ledger", "projections", "benches"] {
        assert!(dockerfile.contains(&format!(" {needed}")), "the Dockerfile does not copy {needed}");
    }
    assert!(dockerfile.contains("cargo build --release --locked --bin jifen"));
    // The builder's toolchain is the crate's rust-version or newer.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let msrv = manifest.lines().find_map(|l| l.strip_prefix("rust-version = \"")).unwrap().trim_end_matches('"');
    let image = dockerfile.lines().find_map(|l| l.strip_prefix("FROM rust:")).unwrap();
    let version = image.split(['-', ' ']).next().unwrap();
    let parse = |v: &str| v.split('.').map(|n| n.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(parse(version) >= parse(msrv), "rust:{version} is older than rust-version {msrv}");
    // The settings it sets are jifen's.
    let settings = std::fs::read_to_string(root.join("src/cmd/config.rs")).unwrap();
    for var in dockerfile.split_whitespace().filter_map(|w| w.strip_prefix("JIFEN_")).filter_map(|w| w.split_once('=')) {
        let name = var.0.to_lowercase();
        assert!(settings.contains(&format!("    \"{name}\",")), "JIFEN_{} is not a setting", var.0);
    }
    // The server binaries the embedded cluster runs.
    assert!(dockerfile.contains("postgresql-15"));
}
