//! # jifen (the service)
//!
//! Adapters around the pure core (`jifen-ledger`, `jifen-projections`): PostgreSQL storage, the
//! embedded, managed PostgreSQL cluster, and the gRPC server.
//!
//! # Layout
//!
//! - [`embedded`] — the private PostgreSQL cluster `jifen serve` and the tests run.
//! - [`store`] — our ledger-shaped schema, the append path, and the esrs `EventStore` adapter.
//! - [`server`] — the gRPC server: village writers, checkpointer, `LedgerService`.
//! - [`service`] — starting storage: the embedded cluster or an external server.
//! - [`api`] — the generated protobuf/gRPC types.

pub mod embedded;
pub mod server;
pub mod service;
pub mod store;

/// The generated gRPC API (`proto/jifen/v1/ledger.proto`).
pub mod api {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("jifen.v1");

    /// The encoded descriptor set of the whole API, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("jifen_descriptor");
}
