//! README command 1, end to end: `jifen demo` plays a village's month over gRPC on the embedded
//! PostgreSQL; `jifen demo --offline` verifies a whole generated year in memory.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_jifen")).args(args).output().expect("the jifen binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_demo_plays_a_month_over_grpc_on_the_embedded_postgresql() {
    let stdout = run(&["demo", "--households", "40"]);
    for expected in [
        "服务已启动：grpc://127.0.0.1:",
        "收到异议 2 件：1 件成立并更正，1 件不成立",
        "3 月积分核算完毕",
        "verified:",
        "2 witness cosignatures (witnessed)",
        "【2025-03 积分公示】",
        "成立，改为 1",
        "不成立",
        "户主",
        "累计获得",
        "【审计摘要】",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}");
    }
}

#[test]
fn the_offline_demo_verifies_a_village_year_and_prints_the_month() {
    let stdout = run(&["demo", "--offline", "--year-households", "120", "--month", "5"]);
    for expected in ["verified:", "2 of 2 witness cosignatures", "【2025-05 积分公示】", "【2025-05 红黑榜】", "累计获得", "风险提示"]
    {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}");
    }
}

#[test]
fn a_bad_month_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_jifen")).args(["demo", "--offline", "--month", "13"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--month must be 1 to 12"));
}
