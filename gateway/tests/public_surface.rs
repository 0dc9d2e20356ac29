//! The edge serves only the public surface: every RPC without a
//! `google.api.http` rule is refused at the gateway, over every protocol it
//! speaks (gRPC-web binary and text, native gRPC, Connect, REST), for every role, and
//! no such call reaches a service.
//!
//! Each upstream of the gateway under test is a recording listener: tenants'
//! forwards to the real tenants (roles are resolved as usual), the others
//! answer every unary RPC with an empty reply — so an internal RPC that got
//! through would even succeed. The list of internal RPCs is read here from
//! the descriptors' options, not from the gateway's own computation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use support::{Edge, grpc_web};
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;
use treven_mesh::Role;
use treven_transcode::DynamicCodec;

/// Every RPC of the built-in descriptors: (with a `google.api.http` rule,
/// without one).
fn rpcs_by_rule() -> (Vec<MethodDescriptor>, Vec<MethodDescriptor>) {
    let pool = treven_transcode::rules::builtin_pool().unwrap();
    let rule = pool.get_extension_by_name("google.api.http").unwrap();
    pool.services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .partition(|rpc| rpc.options().has_extension(&rule))
}

fn path_of(rpc: &MethodDescriptor) -> String {
    format!("/{}/{}", rpc.parent_service().full_name(), rpc.name())
}

/// A stand-in upstream that records the path of every request it gets.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    /// Where to forward (the real tenants), or answer itself when `None`.
    forward: Option<Channel>,
    pool: DescriptorPool,
}

impl Recorder {
    /// Starts one on a free port; returns it and its URL.
    async fn start(forward: Option<Channel>) -> (Self, String) {
        let recorder = Self {
            seen: Arc::default(),
            forward,
            pool: treven_transcode::rules::builtin_pool().unwrap(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let routes = tonic::service::Routes::from(
            axum::Router::new()
                .fallback(record)
                .with_state(recorder.clone()),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (recorder, format!("http://{address}"))
    }

    /// The Treven RPCs it was called with (health checks left out).
    fn calls(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|path| !path.starts_with("/grpc."))
            .cloned()
            .collect()
    }
}

/// Answers a unary RPC with its empty reply.
struct EmptyReply(MethodDescriptor);

impl tonic::server::UnaryService<DynamicMessage> for EmptyReply {
    type Response = DynamicMessage;
    type Future = std::future::Ready<Result<tonic::Response<DynamicMessage>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<DynamicMessage>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(DynamicMessage::new(
            self.0.output(),
        ))))
    }
}

async fn record(
    State(recorder): State<Recorder>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    recorder.seen.lock().unwrap().push(path.clone());
    if let Some(channel) = recorder.forward.clone() {
        return match channel.oneshot(request.map(tonic::body::Body::new)).await {
            Ok(response) => response.map(axum::body::Body::new),
            Err(error) => tonic::Status::unavailable(error.to_string()).into_http(),
        };
    }
    let method = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(service, name)| {
            recorder
                .pool
                .get_service_by_name(service)?
                .methods()
                .find(|m| m.name() == name)
        });
    match method {
        Some(method) if !method.is_client_streaming() && !method.is_server_streaming() => {
            let mut grpc = tonic::server::Grpc::new(DynamicCodec::for_server(&method));
            grpc.unary(EmptyReply(method), request)
                .await
                .map(axum::body::Body::new)
        }
        _ => tonic::Status::unimplemented("").into_http(),
    }
}

