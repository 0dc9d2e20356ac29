//! Logs and traces.
//!
//! Logs are `tracing` events, printed as JSON (`TREVEN_LOG_FORMAT=json`, the
//! default in AWS) or human-readable (`pretty`, the default locally), and
//! filtered by `TREVEN_LOG` (`RUST_LOG` syntax, default `info`). Every line
//! written inside a span carries the W3C `trace_id` and `span_id`, and every
//! gRPC request runs in a server span with its request id and organisation,
//! so each log line of a request — in any service it reached — can be found
//! from any other.
//!
//! Setting the standard `OTEL_EXPORTER_OTLP_ENDPOINT` also exports the spans
//! over OTLP/gRPC; see [`crate::trace`] for how a trace crosses services.

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

/// Makes W3C trace context (`traceparent`, `tracestate`) the format every
/// hop reads and writes (idempotent).
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
}

/// Installs the global subscriber (once per process; later calls are no-ops,
/// which keeps tests that start several servers simple).
///
/// Spans always get W3C trace and span ids, carried to every service the
/// request reaches and printed on every log line; with
/// `OTEL_EXPORTER_OTLP_ENDPOINT` they are also exported (batched: see the
/// standard `OTEL_BSP_*` variables), as `service_name`. `TREVEN_LOG` filters
/// the log lines (and the events attached to spans) but never Treven's own
/// spans: `TREVEN_LOG=warn` quietens the logs without cutting traces.
pub fn init(config: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.filter).context("TREVEN_LOG")?;
    install_propagator();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    // Metrics: Prometheus text always, OTLP with the same endpoint.
    crate::metrics::install(config.otlp, service_name)?;
    let provider = if config.otlp {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .context("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter")?;
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build()
    } else {
        // Nothing exported: spans are not recorded, but still get the ids
        // that logs and onward calls carry.
        SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .with_resource(resource)
            .build()
    };
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("treven"));
    // One filter for every layer (per-layer filters lose spans when a library
    // asks `enabled!` without logging; see `SpansAndLogs`).
    let registry = tracing_subscriber::registry()
        .with(SpansAndLogs(filter))
        .with(otel_layer);
    let installed = match config.format {
        LogFormat::Json => registry.with(json_lines(std::io::stdout)).try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().event_format(WithTraceIds {
                inner: tracing_subscriber::fmt::format().compact(),
                json: false,
            }))
            .try_init(),
    };
    if installed.is_err() {
        // Already installed by an earlier call in this process.
        let _ = provider.shutdown();
        return Ok(TelemetryGuard { provider: None });
    }
    Ok(TelemetryGuard {
        provider: config.otlp.then_some(provider),
    })
}

/// The JSON log lines of `TREVEN_LOG_FORMAT=json`, written to `writer`: one
/// object per event, its fields flattened, with the current span and the
/// trace and span ids (see [`WithTraceIds`]).
fn json_lines<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(WithTraceIds {
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false),
            json: true,
        })
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .with_writer(writer)
}

/// The process's one filter: every span of Treven code at info and above
/// (requests, stores, models, jobs: what traces are made of), and whatever
/// `TREVEN_LOG` lets through (events, library spans).
///
/// One global filter rather than a filter per layer: with per-layer filters,
/// a library's `enabled!` check that logs nothing (sqlx asks after every
/// statement) leaves the filter state of its thread stale, and the next span
/// made there (a request's server span) was silently lost to the
/// OpenTelemetry layer — its children became roots of traces of their own.
struct SpansAndLogs(EnvFilter);

fn is_treven_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span()
        && *metadata.level() <= tracing::Level::INFO
        && metadata.target().starts_with("treven")
}

impl<S> tracing_subscriber::Layer<S> for SpansAndLogs
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if is_treven_span(metadata) {
            return tracing::subscriber::Interest::always();
        }
        <EnvFilter as tracing_subscriber::Layer<S>>::register_callsite(&self.0, metadata)
    }

    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        is_treven_span(metadata)
            || <EnvFilter as tracing_subscriber::Layer<S>>::enabled(&self.0, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        let logs = <EnvFilter as tracing_subscriber::Layer<S>>::max_level_hint(&self.0)
            .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
        Some(logs.max(tracing_subscriber::filter::LevelFilter::INFO))
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_close(id, ctx);
    }
}

/// A log line format with the W3C trace id and span id of the span the line
/// was written in: `"trace_id"` and `"span_id"` first in a JSON line, a
/// `trace_id=… span_id=…` prefix in a pretty one. A line outside any span
/// has neither.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use opentelemetry::trace::TraceContextExt as _;
        // The OpenTelemetry layer makes the context of the entered span
        // current on this thread.
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return self.inner.format_event(ctx, writer, event);
        }
        let (trace_id, span_id) = (ids.trace_id(), ids.span_id());
        if !self.json {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}

