//! With reflection on, a route of a service the gateway was not built with
//! works: its descriptors come from the service at start-up, and again
//! while the gateway runs, so an RPC the service gains later is routed
//! without a restart. RPCs without an http rule stay internal: the edge
//! refuses them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use support::{Edge, grpc_web};
use tonic::server::{NamedService, UnaryService};
use treven_mesh::Role;
use treven_transcode::DynamicCodec;

fn echo_descriptors() -> Vec<u8> {
    echo_descriptors_in("tests/protos")
}

/// `echo/v1/echo.proto` under `dir` (of the gateway crate), compiled.
fn echo_descriptors_in(dir: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler = protox::Compiler::new([root.join(dir), root.join("../proto")]).unwrap();
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file("echo/v1/echo.proto").unwrap();
    compiler.encode_file_descriptor_set()
}

/// `echo.v1.EchoService` served by descriptor, no generated code: every
/// method echoes, and the path of each call is recorded.
#[derive(Clone)]
struct Echo {
    method: MethodDescriptor,
    calls: Arc<Mutex<Vec<String>>>,
}

impl NamedService for Echo {
    const NAME: &'static str = "echo.v1.EchoService";
}

struct EchoCall(MethodDescriptor);

impl UnaryService<DynamicMessage> for EchoCall {
    type Response = DynamicMessage;
    type Future = std::future::Ready<Result<tonic::Response<DynamicMessage>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        let request = request.into_inner();
        let mut response = DynamicMessage::new(self.0.output());
        for field in ["name", "text"] {
            let value = request
                .get_field_by_name(field)
                .map(|v| v.into_owned())
                .unwrap_or(Value::String(String::new()));
            response.set_field_by_name(field, value);
        }
        std::future::ready(Ok(tonic::Response::new(response)))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let method = self.method.clone();
        self.calls
            .lock()
            .unwrap()
            .push(request.uri().path().to_owned());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(DynamicCodec::for_server(&method));
            Ok(grpc.unary(EchoCall(method), request).await)
        })
    }
}

#[tokio::test]
async fn a_new_service_is_routed_from_its_reflection_without_a_gateway_build() {
    let edge = Edge::start(10_000).await;
    let encoded = echo_descriptors();
    let pool = DescriptorPool::decode(encoded.as_slice()).unwrap();
    let method = pool
        .get_service_by_name("echo.v1.EchoService")
        .unwrap()
        .methods()
        .next()
        .unwrap();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(&encoded)
        .build_v1()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo {
                method: method.clone(),
                calls: calls.clone(),
            })
            .add_service(reflection)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Viewer))
        .await;
    let request = |base: String| {
        edge.http
            .post(format!("{base}/api/echo/ada"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"text": "hello"}))
            .send()
    };
    // Without reflection the gateway does not know the route...
    let blind = edge
        .gateway_with(&[("TREVEN_AGENTS_URL", format!("http://{address}"))])
        .await;
    assert_eq!(request(blind).await.unwrap().status(), 404);
    // ...with it, the route comes from the service.
    let reflective = edge
        .gateway_with(&[
            ("TREVEN_AGENTS_URL", format!("http://{address}")),
            ("TREVEN_GATEWAY_REFLECTION", "true".to_owned()),
        ])
        .await;
    let response = request(reflective.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"name": "ada", "text": "hello"})
    );
    let doc: serde_json::Value = edge
        .http
        .get(format!("{reflective}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/echo/{name}"].is_object());
    // Over gRPC-web too: the reflected RPC with a rule is public, the one
    // without stays internal and never reaches the service.
    let mut hello = DynamicMessage::new(method.input());
    hello.set_field_by_name("name", Value::String("ada".into()));
    let payload = hello.encode_to_vec();
    let echoed = grpc_web(
        &edge.http,
        &reflective,
        "/echo.v1.EchoService/Echo",
        Some(&token),
        false,
        &payload,
    )
    .await;
    assert_eq!(echoed.status.as_deref(), Some("0"), "{}", echoed.message);
    assert_eq!(echoed.messages.len(), 1);
    let secret = grpc_web(
        &edge.http,
        &reflective,
        "/echo.v1.EchoService/Secret",
        Some(&token),
        false,
        &payload,
    )
    .await;
    assert_eq!(secret.status.as_deref(), Some("12"), "UNIMPLEMENTED");
    assert_eq!(
        calls.lock().unwrap().as_slice(),
        ["/echo.v1.EchoService/Echo", "/echo.v1.EchoService/Echo"],
        "REST and gRPC-web reached Echo, nothing reached Secret"
    );
    // Built-in routes still work next to it.
    assert_eq!(
        edge.http
            .get(format!("{reflective}/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    edge.stop().await;
}

/// A reflection service that answers with `before`'s descriptors until
/// `grown` is set, then with `after`'s: a service redeployed with new RPCs
/// behind the same address.
#[derive(Clone)]
struct Redeployed<S> {
    before: S,
    after: S,
    grown: Arc<AtomicBool>,
}

impl<S: NamedService> NamedService for Redeployed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Redeployed<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        use tower::ServiceExt as _;
        let service = if self.grown.load(Ordering::SeqCst) {
            self.after.clone()
        } else {
            self.before.clone()
        };
        Box::pin(service.oneshot(request))
    }
}

