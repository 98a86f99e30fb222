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

#[test]
fn a_demo_village_too_small_to_hold_its_cast_is_refused_before_anything_runs() {
    for (args, households) in [(&["demo"][..], "0"), (&["demo", "--offline"][..], "3")] {
        let out = Command::new(env!("CARGO_BIN_EXE_jifen")).args(args).args(["--households", households]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "a usage error, not a panic: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--households") && err.contains("10..=100000"), "{err}");
    }
}

#[test]
fn a_malformed_key_file_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("e.json");
    std::fs::write(&event, r#"{"ledgerId": "150602101201", "actorId": "keeper-01", "stockReceived": {"receiptId": "R-1"}}"#).unwrap();
    let bad = [
        "abc".to_owned(),               // too short, odd length
        format!("{}é", "a".repeat(62)), // non-ASCII, 64 bytes
        format!("+{}", "a".repeat(63)), // a sign from_str_radix would take
    ];
    for text in bad {
        let key = dir.path().join("k.key");
        std::fs::write(&key, &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_jifen"))
            .args(["submit", "--server", "http://127.0.0.1:9", "--key"])
            .arg(&key)
            .arg(&event)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("a key file holds 64 hex digits"), "{text:?}: {err}");
    }
}

#[test]
fn log_key_prints_what_supervisors_pin_and_never_creates_or_replaces_the_key() {
    use jifen::server::villages::LogKey;
    use jifen_ledger::note::NoteVerifier;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("log.key");
    let log_key = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jifen")).arg("log-key").arg("--data-dir").arg(dir.path()).args(args).output().unwrap()
    };

    // No key: an error, and still no key.
    let out = log_key(&["--deployment-origin", "jifen.example.cn", "--village", "150602101201"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never by this command"), "{out:?}");
    assert!(!key_file.exists());

    // A key file that is not a key: an error naming it, and the file as it was.
    std::fs::write(&key_file, "not a key\n").unwrap();
    let out = log_key(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.key") && err.contains("64 hex digits"), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "not a key\n");

    // The key `serve` keeps: its public key, and per village the origin and the verifier key
    // that opens the checkpoints signed under that origin, and no other village's.
    std::fs::remove_file(&key_file).unwrap();
    let key = LogKey::load_or_create(&key_file).unwrap();
    let out = log_key(&["--deployment-origin", "jifen.example.cn", "--village", "150602101201", "--village", "150602101202"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("public key: {}", jifen_ledger::hex(&key.public_key()))), "{stdout}");
    let verifiers: Vec<NoteVerifier> =
        stdout.lines().filter_map(|l| l.strip_prefix("note verifier key: ")).map(|v| NoteVerifier::parse(v).unwrap()).collect();
    assert_eq!(verifiers.len(), 2, "{stdout}");
    for (code, verifier) in ["150602101201", "150602101202"].iter().zip(&verifiers) {
        let origin = format!("jifen.example.cn/village/{code}");
        assert!(stdout.contains(&format!("origin: {origin}\n")), "{stdout}");
        let checkpoint = jifen_ledger::checkpoint::Checkpoint { origin: origin.clone(), size: 3, root: jifen_ledger::Hash([7; 32]) };
        let note = checkpoint.sign(&key.signer(&origin)).encode();
        assert!(jifen_ledger::checkpoint::SignedCheckpoint::open(note.as_bytes(), &origin, verifier, &[]).is_ok());
        let other = format!("jifen.example.cn/village/{}", if *code == "150602101201" { "150602101202" } else { "150602101201" });
        let foreign = checkpoint_note(&key, &other);
        assert!(jifen_ledger::checkpoint::SignedCheckpoint::open(foreign.as_bytes(), &other, verifier, &[]).is_err());
    }

    // A village's verifier key depends on the deployment's origin: never assumed.
    let out = log_key(&["--village", "150602101201"]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--deployment-origin"), "{out:?}");

    // A malformed village code is refused before anything is printed.
    let out = log_key(&["--deployment-origin", "jifen.example.cn", "--village", "150602101201", "--village", "12x"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--village \"12x\""));
}

fn checkpoint_note(key: &jifen::server::villages::LogKey, origin: &str) -> String {
    let checkpoint = jifen_ledger::checkpoint::Checkpoint { origin: origin.to_owned(), size: 3, root: jifen_ledger::Hash([7; 32]) };
    checkpoint.sign(&key.signer(origin)).encode()
}
