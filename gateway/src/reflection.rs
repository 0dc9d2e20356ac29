//! Descriptors from the services themselves. With
//! `TREVEN_GATEWAY_REFLECTION=true`, the gateway asks each upstream's server
//! reflection (v1) at start-up for the files of the services it serves, and
//! routes from those descriptors first (the built-in set fills any gaps), so
//! a service that gains an RPC with an http rule needs no gateway redeploy.
//!
//! [`refresh`] asks again every `TREVEN_GATEWAY_REFLECTION_REFRESH_SECS`
//! and, when any upstream's answer changed (a deploy of a service with new
//! descriptors), replaces the gateway's routing whole: the new routes, public
//! surface and OpenAPI document take effect together, for the next request.
//! The public-only rule holds for whatever reflection brings: routes, and so
//! the public surface of every protocol, come only from `google.api.http`
//! rules, so an RPC without one never becomes reachable at the edge.
//!
//! An upstream that does not answer keeps its last answer (at start-up: the
//! built-in descriptors), with a warning; descriptors that do not decode or
//! whose rules do not load leave the routing as it was.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use treven_mesh::CancellationToken;

use prost::Message as _;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// How long one upstream's reflection may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// What one upstream's reflection offered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
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

/// What every built-in upstream's reflection answered, by the service the
/// upstream is configured for (`treven.tenants.v1.TenantsService`, ...).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The answers; an upstream that never answered is absent.
    pub by_upstream: BTreeMap<String, Reflected>,
}

/// Asks every upstream of `upstreams` (at once, each bounded by a few
/// seconds) for its descriptors. An upstream that does not answer keeps its
/// answer in `previous`, if it had one.
pub async fn snapshot(upstreams: &HashMap<String, Channel>, previous: &Snapshot) -> Snapshot {
    let asks = upstreams
        .iter()
        .map(|(name, channel)| async move { (name, fetch(channel.clone(), FETCH_TIMEOUT).await) });
    let mut by_upstream = BTreeMap::new();
    for (name, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(reflected) => {
                tracing::debug!(upstream = %name, services = reflected.services.len(), files = reflected.files.len(), "descriptors from reflection");
                by_upstream.insert(name.clone(), reflected);
            }
            Err(error) => {
                let kept = previous.by_upstream.get(name);
                tracing::warn!(upstream = %name, error = %format!("{error:#}"), kept_last_answer = kept.is_some(), "no answer from reflection");
                if let Some(kept) = kept {
                    by_upstream.insert(name.clone(), kept.clone());
                }
            }
        }
    }
    Snapshot { by_upstream }
}

/// Every `every`, until `stop`: asks the upstreams' reflection again and,
/// when an answer changed, swaps the gateway's routing for one built from
/// the new answers (see the module docs).
pub async fn refresh(gateway: crate::state::Gateway, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let current = gateway.routing();
        let next = snapshot(&gateway.upstreams, &current.snapshot).await;
        if next == current.snapshot {
            continue;
        }
        match crate::state::Routing::reflected(next, &gateway.upstreams, &gateway.audiences) {
            Ok(routing) => {
                tracing::info!(
                    routes = routing.transcoder.routes().routes().len(),
                    public_rpcs = routing.transcoder.public().len(),
                    "routes refreshed from reflection"
                );
                gateway.set_routing(routing);
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reflected descriptors unusable, keeping the current routes");
            }
        }
    }
}
