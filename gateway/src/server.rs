//! The HTTP server on :8080: `/healthz`, `/readyz`, `/openapi.json`,
//! `/docs`, `/metrics` (direct callers only), `/shared/{token}` (partner
//! links, [`crate::shared`]), everything under `/api`
//! transcoded to gRPC, and gRPC-web / gRPC requests (by content type)
//! proxied, the Connect protocol spoken (see [`crate::connect`]) — all
//! limited to the public RPCs.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tracing::Instrument as _;
use treven_mesh::CancellationToken;
use treven_mesh::server::ShutdownPolicy;

use crate::caller::request_id;
use crate::error::ApiError;
use crate::state::Gateway;

/// The router (exposed for tests that drive it without sockets).
pub fn router(gateway: Gateway) -> Router {
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(crate::metrics::serve))
        // Partner links: unauthenticated, outside /api (see crate::shared).
        .route(crate::shared::ROUTE, get(crate::shared::open))
        .merge(crate::docs::routes());
    // gRPC-web and gRPC go to the proxy, whatever the path (it serves only
    // the public RPCs and answers every other path alike); the rest is REST.
    let grpc = crate::grpcweb::service(gateway.clone());
    let fallback = move |state: State<Gateway>, request: Request| {
        let grpc = grpc.clone();
        async move {
            if crate::grpcweb::is_grpc(request.headers()) {
                match grpc.oneshot(request).await {
                    Ok(response) => response.into_response(),
                    Err(never) => match never {},
                }
            } else if crate::connect::is_connect(&request) {
                crate::connect::serve(state.0, request).await
            } else {
                api(state, request).await
            }
        }
    };
    router
        .fallback(fallback)
        // RED metrics of every request, by route template.
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            crate::metrics::record,
        ))
        .with_state(gateway.clone())
        // Bodies left unread by an early answer are read before it goes.
        .layer(axum::middleware::from_fn(crate::drain::drain_unread))
        // Browsers on the configured origins only (none by default).
        .layer(cors(&gateway.config.cors_origins))
}

/// CORS for the frontend's origins: the REST and gRPC-web headers it sends
/// and the gRPC trailers it must read.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(crate::idempotency::KEY_HEADER),
            HeaderName::from_static("connect-protocol-version"),
            HeaderName::from_static("connect-timeout-ms"),
            HeaderName::from_static("connect-content-encoding"),
            HeaderName::from_static("connect-accept-encoding"),
            header::CONTENT_ENCODING,
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(crate::idempotency::REPLAYED_HEADER),
            header::RETRY_AFTER,
            HeaderName::from_static("connect-content-encoding"),
            header::CONTENT_ENCODING,
        ])
        .max_age(Duration::from_secs(600))
}

/// Ready when tenants (needed to resolve every caller's role) answers its
/// health check.
/// Set on the router while the server drains: `/readyz` then answers 503 at
/// once, so load balancers stop sending before connections close.
#[derive(Debug, Clone)]
pub struct Draining(pub CancellationToken);

async fn readyz(
    State(gateway): State<Gateway>,
    draining: Option<axum::Extension<Draining>>,
) -> Response {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let rate_limits = if gateway.limiter.is_on() {
        "on"
    } else {
        "off: redis unreachable, reconnecting"
    };
    if draining.is_some_and(|d| d.0.0.is_cancelled()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "draining", "rate_limits": rate_limits})),
        )
            .into_response();
    }
    let Some(tenants) = gateway
        .upstreams
        .get("treven.tenants.v1.TenantsService")
        .cloned()
    else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut client = HealthClient::new(tenants);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(response)) if response.get_ref().status == 1 => {
            axum::Json(serde_json::json!({"status": "ready", "rate_limits": rate_limits}))
                .into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "not ready",
                "waiting_for": "tenants",
                "rate_limits": rate_limits,
            })),
        )
            .into_response(),
    }
}