/// A native gRPC call (HTTP/2) of `rpc` through the gateway, sent as one
/// request message whatever the RPC's streaming kind (the edge decides by
/// path alone).
async fn native_grpc(
    channel: &Channel,
    rpc: &MethodDescriptor,
    token: &str,
) -> Result<DynamicMessage, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut request = tonic::Request::new(DynamicMessage::new(rpc.input()));
    request.set_timeout(Duration::from_secs(10));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let path = http::uri::PathAndQuery::try_from(path_of(rpc)).unwrap();
    grpc.unary(request, path, DynamicCodec::for_client(rpc))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn internal_rpcs_are_refused_at_the_edge_over_every_protocol_and_reach_no_service() {
    let edge = Edge::start(100_000).await;
    let tenants_url = edge
        .pairs
        .iter()
        .find(|(name, _)| *name == "TREVEN_TENANTS_URL")
        .map(|(_, url)| url.clone())
        .unwrap();
    let tenants_channel = Endpoint::from_shared(tenants_url).unwrap().connect_lazy();
    let (tenants, tenants_url) = Recorder::start(Some(tenants_channel)).await;
    let (documents, documents_url) = Recorder::start(None).await;
    let (reports, reports_url) = Recorder::start(None).await;
    let (agents, agents_url) = Recorder::start(None).await;
    let upstreams = [&tenants, &documents, &reports, &agents];
    let base = edge
        .gateway_with(&[
            ("TREVEN_TENANTS_URL", tenants_url),
            ("TREVEN_DOCUMENTS_URL", documents_url),
            ("TREVEN_REPORTS_URL", reports_url),
            ("TREVEN_AGENTS_URL", agents_url),
        ])
        .await;
    for _ in 0..100 {
        if let Ok(r) = edge.http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acme = edge.org("Acme").await;
    let mut tokens = Vec::new();
    for (email, role) in [
        ("ada@acme.example", Role::Admin),
        ("ann@acme.example", Role::Analyst),
        ("vic@acme.example", Role::Viewer),
    ] {
        tokens.push((role, edge.member(email, acme, Some(role)).await.1));
    }

    let (public, internal) = rpcs_by_rule();
    let internal_names: BTreeSet<String> = internal.iter().map(|r| r.name().to_owned()).collect();
    for known in [
        "LookupUserBySub",
        "RecordAuditEvent",
        "GrantReportAccess",
        "GenerateReport",
        "DetectPii",
        "StoreEvidence",
        "PutArtifact",
    ] {
        assert!(internal_names.contains(known), "{known} has no http rule");
    }

    // What a method that does not exist is answered, for comparison.
    let missing = grpc_web(
        &edge.http,
        &base,
        "/treven.tenants.v1.TenantsService/NoSuchMethod",
        Some(&tokens[0].1),
        false,
        &[],
    )
    .await;
    assert_eq!(
        (missing.http, missing.status.as_deref()),
        (200, Some("12")),
        "UNIMPLEMENTED"
    );
    let unknown_service = grpc_web(
        &edge.http,
        &base,
        "/treven.nothing.v1.NoService/Call",
        None,
        false,
        &[],
    )
    .await;
    assert_eq!(unknown_service.status.as_deref(), Some("12"));
    assert_eq!(unknown_service.message, missing.message);

    // gRPC-web (binary and text), every internal RPC, every role and none.
    let mut refused = 0;
    for rpc in &internal {
        let path = path_of(rpc);
        let mut callers: Vec<Option<&str>> = tokens.iter().map(|(_, t)| Some(t.as_str())).collect();
        callers.push(None);
        for token in callers {
            for text in [false, true] {
                let answer = grpc_web(&edge.http, &base, &path, token, text, &[]).await;
                assert_eq!(
                    (
                        answer.http,
                        answer.status.as_deref(),
                        answer.message.as_str()
                    ),
                    (200, Some("12"), missing.message.as_str()),
                    "{path} (text: {text}, token: {})",
                    token.is_some()
                );
                assert!(answer.messages.is_empty(), "{path}: no reply message");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, internal.len() * 4 * 2);

    // Native gRPC over HTTP/2 on the same port: refused alike.
    let native = Endpoint::from_shared(base.clone()).unwrap().connect_lazy();
    for rpc in &internal {
        for (role, token) in &tokens {
            let status = native_grpc(&native, rpc, token)
                .await
                .expect_err("an internal RPC is refused");
            assert_eq!(
                status.code(),
                tonic::Code::Unimplemented,
                "{} as {role:?}: {status:?}",
                rpc.full_name()
            );
        }
    }

    // REST: no route leads to an internal RPC; their gRPC paths are no
    // REST routes either.
    let transcoder = treven_transcode::Transcoder::builtin().unwrap();
    for route in transcoder.routes().routes() {
        assert!(
            !internal
                .iter()
                .any(|rpc| rpc.full_name() == route.rpc().full_name()),
            "{route} leads to an internal RPC"
        );
    }
    for rpc in &internal {
        let path = format!("/api{}", path_of(rpc));
        let response = edge
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(&tokens[0].1)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }

    // Connect (JSON and binary, unary and streaming content types) on the
    // gRPC path: `unimplemented`, exactly as a method that does not exist,
    // for every role and none.
    let connect = |path: String, content_type: &'static str, token: Option<String>| {
        let mut request = edge
            .http
            .post(format!("{base}{path}"))
            .header("content-type", content_type)
            .body(Vec::new());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    };
    let missing_connect = connect(
        "/treven.tenants.v1.TenantsService/NoSuchMethod".to_owned(),
        "application/json",
        None,
    )
    .await;
    assert_eq!(missing_connect.0, 501);
    for rpc in &internal {
        let mut callers: Vec<Option<String>> =
            tokens.iter().map(|(_, t)| Some(t.clone())).collect();
        callers.push(None);
        for token in callers {
            for content_type in ["application/json", "application/proto"] {
                let answer = connect(path_of(rpc), content_type, token.clone()).await;
                assert_eq!(
                    answer,
                    missing_connect,
                    "{} over Connect ({content_type})",
                    rpc.full_name()
                );
            }
            for content_type in ["application/connect+json", "application/connect+proto"] {
                let (status, body) = connect(path_of(rpc), content_type, token.clone()).await;
                assert_eq!(status, 200, "{}", rpc.full_name());
                assert!(
                    String::from_utf8_lossy(&body).contains("\"unimplemented\""),
                    "{} over Connect ({content_type})",
                    rpc.full_name()
                );
            }
        }
    }

    // Not one request reached a service.
    for upstream in upstreams {
        assert_eq!(upstream.calls(), Vec::<String>::new(), "reached a service");
    }

    // OpenAPI (and /docs, which renders it) lists exactly the public RPCs.
    let document: serde_json::Value = edge
        .http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .map(|id| id.split('_').take(2).collect::<Vec<_>>().join("_"))
        .collect();
    let expected: BTreeSet<String> = public
        .iter()
        .map(|rpc| format!("{}_{}", rpc.parent_service().name(), rpc.name()))
        .collect();
    assert_eq!(listed, expected);

    // Public RPCs still work over gRPC-web (and native gRPC), for every role.
    for (role, token) in &tokens {
        let me = grpc_web(
            &edge.http,
            &base,
            "/treven.tenants.v1.TenantsService/GetMe",
            Some(token),
            false,
            &[],
        )
        .await;
        assert_eq!(me.status.as_deref(), Some("0"), "GetMe as {role:?}");
        assert_eq!(me.messages.len(), 1);
        let reports_list = grpc_web(
            &edge.http,
            &base,
            "/treven.reports.v1.ReportsService/ListReports",
            Some(token),
            false,
            &[],
        )
        .await;
        assert_eq!(
            reports_list.status.as_deref(),
            Some("0"),
            "ListReports as {role:?}: {}",
            reports_list.message
        );
    }
    let get_me = public
        .iter()
        .find(|rpc| rpc.name() == "GetMe")
        .unwrap()
        .clone();
    let me = native_grpc(&native, &get_me, &tokens[0].1).await.unwrap();
    assert!(format!("{me:?}").contains("ada@acme.example"));
    assert!(
        tenants
            .calls()
            .contains(&"/treven.tenants.v1.TenantsService/GetMe".to_owned())
    );
    assert_eq!(
        reports.calls(),
        vec!["/treven.reports.v1.ReportsService/ListReports".to_owned(); 3]
    );
    edge.stop().await;
}
