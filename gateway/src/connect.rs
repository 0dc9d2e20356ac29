//! The Connect protocol (<https://connectrpc.com/docs/protocol>) on :8080
//! for the public RPCs, next to gRPC-web and REST: what connect-es,
//! connect-query and most new TypeScript frontends speak by default.
//!
//! - `POST /<package.Service>/<Method>` with `application/json` or
//!   `application/proto` for a unary RPC, `application/connect+json` or
//!   `application/connect+proto` (enveloped messages, ending with an
//!   end-of-stream message that carries the error) for a server stream;
//! - `Connect-Protocol-Version: 1` (checked when sent), `Connect-Timeout-Ms`
//!   (the upstream deadline, never longer than the configured one);
//! - gzip both ways: `Content-Encoding` / `Accept-Encoding` for unary,
//!   `Connect-Content-Encoding` / `Connect-Accept-Encoding` with the
//!   envelope's compressed flag for streams;
//! - errors as Connect error JSON `{code, message, details: [{type, value,
//!   debug}]}`, the HTTP status from the protocol's code table, `details`
//!   the `google.rpc.Status` details the service sent (base64 of the binary
//!   message, plus its JSON as `debug` when its type is in the pool).
//!
//! Served from the same descriptors as REST (the transcoder's pool, built in
//! or from reflection), limited to the same public surface (an RPC outside
//! it is UNIMPLEMENTED, as for gRPC-web), authenticated by the same
//! [`Gateway::caller`] (token, role, rate limit, mesh context), and called
//! through the same descriptor-driven client as REST.
//!
//! Why our own code rather than a crate: the Connect crates for Rust
//! (`connectrpc`, `connectrpc-axum`, `axum-connect`) generate a typed
//! handler per RPC from the protos at build time and implement the service
//! themselves. The edge implements no service: it forwards any public RPC it
//! finds in a descriptor pool — possibly one read from a service's
//! reflection at run time — to a tonic channel. None of them can serve a
//! method it only knows by descriptor, so the protocol is done here, on top
//! of prost-reflect's `DynamicMessage` and `treven_transcode`'s client.
//! Idempotency keys stay a REST feature; Connect's GET form of unary calls
//! is not served (clients use POST unless told otherwise).

use std::io::Read as _;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures::StreamExt as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::Code;
use treven_mesh::ErrorCode;
use treven_transcode::{call_server_streaming, call_unary};

use crate::caller::request_id;
use crate::state::Gateway;

/// The Connect protocol version this edge speaks.
const PROTOCOL_VERSION: &str = "1";
/// Bodies at least this long are gzipped when the client accepts it.
const COMPRESS_FROM_BYTES: usize = 1024;
/// The envelope flag of a compressed message.
const FLAG_COMPRESSED: u8 = 0b01;
/// The envelope flag of the end-of-stream message.
const FLAG_END_STREAM: u8 = 0b10;

/// How the messages of a call are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Proto3 JSON.
    Json,
    /// Binary protobuf.
    Proto,
}

/// A call's shape, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType {
    /// JSON or binary.
    pub codec: Codec,
    /// `application/connect+…`: enveloped messages (a stream).
    pub streaming: bool,
}

impl ContentType {
    /// Parses `application/{json,proto}` and `application/connect+{json,proto}`
    /// (parameters such as `charset=utf-8` ignored).
    pub fn parse(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        let essence = essence.to_ascii_lowercase();
        let (streaming, codec) = match essence.strip_prefix("application/connect+") {
            Some(codec) => (true, codec.to_owned()),
            None => (false, essence.strip_prefix("application/")?.to_owned()),
        };
        let codec = match codec.as_str() {
            "json" => Codec::Json,
            "proto" => Codec::Proto,
            _ => return None,
        };
        Some(Self { codec, streaming })
    }

    fn header(self) -> &'static str {
        match (self.streaming, self.codec) {
            (false, Codec::Json) => "application/json",
            (false, Codec::Proto) => "application/proto",
            (true, Codec::Json) => "application/connect+json",
            (true, Codec::Proto) => "application/connect+proto",
        }
    }
}

