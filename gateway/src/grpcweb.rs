//! gRPC-web (and native gRPC over HTTP/2) on :8080 for the public RPCs:
//! tonic-web turns each grpc-web request into a gRPC one, and this proxy
//! first refuses any RPC outside the public surface (those without a
//! `google.api.http` rule, see [`treven_transcode::PublicSurface`]) with
//! UNIMPLEMENTED — before authentication, without reaching a service, and
//! exactly as it answers a method that does not exist. A public call is
//! authenticated exactly as REST (bearer token in the `authorization`
//! header), its metadata rebuilt — the minted mesh context, the request id,
//! the deadline, and the trace context of the gateway's own span (which
//! continues the client's); nothing else the client sent — and forwarded to
//! the owning service.

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
];

/// Whether a request speaks gRPC or gRPC-web (binary or text): what the
/// router hands to [`service`] rather than to REST.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// What every RPC outside the public surface is answered, whoever asks:
/// the same as for a method that does not exist.
fn not_public() -> Response<Body> {
    tonic::Status::unimplemented("no such method").into_http()
}

/// A gRPC error as a trailers-only response.
fn grpc_error(code: ErrorCode, message: &str) -> Response<Body> {
    let status: tonic::Status = treven_mesh::ServiceError::new(code, message).into();
    status.into_http()
}

/// The gRPC-web / gRPC proxy for every path (the router sends it every
/// request whose content type is gRPC; see [`is_grpc`]).
pub fn service(
    gateway: Gateway,
) -> tonic_web::GrpcWebService<
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
    + Clone,
> {
    let proxy = tower::service_fn(move |request: Request<Body>| {
        use tracing::Instrument as _;
        let gateway = gateway.clone();
        let id = request_id(request.headers());
        let span = crate::server::edge_span(&request, &id);
        async move {
            let response = forward(gateway, request, id).instrument(span.clone()).await;
            crate::server::record_status(&span, response.status());
            Ok::<_, Infallible>(response)
        }
    });
    tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), proxy)
}

async fn forward(gateway: Gateway, request: Request<Body>, id: String) -> Response<Body> {
    // The public surface first: an internal RPC is refused before anything
    // else is looked at, so it cannot be told apart from a missing one.
    let routing = gateway.routing();
    if !routing
        .transcoder
        .public()
        .contains_path(request.uri().path())
    {
        return not_public();
    }
    let service = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Some((channel, audience)) = gateway.upstream_of(&routing, &service) else {
        return grpc_error(ErrorCode::NotFound, "no such service");
    };
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
    treven_mesh::trace::inject_headers(&mut headers);
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
