//! Metrics: OpenTelemetry instruments, served as Prometheus text and
//! exported over OTLP when configured.
//!
//! Every instrument of the process is created from [`meter`] (one
//! OpenTelemetry meter provider per process, so `--target all` serves every
//! role's metrics from each of its `/metrics` endpoints). Two readers share
//! it:
//!
//! - a pull reader that [`render`] collects on demand into the Prometheus
//!   text format (0.0.4): `GET /metrics` on the gateway's :8080 and on the
//!   admin port of every other role (`TREVEN_ADMIN_ADDR`), so a laptop needs
//!   no collector and the CloudWatch sidecar in AWS scrapes the same text;
//! - when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`install`] from
//!   [`crate::telemetry::init`]), a periodic OTLP/gRPC exporter (every 30 s).
//!
//! Why not `opentelemetry-prometheus`: that crate is discontinued (the
//! OpenTelemetry Rust project stopped releasing it with the SDKs this
//! workspace uses) and it pulls the `prometheus` crate and protobuf in on
//! top. The text format is small and stable, so [`render`] writes it from
//! the SDK's own collected data: no new dependency, one small feature of the
//! SDK (`experimental_metrics_custom_reader`, for the pull reader).
//!
//! Names follow the OpenTelemetry semantic conventions (`rpc.server.call.duration`,
//! `http.server.request.duration`, `db.client.connection.count`, …) and
//! appear in Prometheus form: dots become underscores, the unit is a suffix
//! (`_seconds`), counters end in `_total`. Attributes are bounded: route
//! templates and RPC names, never raw paths, ids, organisations or people.
//!
//! [`RpcMetricsLayer`] records the RED metrics of every gRPC server (see
//! [`crate::server::serve`]).

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

/// The instrument types and attributes the roles record with (re-exported
/// so a role needs no OpenTelemetry dependency of its own).
pub use opentelemetry::KeyValue;
pub use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};

/// Bucket bounds (seconds) of every latency histogram: 5 ms to 2 minutes
/// (a report generation stream or a chat answer takes tens of seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// How often the OTLP exporter pushes, when it is on.
const OTLP_INTERVAL: Duration = Duration::from_secs(30);

struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    meter: Meter,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The pull reader, shared between the provider and [`render`].
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

fn build(otlp: Option<opentelemetry_otlp::MetricExporter>, service_name: &str) -> Metrics {
    let reader = Arc::new(ManualReader::builder().build());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(SharedReader(reader.clone()));
    if let Some(exporter) = otlp {
        builder = builder.with_reader(
            opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                .with_interval(OTLP_INTERVAL)
                .build(),
        );
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let meter = provider.meter("treven");
    Metrics {
        provider,
        reader,
        meter,
    }
}

fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| build(None, "treven"))
}

/// Sets up the process's meter provider, with OTLP export when `otlp`
/// (`OTEL_EXPORTER_OTLP_ENDPOINT` is set). Called once by
/// [`crate::telemetry::init`] before any role starts; a process (a test)
/// that records before it gets the Prometheus reader only.
pub fn install(otlp: bool, service_name: &str) -> anyhow::Result<()> {
    if METRICS.get().is_some() {
        return Ok(());
    }
    let exporter = if otlp {
        Some(
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP metric exporter: {e}"
                    )
                })?,
        )
    } else {
        None
    };
    let _ = METRICS.set(build(exporter, service_name));
    Ok(())
}

/// Flushes the OTLP exporter (the last step of shutdown); the Prometheus
/// reader needs nothing.
pub fn shutdown() {
    if let Some(metrics) = METRICS.get()
        && let Err(error) = metrics.provider.force_flush()
    {
        eprintln!("telemetry: metric export did not flush: {error}");
    }
}

/// The meter every Treven instrument is created from.
pub fn meter() -> &'static Meter {
    &metrics().meter
}

/// A latency histogram in seconds with [`LATENCY_BUCKETS`].
pub fn latency_histogram(name: &'static str, description: &'static str) -> Histogram<f64> {
    meter()
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(LATENCY_BUCKETS.to_vec())
        .build()
}

