//! Fuzz target: `jifen_ledger::fuzzing::bundle` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jifen_ledger::fuzzing::bundle(data));
