//! Architecture invariants that can be checked mechanically (ARCHITECTURE.md, "Invariants"):
//! `ledger` and `projections` do no I/O, read no clock, and know nothing of tonic or SQL.

use std::fs;
use std::path::Path;

/// APIs the pure crates must not use, with why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("SystemTime", "the clock"),
    ("Instant::now", "the clock"),
    ("chrono", "the clock"),
    ("std::time", "the clock"),
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("std::process", "processes"),
    ("std::env", "the environment"),
    ("tokio", "async I/O"),
    ("tonic", "gRPC"),
    ("postgres", "SQL"),
    ("sqlx", "SQL"),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_pure_crates_use_no_clock_io_grpc_or_sql() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for krate in ["ledger/src", "projections/src"] {
        rust_files(&root.join(krate), &mut files);
    }
    assert!(files.len() > 10, "found the sources");
    let mut violations = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).expect("utf-8 source");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (api, why) in FORBIDDEN {
                if code.contains(api) {
                    violations.push(format!("{}:{}: {api} ({why})", f.display(), i + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "pure crates reach outside:\n{}", violations.join("\n"));
}

#[test]
fn the_pure_crates_declare_no_io_dependencies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for manifest in ["ledger/Cargo.toml", "projections/Cargo.toml"] {
        let text = fs::read_to_string(root.join(manifest)).expect("manifest");
        let deps = text.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap_or("");
        for name in ["tokio", "tonic", "postgres", "sqlx", "chrono", "hyper"] {
            assert!(!deps.lines().any(|l| l.trim_start().starts_with(name)), "{manifest} depends on {name}");
        }
        // esrs brings tokio and chrono's clock: allowed only as an optional feature.
        if let Some(l) = deps.lines().find(|l| l.trim_start().starts_with("esrs")) {
            assert!(l.contains("optional = true"), "{manifest}: esrs must stay optional");
        }
    }
}