/// Whether a request speaks Connect: a POST outside `/api/` whose content
/// type is a Connect one, or that names the protocol version. REST lives
/// under `/api/` (where `application/json` is REST's), gRPC and gRPC-web
/// are told by their `application/grpc…` content types, which no Connect
/// content type starts with.
pub fn is_connect(request: &Request) -> bool {
    let path = request.uri().path();
    if path.starts_with("/api/") || path == "/api" {
        return false;
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    content_type.and_then(ContentType::parse).is_some()
        || request.headers().contains_key("connect-protocol-version")
}

/// A Connect error: a code, a message, and the details sent as they came.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The gRPC code it stands for.
    pub code: Code,
    /// For the client to read.
    pub message: String,
    /// `google.protobuf.Any`s from the upstream's `google.rpc.Status`.
    pub details: Vec<prost_types::Any>,
}

impl ConnectError {
    /// An error made at the edge.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The error of a failed upstream call (or of one the edge refused,
    /// given as a status). Internal failures and outages keep neither their
    /// text nor their details (as over REST); an expired deadline is
    /// `deadline_exceeded`; every other status passes with its message and
    /// details, `google.rpc.DebugInfo` (for operators) left out.
    pub fn from_status(status: &tonic::Status) -> Self {
        if status.code() == Code::DeadlineExceeded {
            return Self::new(Code::DeadlineExceeded, "deadline exceeded");
        }
        match ErrorCode::of_status(status) {
            ErrorCode::Internal => return Self::new(Code::Internal, "internal error"),
            ErrorCode::Unavailable => {
                return Self::new(
                    Code::Unavailable,
                    "a dependency is unavailable, retry later",
                );
            }
            _ => {}
        }
        let details = tonic_types::pb::Status::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default()
            .into_iter()
            .filter(|any| !any.type_url.ends_with("/google.rpc.DebugInfo"))
            .collect();
        Self {
            code: status.code(),
            message: status.message().to_owned(),
            details,
        }
    }

    /// The protocol's name of the code (`invalid_argument`).
    pub fn code_name(&self) -> &'static str {
        code_name(self.code)
    }

    /// The HTTP status of a unary response with this error.
    pub fn http_status(&self) -> StatusCode {
        http_status(self.code)
    }

    /// The error JSON. `pool` resolves detail types for `debug`.
    pub fn json(&self, pool: &DescriptorPool) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code_name(),
            "message": self.message,
        });
        if !self.details.is_empty() {
            let details: Vec<serde_json::Value> = self
                .details
                .iter()
                .map(|any| {
                    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
                    let mut detail = serde_json::json!({
                        "type": type_name,
                        "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
                    });
                    if let Some(debug) = debug_json(pool, type_name, &any.value) {
                        detail["debug"] = debug;
                    }
                    detail
                })
                .collect();
            error["details"] = details.into();
        }
        error
    }

    /// A unary error response.
    fn unary_response(&self, pool: &DescriptorPool) -> Response {
        let mut response = (
            self.http_status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.json(pool).to_string(),
        )
            .into_response();
        if self.code == Code::Unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A detail's JSON, when its type is known.
fn debug_json(pool: &DescriptorPool, type_name: &str, value: &[u8]) -> Option<serde_json::Value> {
    let descriptor = pool
        .get_message_by_name(type_name)
        .or_else(|| rpc_pool().get_message_by_name(type_name))?;
    let message = DynamicMessage::decode(descriptor, value).ok()?;
    treven_transcode::message_json(&message).ok()
}

/// `google.rpc`'s error details (BadRequest, ErrorInfo, RetryInfo, …),
/// which the Treven protos do not import.
fn rpc_pool() -> &'static DescriptorPool {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(tonic_types::pb::FILE_DESCRIPTOR_SET).unwrap_or_default()
    })
}

/// The Connect name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a unary Connect error (the protocol's table).
pub fn http_status(code: Code) -> StatusCode {
    let status = match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unauthenticated => 401,
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `Connect-Timeout-Ms`: at most 10 digits, a positive number of
/// milliseconds. `Ok(None)` when absent.
pub fn timeout_of(headers: &HeaderMap) -> Result<Option<Duration>, ConnectError> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectError::new(
            Code::InvalidArgument,
            "Connect-Timeout-Ms must be 1 to 10 digits",
        ));
    }
    Ok(text.parse::<u64>().ok().map(Duration::from_millis))
}

/// Compression the edge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

