//! The `jifen` binary's commands, one file each (the service they drive is the library).
//!
//! - `demo` — README command 1: a village's month over gRPC on the embedded PostgreSQL;
//!   `demo_offline` — `demo --offline`: a village-year generated, verified and printed in
//!   memory.
//! - `serve` — the gRPC service on the embedded or an external PostgreSQL; `rebuild` — an
//!   operator's rebuild of a village's read model from its records.
//! - `keygen`, `submit`, `query` — an actor's key; signing and appending an event; readable
//!   queries. `log_key` — the log's public key and a village's note verifier key, for the
//!   people who pin it.
//! - `cosign`, `export`, `verify`, `replay` — the commands of supervisors and auditors, who
//!   do not trust the operator: witnessing checkpoints, year bundles, verification against a
//!   server or offline, a year rebuilt offline.
//! - `bench`, `campaign` — the ledger core's benchmark; the long mode of the crash, tamper and
//!   bad-input campaigns.
//! - `config` — the settings of `serve` (and `rebuild`, `log-key`): defaults, config file,
//!   environment, command line.
//! - `connect` — how the client commands reach a server (`--server`, `--ca`, `--plaintext`).
//! - `tables` — the readable tables (公示 board, balances, audit summary) the commands print.

pub mod bench;
pub mod campaign;
pub mod config;
pub mod connect;
pub mod cosign;
pub mod demo;
pub mod demo_offline;
pub mod export;
pub mod keygen;
pub mod log_key;
pub mod query;
pub mod rebuild;
pub mod replay;
pub mod serve;
pub mod submit;
pub mod tables;
pub mod verify;
