//! gRPC-web on :8080 for the same services: tonic-web turns each grpc-web
//! request into a gRPC one, and this proxy authenticates it exactly as REST
//! (bearer token in the `authorization` header), rebuilds the metadata — the
//! minted mesh context, the request id, the deadline and trace context;
//! nothing else the client sent — and forwards it to the owning service.

use std::convert::Infallible;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tonic::body::Body;
use tower::{Service, ServiceExt as _};
use treven_mesh::ErrorCode;
use treven_mesh::context::CONTEXT_HEADER;

use crate::caller::request_id;
use crate::state::Gateway;

/// Headers a client may send through to a service: transport and tracing
/// only, never identity.
const FORWARDED: &[&str] = &[
    "content-type",
    "te",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "traceparent",
    "tracestate",
];

/// A gRPC error as a trailers-only response.
fn grpc_error(code: ErrorCode, message: &str) -> Response<Body> {
    let status: tonic::Status = treven_mesh::ServiceError::new(code, message).into();
    status.into_http()
}

/// The gRPC-web service for every upstream (mount it under each service's
/// `/{package.Service}/` path).
pub fn service(
    gateway: Gateway,
) -> tonic_web::GrpcWebService<
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
    + Clone,
> {
    let proxy = tower::service_fn(move |request: Request<Body>| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(forward(gateway, request).await) }
    });
    tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), proxy)
}

async fn forward(gateway: Gateway, request: Request<Body>) -> Response<Body> {
    let service = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let (Some(channel), Some(audience)) = (
        gateway.upstreams.get(&service).cloned(),
        gateway.audience_of(&service),
    ) else {
        return grpc_error(ErrorCode::NotFound, "no such service");
    };
    let id = request_id(request.headers());
    let caller = match gateway.caller(request.headers(), id).await {
        Ok(caller) => caller,
        Err(error) => return grpc_error(error.code(), "request refused"),
    };
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::new();
    for name in FORWARDED {
        if let Some(value) = parts.headers.get(*name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    let (Ok(context), Ok(request_id)) = (
        HeaderValue::from_str(&caller.context_for(audience)),
        HeaderValue::from_str(&caller.request_id),
    ) else {
        return grpc_error(ErrorCode::Internal, "internal error");
    };
    headers.insert(CONTEXT_HEADER, context);
    headers.insert("x-request-id", request_id);
    parts.headers = headers;
    match channel.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, service, "upstream unreachable");
            grpc_error(
                ErrorCode::Unavailable,
                "a dependency is unavailable, retry later",
            )
        }
    }
}