async fn openapi(State(gateway): State<Gateway>) -> Response {
    let mut response = axum::Json(gateway.routing().openapi.as_ref().clone()).into_response();
    response.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Longest URL accepted (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total of header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Every `/api/...` request: authenticate, then transcode.
async fn api(State(gateway): State<Gateway>, request: Request) -> Response {
    let id = request_id(request.headers());
    let span = edge_span(&request, &id);
    // The span is attached to the future, never entered across an await: a
    // guard held over an await point leaves the span entered on whichever
    // task the worker thread polls next, and the registry panics when one
    // of them closes it.
    // The matched route template, for the request metrics.
    let mut route = None;
    let result = async {
        if !request.uri().path().starts_with("/api/") {
            return Err(ApiError::new(
                treven_mesh::ErrorCode::NotFound,
                "no such route",
            ));
        }
        if request.uri().to_string().len() > MAX_URI_BYTES {
            return Err(ApiError::new(
                treven_mesh::ErrorCode::ValidationError,
                "the URL is too long",
            ));
        }
        let header_bytes: usize = request
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if header_bytes > MAX_HEADER_BYTES {
            return Err(ApiError::new(
                treven_mesh::ErrorCode::ValidationError,
                "the headers are too large",
            ));
        }
        // The route first: a path that is no public route is refused
        // without authentication, so nothing reaches a service.
        let matched = match crate::rest::find_route(&gateway, &request) {
            Ok(matched) => matched,
            Err(error) => return Ok(crate::rest::no_route(error)),
        };
        record_route(request.method(), matched.route().template().as_str());
        route = Some(matched.route().template().as_str().to_owned());
        let caller = gateway.caller(request.headers(), id.clone()).await?;
        crate::rest::handle_matched(&gateway, &caller, matched, request).await
    }
    .instrument(span.clone())
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    record_status(&span, response.status());
    if let Some(route) = route {
        response
            .extensions_mut()
            .insert(crate::metrics::HttpRoute(route));
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The server span of an edge request (`http.request.method`, `url.path`,
/// `http.route` once matched, `http.response.status_code`): it starts a W3C
/// trace, or continues the client's when it sent a valid `traceparent`, and
/// every call the request makes carries it on.
pub fn edge_span<B>(request: &axum::http::Request<B>, request_id: &str) -> tracing::Span {
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        method = method,
        path = %request.uri().path(),
        http.request.method = method,
        url.path = %request.uri().path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
        org_id = tracing::field::Empty,
    );
    treven_mesh::trace::continue_from(&span, request.headers());
    span
}

/// Names the current edge span after its route template
/// (`POST /api/reports/{report_id}/approve`).
fn record_route(method: &axum::http::Method, template: &str) {
    let span = tracing::Span::current();
    span.record("http.route", template);
    treven_mesh::trace::rename(&span, format!("{method} {template}"));
}

/// Records the answer's status on an edge span (5xx marks it failed).
pub fn record_status(span: &tracing::Span, status: StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// Serves the gateway on `listener` until `shutdown`, then drains: new
/// connections stop after `drain_delay`, in-flight requests get `grace`.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: CancellationToken,
    policy: ShutdownPolicy,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "gateway serving");
    // Each connection gets its own limit on requests in flight (HTTP/2
    // streams): a client multiplexing hundreds of streams on one connection
    // waits instead of taking every upstream slot.
    let per_connection = gateway.config.max_streams_per_connection;
    // Routes follow the services' reflection while the gateway runs.
    let refresh = gateway.config.reflection.then(|| {
        tokio::spawn(crate::reflection::refresh(
            gateway.clone(),
            gateway.config.reflection_refresh,
            shutdown.clone(),
        ))
    });
    let app = router(gateway).layer(axum::Extension(Draining(shutdown.clone())));
    let app = tower::service_fn(move |_: axum::serve::IncomingStream<'_, TcpListener>| {
        let connection = tower::ServiceBuilder::new()
            .concurrency_limit(per_connection)
            .service(app.clone());
        async move { Ok::<_, std::convert::Infallible>(connection) }
    });
    let draining = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(policy.drain_delay).await;
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(draining);
    tokio::select! {
        result = server => result?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(policy.drain_delay + policy.grace).await;
        } => tracing::warn!("grace period over, dropping requests still running"),
    }
    if let Some(refresh) = refresh {
        refresh.abort();
    }
    Ok(())
}
