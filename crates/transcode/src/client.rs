//! Calling any RPC by its descriptor, over any tonic channel.
//!
//! The path is `/{package.Service}/{Method}`; the request's metadata is sent
//! as given (mesh context, trace context); `timeout` is sent as
//! `grpc-timeout` and also enforced here, so a callee that never answers
//! costs at most `timeout`.

use std::time::Duration;

use tokio::time::Instant;

use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MethodDescriptor, ReflectMessage};
use tonic::client::{Grpc, GrpcService};
use tonic::codegen::{Body, Bytes, StdError};
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Request, Status, Streaming};

use crate::codec::DynamicCodec;

/// Calls the unary RPC `method` with `request`.
pub async fn call_unary<T>(
    channel: T,
    method: &MethodDescriptor,
    request: DynamicMessage,
    metadata: MetadataMap,
    timeout: Duration,
) -> Result<DynamicMessage, Status>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    if method.is_client_streaming() || method.is_server_streaming() {
        return Err(Status::internal(format!(
            "{} is not unary",
            method.full_name()
        )));
    }
    let (mut grpc, path, request) = prepare(channel, method, request, metadata, timeout)?;
    let started = Instant::now();
    let call = async {
        ready(&mut grpc).await?;
        grpc.unary(request, path, DynamicCodec::for_client(method))
            .await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(response) => Ok(response
            .map_err(|status| deadline_status(status, started, timeout))?
            .into_inner()),
        Err(_) => Err(deadline_exceeded()),
    }
}

/// Calls the server-streaming RPC `method` with `request`. `timeout` bounds
/// the whole stream through `grpc-timeout`, and the wait for the response
/// headers here.
pub async fn call_server_streaming<T>(
    channel: T,
    method: &MethodDescriptor,
    request: DynamicMessage,
    metadata: MetadataMap,
    timeout: Duration,
) -> Result<Streaming<DynamicMessage>, Status>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    if method.is_client_streaming() || !method.is_server_streaming() {
        return Err(Status::internal(format!(
            "{} is not server streaming",
            method.full_name()
        )));
    }
    let (mut grpc, path, request) = prepare(channel, method, request, metadata, timeout)?;
    let started = Instant::now();
    let call = async {
        ready(&mut grpc).await?;
        grpc.server_streaming(request, path, DynamicCodec::for_client(method))
            .await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(response) => Ok(response
            .map_err(|status| deadline_status(status, started, timeout))?
            .into_inner()),
        Err(_) => Err(deadline_exceeded()),
    }
}

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

/// tonic's channel enforces `grpc-timeout` itself and reports it as
/// CANCELLED; whichever timer fires first, callers see DEADLINE_EXCEEDED.
fn deadline_status(status: Status, started: Instant, timeout: Duration) -> Status {
    if status.code() == tonic::Code::Cancelled && started.elapsed() >= timeout {
        deadline_exceeded()
    } else {
        status
    }
}

type Prepared<T> = (Grpc<T>, PathAndQuery, Request<DynamicMessage>);

fn prepare<T>(
    channel: T,
    method: &MethodDescriptor,
    message: DynamicMessage,
    metadata: MetadataMap,
    timeout: Duration,
) -> Result<Prepared<T>, Status> {
    if message.descriptor() != method.input() {
        return Err(Status::internal(format!(
            "{} takes {}, not {}",
            method.full_name(),
            method.input().full_name(),
            message.descriptor().full_name()
        )));
    }
    let path = PathAndQuery::try_from(format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .map_err(|e| Status::internal(format!("bad RPC path: {e}")))?;
    let mut request = Request::from_parts(metadata, Extensions::default(), message);
    request.set_timeout(timeout);
    Ok((Grpc::new(channel), path, request))
}

async fn ready<T>(grpc: &mut Grpc<T>) -> Result<(), Status>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
{
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("service not ready: {}", e.into())))
}
