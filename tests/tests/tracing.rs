//! One trace across the mesh: the `treven` processes export their spans
//! over OTLP to a collector inside this test, a report is generated through
//! the gateway's REST API with the client's own W3C `traceparent`, and the
//! spans of that request — gateway, reports (the request and the queued
//! job's worker), agents, documents and tenants — all carry the client's
//! trace id, with Postgres, DynamoDB and model spans among them, every
//! parent present, and no token or e-mail address in any attribute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::json;
use support::client::Api;
use support::mesh::{Mesh, MeshOptions};

/// One exported span, as the collector received it.
#[derive(Debug, Clone)]
struct Collected {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
}

/// An OTLP/gRPC trace collector keeping every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Collected>>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Collected {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free port; returns its `http://` endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{address}")
    }

    fn trace(&self, trace_id: &str) -> Vec<Collected> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// What is wrong with the trace so far (empty when it is complete).
fn problems(spans: &[Collected], client_span: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    for wanted in ["gateway", "reports", "agents", "documents", "tenants"] {
        if !services.contains(wanted) {
            problems.push(format!("no span of {wanted}"));
        }
    }
    let has = |key: &str, value: &str| {
        spans
            .iter()
            .any(|s| s.attributes.get(key).is_some_and(|v| v == value))
    };
    for (key, value) in [
        ("db.system", "postgresql"),
        ("db.system", "dynamodb"),
        ("gen_ai.operation.name", "chat"),
        ("rpc.system", "grpc"),
    ] {
        if !has(key, value) {
            problems.push(format!("no span with {key}={value}"));
        }
    }
    for name in [
        "POST /api/reports",
        "treven.reports.v1.ReportsService/CreateReport",
        "reports.generate_job",
        "reports.job.generate",
        "reports.job.complete",
    ] {
        if !spans.iter().any(|s| s.name == name) {
            problems.push(format!("no span named {name}"));
        }
    }
    let ids: HashMap<&str, &Collected> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for span in spans {
        if span.parent_span_id.is_empty() {
            problems.push(format!("{} ({}) is a root", span.name, span.service));
        } else if span.parent_span_id == client_span {
            if span.name != "POST /api/reports" {
                problems.push(format!(
                    "{} ({}) hangs off the client's span",
                    span.name, span.service
                ));
            }
        } else if !ids.contains_key(span.parent_span_id.as_str()) {
            problems.push(format!(
                "the parent of {} ({}) is missing",
                span.name, span.service
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_generation_is_one_trace_from_the_gateway_to_every_store() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let mesh = Mesh::start_with(
        "tracing",
        MeshOptions {
            env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                // Batches leave every 100 ms (the processes are killed, not
                // drained, at the end).
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ],
            ..MeshOptions::default()
        },
    )
    .await;
    let email = "tracer@trace.test";
    let analyst = mesh.sign_in("trace-org", "ngo", email, "analyst");
    let api = Api::new(&mesh, &analyst);

    // The client's own trace: the gateway continues it.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .post(format!("{}/api/reports", mesh.gateway))
        .bearer_auth(&analyst.token)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({
            "scope": {
                "country": "GB",
                "sector": "agriculture",
                "exploitationType": "EXPLOITATION_TYPE_LABOUR",
                "clientType": "ORGANISATION_KIND_FI",
            },
            "documentIds": [],
        }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let report: serde_json::Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {report}");
    let report_id = report["id"].as_str().unwrap().to_owned();

    // Generated by a worker, later, in the same trace.
    let started = Instant::now();
    loop {
        let got = api
            .ok(
                reqwest::Method::GET,
                &format!("/api/reports/{report_id}"),
                None,
            )
            .await;
        if got["report"]["status"] == "REPORT_STATUS_DRAFT" {
            break;
        }
        assert_ne!(got["report"]["status"], "REPORT_STATUS_FAILED", "{got}");
        assert!(started.elapsed() < Duration::from_secs(120), "{got}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Spans arrive as they end and each process exports in batches: wait
    // for the whole trace.
    let started = Instant::now();
    let spans = loop {
        let spans = collector.trace(&trace_id);
        let problems = problems(&spans, client_span);
        if problems.is_empty() {
            break spans;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let listed: Vec<String> = spans
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {} <- {}",
                        s.service, s.name, s.span_id, s.parent_span_id
                    )
                })
                .collect();
            let others: Vec<String> = collector
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| {
                    s.trace_id != trace_id
                        && !s.name.contains("claim_job")
                        && !s.name.contains("Health")
                        && !s.name.contains("heartbeat")
                })
                .take(100)
                .map(|s| {
                    format!(
                        "{} {} {} {} <- {}",
                        s.service, s.name, s.trace_id, s.span_id, s.parent_span_id
                    )
                })
                .collect();
            panic!(
                "{problems:#?}\nspans of the trace:\n{}\nsome other spans:\n{}",
                listed.join("\n"),
                others.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The edge span: an HTTP server span named after the route.
    let edge = spans
        .iter()
        .find(|s| s.name == "POST /api/reports")
        .unwrap();
    assert_eq!(edge.service, "gateway");
    assert_eq!(edge.parent_span_id, client_span);
    assert_eq!(edge.attributes["http.request.method"], "POST");
    assert_eq!(edge.attributes["http.route"], "/api/reports");
    assert_eq!(edge.attributes["http.response.status_code"], "200");
    assert_eq!(edge.attributes["org_id"], analyst.org_id);

    // gRPC server spans in every service, with the organisation.
    let create = spans
        .iter()
        .find(|s| s.name == "treven.reports.v1.ReportsService/CreateReport")
        .unwrap();
    assert_eq!(create.service, "reports");
    assert_eq!(create.attributes["rpc.system"], "grpc");
    assert_eq!(
        create.attributes["rpc.service"],
        "treven.reports.v1.ReportsService"
    );
    assert_eq!(create.attributes["rpc.method"], "CreateReport");
    assert_eq!(create.attributes["rpc.grpc.status_code"], "0");
    assert_eq!(create.attributes["org_id"], analyst.org_id);

    // The job continues the request's trace.
    let job = spans
        .iter()
        .find(|s| s.name == "reports.generate_job")
        .unwrap();
    assert_eq!(job.attributes["org_id"], analyst.org_id);
    assert_eq!(job.attributes["outcome"], "succeeded");

    // Store and model spans.
    let postgres: Vec<&Collected> = spans
        .iter()
        .filter(|s| s.attributes.get("db.system").map(String::as_str) == Some("postgresql"))
        .collect();
    assert!(
        postgres.iter().any(|s| s.service == "reports")
            && postgres.iter().any(|s| s.service == "tenants"),
        "{postgres:#?}"
    );
    assert!(
        postgres
            .iter()
            .all(|s| s.name.contains('.') && s.attributes.contains_key("db.operation.name")),
        "{postgres:#?}"
    );
    let dynamodb = spans
        .iter()
        .find(|s| s.attributes.get("db.system").map(String::as_str) == Some("dynamodb"))
        .unwrap();
    assert!(dynamodb.name.starts_with("DynamoDB."), "{dynamodb:?}");
    let model = spans
        .iter()
        .find(|s| s.attributes.contains_key("gen_ai.system"))
        .unwrap();
    assert_eq!(model.service, "agents");
    assert!(
        model.attributes.contains_key("gen_ai.request.model"),
        "{model:?}"
    );
    assert!(
        model.attributes.contains_key("gen_ai.usage.output_tokens"),
        "{model:?}"
    );
    assert!(
        model
            .attributes
            .contains_key("gen_ai.server.time_to_first_token"),
        "{model:?}"
    );

    // Nothing personal or secret in any attribute.
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(email) && !value.contains(&analyst.token),
                "{key} of {} carries personal data or a token",
                span.name
            );
        }
    }
    mesh.stop().await;
}
