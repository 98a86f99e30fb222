//! Projection replay from a bundle: every view rebuilt from the records, as `jifen replay`
//! and an auditor's offline check do it. The baseline, measured in the same run, is the
//! serial fold (decode a record, fold the write-model state, fold the views, next record).
//! Medians over the runs; the two results are compared, so a faster replay that disagrees
//! fails the bench.
//!
//! ```text
//! ./target/release/jifen bench --households 5000 --scores 17 --runs 1 --write-bundle /tmp/million.bundle
//! cargo bench --bench replay -- /tmp/million.bundle 5
//! ```

use jifen_ledger::bundle::Bundle;
use jifen_ledger::village::{Accepted, VillageState};
use jifen_projections::{Projections, Views};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..runs.max(1) {
        drop(out.take());
        let t = Instant::now();
        out = Some(f());
        times.push(t.elapsed());
    }
    (median(times), out.expect("ran"))
}

/// The pipeline's result must be the serial fold's, to the byte: the state and the views as
/// a snapshot serialises them, and the acts, which it leaves out.
fn same(serial: &Projections, piped: &Projections) {
    let bytes = |p: &Projections| (postcard::to_allocvec(p.state()).expect("state"), postcard::to_allocvec(&p.views).expect("views"));
    assert!(bytes(serial) == bytes(piped), "the pipeline's state or views differ from the serial fold's");
    assert!(serial.audit.acts() == piped.audit.acts(), "the pipeline's acts differ from the serial fold's");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let path = args.first().expect("usage: cargo bench --bench replay -- BUNDLE [RUNS]");
    let runs: usize = args.get(1).map_or(5, |r| r.parse().expect("runs"));
    let bundle = Bundle::decode(&std::fs::read(path).expect("bundle file")).expect("bundle");
    let records = bundle.records;
    let n = records.len();
    if std::env::args().any(|a| a == "--pipeline-only") {
        // For a profiler: the pipeline alone, run after run.
        let (d, _) = time(runs, || Projections::from_records(&records).expect("replay"));
        println!("{n} records, the pipeline alone: {:.1} ms (median of {runs})", d.as_secs_f64() * 1e3);
        return;
    }
    println!("{n} records, median of {runs} runs, {} threads", rayon::current_num_threads());
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let row = |name: &str, d: Duration| println!("  {name:<52} {:>9.1} ms {:>10.0} records/s", d.as_secs_f64() * 1e3, rate(d));

    // The baseline and the pipeline take turns, so both meet the machine in the same states.
    let (mut serial, mut pipelined) = (Vec::new(), Vec::new());
    let (mut baseline, mut piped) = (None, None);
    for _ in 0..runs.max(1) {
        // Last run's results are freed before this run is timed.
        drop((baseline.take(), piped.take()));
        let t = Instant::now();
        baseline = Some(Projections::from_records_serially(&records).expect("replay"));
        serial.push(t.elapsed());
        let t = Instant::now();
        piped = Some(Projections::from_records(&records).expect("replay"));
        pipelined.push(t.elapsed());
    }
    let (serial, pipelined) = (median(serial), median(pipelined));
    let (baseline, piped) = (baseline.expect("ran"), piped.expect("ran"));
    let (decoding, decoded) =
        time(runs, || records.iter().map(|r| Accepted::from_verified_record(r.clone()).expect("decodes")).collect::<Vec<_>>());
    let (folding_state, _) = time(runs, || {
        let mut state = VillageState::new();
        decoded.iter().for_each(|a| state.apply(a));
        state
    });
    let (folding_all, _) = time(runs, || {
        let mut state = VillageState::new();
        let mut views = Views::default();
        for a in &decoded {
            state.apply(a);
            views.apply(a, &state);
        }
        views
    });
    println!("the pipeline: decode ∥ state and views ∥ audit trail's index");
    row("Projections::from_records", pipelined);
    println!("  speed-up over the serial fold: {:.2}×", serial.as_secs_f64() / pipelined.as_secs_f64());
    same(&baseline, &piped);
    println!("baseline: the serial fold");
    row("decode, fold the state, fold the views, per record", serial);
    row("of which: copy and decode each record", decoding);
    row("of which: fold the write-model state", folding_state);
    row("of which: fold the views", folding_all.saturating_sub(folding_state));
    // Each view alone beside the state: which view costs what.
    macro_rules! view_alone {
        ($name:expr, $field:ident) => {{
            let (d, _) = time(runs, || {
                let mut state = VillageState::new();
                let mut views = Views::default();
                for a in &decoded {
                    state.apply(a);
                    views.$field.apply(a, &state);
                }
                views
            });
            row($name, d.saturating_sub(folding_state));
        }};
    }
    view_alone!("  view: balances", balances);
    view_alone!("  view: 公示", publicity);
    view_alone!("  view: supermarket", supermarket);
    view_alone!("  view: audit trail", audit);
    drop(baseline);
}
