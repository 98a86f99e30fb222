//! README command 1, end to end: `jifen demo` generates, verifies and prints a village-year.

use std::process::Command;

#[test]
fn the_demo_verifies_a_village_year_and_prints_the_month() {
    let out = Command::new(env!("CARGO_BIN_EXE_jifen"))
        .args(["demo", "--seed", "7", "--households", "120", "--month", "5"])
        .output()
        .expect("the jifen binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for expected in ["verified:", "2 of 2 witness cosignatures", "【2025-05 积分公示】", "【2025-05 红黑榜】", "累计获得", "风险提示"]
    {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}");
    }
}

#[test]
fn a_bad_month_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_jifen")).args(["demo", "--month", "13"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--month must be 1 to 12"));
}
