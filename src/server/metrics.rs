//! Prometheus metrics (`jifen serve --metrics-listen ADDR`, scraped at `http://ADDR/metrics`),
//! through the `metrics` facade and its Prometheus exporter:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `jifen_appends_total` | `outcome` (accepted, duplicate, refused, failed), `reason` | events, by what became of them; `reason` is the refusal's (the client's ErrorInfo reason) or the failure's gRPC code |
//! | `jifen_append_duration_seconds` | | Append and AppendBatch calls, deciding and storing (histogram) |
//! | `jifen_unsigned_records` | `village` | records not yet in a signed checkpoint (0 but for a failure: each append stores its checkpoint) |
//! | `jifen_unsigned_records_age_seconds` | `village` | how long ago the oldest of them was recorded (0 with none) |
//! | `jifen_unwitnessed_tree_size` | `village` | records past the latest checkpoint its witnesses' quorum cosigned |
//! | `jifen_loaded_villages` | | villages this process holds |
//! | `jifen_db_pool_connections` | `state` (in_use, idle) | the service's database connections |
//! | `jifen_db_pool_max`, `jifen_db_pool_waiting` | | the pool's bound, and tasks waiting for a connection |
//! | `process_*` | | resident memory, CPU, threads, open files (`metrics-process`) |
//!
//! The gauges are computed when scraped. Without a recorder installed (tests in-process, other
//! commands) the macros cost a branch.

use super::villages::Villages;
use std::sync::Arc;
use std::time::Duration;

pub const APPENDS: &str = "jifen_appends_total";
pub const APPEND_SECONDS: &str = "jifen_append_duration_seconds";
pub const UNSIGNED: &str = "jifen_unsigned_records";
pub const UNSIGNED_AGE: &str = "jifen_unsigned_records_age_seconds";
pub const UNWITNESSED: &str = "jifen_unwitnessed_tree_size";
pub const LOADED: &str = "jifen_loaded_villages";
pub const POOL: &str = "jifen_db_pool_connections";
pub const POOL_MAX: &str = "jifen_db_pool_max";
pub const POOL_WAITING: &str = "jifen_db_pool_waiting";

/// The append latency buckets (seconds): a single append takes ~1–5 ms, a batch of 1000
/// events a few hundred.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// What became of the events of one append call.
pub enum Outcome<'a> {
    /// Stored: `new` records, and `duplicates` events already stored (resent).
    Stored { new: u64, duplicates: u64 },
    /// An event was refused, for this reason: nothing of the call was stored.
    Refused(&'a str),
    /// The call failed otherwise (the store unreachable, say), with this gRPC code.
    Failed(tonic::Code),
}

/// Counts an append call and its latency.
pub fn appended(outcome: Outcome<'_>, took: Duration) {
    match outcome {
        Outcome::Stored { new, duplicates } => {
            metrics::counter!(APPENDS, "outcome" => "accepted", "reason" => "").increment(new);
            if duplicates > 0 {
                metrics::counter!(APPENDS, "outcome" => "duplicate", "reason" => "").increment(duplicates);
            }
        }
        Outcome::Refused(reason) => metrics::counter!(APPENDS, "outcome" => "refused", "reason" => reason.to_owned()).increment(1),
        Outcome::Failed(code) => metrics::counter!(APPENDS, "outcome" => "failed", "reason" => format!("{code:?}")).increment(1),
    }
    metrics::histogram!(APPEND_SECONDS).record(took.as_secs_f64());
}

/// The process's recorder, installed once (a second `install` is an error).
pub fn install() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(APPEND_SECONDS.into()), &BUCKETS)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("the metrics recorder: {e}"))?;
    metrics::describe_counter!(APPENDS, "Events appended, by outcome (accepted, duplicate, refused, failed) and reason");
    metrics::describe_histogram!(APPEND_SECONDS, metrics::Unit::Seconds, "Append and AppendBatch calls, deciding and storing");
    metrics::describe_gauge!(UNSIGNED, "Records not yet in a signed checkpoint");
    metrics::describe_gauge!(UNSIGNED_AGE, metrics::Unit::Seconds, "Age of the oldest record not yet in a signed checkpoint");
    metrics::describe_gauge!(UNWITNESSED, "Records past the latest checkpoint cosigned by a quorum of witnesses");
    metrics::describe_gauge!(LOADED, "Villages held in memory");
    metrics::describe_gauge!(POOL, "Database connections of the service, in use or idle");
    metrics::describe_gauge!(POOL_MAX, "The most database connections the service opens");
    metrics::describe_gauge!(POOL_WAITING, "Tasks waiting for a database connection");
    metrics_process::Collector::default().describe();
    // Counted from the start, so that a scrape shows them before the first append.
    metrics::counter!(APPENDS, "outcome" => "accepted", "reason" => "").increment(0);
    Ok(handle)
}

/// Sets the gauges from the villages, the pool and the process.
async fn refresh(villages: &Villages) {
    let now = villages.now();
    for b in villages.backlogs().await {
        let village = b.village.to_string();
        metrics::gauge!(UNSIGNED, "village" => village.clone()).set((b.stored - b.signed.min(b.stored)) as f64);
        let age = b.oldest_unsigned_at.map_or(0.0, |at| (now - at).max(0) as f64 / 1e6);
        metrics::gauge!(UNSIGNED_AGE, "village" => village.clone()).set(age);
        metrics::gauge!(UNWITNESSED, "village" => village).set((b.stored - b.witnessed.min(b.stored)) as f64);
    }
    metrics::gauge!(LOADED).set(villages.loaded_villages() as f64);
    let (in_use, idle, max, waiting) = villages.store().pool_status();
    metrics::gauge!(POOL, "state" => "in_use").set(in_use as f64);
    metrics::gauge!(POOL, "state" => "idle").set(idle as f64);
    metrics::gauge!(POOL_MAX).set(max as f64);
    metrics::gauge!(POOL_WAITING).set(waiting as f64);
    metrics_process::Collector::default().collect();
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    villages: Arc<Villages>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let scrape = move || {
        let (handle, villages) = (handle.clone(), villages.clone());
        async move {
            refresh(&villages).await;
            handle.run_upkeep();
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
