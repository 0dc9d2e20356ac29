//! Descriptors from the services themselves. With
//! `TREVEN_GATEWAY_REFLECTION=true`, the gateway asks each upstream's server
//! reflection (v1) at start-up for the files of the services it serves, and
//! routes from those descriptors first (the built-in set fills any gaps), so
//! a service that gains an RPC with an http rule needs no gateway redeploy.
//! An upstream that does not answer is skipped with a warning.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use prost::Message as _;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// What one upstream's reflection offered.
#[derive(Debug, Default)]
pub struct Reflected {
    /// Services it serves (not `grpc.*`).
    pub services: Vec<String>,
    /// Encoded `FileDescriptorProto`s by file name, dependencies included.
    pub files: BTreeMap<String, Vec<u8>>,
}

async fn ask(
    client: &mut ServerReflectionClient<Channel>,
    request: MessageRequest,
) -> anyhow::Result<MessageResponse> {
    let message = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([message]))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("empty reflection answer"))?;
    response
        .message_response
        .ok_or_else(|| anyhow::anyhow!("empty reflection answer"))
}

/// Fetches the services and their files (with every dependency) from the
/// server behind `channel`.
pub async fn fetch(channel: Channel, timeout: Duration) -> anyhow::Result<Reflected> {
    tokio::time::timeout(timeout, fetch_all(channel))
        .await
        .map_err(|_| anyhow::anyhow!("reflection timed out"))?
}

async fn fetch_all(channel: Channel) -> anyhow::Result<Reflected> {
    let mut client = ServerReflectionClient::new(channel);
    let MessageResponse::ListServicesResponse(list) =
        ask(&mut client, MessageRequest::ListServices(String::new())).await?
    else {
        anyhow::bail!("unexpected answer to list_services");
    };
    let services: Vec<String> = list
        .service
        .into_iter()
        .map(|s| s.name)
        .filter(|name| !name.starts_with("grpc."))
        .collect();
    let mut files = BTreeMap::new();
    let mut wanted: Vec<MessageRequest> = services
        .iter()
        .cloned()
        .map(MessageRequest::FileContainingSymbol)
        .collect();
    let mut asked: HashSet<String> = HashSet::new();
    while let Some(request) = wanted.pop() {
        let MessageResponse::FileDescriptorResponse(found) = ask(&mut client, request).await?
        else {
            anyhow::bail!("unexpected answer to a file request");
        };
        for raw in found.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(raw.as_slice())?;
            for dependency in &file.dependency {
                if !files.contains_key(dependency) && asked.insert(dependency.clone()) {
                    wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                }
            }
            files.insert(file.name().to_owned(), raw);
        }
    }
    Ok(Reflected { services, files })
}

/// An encoded `FileDescriptorSet` of `files`, built from the raw bytes so
/// custom options (the http rules) survive: `repeated FileDescriptorProto
/// file = 1`.
pub fn file_descriptor_set<'a>(files: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut set = Vec::new();
    for file in files {
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut set);
        prost::encoding::encode_varint(file.len() as u64, &mut set);
        set.extend_from_slice(file);
    }
    set
}
