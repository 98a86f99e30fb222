//! Fuzz target: `jifen_ledger::fuzzing::evidence` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jifen_ledger::fuzzing::evidence(data));