#[tokio::test]
async fn a_public_rpc_a_service_gains_is_routed_without_a_restart_and_an_internal_one_never() {
    let edge = Edge::start(10_000).await;
    // The reflection server borrows its descriptors for as long as it runs.
    let before: &'static [u8] = echo_descriptors().leak();
    let after: &'static [u8] = echo_descriptors_in("tests/protos_grown").leak();
    let pool = DescriptorPool::decode(before).unwrap();
    let method = pool
        .get_service_by_name("echo.v1.EchoService")
        .unwrap()
        .methods()
        .next()
        .unwrap();
    let reflection = |encoded: &'static [u8]| {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(encoded)
            .build_v1()
            .unwrap()
    };
    let grown = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo {
                method: method.clone(),
                calls: calls.clone(),
            })
            .add_service(Redeployed {
                before: reflection(before),
                after: reflection(after),
                grown: grown.clone(),
            })
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Viewer))
        .await;
    let gateway = edge
        .gateway_with(&[
            ("TREVEN_AGENTS_URL", format!("http://{address}")),
            ("TREVEN_GATEWAY_REFLECTION", "true".to_owned()),
            ("TREVEN_GATEWAY_REFLECTION_REFRESH_SECS", "1".to_owned()),
        ])
        .await;
    let post = |path: &str| {
        edge.http
            .post(format!("{gateway}{path}"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"text": "hi"}))
            .send()
    };
    let openapi = || async {
        edge.http
            .get(format!("{gateway}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert_eq!(post("/api/echo/ada").await.unwrap().status(), 200);
    assert_eq!(post("/api/echo/ada/shout").await.unwrap().status(), 404);
    assert!(openapi().await["paths"]["/api/echo/{name}/shout"].is_null());

    // The service is redeployed with Shout (public) and Whisper (internal);
    // the gateway keeps running.
    grown.store(true, Ordering::SeqCst);
    let mut status = 0;
    for _ in 0..100 {
        status = post("/api/echo/ada/shout").await.unwrap().status().as_u16();
        if status != 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the new public RPC became a route");
    let document = openapi().await;
    assert!(document["paths"]["/api/echo/{name}/shout"]["post"].is_object());
    let text = document.to_string();
    assert!(
        !text.contains("Whisper") && !text.contains("Secret"),
        "{text}"
    );

    // The new internal RPC is refused on every edge protocol, exactly like
    // one that does not exist, and never reaches the service.
    let mut whisper = DynamicMessage::new(method.input());
    whisper.set_field_by_name("name", Value::String("ada".into()));
    let refused = grpc_web(
        &edge.http,
        &gateway,
        "/echo.v1.EchoService/Whisper",
        Some(&token),
        false,
        &whisper.encode_to_vec(),
    )
    .await;
    assert_eq!(refused.status.as_deref(), Some("12"), "UNIMPLEMENTED");
    let connect = edge
        .http
        .post(format!("{gateway}/echo.v1.EchoService/Whisper"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"name": "ada"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 501);
    assert_eq!(
        connect.json::<serde_json::Value>().await.unwrap()["code"],
        "unimplemented"
    );
    for path in ["/api/echo/ada/whisper", "/echo.v1.EchoService/Whisper"] {
        let status = edge
            .http
            .get(format!("{gateway}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status == 404 || status == 405 || status == 415,
            "{path}: {status}"
        );
    }
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|path| !path.ends_with("/Whisper")),
        "{calls:?}"
    );
    assert!(calls.contains(&"/echo.v1.EchoService/Shout".to_owned()));
    edge.stop().await;
}
