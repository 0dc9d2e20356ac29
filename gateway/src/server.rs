//! The HTTP server on :8080: `/healthz`, `/readyz`, `/openapi.json`,
//! `/docs`, `/metrics` (direct callers only), everything under `/api` transcoded to gRPC, and gRPC-web / gRPC
//! requests (by content type) proxied — all limited to the public RPCs.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
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
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
        .route("/metrics", get(crate::metrics::serve));
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
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(crate::idempotency::REPLAYED_HEADER),
            header::RETRY_AFTER,
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
    let mut response = axum::Json(gateway.openapi.as_ref().clone()).into_response();
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
    let span = tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id, org_id = tracing::field::Empty);
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
        route = Some(matched.route().template().as_str().to_owned());
        let caller = gateway.caller(request.headers(), id.clone()).await?;
        crate::rest::handle_matched(&gateway, &caller, matched, request).await
    }
    .instrument(span)
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
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
    Ok(())
}

/// A small self-contained page listing the API from `/openapi.json`.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Treven API</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem;max-width:60rem}code{background:#f3f3f3;padding:0 .3em}
h2{margin-top:2rem}.op{margin:.6rem 0;padding:.5rem;border-left:4px solid #446}.m{font-weight:bold;display:inline-block;width:4.5rem}</style>
</head><body><h1>Treven API</h1><p>Generated from the protos' <code>google.api.http</code> rules:
<a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Every call needs <code>Authorization: Bearer &lt;Cognito ID token&gt;</code>.</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const root = document.getElementById('ops'); root.textContent = '';
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    const div = document.createElement('div'); div.className = 'op';
    const m = document.createElement('span'); m.className = 'm'; m.textContent = method.toUpperCase();
    const p = document.createElement('code'); p.textContent = path;
    const s = document.createElement('div'); s.textContent = (op.summary || '') + ' — ' + op.operationId;
    div.append(m, p, s); root.append(div);
  }
});
</script></body></html>"#;
