//! A log line per call: the method, its gRPC status, how long it took and the peer, at `info`
//! on the target `jifen::request` (`RUST_LOG=jifen::request=info`). A call that fails has its
//! status in the response headers (trailers-only); one without is OK, or a stream that began
//! (a stream's own end is not logged here).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::http;

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
        let call = self.0.call(request);
        Box::pin(async move {
            let response = call.await;
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
            tracing::info!(target: "jifen::request", method = %method, status = ?status, ms = format_args!("{ms:.2}"), peer = %peer, "call");
            response
        })
    }
}
