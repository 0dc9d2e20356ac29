//! Calls by descriptor through a real tonic server (grpc.health.v1), with
//! the dynamic codec, metadata, deadlines and server streams.

use std::net::SocketAddr;
use std::time::Duration;

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, ReflectMessage, Value};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use treven_transcode::{call_server_streaming, call_unary};

const SERVICE: &str = "treven.test.Probe";
const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

fn health(method: &str) -> MethodDescriptor {
    DescriptorPool::decode(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .expect("health descriptors")
        .get_service_by_name("grpc.health.v1.Health")
        .and_then(|service| service.methods().find(|m| m.name() == method))
        .expect("health method")
}

/// Refuses calls without `x-test: yes`, to prove metadata is sent.
fn require_metadata(request: Request<()>) -> Result<Request<()>, Status> {
    match request
        .metadata()
        .get("x-test")
        .and_then(|v| v.to_str().ok())
    {
        Some("yes") => Ok(request),
        _ => Err(Status::unauthenticated("no x-test metadata")),
    }
}

async fn serve_health() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE, ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let service = tonic::service::interceptor::InterceptedService::new(service, require_metadata);
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (address, reporter)
}

async fn channel(address: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn metadata() -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-test", "yes".parse().expect("ascii"));
    metadata
}

fn check_request(method: &MethodDescriptor, service: &str) -> DynamicMessage {
    let mut request = DynamicMessage::new(method.input());
    request.set_field_by_name("service", Value::String(service.to_owned()));
    request
}

fn status_of(response: &DynamicMessage) -> Option<i32> {
    response
        .get_field_by_name("status")
        .and_then(|value| value.as_enum_number())
}

#[tokio::test]
async fn unary_calls_round_trip_through_the_dynamic_codec() {
    let (address, _reporter) = serve_health().await;
    let channel = channel(address).await;
    let check = health("Check");

    let response = call_unary(
        channel.clone(),
        &check,
        check_request(&check, SERVICE),
        metadata(),
        Duration::from_secs(5),
    )
    .await
    .expect("Check answers");
    assert_eq!(response.descriptor(), check.output());
    assert_eq!(status_of(&response), Some(SERVING));

    let unknown = call_unary(
        channel.clone(),
        &check,
        check_request(&check, "nobody"),
        metadata(),
        Duration::from_secs(5),
    )
    .await
    .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    let anonymous = call_unary(
        channel,
        &check,
        check_request(&check, SERVICE),
        MetadataMap::new(),
        Duration::from_secs(5),
    )
    .await
    .expect_err("metadata is required");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn server_streams_deliver_each_message() {
    let (address, reporter) = serve_health().await;
    let watch = health("Watch");
    let mut stream = call_server_streaming(
        channel(address).await,
        &watch,
        check_request(&watch, SERVICE),
        metadata(),
        Duration::from_secs(5),
    )
    .await
    .expect("Watch starts");
    let first = stream.message().await.expect("first").expect("a message");
    assert_eq!(status_of(&first), Some(SERVING));
    reporter
        .set_service_status(SERVICE, ServingStatus::NotServing)
        .await;
    let second = stream.message().await.expect("second").expect("a message");
    assert_eq!(status_of(&second), Some(NOT_SERVING));
}

#[tokio::test]
async fn wrong_shapes_are_refused_before_sending() {
    let (address, _reporter) = serve_health().await;
    let channel = channel(address).await;
    let check = health("Check");
    let watch = health("Watch");
    let wrong_type = DynamicMessage::new(check.output());
    let error = call_unary(
        channel.clone(),
        &check,
        wrong_type,
        metadata(),
        Duration::from_secs(1),
    )
    .await
    .expect_err("wrong message type");
    assert_eq!(error.code(), Code::Internal);
    let error = call_unary(
        channel.clone(),
        &watch,
        check_request(&watch, SERVICE),
        metadata(),
        Duration::from_secs(1),
    )
    .await
    .expect_err("not unary");
    assert_eq!(error.code(), Code::Internal);
    let error = call_server_streaming(
        channel,
        &check,
        check_request(&check, SERVICE),
        metadata(),
        Duration::from_secs(1),
    )
    .await
    .expect_err("not streaming");
    assert_eq!(error.code(), Code::Internal);
}

#[tokio::test]
async fn a_callee_that_never_answers_ends_at_the_deadline() {
    // Accepts connections and says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_lazy();
    let check = health("Check");
    let started = std::time::Instant::now();
    let error = call_unary(
        channel,
        &check,
        check_request(&check, SERVICE),
        metadata(),
        Duration::from_millis(300),
    )
    .await
    .expect_err("no answer");
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(3));
}
