//! Distributed traces: one W3C trace from the gateway through every service
//! and store a request touches.
//!
//! - Context travels as `traceparent`/`tracestate`: [`inject_metadata`] puts
//!   the current span's context on every outgoing call (it runs inside
//!   [`crate::context::attach_context`], which every mesh call goes
//!   through, so no call site can forget), and each server continues it
//!   ([`crate::telemetry::request_span`]).
//! - Store, model and job work runs in spans made here, named and
//!   attributed after the OpenTelemetry semantic conventions: [`postgres`]
//!   (`db.system=postgresql`, the statement's name such as
//!   `reports.claim_job`), [`dynamodb`], [`s3`], [`redis`] and
//!   [`model_call`] (`gen_ai.*`). Wrap the call's future with
//!   [`Traced::traced`] so a failure marks the span as an error.
//!
//! Spans carry `org_id` where the work belongs to one organisation, and
//! never personal data, document text, prompts or tokens.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace state header.
pub const TRACESTATE: &str = "tracestate";

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The trace context `headers` carry, when their `traceparent` is valid.
pub fn extract(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    let context =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    context.span().span_context().is_valid().then_some(context)
}

/// The trace context of a stored `traceparent` (a job's), when valid.
pub fn extract_traceparent(traceparent: &str) -> Option<opentelemetry::Context> {
    let mut headers = http::HeaderMap::new();
    headers.insert(TRACEPARENT, http::HeaderValue::from_str(traceparent).ok()?);
    extract(&headers)
}

