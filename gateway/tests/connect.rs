//! The Connect protocol on the gateway's port, case by case as the
//! protocol's conformance suite exercises a server: unary JSON and binary,
//! server streams with their end-of-stream message, error JSON with
//! details and the code's HTTP status, `Connect-Timeout-Ms`, gzip, content
//! types that do not fit, the public surface — and gRPC-web still answering
//! on the same paths. Tenants is real; agents is a test double (as in
//! `streams.rs`) that checks the mesh context and records the deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::Stream;
use prost::Message as _;
use support::Edge;
use tonic::{Request, Response, Status};
use treven_mesh::Role;
use treven_mesh::context::{CONTEXT_HEADER, ContextVerifier};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::agents_service_server::{AgentsService, AgentsServiceServer};

/// Streams two deltas and `done`, or fails after one delta when the content
/// is "fail"; records the `grpc-timeout` of GetUsage.
#[derive(Clone)]
struct FakeAgents {
    verifier: ContextVerifier,
    seen_timeout: Arc<Mutex<Option<String>>>,
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::SendMessageResponse, Status>> + Send>>;

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of this test double"))
}

#[tonic::async_trait]
impl AgentsService for FakeAgents {
    type SendMessageStream = Events;
    type GenerateReportStream =
        Pin<Box<dyn Stream<Item = Result<pb::GenerateReportResponse, Status>> + Send>>;

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<Events>, Status> {
        let token = request
            .metadata()
            .get(CONTEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("no context"))?;
        let context = self
            .verifier
            .verify(token)
            .map_err(|_| Status::unauthenticated("bad context"))?;
        let message = request.into_inner();
        let delta = |sequence: i64, text: String| pb::SendMessageResponse {
            sequence,
            event: Some(pb::send_message_response::Event::TextDelta(pb::TextDelta {
                text,
            })),
        };
        let mut events = vec![Ok(delta(1, format!("org {}", context.org_id())))];
        if message.content == "fail" {
            events.push(Err(Status::unavailable(
                "model stream broke: internal detail",
            )));
        } else {
            events.push(Ok(delta(2, message.content.clone())));
            events.push(Ok(pb::SendMessageResponse {
                sequence: 3,
                event: Some(pb::send_message_response::Event::Done(
                    pb::ReplyDone::default(),
                )),
            }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }

    async fn create_conversation(
        &self,
        _: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::CreateConversationResponse>, Status> {
        unused()
    }
    async fn list_conversations(
        &self,
        _: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        unused()
    }
    async fn list_messages(
        &self,
        _: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        unused()
    }
    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *self.seen_timeout.lock().unwrap() = timeout;
        if request.get_ref().month == "2099-12" {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        Ok(Response::new(pb::GetUsageResponse {
            month: request.into_inner().month,
            ..Default::default()
        }))
    }
    async fn generate_report(
        &self,
        _: Request<pb::GenerateReportRequest>,
    ) -> Result<Response<Self::GenerateReportStream>, Status> {
        unused()
    }
    async fn detect_pii(
        &self,
        _: Request<pb::DetectPiiRequest>,
    ) -> Result<Response<pb::DetectPiiResponse>, Status> {
        unused()
    }
    async fn run_agent(
        &self,
        _: Request<pb::RunAgentRequest>,
    ) -> Result<Response<pb::RunAgentResponse>, Status> {
        unused()
    }
    async fn get_run(
        &self,
        _: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        unused()
    }
}

async fn gateway_with_fake_agents(edge: &Edge) -> (FakeAgents, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let fake = FakeAgents {
        verifier: edge.keys.verifier(treven_mesh::Principal::Agents),
        seen_timeout: Default::default(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentsServiceServer::new(fake.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let base = edge
        .gateway_with(&[("TREVEN_AGENTS_URL", format!("http://{address}"))])
        .await;
    (fake, base)
}

/// One enveloped message.
fn envelope(flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The envelopes of a streaming response: (flags, data).
fn envelopes(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "a whole envelope header");
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        out.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn unary_calls_speak_json_and_binary_with_connect_errors() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Admin))
        .await;
    let url = |method: &str| format!("{}/treven.tenants.v1.TenantsService/{method}", edge.base);
    let post = |method: &str, content_type: &str| {
        edge.http
            .post(url(method))
            .header("content-type", content_type)
            .header("connect-protocol-version", "1")
    };

    // JSON; an identity header from the client is ignored.
    let response = post("GetMe", "application/json")
        .bearer_auth(&token)
        .header("x-treven-context", "forged")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let me: serde_json::Value = response.json().await.unwrap();
    assert_eq!(me["user"]["email"], "ann@acme.example", "{me}");
    assert_eq!(me["organisation"]["id"], acme.to_string(), "{me}");

    // Binary, and unknown JSON fields are ignored (as connect-go does).
    let response = post("GetMe", "application/proto")
        .bearer_auth(&token)
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/proto");
    let me =
        treven_proto::treven::tenants::v1::GetMeResponse::decode(response.bytes().await.unwrap())
            .unwrap();
    assert_eq!(me.user.unwrap().email, "ann@acme.example");
    let response = post("GetMe", "application/json; charset=utf-8")
        .bearer_auth(&token)
        .body(r#"{"notAField": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A gzipped request body.
    let response = post("GetMe", "application/json")
        .bearer_auth(&token)
        .header("content-encoding", "gzip")
        .body(gzip(b"{}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = post("GetMe", "application/json")
        .bearer_auth(&token)
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 501);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "unimplemented", "{error}");

    // No token: unauthenticated, 401, Connect error JSON.
    let response = post("GetMe", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/json");
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "unauthenticated", "{error}");
    assert!(error["message"].as_str().unwrap().contains("bearer token"));

    // An invalid argument: 400, the field violation in the details, as
    // base64 of the binary message and as JSON in `debug`.
    let response = post("GetUser", "application/json")
        .bearer_auth(&token)
        .body(r#"{"id": "not-a-uuid"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "invalid_argument", "{error}");
    let details = error["details"].as_array().expect("details");
    let bad_request = details
        .iter()
        .find(|d| d["type"] == "google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("a BadRequest detail: {error}"));
    assert_eq!(bad_request["debug"]["fieldViolations"][0]["field"], "id");
    let value = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(bad_request["value"].as_str().unwrap())
        .unwrap();
    let decoded = tonic_types::pb::BadRequest::decode(value.as_slice()).unwrap();
    assert_eq!(decoded.field_violations[0].field, "id");

    // Bodies that do not decode.
    for (content_type, body) in [
        ("application/json", &b"{not json"[..]),
        ("application/json", b"{} trailing"),
        ("application/proto", b"\xff\xff\xff"),
    ] {
        let response = post("GetMe", content_type)
            .bearer_auth(&token)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{content_type} {body:?}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], "invalid_argument");
    }

    // An internal RPC is answered as a missing one, before authentication.
    for method in ["LookupUserBySub", "NoSuchMethod"] {
        let response = post(method, "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 501, "{method}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], "unimplemented", "{method}: {error}");
    }

    // Headers the protocol defines, with bad values.
    let response = post("GetMe", "application/json")
        .bearer_auth(&token)
        .header("connect-timeout-ms", "soon")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = edge
        .http
        .post(url("GetMe"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "2")
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // A streaming content type for a unary method: 415.
    let response = post("GetMe", "application/connect+json")
        .bearer_auth(&token)
        .body(envelope(0, b"{}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(response.headers().contains_key("accept-post"));

    // gRPC-web still answers on the same path.
    let response = edge
        .http
        .post(url("GetMe"))
        .header("content-type", "application/grpc-web+proto")
        .bearer_auth(&token)
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    // And REST under /api with the same JSON content type.
    let response = edge
        .http
        .get(format!("{}/api/me", edge.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    edge.stop().await;
}

#[tokio::test]
async fn server_streams_end_with_an_end_of_stream_message() {
    let edge = Edge::start(10_000).await;
    let (agents, base) = gateway_with_fake_agents(&edge).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let url = format!("{base}/treven.agents.v1.AgentsService/SendMessage");
    let conversation = uuid::Uuid::now_v7().to_string();
    let request = |content: &str| {
        serde_json::json!({"conversationId": conversation, "content": content}).to_string()
    };

    // JSON: three messages, then an empty end-of-stream message.
    let response = edge
        .http
        .post(&url)
        .header("content-type", "application/connect+json")
        .header("connect-protocol-version", "1")
        .bearer_auth(&token)
        .body(envelope(0, request("hello").as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+json"
    );
    let frames = envelopes(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 4, "{frames:?}");
    let first: serde_json::Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(first["sequence"], "1");
    assert_eq!(first["textDelta"]["text"], format!("org {acme}"));
    let last: serde_json::Value = serde_json::from_slice(&frames[3].1).unwrap();
    assert_eq!(frames[3].0, 0b10, "the end-of-stream flag");
    assert_eq!(last, serde_json::json!({}));

    // Binary, with a gzipped request message.
    let message = pb::SendMessageRequest {
        conversation_id: conversation.clone(),
        content: "binary".into(),
        ..Default::default()
    };
    let response = edge
        .http
        .post(&url)
        .header("content-type", "application/connect+proto")
        .header("connect-content-encoding", "gzip")
        .header("connect-accept-encoding", "gzip")
        .bearer_auth(&token)
        .body(envelope(1, &gzip(&message.encode_to_vec())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frames = envelopes(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 4, "{frames:?}");
    let second = pb::SendMessageResponse::decode(frames[1].1.as_slice()).unwrap();
    match second.event {
        Some(pb::send_message_response::Event::TextDelta(delta)) => {
            assert_eq!(delta.text, "binary")
        }
        other => panic!("{other:?}"),
    }

    // A stream that fails after it started: the error in the end message,
    // without the upstream's internal text.
    let response = edge
        .http
        .post(&url)
        .header("content-type", "application/connect+json")
        .bearer_auth(&token)
        .body(envelope(0, request("fail").as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frames = envelopes(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 2, "{frames:?}");
    let end: serde_json::Value = serde_json::from_slice(&frames[1].1).unwrap();
    assert_eq!(frames[1].0, 0b10);
    assert_eq!(end["error"]["code"], "unavailable", "{end}");
    assert!(!end.to_string().contains("internal detail"), "{end}");

    // Refused before it starts: still HTTP 200, the error in the end message.
    let response = edge
        .http
        .post(&url)
        .header("content-type", "application/connect+json")
        .body(envelope(0, request("hello").as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frames = envelopes(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 1, "{frames:?}");
    let end: serde_json::Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(end["error"]["code"], "unauthenticated", "{end}");

    // A unary content type for a streaming method: 415.
    let response = edge
        .http
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body(request("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    // Connect-Timeout-Ms bounds the call and reaches the service.
    let usage = format!("{base}/treven.agents.v1.AgentsService/GetUsage");
    let response = edge
        .http
        .post(&usage)
        .header("content-type", "application/json")
        .header("connect-timeout-ms", "1500")
        .bearer_auth(&token)
        .body(r#"{"month": "2026-11"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let timeout = agents
        .seen_timeout
        .lock()
        .unwrap()
        .clone()
        .expect("grpc-timeout sent");
    let millis: u64 = match timeout.split_at(timeout.len() - 1) {
        (n, "m") => n.parse().unwrap(),
        (n, "u") => n.parse::<u64>().unwrap() / 1000,
        (n, "n") => n.parse::<u64>().unwrap() / 1_000_000,
        _ => panic!("{timeout}"),
    };
    assert!(millis <= 1500, "{timeout}");
    let started = std::time::Instant::now();
    let response = edge
        .http
        .post(&usage)
        .header("content-type", "application/json")
        .header("connect-timeout-ms", "200")
        .bearer_auth(&token)
        .body(r#"{"month": "2099-12"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "deadline_exceeded", "{error}");
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));
    edge.stop().await;
}
