//! # jifen (the service)
//!
//! Adapters around the pure core (`jifen-ledger`, `jifen-projections`): PostgreSQL storage and
//! the embedded, managed PostgreSQL cluster. The gRPC API arrives with them (issue 3).
//!
//! # Layout
//!
//! - [`embedded`] — the private PostgreSQL cluster `jifen serve` and the tests run.
//! - [`store`] — our ledger-shaped schema, the append path, and the esrs `EventStore` adapter.

pub mod embedded;
pub mod store;
