//! The `jifen` command's failure modes that a person meets first.

use std::process::Command;

#[test]
fn serve_without_postgresql_binaries_says_how_to_install_them() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
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