/// Everything recorded in this process, in the Prometheus text format
/// (version 0.0.4, the content type of [`CONTENT_TYPE`]).
pub fn render() -> String {
    let metrics = metrics();
    let mut collected = ResourceMetrics::default();
    if let Err(error) = metrics.reader.collect(&mut collected) {
        tracing::warn!(%error, "cannot collect metrics");
    }
    let mut out = String::new();
    for scope in collected.scope_metrics() {
        for metric in scope.metrics() {
            write_metric(&mut out, metric);
        }
    }
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `rpc.server.call.duration` + unit `s` → `rpc_server_call_duration_seconds`.
fn prometheus_name(name: &str, unit: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let suffix = match unit {
        "s" => "_seconds",
        "ms" => "_milliseconds",
        "By" => "_bytes",
        _ => "",
    };
    if !suffix.is_empty() && !out.ends_with(suffix) {
        out.push_str(suffix);
    }
    out
}

fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels<'a>(
    attributes: impl Iterator<Item = &'a KeyValue>,
    extra: Option<(&str, &str)>,
) -> String {
    let mut parts: Vec<String> = attributes
        .map(|kv| {
            let key: String = kv
                .key
                .as_str()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            format!("{key}=\"{}\"", escape_value(&kv.value.as_str()))
        })
        .collect();
    if let Some((key, value)) = extra {
        parts.push(format!("{key}=\"{value}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

trait AsF64: Copy {
    fn as_f64(self) -> f64;
}
impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}
impl AsF64 for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}
impl AsF64 for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

fn write_metric(out: &mut String, metric: &opentelemetry_sdk::metrics::data::Metric) {
    match metric.data() {
        AggregatedMetrics::F64(data) => write_data(out, metric, data),
        AggregatedMetrics::U64(data) => write_data(out, metric, data),
        AggregatedMetrics::I64(data) => write_data(out, metric, data),
    }
}

fn write_data<T: AsF64>(
    out: &mut String,
    metric: &opentelemetry_sdk::metrics::data::Metric,
    data: &MetricData<T>,
) {
    let base = prometheus_name(metric.name(), metric.unit());
    let help = metric
        .description()
        .replace('\\', "\\\\")
        .replace('\n', "\\n");
    match data {
        MetricData::Gauge(gauge) => {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} gauge");
            for point in gauge.data_points() {
                let _ = writeln!(
                    out,
                    "{base}{} {}",
                    labels(point.attributes(), None),
                    number(point.value().as_f64())
                );
            }
        }
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{base}_total"), "counter")
            } else {
                (base, "gauge")
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for point in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    number(point.value().as_f64())
                );
            }
        }
        MetricData::Histogram(histogram) => {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} histogram");
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                let bounds: Vec<f64> = point.bounds().collect();
                for (i, count) in point.bucket_counts().enumerate() {
                    cumulative += count;
                    let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    let _ = writeln!(
                        out,
                        "{base}_bucket{} {cumulative}",
                        labels(point.attributes(), Some(("le", &number(le))))
                    );
                }
                let plain = labels(point.attributes(), None);
                let _ = writeln!(out, "{base}_sum{plain} {}", number(point.sum().as_f64()));
                let _ = writeln!(out, "{base}_count{plain} {}", point.count());
            }
        }
        MetricData::ExponentialHistogram(_) => {
            // Never configured here: every histogram has explicit buckets.
        }
    }
}

/// The RED metrics of one gRPC server: `rpc.server.call.duration` (seconds),
/// a histogram whose `_count` is the call count, by `rpc.service`,
/// `rpc.method` and `rpc.grpc.status_code`. A call is measured until its
/// response (a stream included) has ended; a call the client abandons
/// counts as CANCELLED. A method the server does not have (UNIMPLEMENTED)
/// is recorded as `other`, so a client cannot grow the label set.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    duration: Histogram<f64>,
}

