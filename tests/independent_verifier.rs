//! The test vectors verify under an implementation that shares no code with ours:
//! `docs/verify_vectors.py`, written from docs/FORMAT.md with Python's hashlib and the
//! `cryptography` package.

use std::process::Command;

#[test]
fn the_vectors_verify_with_the_independent_python_verifier() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/docs/verify_vectors.py"))
        .arg(format!("{root}/ledger/testdata/vectors.json"))
        .output()
        .expect("python3 is required for the independent format check (see README: prerequisites)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "independent verifier failed (is the `cryptography` package installed? `pip install cryptography`):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
