//! The gateway's metrics (see [`treven_mesh::metrics`] for the pipeline):
//!
//! - `http.server.request.duration` (seconds; its `_count` is the request
//!   count) by `http.request.method`, `http.route` and
//!   `http.response.status_code`, for every request of :8080. The route is
//!   the matched template (`/api/reports/{report_id}`), the gRPC method of a
//!   public gRPC-web call, or `unmatched`: never a raw path, so ids and
//!   probing clients cannot grow the label set. Measured until the response
//!   head (a streamed answer's body is not waited for);
//! - `treven.gateway.ws.connections` and `treven.gateway.ws.subscriptions`:
//!   WebSocket connections and channel subscriptions open on this instance;
//! - `treven.gateway.rate_limit.rejections`: calls refused by a rate limit.
//!
//! `GET /metrics` serves them (with every other instrument of the process)
//! as Prometheus text to direct callers: a request that came through a load
//! balancer (it carries `X-Forwarded-For`) is answered 404, so the public
//! edge never exposes it; the task's own sidecar scrapes it over loopback.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use treven_mesh::metrics::{Counter, Histogram, KeyValue, UpDownCounter};

use crate::state::Gateway;

/// The route template a REST handler matched, left on its response for
/// [`record`].
#[derive(Debug, Clone)]
pub struct HttpRoute(pub String);

fn duration() -> &'static Histogram<f64> {
    static DURATION: OnceLock<Histogram<f64>> = OnceLock::new();
    DURATION.get_or_init(|| {
        treven_mesh::metrics::latency_histogram(
            "http.server.request.duration",
            "Requests of the gateway's :8080 by method, route template and status code",
        )
    })
}

/// WebSocket connections open on this instance.
pub fn ws_connections() -> &'static UpDownCounter<i64> {
    static GAUGE: OnceLock<UpDownCounter<i64>> = OnceLock::new();
    GAUGE.get_or_init(|| {
        treven_mesh::metrics::meter()
            .i64_up_down_counter("treven.gateway.ws.connections")
            .with_description("WebSocket connections open on this gateway instance")
            .build()
    })
}

/// Channel subscriptions of the WebSocket connections of this instance.
pub fn ws_subscriptions() -> &'static UpDownCounter<i64> {
    static GAUGE: OnceLock<UpDownCounter<i64>> = OnceLock::new();
    GAUGE.get_or_init(|| {
        treven_mesh::metrics::meter()
            .i64_up_down_counter("treven.gateway.ws.subscriptions")
            .with_description(
                "Event channel subscriptions of this instance's WebSocket connections",
            )
            .build()
    })
}

/// Calls refused by the per-user or per-organisation rate limit.
pub fn rate_limit_rejections() -> &'static Counter<u64> {
    static COUNTER: OnceLock<Counter<u64>> = OnceLock::new();
    COUNTER.get_or_init(|| {
        treven_mesh::metrics::meter()
            .u64_counter("treven.gateway.rate_limit.rejections")
            .with_description("Calls refused with 429 by the rate limits")
            .build()
    })
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

/// Middleware of the :8080 router: measures every request (see the module
/// docs for the labels).
pub async fn record(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let path = request.uri().path();
    let known = if let Some(matched) = request.extensions().get::<MatchedPath>() {
        Some(matched.as_str().to_owned())
    } else if crate::grpcweb::is_grpc(request.headers())
        && gateway.routing().transcoder.public().contains_path(path)
    {
        Some(path.to_owned())
    } else {
        None
    };
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<HttpRoute>()
        .map(|r| r.0.clone())
        .or(known)
        .unwrap_or_else(|| "unmatched".to_owned());
    duration().record(
        start.elapsed().as_secs_f64(),
        &[
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
            KeyValue::new(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            ),
        ],
    );
    response
}

/// `GET /metrics`: Prometheus text, to direct callers only.
pub async fn serve(request: Request) -> Response {
    if request.headers().contains_key("x-forwarded-for") {
        return crate::error::ApiError::new(treven_mesh::ErrorCode::NotFound, "no such route")
            .into_response();
    }
    let mut response = (StatusCode::OK, treven_mesh::metrics::render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(treven_mesh::metrics::CONTENT_TYPE),
    );
    response
}