/// Makes `span` continue the trace of a stored `traceparent` (see
/// [`current_traceparent`]) when it is valid. Call it before the span is
/// first entered.
pub fn continue_traceparent(span: &Span, traceparent: &str) {
    if let Some(parent) = extract_traceparent(traceparent) {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` continue the trace of `headers` when they carry a valid
/// `traceparent`; otherwise `span` starts a trace of its own. Call it
/// before the span is first entered.
pub fn continue_from(span: &Span, headers: &http::HeaderMap) {
    if let Some(parent) = extract(headers) {
        let _ = span.set_parent(parent);
    }
}

/// The context of `span`, if it belongs to a trace.
fn valid_context(span: &Span) -> Option<opentelemetry::Context> {
    let context = span.context();
    context.span().span_context().is_valid().then_some(context)
}

/// Puts the current span's trace context on an outgoing call, replacing
/// whatever `traceparent`/`tracestate` it had (a client's own is never
/// passed on as is: the callee's parent is the span that made the call).
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    metadata.remove(TRACEPARENT);
    metadata.remove(TRACESTATE);
    if let Some(context) = valid_context(&Span::current()) {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MetadataInjector(metadata));
        });
    }
}

/// [`inject_metadata`] for plain HTTP headers (a proxied gRPC-web call).
pub fn inject_headers(headers: &mut http::HeaderMap) {
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    if let Some(context) = valid_context(&Span::current()) {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeaderInjector(headers));
        });
    }
}

/// The current span's `traceparent`, empty outside a trace: stored with
/// work that runs later (a report job), so it continues the same trace.
pub fn current_traceparent() -> String {
    let Some(context) = valid_context(&Span::current()) else {
        return String::new();
    };
    let mut fields = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut fields));
    fields.remove(TRACEPARENT).unwrap_or_default()
}

/// The trace and span id (lowercase hex) of `span`, if it belongs to a
/// trace: what every log line carries.
pub fn ids_of(span: &Span) -> Option<(String, String)> {
    let context = valid_context(span)?;
    let span = context.span();
    let span_context = span.span_context();
    Some((
        span_context.trace_id().to_string(),
        span_context.span_id().to_string(),
    ))
}

/// A Postgres statement: named `<service>.<statement>` (such as
/// `reports.claim_job`), with `db.system=postgresql` and the operation
/// (`SELECT`, `INSERT`, …). Record `org_id` when the statement runs for
/// one organisation ([`with_org`]).
pub fn postgres(statement: &'static str, operation: &'static str) -> Span {
    tracing::info_span!(
        "db",
        otel.name = statement,
        otel.kind = "client",
        otel.status_code = Empty,
        db.system = "postgresql",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.query.summary = statement,
        error.type = Empty,
        org_id = Empty,
    )
}

/// A DynamoDB operation on `table` (`DynamoDB.GetItem`).
pub fn dynamodb(operation: &'static str, table: &str) -> Span {
    tracing::info_span!(
        "db",
        otel.name = %format_args!("DynamoDB.{operation}"),
        otel.kind = "client",
        otel.status_code = Empty,
        db.system = "dynamodb",
        db.system.name = "aws.dynamodb",
        db.operation.name = operation,
        rpc.system = "aws-api",
        rpc.service = "DynamoDB",
        rpc.method = operation,
        aws.dynamodb.table_names = table,
        error.type = Empty,
        org_id = Empty,
    )
}

/// An S3 operation on `bucket` (`S3.PutObject`); object keys are not
/// recorded.
pub fn s3(operation: &'static str, bucket: &str) -> Span {
    tracing::info_span!(
        "aws",
        otel.name = %format_args!("S3.{operation}"),
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system = "aws-api",
        rpc.service = "S3",
        rpc.method = operation,
        aws.s3.bucket = bucket,
        error.type = Empty,
        org_id = Empty,
    )
}

/// A Redis command (`EVALSHA`, `SET`, …) named for what it does
/// (`gateway.rate_limit`); keys and values are not recorded.
pub fn redis(statement: &'static str, command: &'static str) -> Span {
    tracing::info_span!(
        "db",
        otel.name = statement,
        db.query.summary = statement,
        otel.kind = "client",
        otel.status_code = Empty,
        db.system = "redis",
        db.system.name = "redis",
        db.operation.name = command,
        error.type = Empty,
        org_id = Empty,
    )
}

/// A call to a model (`chat <model>`): the provider (`gen_ai.system`), the
/// model asked for, and once known the tokens used and the time to the
/// first token (`gen_ai.server.time_to_first_token`, seconds). Never the
/// prompt or the answer.
pub fn model_call(provider: &'static str, model: &str) -> Span {
    tracing::info_span!(
        "gen_ai",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.system = provider,
        gen_ai.provider.name = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read_tokens = Empty,
        gen_ai.server.time_to_first_token = Empty,
        error.type = Empty,
    )
}

/// Renames `span` (its exported name), also once it has started: an edge
/// span is named after its route once the route is known.
pub fn rename(span: &Span, name: String) {
    span.context().span().update_name(name);
}

/// Records the organisation on `span` (one made here or a request span).
pub fn with_org(span: Span, org: impl std::fmt::Display) -> Span {
    span.record("org_id", tracing::field::display(org));
    span
}

/// Marks `span` as failed with a short, low-cardinality `error.type`
/// (never a message, which may quote data).
pub fn record_error(span: &Span, error_type: &str) {
    span.record("otel.status_code", "error");
    span.record("error.type", error_type);
}

/// The last segment of a type's path (`StoreError`, `SdkError`): the
/// `error.type` of a failed call.
fn short_type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Runs a fallible call in a span, marking the span failed when it fails.
pub trait Traced<T, E>: Future<Output = Result<T, E>> + Sized {
    /// Runs `self` inside `span`; an `Err` sets `otel.status_code=error`
    /// and `error.type` to the error's type name.
    fn traced(self, span: Span) -> impl Future<Output = Result<T, E>> {
        use tracing::Instrument as _;
        async move {
            let result = self.instrument(span.clone()).await;
            if result.is_err() {
                record_error(&span, short_type_name::<E>());
            }
            result
        }
    }
}

impl<F, T, E> Traced<T, E> for F where F: Future<Output = Result<T, E>> {}

/// gRPC codes that mark a server span as failed (the caller's mistakes,
/// such as NOT_FOUND or INVALID_ARGUMENT, do not).
fn server_error(code: i32) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Records a gRPC status on the server span of a call.
fn record_grpc_status(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    if server_error(code) {
        span.record("otel.status_code", "error");
    }
}

fn grpc_status_of(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The tower layer every mesh server runs its calls in (see
/// [`crate::server::serve`]): the call's span stays open, and current,
/// until its response — a stream included — has been sent, and records
/// `rpc.grpc.status_code` from the response or its trailers.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcStatusLayer;

impl<S> tower::Layer<S> for GrpcStatusLayer {
    type Service = GrpcStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcStatus { inner }
    }
}

/// The service of [`GrpcStatusLayer`].
#[derive(Debug, Clone)]
pub struct GrpcStatus<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcStatus<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<SpanBody<RB>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            // The server polls the call's future inside its span (but
            // makes the call outside it).
            let span = Span::current();
            let response = future.await?;
            let done = match grpc_status_of(response.headers()) {
                // Trailers-only: the call ended with the headers.
                Some(code) => {
                    record_grpc_status(&span, code);
                    true
                }
                None => false,
            };
            Ok(response.map(|inner| SpanBody { inner, span, done }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call's span open and current while
    /// it is sent, and records the gRPC status of its trailers.
    pub struct SpanBody<B> {
        #[pin]
        inner: B,
        span: Span,
        done: bool,
    }
}

impl<B: http_body::Body> http_body::Body for SpanBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        let polled = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && !*this.done
            && let Some(code) = grpc_status_of(trailers)
        {
            record_grpc_status(this.span, code);
            *this.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_short_names() {
        assert_eq!(short_type_name::<std::io::Error>(), "Error");
        assert_eq!(
            short_type_name::<Result<u8, std::fmt::Error>>(),
            "Result",
            "generic arguments are dropped"
        );
    }

    #[test]
    fn only_server_side_codes_fail_a_server_span() {
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(server_error(code), "{code}");
        }
        for code in [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 16] {
            assert!(!server_error(code), "{code}");
        }
    }

    #[test]
    fn invalid_traceparents_are_not_continued() {
        crate::telemetry::install_propagator();
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(extract_traceparent(bad).is_none(), "{bad:?}");
        }
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = extract_traceparent(good).expect("valid");
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
