//! The gRPC server: `run(listener, app, shutdown)`.
//!
//! - [`clock`] — where `recorded_at` comes from (system, or manual in tests and the demo).
//! - [`villages`] — one writer per village, the deployment's log key.
//! - [`ledger_api`] — `jifen.v1.LedgerService`.
//! - [`query_api`] — `jifen.v1.QueryService`; [`audit_api`] — `jifen.v1.AuditService`.
//! - [`auth`] — the guard of the calls for supervisors, townships and auditors; [`codec`] —
//!   the decoder that keeps a request's exact body bytes.
//! - [`metrics`] — the Prometheus endpoint; [`request_log`] — a log line per call.
//! - [`status`] — the one mapping of errors to gRPC statuses with details.
//!
//! Health (`grpc.health.v1`) and reflection are served beside the API. Health tells the truth:
//! every service, and the server as a whole (""), is NOT_SERVING once PostgreSQL has not
//! answered twice in a row (asked every [`HEALTH_EVERY`] over a connection of its own) and
//! SERVING again at its first answer. Shutdown stops
//! accepting calls and lets in-flight appends finish (each stores its own checkpoint).

pub mod audit_api;
pub mod auth;
pub mod clock;
pub mod codec;
pub mod ledger_api;
pub mod metrics;
pub mod query_api;
pub mod request_log;
pub mod status;
pub mod villages;

use crate::api::ledger_service_server::LedgerServiceServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use villages::Villages;

/// The largest message the server decodes (a full AppendBatch of 1000 events fits).
pub const MAX_MESSAGE: usize = 80 << 20;

/// How often health asks PostgreSQL whether it answers (and how long it waits for the answer).
pub const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps health in step with the database: SERVING while it answers, NOT_SERVING while not.
async fn watch_health(store: crate::store::Store, reporter: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let mut last = ServingStatus::Serving;
    let mut failed = 0u32;
    let mut every = tokio::time::interval(HEALTH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        failed = if store.reachable(HEALTH_EVERY).await { 0 } else { failed + 1 };
        // Two unanswered pings in a row (one may be a hiccup); one answer is enough.
        let now = if failed >= 2 {
            ServingStatus::NotServing
        } else if failed == 0 {
            ServingStatus::Serving
        } else {
            last
        };
        if now == last {
            continue;
        }
        match now {
            ServingStatus::Serving => tracing::warn!("PostgreSQL answers again: SERVING"),
            _ => tracing::error!("PostgreSQL does not answer: NOT_SERVING until it does"),
        }
        // The server as a whole ("") last: whoever watches it finds the services already changed.
        for service in ["jifen.v1.LedgerService", "jifen.v1.QueryService", "jifen.v1.AuditService", ""] {
            reporter.set_service_status(service, now).await;
        }
        last = now;
    }
}

/// Serves the API on `listener`, in plaintext, until `shutdown` completes.
pub async fn run(listener: TcpListener, villages: Arc<Villages>, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    run_with(listener, villages, None, shutdown).await
}

/// The server's TLS identity from PEM files: the certificate chain (the server's first) and
/// its private key, checked to belong together, with errors that name the file at fault.
pub fn tls_identity(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<tonic::transport::Identity> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = std::fs::read(cert).with_context(|| format!("--tls-cert {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("--tls-key {}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {}: not PEM certificates", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "--tls-cert {}: no certificate in the file", cert.display());
    let private = PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| format!("--tls-key {}: no PEM private key", key.display()))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| format!("--tls-key {} does not go with --tls-cert {}", key.display(), cert.display()))?;
    Ok(tonic::transport::Identity::from_pem(cert_pem, key_pem))
}

/// Serves the API on `listener` until `shutdown` completes: over TLS with `tls` (the server's
/// certificate and key), else in plaintext.
pub async fn run_with(
    listener: TcpListener,
    villages: Arc<Villages>,
    tls: Option<tonic::transport::Identity>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    villages.start_history_checks();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<LedgerServiceServer<ledger_api::LedgerApi>>().await;
    health_reporter.set_serving::<crate::api::query_service_server::QueryServiceServer<query_api::QueryApi>>().await;
    health_reporter.set_serving::<crate::api::audit_service_server::AuditServiceServer<query_api::QueryApi>>().await;
    let health_task = tokio::spawn(watch_health(villages.store().clone(), health_reporter));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // `stopping` when shutdown begins: open streams end.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let ledger = LedgerServiceServer::new(ledger_api::LedgerApi::new(villages.clone(), stopping_rx))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let query = crate::api::query_service_server::QueryServiceServer::new(query_api::QueryApi::new(villages.clone()));
    let audit = crate::api::audit_service_server::AuditServiceServer::new(query_api::QueryApi::new(villages));
    let address = listener.local_addr()?;
    tracing::info!(%address, tls = tls.is_some(), "serving jifen.v1");
    if tls.is_none() && !address.ip().is_loopback() {
        tracing::warn!(%address, "serving plaintext beyond this machine: tokens and events travel in clear (give --tls-cert and --tls-key)");
    }
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = tls {
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let served = builder
        .layer(request_log::layer())
        .add_service(health)
        .add_service(reflection)
        .add_service(ledger)
        .add_service(query)
        .add_service(audit)
        // TCP_NODELAY on accepted sockets: without it, a multi-segment request (an
        // AppendBatch) meets the peer's delayed ACK and waits ~40 ms per call.
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await;
    health_task.abort();
    Ok(served?)
}
