//! The `jifen` command's failure modes that a person meets first.

use std::process::Command;

#[test]
fn serve_without_postgresql_binaries_says_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jifen"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("JIFEN_PG_BINDIR", dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install postgresql") && err.contains("--database-url"), "{err}");
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_the_public_and_note_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("supervisor.key");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_jifen"))
            .args(["keygen", "--note-name", "jifen.example.cn/witness/supervisor-01", "--out"])
            .arg(&key)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("public key: ") && stdout.contains("note verifier key: jifen.example.cn/witness/supervisor-01+"), "{stdout}");
    let seed = std::fs::read_to_string(&key).unwrap();
    assert_eq!(seed.trim().len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // Never overwritten.
    let again = run();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), seed);
}