impl Default for RpcMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcMetricsLayer {
    /// The layer, on the process's meter.
    pub fn new() -> Self {
        static DURATION: OnceLock<Histogram<f64>> = OnceLock::new();
        Self {
            duration: DURATION
                .get_or_init(|| {
                    latency_histogram(
                        "rpc.server.call.duration",
                        "gRPC calls served: duration until the response ended, by service, method and status code",
                    )
                })
                .clone(),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            duration: self.duration.clone(),
        }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    duration: Histogram<f64>,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<MeasuredBody<ResBody>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(request.uri().path())
            .map(|(s, m)| (s.to_owned(), m.to_owned()))
            .unwrap_or_else(|| ("other".to_owned(), "other".to_owned()));
        let mut call = Call {
            start: Instant::now(),
            service,
            method,
            status: None,
            ended: false,
            duration: self.duration.clone(),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A trailers-only response (an error) carries its status here.
            call.status = grpc_status(response.headers());
            Ok(response.map(|body| MeasuredBody {
                inner: body,
                call: Some(call),
            }))
        })
    }
}

/// One call being measured; recorded once, when its body ends or is dropped.
struct Call {
    start: Instant,
    service: String,
    method: String,
    status: Option<i64>,
    ended: bool,
    duration: Histogram<f64>,
}

impl Drop for Call {
    fn drop(&mut self) {
        // Ended without a status: UNKNOWN; dropped before its end: CANCELLED.
        let status = self.status.unwrap_or(if self.ended { 2 } else { 1 });
        let (service, method) = if status == 12 {
            ("other".to_owned(), "other".to_owned())
        } else {
            (
                std::mem::take(&mut self.service),
                std::mem::take(&mut self.method),
            )
        };
        self.duration.record(
            self.start.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", method),
                KeyValue::new("rpc.grpc.status_code", status),
            ],
        );
    }
}

/// A response body that records its call when it ends.
pub struct MeasuredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> std::fmt::Debug for MeasuredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasuredBody").finish_non_exhaustive()
    }
}

