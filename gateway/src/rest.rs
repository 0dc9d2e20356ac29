//! REST → gRPC for every route of the protos' `google.api.http` rules: the
//! transcoder matches the route and builds the request message; the call
//! goes to the owning service with the caller's mesh context; the answer is
//! proto3 JSON, or for server streams Server-Sent Events
//! (`Accept: text/event-stream`) or NDJSON, ending with an in-band error
//! event if the stream fails after it started.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tonic::metadata::{MetadataMap, MetadataValue};
use treven_mesh::context::CONTEXT_HEADER;
use treven_mesh::{ErrorCode, Principal};
use treven_transcode::{
    HttpError, MatchError, RequestLimits, RouteMatch, build_request, call_server_streaming,
    call_unary, encode_response, http_error, http_error_of, message_json,
};

use crate::caller::Caller;
use crate::error::ApiError;
use crate::idempotency::Begin;
use crate::state::Gateway;

fn http_error_response(error: HttpError) -> Response {
    ApiError::from(error).into_response()
}

/// The upstream metadata: built from scratch, never copied from the client;
/// the W3C trace context is the gateway's own span's (which continues the
/// client's trace when it sent a valid one).
pub(crate) fn metadata(caller: &Caller, audience: Principal) -> Result<MetadataMap, ApiError> {
    let mut metadata = MetadataMap::new();
    let context = MetadataValue::try_from(caller.context_for(audience).as_str())
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    metadata.insert(CONTEXT_HEADER, context);
    if let Ok(id) = MetadataValue::try_from(caller.request_id.as_str()) {
        metadata.insert("x-request-id", id);
    }
    treven_mesh::trace::inject_metadata(&mut metadata);
    Ok(metadata)
}

/// The deadline of the upstream call: the client's `x-timeout-ms` when it
/// is shorter than the configured one. Sent on as `grpc-timeout`.
fn deadline(headers: &axum::http::HeaderMap, default: std::time::Duration) -> std::time::Duration {
    headers
        .get("x-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
        .filter(|asked| *asked < default && !asked.is_zero())
        .unwrap_or(default)
}

/// How long a call waits for the discovery loop to drop a dead endpoint
/// before a retry (the probe round usually ends in milliseconds; on a
/// loaded machine it can take longer, and retrying before it ends picks the
/// dead endpoint again).
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);
/// Retries of a call that never reached a server (connection refused:
/// nothing was sent, so even a write may go again).
const UNREACHABLE_RETRIES: usize = 2;

/// The route of a request, looked up before the caller is authenticated:
/// a path that is no public route is refused ([`no_route`]) without a token
/// being needed or any service being asked.
pub fn find_route(gateway: &Gateway, request: &Request) -> Result<RouteMatch, MatchError> {
    gateway
        .routing()
        .transcoder
        .routes()
        .find(request.method(), request.uri().path())
}