/// The encoding named by `header` (absent: identity); anything else is
/// `unimplemented`, as the protocol asks.
fn encoding_of(headers: &HeaderMap, header: &str) -> Result<Encoding, ConnectError> {
    match headers
        .get(header)
        .map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => Ok(Encoding::Identity),
        Some("gzip") => Ok(Encoding::Gzip),
        Some(other) => Err(ConnectError::new(
            Code::Unimplemented,
            format!("unsupported compression {other:?}: supported are gzip and identity"),
        )),
    }
}

/// Whether `header` (a list of encodings) accepts gzip.
fn accepts_gzip(headers: &HeaderMap, header: &str) -> bool {
    headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"))
        })
}

/// Inflates `bytes`, refusing more than `limit` bytes out.
fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ConnectError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ConnectError::new(Code::InvalidArgument, "the body is not valid gzip"))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn too_large(limit: usize) -> ConnectError {
    ConnectError::new(
        Code::ResourceExhausted,
        format!("the message is larger than {limit} bytes"),
    )
}

/// One enveloped message: flags, then a big-endian length, then the data.
pub fn envelope(flags: u8, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + data.len());
    out.put_u8(flags);
    out.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    out.put_slice(data);
    out.freeze()
}

/// The one message of a streaming request: exactly one envelope, no end
/// flag, inflated when flagged compressed.
fn single_envelope(body: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, ConnectError> {
    let malformed = |what: &str| ConnectError::new(Code::InvalidArgument, what.to_owned());
    if body.len() < 5 {
        return Err(malformed("the request is not one enveloped message"));
    }
    let flags = body[0];
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() - 5 != length {
        return Err(malformed("the request is not one enveloped message"));
    }
    if flags & !FLAG_COMPRESSED != 0 {
        return Err(malformed("unexpected envelope flags in the request"));
    }
    let data = &body[5..];
    if flags & FLAG_COMPRESSED == 0 {
        return Ok(data.to_vec());
    }
    match encoding {
        Encoding::Gzip => gunzip(data, limit),
        Encoding::Identity => Err(malformed(
            "a compressed message without Connect-Content-Encoding",
        )),
    }
}

/// Decodes a request message.
fn decode(
    descriptor: MessageDescriptor,
    codec: Codec,
    data: &[u8],
) -> Result<DynamicMessage, ConnectError> {
    match codec {
        Codec::Proto => DynamicMessage::decode(descriptor.clone(), data).map_err(|e| {
            ConnectError::new(
                Code::InvalidArgument,
                format!("the body is not a binary {}: {e}", descriptor.full_name()),
            )
        }),
        Codec::Json => {
            // Unknown fields are ignored, as by connect-go and as binary
            // protobuf does: an older edge reads a newer client's request.
            let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(false);
            let mut deserializer = serde_json::Deserializer::from_slice(data);
            DynamicMessage::deserialize_with_options(
                descriptor.clone(),
                &mut deserializer,
                &options,
            )
            .and_then(|message| deserializer.end().map(|()| message))
            .map_err(|e| {
                ConnectError::new(
                    Code::InvalidArgument,
                    format!("the body is not a JSON {}: {e}", descriptor.full_name()),
                )
            })
        }
    }
}

/// Encodes a response message.
fn encode(codec: Codec, message: &DynamicMessage) -> Result<Vec<u8>, ConnectError> {
    match codec {
        Codec::Proto => Ok(message.encode_to_vec()),
        Codec::Json => {
            let mut out = Vec::new();
            let mut serializer = serde_json::Serializer::new(&mut out);
            message
                .serialize_with_options(
                    &mut serializer,
                    &treven_transcode::response::serialize_options(),
                )
                .map_err(|_| ConnectError::new(Code::Internal, "internal error"))?;
            Ok(out)
        }
    }
}

/// What an early failure of a call looks like: a unary error, or for a
/// stream an HTTP 200 whose only message is the end-of-stream one.
#[derive(Debug, Clone, Copy)]
struct Shape {
    content_type: ContentType,
}

impl Shape {
    fn error(self, error: &ConnectError, pool: &DescriptorPool) -> Response {
        if !self.content_type.streaming {
            return error.unary_response(pool);
        }
        let end = serde_json::json!({"error": error.json(pool)});
        (
            [(header::CONTENT_TYPE, self.content_type.header())],
            envelope(FLAG_END_STREAM, end.to_string().as_bytes()),
        )
            .into_response()
    }
}

/// Serves one Connect request (the router sends it those [`is_connect`]
/// accepts).
pub async fn serve(gateway: Gateway, request: Request) -> Response {
    let id = request_id(request.headers());
    let span = tracing::info_span!("connect", path = %request.uri().path(), request_id = %id, org_id = tracing::field::Empty);
    let mut response =
        tracing::Instrument::instrument(call(gateway, request, id.clone()), span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn call(gateway: Gateway, request: Request, id: String) -> Response {
    let routing = gateway.routing();
    let transcoder = routing.transcoder.clone();
    let pool = transcoder.pool();
    let Some(content_type) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(ContentType::parse)
    else {
        return unsupported_media_type();
    };
    let shape = Shape { content_type };
    if request.method() != axum::http::Method::POST {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    // The public surface first, as for gRPC-web: an internal RPC is
    // answered exactly as one that does not exist.
    let path = request.uri().path().to_owned();
    let method = transcoder
        .public()
        .contains_path(&path)
        .then(|| method_of(pool, &path))
        .flatten();
    let Some(method) = method else {
        return shape.error(
            &ConnectError::new(Code::Unimplemented, "no such method"),
            pool,
        );
    };
    if method.is_client_streaming() {
        return shape.error(
            &ConnectError::new(Code::Unimplemented, "client streams are not served"),
            pool,
        );
    }
    if method.is_server_streaming() != content_type.streaming {
        return unsupported_media_type();
    }
    let headers = request.headers();
    if let Some(version) = headers.get("connect-protocol-version")
        && version.as_bytes() != PROTOCOL_VERSION.as_bytes()
    {
        return shape.error(
            &ConnectError::new(Code::InvalidArgument, "Connect-Protocol-Version must be 1"),
            pool,
        );
    }
    let timeout = match timeout_of(headers) {
        Ok(asked) => asked.map_or(gateway.config.upstream_timeout, |asked| {
            asked.min(gateway.config.upstream_timeout)
        }),
        Err(error) => return shape.error(&error, pool),
    };
    let encoding_header = if content_type.streaming {
        "connect-content-encoding"
    } else {
        "content-encoding"
    };
    let encoding = match encoding_of(headers, encoding_header) {
        Ok(encoding) => encoding,
        Err(error) => return shape.error(&error, pool),
    };
    let gzip_out = if content_type.streaming {
        accepts_gzip(headers, "connect-accept-encoding")
    } else {
        accepts_gzip(headers, header::ACCEPT_ENCODING.as_str())
    };
    let service = method.parent_service().full_name().to_owned();
    let Some((channel, audience)) = gateway.upstream_of(&routing, &service) else {
        return shape.error(
            &ConnectError::new(
                Code::Unavailable,
                "a dependency is unavailable, retry later",
            ),
            pool,
        );
    };
    let caller = match gateway.caller(headers, id).await {
        Ok(caller) => caller,
        Err(error) => {
            let status: tonic::Status =
                treven_mesh::ServiceError::new(error.code(), error.message()).into();
            let mut response = shape.error(&ConnectError::from_status(&status), pool);
            if let Some(retry) = error
                .retry_after()
                .and_then(|d| HeaderValue::from_str(&d.as_secs().max(1).to_string()).ok())
            {
                response.headers_mut().insert(header::RETRY_AFTER, retry);
            }
            return response;
        }
    };
    let metadata = match crate::rest::metadata(&caller, audience) {
        Ok(metadata) => metadata,
        Err(_) => return shape.error(&ConnectError::new(Code::Internal, "internal error"), pool),
    };

    let limit = gateway.config.max_body_bytes;
    let body = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) => body,
        Err(_) => return shape.error(&too_large(limit), pool),
    };
    let data = if content_type.streaming {
        single_envelope(&body, encoding, limit)
    } else if encoding == Encoding::Gzip {
        gunzip(&body, limit)
    } else {
        Ok(body.to_vec())
    };
    let message = match data.and_then(|data| decode(method.input(), content_type.codec, &data)) {
        Ok(message) => message,
        Err(error) => return shape.error(&error, pool),
    };
    tracing::debug!(rpc = method.full_name(), "connect call");

    if !method.is_server_streaming() {
        let mut result = call_unary(
            channel.clone(),
            &method,
            message.clone(),
            metadata.clone(),
            timeout,
        )
        .await;
        // Nothing was sent when the endpoint refused the connection: one
        // more try once discovery has dropped it, whatever the method.
        if let Err(status) = &result
            && treven_mesh::discovery::is_unreachable(status)
        {
            if let Some(refresher) = gateway.refreshers.get(&service) {
                refresher.refresh_now(Duration::from_millis(1500)).await;
            }
            result = call_unary(channel, &method, message, metadata, timeout).await;
        }
        let reply = match result {
            Ok(reply) => reply,
            Err(status) => return shape.error(&ConnectError::from_status(&status), pool),
        };
        let encoded = match encode(content_type.codec, &reply) {
            Ok(encoded) => encoded,
            Err(error) => return shape.error(&error, pool),
        };
        let mut response = if gzip_out && encoded.len() >= COMPRESS_FROM_BYTES {
            let mut response = gzip(&encoded).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        } else {
            encoded.into_response()
        };
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type.header()),
        );
        return response;
    }

    let stream = match call_server_streaming(channel, &method, message, metadata, timeout).await {
        Ok(stream) => stream,
        Err(status) => return shape.error(&ConnectError::from_status(&status), pool),
    };
    let codec = content_type.codec;
    let frames = futures::stream::unfold(Some(stream), move |state| {
        let transcoder = transcoder.clone();
        async move {
            let mut stream = state?;
            let end = |error: Option<ConnectError>| {
                let body = match error {
                    Some(error) => serde_json::json!({"error": error.json(transcoder.pool())}),
                    None => serde_json::json!({}),
                };
                envelope(FLAG_END_STREAM, body.to_string().as_bytes())
            };
            let frame = match stream.next().await {
                Some(Ok(message)) => match encode(codec, &message) {
                    Ok(data) if gzip_out && data.len() >= COMPRESS_FROM_BYTES => {
                        envelope(FLAG_COMPRESSED, &gzip(&data))
                    }
                    Ok(data) => envelope(0, &data),
                    Err(error) => return Some((end(Some(error)), None)),
                },
                Some(Err(status)) => {
                    return Some((end(Some(ConnectError::from_status(&status))), None));
                }
                None => return Some((end(None), None)),
            };
            Some((frame, Some(stream)))
        }
    })
    .map(Ok::<_, std::convert::Infallible>);
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type.header()),
    );
    if gzip_out {
        headers.insert("connect-content-encoding", HeaderValue::from_static("gzip"));
    }
    response
}

