//! A log line per call: the method, the village it names, its gRPC status, how long it took
//! and the peer, at `info` on the target `jifen::request` (`RUST_LOG=jifen::request=info`).
//! The village is noted by the handler as it reads the request's ledger id
//! ([`note_village`]), in a task-local cell the call runs in. A call that fails has its
//! status in the response headers (trailers-only); one without is OK, or a stream that began
//! (a stream's own end is not logged here).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::http;

tokio::task_local! {
    /// The village the current call names, as its handler read it.
    static VILLAGE: Arc<Mutex<String>>;
}

/// Notes the village (ledger id) the current call names, for its log line; outside a logged
/// call it does nothing. A malformed id is noted as given, cut to 32 characters.
pub fn note_village(ledger_id: &str) {
    let _ = VILLAGE.try_with(|v| {
        let mut v = v.lock().expect("village cell");
        if v.is_empty() {
            v.extend(ledger_id.chars().take(32));
        }
    });
}

/// The layer that wraps every service of the server.
pub fn layer<S>() -> impl tower::Layer<S, Service = RequestLog<S>> + Clone {
    tower::layer::layer_fn(RequestLog)
}

/// A service that logs each call it passes on.
#[derive(Clone)]
pub struct RequestLog<S>(S);

impl<S, B, R> tower::Service<http::Request<B>> for RequestLog<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !tracing::enabled!(target: "jifen::request", tracing::Level::INFO) {
            return Box::pin(self.0.call(request));
        }
        let method = request.uri().path().to_owned();
        let peer = request.extensions().get::<tonic::transport::server::TcpConnectInfo>().and_then(|c| c.remote_addr());
        let started = Instant::now();
        let village = Arc::new(Mutex::new(String::new()));
        let call = VILLAGE.scope(village.clone(), self.0.call(request));
        Box::pin(async move {
            let response = call.await;
            let village = std::mem::take(&mut *village.lock().expect("village cell"));
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let status = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unavailable,
            };
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            tracing::info!(target: "jifen::request", method = %method, village = %village, status = ?status, ms = format_args!("{ms:.2}"), peer = %peer, "call");
            response
        })
    }
}