/// The answer when no route matched: 404, or 405 with `Allow`.
pub fn no_route(error: MatchError) -> Response {
    match error {
        MatchError::NotFound => ApiError::new(ErrorCode::NotFound, "no such route").into_response(),
        MatchError::MethodNotAllowed { allowed } => {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            let body = serde_json::json!({"error": {"code": "VALIDATION_ERROR", "message": "method not allowed", "details": {"allow": allow}}});
            let mut response = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
    }
}

/// Transcodes and answers one `/api` request of an authenticated caller.
pub async fn handle(
    gateway: &Gateway,
    caller: &Caller,
    request: Request,
) -> Result<Response, ApiError> {
    match find_route(gateway, &request) {
        Ok(matched) => handle_matched(gateway, caller, matched, request).await,
        Err(error) => Ok(no_route(error)),
    }
}

/// [`handle`] for a request already matched to its route by
/// [`find_route`].
pub async fn handle_matched(
    gateway: &Gateway,
    caller: &Caller,
    matched: RouteMatch,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    gateway.retries.deposit();
    let limit = gateway.config.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let body = serde_json::json!({"error": {"code": "VALIDATION_ERROR", "message": format!("the body is larger than {limit} bytes"), "details": {}}});
            return Ok((StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response());
        }
    };
    // Idempotency keys: writes of unary routes (a stream is not replayed).
    let streaming = matched.route().is_server_streaming();
    let key = if crate::idempotency::applies_to(&parts.method) && !streaming {
        crate::idempotency::key_of(&parts.headers)?
    } else {
        None
    };
    let Some(key) = key else {
        return transcode(gateway, caller, matched, parts, bytes).await;
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let fingerprint =
        crate::idempotency::fingerprint(&parts.method, path, &caller.identity.sub, &bytes);
    match gateway
        .idempotency
        .begin(caller.identity.org_id, &key, fingerprint.clone())
        .await
    {
        Begin::Proceed(claim) => {
            let response = transcode(gateway, caller, matched, parts, bytes)
                .await
                .unwrap_or_else(IntoResponse::into_response);
            Ok(claim.finish(fingerprint, response).await)
        }
        Begin::Replay(response) => {
            tracing::info!("idempotent replay");
            Ok(response)
        }
        Begin::Refused(response) => Ok(response),
        Begin::PassThrough => transcode(gateway, caller, matched, parts, bytes).await,
    }
}

/// Transcodes a request whose body has been read, calls the service and
/// answers.
async fn transcode(
    gateway: &Gateway,
    caller: &Caller,
    matched: RouteMatch,
    parts: axum::http::request::Parts,
    bytes: bytes::Bytes,
) -> Result<Response, ApiError> {
    let limit = gateway.config.max_body_bytes;
    let limits = RequestLimits {
        max_body_bytes: limit,
        ..RequestLimits::default()
    };
    let routing = gateway.routing();
    let pool = Some(routing.transcoder.pool());
    let message = match build_request(&matched, parts.uri.query(), &bytes, &limits) {
        Ok(message) => message,
        Err(error) => return Ok(http_error_response(http_error_of(error, pool))),
    };
    let route = matched.route().clone();
    let Some((channel, audience)) = gateway.upstream_of(&routing, route.service_name()) else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "a dependency is unavailable, retry later",
        ));
    };
    let metadata = metadata(caller, audience)?;
    let timeout = deadline(&parts.headers, gateway.config.upstream_timeout);
    tracing::debug!(rpc = route.rpc().full_name(), "transcoded");

    if !route.is_server_streaming() {
        let mut result = call_unary(
            channel.clone(),
            route.rpc(),
            message.clone(),
            metadata.clone(),
            timeout,
        )
        .await;
        // Another try, after the discovery loop has probed the endpoints
        // again (so a task that just died is out of the balancer), and one
        // more if that try too reached no server (or, for a read within the
        // budget, was unavailable again):
        // - whatever the method, when the call never reached a server (the
        //   endpoint refused the connection: nothing was sent);
        // - for idempotent reads, when the upstream was unavailable (also a
        //   connection broken mid-call), within the retry budget so retries
        //   never multiply a real outage.
        let retry = match &result {
            Err(status) if treven_mesh::discovery::is_unreachable(status) => true,
            Err(status) => {
                parts.method == axum::http::Method::GET
                    && ErrorCode::of_status(status) == ErrorCode::Unavailable
                    && gateway.retries.try_withdraw()
            }
            Ok(_) => false,
        };
        if retry {
            for attempt in 1..=UNREACHABLE_RETRIES {
                tracing::info!(
                    rpc = route.rpc().full_name(),
                    attempt,
                    "retrying an unreachable or unavailable upstream"
                );
                if let Some(refresher) = gateway.refreshers.get(route.service_name()) {
                    refresher.refresh_now(REFRESH_WAIT).await;
                }
                result = call_unary(
                    channel.clone(),
                    route.rpc(),
                    message.clone(),
                    metadata.clone(),
                    timeout,
                )
                .await;
                // Once more only if this try too reached no server, or (a
                // read, within the budget) met the same dying upstream.
                match &result {
                    Err(status) if treven_mesh::discovery::is_unreachable(status) => {}
                    Err(status)
                        if parts.method == axum::http::Method::GET
                            && ErrorCode::of_status(status) == ErrorCode::Unavailable
                            && gateway.retries.try_withdraw() => {}
                    _ => break,
                }
            }
        }
        return Ok(match result {
            Ok(reply) => match encode_response(&route, &reply) {
                Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                Err(error) => http_error_response(http_error_of(error, pool)),
            },
            Err(status) => http_error_response(http_error(&status, pool)),
        });
    }

    let stream = match call_server_streaming(channel, route.rpc(), message, metadata, timeout).await
    {
        Ok(stream) => stream,
        Err(status) => return Ok(http_error_response(http_error(&status, pool))),
    };
    let sse = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let transcoder = gateway.routing().transcoder.clone();
    let events = stream.map(move |item| {
        let (kind, json) = match item {
            Ok(message) => match message_json(&message) {
                Ok(json) => ("message", json),
                Err(error) => (
                    "error",
                    http_error_of(error, Some(transcoder.pool())).error_object(),
                ),
            },
            Err(status) => (
                "error",
                http_error(&status, Some(transcoder.pool())).error_object(),
            ),
        };
        let frame = if sse {
            format!("event: {kind}\ndata: {json}\n\n")
        } else if kind == "error" {
            format!("{}\n", serde_json::json!({"error": json}))
        } else {
            format!("{json}\n")
        };
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(frame))
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response())
}