impl<B> Body for MeasuredBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = this.call.as_mut()
                    && let Some(status) = grpc_status(trailers)
                {
                    call.status = Some(status);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(mut call) = this.call.take() {
                    call.ended = true;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Database connection pools whose use [`observe_pool`] reports.
#[cfg(feature = "postgres")]
static POOLS: std::sync::Mutex<Vec<(&'static str, sqlx::PgPool)>> =
    std::sync::Mutex::new(Vec::new());

/// Reports `pool`'s use as `db.client.connection.count` (by
/// `db.client.connection.state`, `idle` or `used`) and
/// `db.client.connection.max`, named `name` (`db.client.connection.pool.name`),
/// read at each collection until the pool is closed.
#[cfg(feature = "postgres")]
pub fn observe_pool(name: &'static str, pool: &sqlx::PgPool) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let count = |observer: &dyn opentelemetry::metrics::AsyncInstrument<i64>| {
            let Ok(mut pools) = POOLS.lock() else { return };
            pools.retain(|(_, pool)| !pool.is_closed());
            for (name, pool) in pools.iter() {
                let size = i64::from(pool.size());
                let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
                let pool_name = KeyValue::new("db.client.connection.pool.name", *name);
                observer.observe(
                    idle,
                    &[
                        pool_name.clone(),
                        KeyValue::new("db.client.connection.state", "idle"),
                    ],
                );
                observer.observe(
                    (size - idle).max(0),
                    &[
                        pool_name,
                        KeyValue::new("db.client.connection.state", "used"),
                    ],
                );
            }
        };
        let max = |observer: &dyn opentelemetry::metrics::AsyncInstrument<i64>| {
            let Ok(pools) = POOLS.lock() else { return };
            for (name, pool) in pools.iter().filter(|(_, p)| !p.is_closed()) {
                observer.observe(
                    i64::from(pool.options().get_max_connections()),
                    &[KeyValue::new("db.client.connection.pool.name", *name)],
                );
            }
        };
        // Kept by the provider for the life of the process.
        let _ = meter()
            .i64_observable_up_down_counter("db.client.connection.count")
            .with_description("Postgres connections of the pool, by state (idle or used)")
            .with_callback(move |o| count(o))
            .build();
        let _ = meter()
            .i64_observable_up_down_counter("db.client.connection.max")
            .with_description("Most Postgres connections the pool opens")
            .with_callback(move |o| max(o))
            .build();
    });
    if let Ok(mut pools) = POOLS.lock() {
        pools.push((name, pool.clone()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        assert_eq!(
            prometheus_name("rpc.server.call.duration", "s"),
            "rpc_server_call_duration_seconds"
        );
        assert_eq!(
            prometheus_name("treven.gateway.ws.connections", "{connection}"),
            "treven_gateway_ws_connections"
        );
        assert_eq!(split_path("/a.B/C"), Some(("a.B", "C")));
        assert_eq!(split_path("/a.B/C/D"), None);
        assert_eq!(split_path("/"), None);
    }

    /// Answers GetMe with NOT_FOUND and every other call with UNIMPLEMENTED
    /// (as tonic answers a method a service does not have).
    #[derive(Clone)]
    struct Fake;

    impl tonic::server::NamedService for Fake {
        const NAME: &'static str = "treven.tenants.v1.TenantsService";
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Fake {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = futures::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            let status = if request.uri().path().ends_with("/GetMe") {
                tonic::Status::not_found("no such user")
            } else {
                tonic::Status::unimplemented("no such method")
            };
            futures::future::ready(Ok(status.into_http()))
        }
    }

    fn count(text: &str, labels: &[&str]) -> f64 {
        text.lines()
            .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count{"))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    #[tokio::test]
    async fn every_call_of_a_server_is_counted_by_method_and_status_and_unknown_methods_are_other()
    {
        use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;
        use treven_proto::treven::tenants::v1::{GetMeRequest, ListUsersRequest};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = crate::CancellationToken::new();
        let service = crate::server::GrpcService {
            name: "fake",
            routes: tonic::service::Routes::new(Fake),
            health_names: vec![],
        };
        let policy = crate::server::ShutdownPolicy {
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(1),
            max_concurrent_requests: 8,
        };
        tokio::spawn(crate::server::serve(
            service,
            listener,
            shutdown.clone(),
            policy,
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        let mut client = TenantsServiceClient::new(channel);
        let get_me = [
            r#"rpc_service="treven.tenants.v1.TenantsService""#,
            r#"rpc_method="GetMe""#,
            r#"rpc_grpc_status_code="5""#,
        ];
        let other = [
            r#"rpc_service="other""#,
            r#"rpc_method="other""#,
            r#"rpc_grpc_status_code="12""#,
        ];
        let before = render();
        let mut refused = None;
        for _ in 0..50 {
            match client.get_me(GetMeRequest::default()).await {
                Err(status) if status.code() == tonic::Code::NotFound => {
                    refused = Some(status);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        assert!(refused.is_some(), "the server answered");
        client.get_me(GetMeRequest::default()).await.unwrap_err();
        let unknown = client
            .list_users(ListUsersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unimplemented);
        // Recorded when each response has ended: give the last one a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = render();
        assert_eq!(
            count(&after, &get_me) - count(&before, &get_me),
            2.0,
            "{after}"
        );
        assert_eq!(
            count(&after, &other) - count(&before, &other),
            1.0,
            "{after}"
        );
        assert!(!after.contains("ListUsers"), "{after}");
        shutdown.cancel();
    }

    #[test]
    fn counters_gauges_and_histograms_render_as_prometheus_text() {
        let counter = meter().u64_counter("test.render.calls").build();
        counter.add(3, &[KeyValue::new("kind", "a\"b")]);
        let histogram = latency_histogram("test.render.latency", "a test latency");
        histogram.record(0.02, &[KeyValue::new("route", "/x/{id}")]);
        histogram.record(3.0, &[KeyValue::new("route", "/x/{id}")]);
        let text = render();
        assert!(
            text.contains("# TYPE test_render_calls_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"test_render_calls_total{kind="a\"b"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE test_render_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(r#"test_render_latency_seconds_bucket{route="/x/{id}",le="0.025"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"test_render_latency_seconds_bucket{route="/x/{id}",le="+Inf"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"test_render_latency_seconds_count{route="/x/{id}"} 2"#),
            "{text}"
        );
    }
}
