//! Where a served village's memory goes: the live heap of each part the server keeps per
//! village, measured with a counting allocator while folding a bundle's records exactly as
//! the server's load does (write-model state, then each view, the Merkle tree). The records themselves are dropped before anything is counted.
//!
//! ```text
//! ./target/release/jifen bench --households 5000 --scores 17 --runs 1 --write-bundle /tmp/million.bundle
//! cargo bench --bench memory -- /tmp/million.bundle
//! ```

use jifen_ledger::bundle::Bundle;
use jifen_ledger::merkle::Tree;
use jifen_ledger::village::{Accepted, VillageState};
use jifen_projections::Views;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    let path = std::env::args().skip(1).find(|a| !a.starts_with("--")).expect("usage: cargo bench --bench memory -- BUNDLE");
    let bundle = Bundle::decode(&std::fs::read(&path).expect("bundle file")).expect("bundle");
    let records = bundle.records;
    let n = records.len();
    let hashes: Vec<_> = records.iter().map(|r| r.hash()).collect();

    // Each part is folded alone, so its live heap is its own.
    let before = live();
    let mut state = VillageState::new();
    for r in &records {
        state.apply(&Accepted::from_verified_record(r.clone()).expect("decodes"));
    }
    let state_bytes = live() - before;

    let mut parts: Vec<(&str, usize)> = vec![("write-model state", state_bytes)];
    let mut views = Views::serving();
    let mut replay = VillageState::new();
    let mut view_bytes = [0usize; 4];
    for r in &records {
        let a = Accepted::from_verified_record(r.clone()).expect("decodes");
        replay.apply(&a);
        let b0 = live();
        views.balances.apply(&a, &replay);
        let b1 = live();
        views.publicity.apply(&a, &replay);
        // The boards a settlement retires leave memory (the server keeps their digests).
        drop(views.publicity.take_retired());
        let b2 = live();
        views.supermarket.apply(&a, &replay);
        let b3 = live();
        views.audit.apply(&a, &replay);
        // The writer takes a batch's acts to store them: a server keeps none.
        drop(views.audit.take_acts());
        let b4 = live();
        for (i, d) in [b1 as isize - b0 as isize, b2 as isize - b1 as isize, b3 as isize - b2 as isize, b4 as isize - b3 as isize]
            .into_iter()
            .enumerate()
        {
            view_bytes[i] = (view_bytes[i] as isize + d) as usize;
        }
    }
    drop(replay);
    parts.push(("view: balances", view_bytes[0]));
    parts.push(("view: 公示 (publicity)", view_bytes[1]));
    parts.push(("view: supermarket", view_bytes[2]));
    parts.push(("view: audit trail", view_bytes[3]));
    drop(records);

    let before = live();
    let mut tree = Tree::from_record_hashes(&hashes);
    // A server keeps the upper levels and the frontier: the rest is stored.
    tree.forget_below(tree.len());
    parts.push(("Merkle tree (upper levels)", live() - before));
    drop(hashes);

    let total: usize = parts.iter().map(|(_, b)| b).sum();
    println!("live heap of a served village of {n} records (counting allocator):");
    for (name, bytes) in &parts {
        println!(
            "  {name:<28} {:>8.1} MB  {:>6.0} bytes/record  {:>4.1}%",
            *bytes as f64 / 1e6,
            *bytes as f64 / n as f64,
            100.0 * *bytes as f64 / total as f64
        );
    }
    println!("  {:<28} {:>8.1} MB  {:>6.0} bytes/record", "total", total as f64 / 1e6, total as f64 / n as f64);

    // What sealing a snapshot of it costs the writer, which serialises under the village's
    // lock, and what opening one costs a start (server::villages::snapshot; the retired
    // boards' digests, a few kilobytes, left out): medians of five.
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut body = Vec::new();
    let serialise: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            body = postcard::to_allocvec(&(&state, &views, &tree)).expect("serialises");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let digest: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(jifen_ledger::hash::Hash::of(&body));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let open: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let opened: (VillageState, Views, Tree) = postcard::from_bytes(&body).expect("deserialises");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            drop(opened);
            ms
        })
        .collect();
    println!(
        "snapshot of it: {:.1} MB; serialised in {:.0} ms (under the writer's lock), SHA-256 {:.0} ms, deserialised in {:.0} ms",
        body.len() as f64 / 1e6,
        median(serialise),
        median(digest),
        median(open)
    );
    drop((state, views, tree));
}
