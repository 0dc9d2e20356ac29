//! Logs and traces.
//!
//! Logs are `tracing` events, printed as JSON (`TREVEN_LOG_FORMAT=json`, the
//! default in AWS) or human-readable (`pretty`, the default locally), and
//! filtered by `TREVEN_LOG` (`RUST_LOG` syntax, default `info`). Every gRPC
//! request runs in a span with its trace id, request id and organisation, so
//! each log line of a request can be found from any other.
//!
//! Setting the standard `OTEL_EXPORTER_OTLP_ENDPOINT` also exports spans over
//! OTLP/gRPC, with W3C trace context taken from incoming requests.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{ConfigError, Env, Environment};

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line, with the span's fields.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Logging and tracing settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Line format.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub filter: String,
    /// Whether `OTEL_EXPORTER_OTLP_ENDPOINT` asks for span export.
    pub otlp: bool,
}

impl TelemetryConfig {
    /// Reads `TREVEN_LOG_FORMAT`, `TREVEN_LOG` and `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let format = match env.get("TREVEN_LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            None if environment == Environment::Local => LogFormat::Pretty,
            None => LogFormat::Json,
            Some(other) => {
                return Err(env.error(
                    "TREVEN_LOG_FORMAT",
                    format!("must be json or pretty, got {other:?}"),
                ));
            }
        };
        let filter = env.get("TREVEN_LOG").unwrap_or_else(|| "info".to_owned());
        EnvFilter::try_new(&filter).map_err(|e| env.error("TREVEN_LOG", e.to_string()))?;
        let otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        Ok(Self {
            format,
            filter,
            otlp,
        })
    }
}

/// Flushes exported spans when the process ends; keep it alive in `main`.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops span export (the last step of shutdown).
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        crate::metrics::shutdown();
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("telemetry: span export did not flush: {error}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Installs the global subscriber (once per process; later calls are no-ops,
/// which keeps tests that start several servers simple).
pub fn init(config: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.filter).context("TREVEN_LOG")?;
    // Metrics: Prometheus text always, OTLP with the same endpoint.
    crate::metrics::install(config.otlp, service_name)?;
    let provider = if config.otlp {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .context("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter")?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    let otel_layer = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("treven")));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match config.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    if installed.is_err() {
        // Already installed by an earlier call in this process.
        return Ok(TelemetryGuard { provider: None });
    }
    Ok(TelemetryGuard { provider })
}

/// The span every gRPC request runs in: method, trace id (from W3C
/// `traceparent` when present, else new), request id (from `x-request-id`
/// when present), and the organisation once the context is verified.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let headers = request.headers();
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let trace_id = traceparent
        .and_then(|tp| tp.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "rpc",
        rpc = %request.uri().path(),
        trace_id = %trace_id,
        request_id = %request_id,
        org_id = tracing::field::Empty,
    );
    if traceparent.is_some() {
        use opentelemetry::propagation::Extractor;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        struct Headers<'a>(&'a http::HeaderMap);
        impl Extractor for Headers<'_> {
            fn get(&self, key: &str) -> Option<&str> {
                self.0.get(key).and_then(|v| v.to_str().ok())
            }
            fn keys(&self) -> Vec<&str> {
                self.0.keys().map(|k| k.as_str()).collect()
            }
        }
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(parent);
    }
    span
}