/// The method `/package.Service/Method` names in `pool`.
fn method_of(pool: &DescriptorPool, path: &str) -> Option<MethodDescriptor> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    pool.get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// 415 for a content type that is not Connect's or does not fit the
/// method's shape (the protocol's answer, with what is accepted).
fn unsupported_media_type() -> Response {
    (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        [(
            axum::http::HeaderName::from_static("accept-post"),
            "application/json, application/proto, application/connect+json, application/connect+proto",
        )],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn content_types_tell_codec_and_shape() {
        let parse = |v: &str| ContentType::parse(v).map(|c| (c.codec, c.streaming));
        assert_eq!(parse("application/json"), Some((Codec::Json, false)));
        assert_eq!(
            parse("application/json; charset=utf-8"),
            Some((Codec::Json, false))
        );
        assert_eq!(parse("application/proto"), Some((Codec::Proto, false)));
        assert_eq!(parse("application/connect+json"), Some((Codec::Json, true)));
        assert_eq!(
            parse("Application/Connect+Proto"),
            Some((Codec::Proto, true))
        );
        for other in [
            "application/grpc",
            "application/grpc-web+proto",
            "application/grpc+json",
            "text/plain",
            "application/connect+thrift",
            "application/xml",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn codes_map_to_the_protocols_http_statuses() {
        // The table of https://connectrpc.com/docs/protocol#error-codes.
        let table = [
            (Code::Cancelled, "canceled", 499),
            (Code::Unknown, "unknown", 500),
            (Code::InvalidArgument, "invalid_argument", 400),
            (Code::DeadlineExceeded, "deadline_exceeded", 504),
            (Code::NotFound, "not_found", 404),
            (Code::AlreadyExists, "already_exists", 409),
            (Code::PermissionDenied, "permission_denied", 403),
            (Code::ResourceExhausted, "resource_exhausted", 429),
            (Code::FailedPrecondition, "failed_precondition", 400),
            (Code::Aborted, "aborted", 409),
            (Code::OutOfRange, "out_of_range", 400),
            (Code::Unimplemented, "unimplemented", 501),
            (Code::Internal, "internal", 500),
            (Code::Unavailable, "unavailable", 503),
            (Code::DataLoss, "data_loss", 500),
            (Code::Unauthenticated, "unauthenticated", 401),
        ];
        for (code, name, status) in table {
            assert_eq!(code_name(code), name);
            assert_eq!(http_status(code).as_u16(), status, "{name}");
        }
    }

    #[test]
    fn timeouts_are_one_to_ten_digits() {
        let headers = |v: &str| {
            let mut map = HeaderMap::new();
            map.insert("connect-timeout-ms", HeaderValue::from_str(v).unwrap());
            map
        };
        assert_eq!(timeout_of(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            timeout_of(&headers("250")).unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            timeout_of(&headers("9999999999")).unwrap(),
            Some(Duration::from_millis(9_999_999_999))
        );
        for bad in ["", "-1", "1.5", "12345678901", "10s"] {
            let error = timeout_of(&headers(bad)).unwrap_err();
            assert_eq!(error.code, Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn validation_errors_keep_their_details_with_debug_json() {
        let status: tonic::Status =
            treven_mesh::ServiceError::invalid_field("email", "is not an e-mail address").into();
        let error = ConnectError::from_status(&status);
        assert_eq!(error.http_status(), StatusCode::BAD_REQUEST);
        let json = error.json(&DescriptorPool::new());
        assert_eq!(json["code"], "invalid_argument");
        assert_eq!(json["message"], "invalid email: is not an e-mail address");
        let details = json["details"].as_array().unwrap();
        let bad_request = details
            .iter()
            .find(|d| d["type"] == "google.rpc.BadRequest")
            .expect("a BadRequest detail");
        assert_eq!(bad_request["debug"]["fieldViolations"][0]["field"], "email");
        let value = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(bad_request["value"].as_str().unwrap())
            .unwrap();
        let decoded = tonic_types::pb::BadRequest::decode(value.as_slice()).unwrap();
        assert_eq!(
            decoded.field_violations[0].description,
            "is not an e-mail address"
        );
        let info = details
            .iter()
            .find(|d| d["type"] == "google.rpc.ErrorInfo")
            .expect("the ErrorInfo detail with the stable code");
        assert_eq!(info["debug"]["reason"], "VALIDATION_ERROR");
    }

    #[test]
    fn internal_failures_and_outages_say_nothing_more() {
        for status in [
            tonic::Status::internal("relation \"users\" does not exist"),
            tonic::Status::unknown("panicked at src/lib.rs"),
            tonic::Status::unavailable("dns error: tenants.treven.internal"),
        ] {
            let json = ConnectError::from_status(&status)
                .json(&DescriptorPool::new())
                .to_string();
            for secret in ["relation", "panicked", "dns"] {
                assert!(!json.contains(secret), "{json}");
            }
        }
        let deadline = ConnectError::from_status(&tonic::Status::deadline_exceeded("x"));
        assert_eq!(deadline.code_name(), "deadline_exceeded");
        assert_eq!(deadline.http_status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn a_streaming_request_is_exactly_one_envelope() {
        let limit = 1024;
        let message = b"\x0a\x03abc";
        assert_eq!(
            single_envelope(&envelope(0, message), Encoding::Identity, limit).unwrap(),
            message
        );
        let compressed = envelope(FLAG_COMPRESSED, &gzip(message));
        assert_eq!(
            single_envelope(&compressed, Encoding::Gzip, limit).unwrap(),
            message
        );
        // Compressed without an encoding, two envelopes, a short one, an
        // end-of-stream flag from the client: all refused.
        let mut two = envelope(0, message).to_vec();
        two.extend_from_slice(&envelope(0, message));
        for bad in [
            compressed.to_vec(),
            two,
            envelope(0, message)[..6].to_vec(),
            envelope(FLAG_END_STREAM, b"{}").to_vec(),
            vec![0, 0],
        ] {
            let error = single_envelope(&bad, Encoding::Identity, limit).unwrap_err();
            assert_eq!(error.code, Code::InvalidArgument);
        }
        // A gzip bomb stops at the limit.
        let bomb = envelope(FLAG_COMPRESSED, &gzip(&[0u8; 10 * 1024]));
        let error = single_envelope(&bomb, Encoding::Gzip, limit).unwrap_err();
        assert_eq!(error.code, Code::ResourceExhausted);
    }
}
