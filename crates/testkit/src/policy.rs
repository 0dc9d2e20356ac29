//! Walks a service's access table ([`treven_mesh::policy::Policy`]) against
//! the running service: every RPC of its descriptor × every principal ×
//! every role, each answered PERMISSION_DENIED exactly when the table says
//! so.
//!
//! Calls are made with an empty request message over a raw bytes codec, so
//! one walker serves every service and every method shape (a unary call is a
//! stream of one message on the wire). A call the table admits reaches the
//! handler, which may well refuse the empty request (INVALID_ARGUMENT,
//! NOT_FOUND): anything but PERMISSION_DENIED or UNAUTHENTICATED means the
//! access layer let it through.

use std::time::Duration;

use prost::Message as _;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};
use treven_mesh::keys::MeshKeys;
use treven_mesh::policy::Policy;
use treven_mesh::{OrgId, Principal, Role};

/// Raw message bytes in and out.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// The method names of `service` (`treven.tenants.v1.TenantsService`) in the
/// Treven descriptor set.
pub fn methods_of(service: &str) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(treven_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("the descriptor set decodes: {e}"));
    set.file
        .iter()
        .flat_map(|file| {
            file.service
                .iter()
                .map(move |s| (format!("{}.{}", file.package(), s.name()), s))
        })
        .find(|(name, _)| name == service)
        .map(|(_, s)| s.method.iter().map(|m| m.name().to_owned()).collect())
        .unwrap_or_else(|| panic!("{service} is not in the descriptor set"))
}

/// Calls `/{service}/{method}` with an empty message and `token`; the code
/// it ends with (`Ok` when the handler answered a message first).
pub async fn call_empty(channel: &Channel, service: &str, method: &str, token: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        panic!("{service} is not ready: {e}");
    }
    let path = format!("/{service}/{method}")
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid path"));
    let mut request = tonic::Request::new(tokio_stream::once(Vec::new()));
    request.set_timeout(Duration::from_secs(10));
    if let Ok(value) = token.parse() {
        request
            .metadata_mut()
            .insert(treven_mesh::context::CONTEXT_HEADER, value);
    }
    match grpc.streaming(request, path, RawCodec).await {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
    }
}

/// Walks `policy` against the service on `channel`: asserts that the table
/// has a rule for every RPC of the descriptor and no other, then that each
/// RPC called by every principal for a user of every role (and for a
/// role-less user) of `org` is refused with PERMISSION_DENIED exactly when
/// the table says so, and that a token minted for another audience is
/// UNAUTHENTICATED. `keys` must hold every principal's signing key.
/// Returns the number of calls made.
pub async fn walk(channel: &Channel, policy: &Policy, keys: &MeshKeys, org: OrgId) -> usize {
    let methods = methods_of(policy.service);
    let mut missing: Vec<&str> = methods
        .iter()
        .map(String::as_str)
        .filter(|m| policy.rule(m).is_none())
        .collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "{} has no access rule for {missing:?}",
        policy.service
    );
    for rule in policy.rules {
        assert!(
            methods.iter().any(|m| m == rule.method),
            "{} has a rule for {}, which is not one of its RPCs",
            policy.service,
            rule.method
        );
    }

    let role_sets: [&[Role]; 4] = [&[Role::Admin], &[Role::Analyst], &[Role::Viewer], &[]];
    let mut calls = 0;
    let mut wrong = Vec::new();
    for method in &methods {
        for principal in Principal::ALL {
            let signer = keys
                .signer(principal)
                .unwrap_or_else(|| panic!("the walk needs {principal}'s key"));
            for roles in role_sets {
                let token = signer.mint(
                    policy.audience,
                    org,
                    &format!("walker-{}", roles.first().map_or("none", |r| r.as_str())),
                    roles,
                    "policy-walk",
                    Duration::from_secs(60),
                );
                let context = keys
                    .verifier(policy.audience)
                    .verify(&token)
                    .unwrap_or_else(|e| panic!("a fresh token verifies: {e}"));
                let allowed = policy.authorize(&context, method).is_ok();
                let code = call_empty(channel, policy.service, method, &token).await;
                calls += 1;
                let denied = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
                if denied == allowed {
                    wrong.push(format!(
                        "{method} by {principal} for {roles:?}: table says {}, service answered {code:?}",
                        if allowed { "allowed" } else { "denied" },
                    ));
                }
            }
        }
        // Minted for another service: never accepted here.
        let other = Principal::ALL
            .into_iter()
            .find(|p| *p != policy.audience)
            .unwrap_or(Principal::Gateway);
        let misdirected = keys
            .signer(Principal::Gateway)
            .unwrap_or_else(|| panic!("the walk needs the gateway's key"))
            .mint(
                other,
                org,
                "walker",
                &[Role::Admin],
                "policy-walk",
                Duration::from_secs(60),
            );
        let code = call_empty(channel, policy.service, method, &misdirected).await;
        calls += 1;
        if code != Code::Unauthenticated {
            wrong.push(format!(
                "{method} with a token for {other}: answered {code:?}, not Unauthenticated"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagrees with its table:\n{}",
        policy.service,
        wrong.join("\n")
    );
    calls
}

/// `token` (minted for `audience`) re-minted as `issuer` would send it to
/// `to`, for the same user: how a test calls as the reports service for an
/// analyst, or sends an edge user's token to another service. `keys` must
/// hold `issuer`'s key and have minted `token`.
pub fn reissue(
    keys: &MeshKeys,
    token: &str,
    audience: Principal,
    issuer: Principal,
    to: Principal,
) -> String {
    let context = keys
        .verifier(audience)
        .verify(token)
        .unwrap_or_else(|e| panic!("a {audience} token of these keys: {e}"));
    keys.signer(issuer)
        .unwrap_or_else(|| panic!("the keys hold {issuer}'s"))
        .onward(&context, to)
}