/// The span every gRPC request runs in (the server span of the call, named
/// `package.Service/Method`, with `rpc.system`, `rpc.service`,
/// `rpc.method`, and `rpc.grpc.status_code` once answered — see
/// [`crate::trace::GrpcStatusLayer`]): it continues the caller's trace when
/// the request carries a valid W3C `traceparent`, and carries the request id
/// (from `x-request-id` when present) and the organisation once the context
/// is verified.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let headers = request.headers();
    let path = request.uri().path();
    let full_method = path.trim_start_matches('/');
    let (service, method) = full_method.split_once('/').unwrap_or((full_method, ""));
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "rpc",
        otel.name = full_method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc = %path,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        request_id = %request_id,
        org_id = tracing::field::Empty,
    );
    crate::trace::continue_from(&span, headers);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_trace_and_span_id_of_their_span() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        install_propagator();
        let provider = SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .build();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(SpansAndLogs(EnvFilter::new("info")))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(json_lines(move || writer.clone()));
        let mut request = http::Request::new(());
        *request.uri_mut() = "/treven.reports.v1.ReportsService/GetReport"
            .parse()
            .expect("uri");
        request.headers_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("ascii"),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = request_span(&request);
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            let mut metadata = tonic::metadata::MetadataMap::new();
            crate::trace::inject_metadata(&mut metadata);
            let onward = metadata
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .expect("an onward traceparent")
                .to_owned();
            assert!(
                onward.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "the trace continues: {onward}"
            );
            assert!(
                !onward.contains("00f067aa0ba902b7"),
                "with a span of its own"
            );
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        assert_eq!(
            parsed[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{text}"
        );
        let span_id = parsed[1]["span_id"].as_str().expect("a span id");
        assert_eq!(span_id.len(), 16);
        assert_ne!(span_id, "00f067aa0ba902b7");
        assert_eq!(parsed[1]["answer"], 42);
        assert_eq!(parsed[1]["message"], "inside");
    }

    /// An ended span: name, trace id, span id, parent span id.
    type Ended = (String, String, String, String);

    /// Collects ended spans.
    #[derive(Debug, Clone, Default)]
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<Ended>>>);

    impl opentelemetry_sdk::trace::SpanProcessor for Collect {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
            self.0.lock().expect("lock").push((
                span.name.to_string(),
                span.span_context.trace_id().to_string(),
                span.span_context.span_id().to_string(),
                span.parent_span_id.to_string(),
            ));
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(
            &self,
            _: std::time::Duration,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn a_request_and_the_job_it_queues_are_one_trace() {
        use tracing::Instrument as _;

        use crate::trace::{self, Traced as _};

        install_propagator();
        let collect = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(collect.clone())
            .build();
        // Logs quietened to warnings: the spans are all there all the same.
        let subscriber = tracing_subscriber::registry()
            .with(SpansAndLogs(EnvFilter::new("warn")))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(json_lines(std::io::sink));
        let mut request = http::Request::new(());
        *request.uri_mut() = "/treven.reports.v1.ReportsService/CreateReport"
            .parse()
            .expect("uri");
        request.headers_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("ascii"),
        );
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let span = request_span(&request);
                let stored = async {
                    tracing::Span::current().record("org_id", "org-1");
                    tokio::task::yield_now().await;
                    let stored = async { Ok::<_, ()>(trace::current_traceparent()) }
                        .traced(trace::postgres("reports.insert", "INSERT"))
                        .await
                        .expect("ok");
                    let mut metadata = tonic::metadata::MetadataMap::new();
                    trace::inject_metadata(&mut metadata);
                    assert!(metadata.get("traceparent").is_some());
                    tracing::info!("created");
                    stored
                }
                .instrument(span)
                .await;
                assert!(
                    stored.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                    "{stored}"
                );

                let job = tracing::info_span!("job", otel.name = "reports.job", org_id = "org-1");
                trace::continue_traceparent(&job, &stored);
                async {
                    async { Ok::<_, ()>(()) }
                        .traced(tracing::info_span!("step", otel.name = "reports.step"))
                        .await
                        .expect("ok");
                    tokio::task::yield_now().await;
                    let mut metadata = tonic::metadata::MetadataMap::new();
                    trace::inject_metadata(&mut metadata);
                    assert!(metadata.get("traceparent").is_some());
                }
                .instrument(job)
                .await;
            });
        });
        let spans = collect.0.lock().expect("lock").clone();
        let names: Vec<&str> = spans.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "reports.insert",
                "treven.reports.v1.ReportsService/CreateReport",
                "reports.step",
                "reports.job"
            ],
            "{spans:#?}"
        );
        for span in &spans {
            assert_eq!(span.1, "4bf92f3577b34da6a3ce929d0e0e4736", "{spans:#?}");
        }
        assert_eq!(spans[1].3, "00f067aa0ba902b7", "{spans:#?}");
        assert_eq!(spans[0].3, spans[1].2, "{spans:#?}");
        assert_eq!(
            spans[3].3, spans[0].2,
            "the job continues the insert's span: {spans:#?}"
        );
        assert_eq!(spans[2].3, spans[3].2, "{spans:#?}");
    }
}
