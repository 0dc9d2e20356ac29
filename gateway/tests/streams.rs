//! Server-streaming RPCs over HTTP: Server-Sent Events and NDJSON, with an
//! in-band error event when the stream fails after it started. The agents
//! service is not built yet, so a test double of its gRPC interface stands
//! upstream; it checks what the gateway sent it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::pin::Pin;

use futures::Stream;
use support::Edge;
use tonic::{Request, Response, Status};
use treven_mesh::Role;
use treven_mesh::context::{CONTEXT_HEADER, ContextVerifier};
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::agents::v1::agents_service_server::{AgentsService, AgentsServiceServer};

/// Streams two deltas, then `done` — or fails mid-stream when the content
/// is "fail". Refuses calls without a valid mesh context.
#[derive(Clone)]
struct FakeAgents {
    verifier: ContextVerifier,
    /// The next GetUsage answers UNAVAILABLE.
    fail_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// GetUsage takes a second.
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The `grpc-timeout` the last GetUsage carried.
    seen_timeout: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// GetUsage calls running now, and the most seen at once.
    in_flight: std::sync::Arc<(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    )>,
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
        let mut events: Vec<Result<pb::SendMessageResponse, Status>> = vec![
            Ok(delta(
                1,
                format!("conversation {} ", message.conversation_id),
            )),
            Ok(delta(2, format!("org {}", context.org_id()))),
        ];
        if message.content == "fail" {
            events.push(Err(Status::unavailable(
                "model stream broke: internal detail",
            )));
        } else {
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
        use std::sync::atomic::Ordering;
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *self.seen_timeout.lock().unwrap() = timeout;
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(Status::unavailable("briefly down"));
        }
        let running = self.in_flight.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.1.fetch_max(running, Ordering::SeqCst);
        if self.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        self.in_flight.0.fetch_sub(1, Ordering::SeqCst);
        Ok(Response::new(pb::GetUsageResponse::default()))
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

/// Starts the agents test double and a gateway (with `overrides`) whose
/// agents upstream it is: the double's controls and the gateway's base URL.
async fn gateway_with_fake_agents(
    edge: &Edge,
    overrides: &[(&'static str, String)],
) -> (FakeAgents, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let fake = FakeAgents {
        verifier: edge.keys.verifier(treven_mesh::Principal::Agents),
        fail_next: Default::default(),
        slow: Default::default(),
        seen_timeout: Default::default(),
        in_flight: Default::default(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentsServiceServer::new(fake.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut settings = vec![("TREVEN_AGENTS_URL", format!("http://{address}"))];
    settings.extend(overrides.iter().cloned());
    let base = edge.gateway_with(&settings).await;
    (fake, base)
}

#[tokio::test]
async fn a_server_stream_arrives_as_sse_or_ndjson_with_an_in_band_error() {
    let edge = Edge::start(10_000).await;
    let (_agents, base) = gateway_with_fake_agents(&edge, &[]).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let conversation = uuid::Uuid::now_v7();
    let url = format!("{base}/api/conversations/{conversation}/messages");

    let sse = edge
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let body = sse.text().await.unwrap();
    let frames: Vec<&str> = body.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames.len(), 3, "{body}");
    assert!(frames[0].starts_with("event: message\ndata: "), "{body}");
    assert!(
        frames[0].contains(&format!("conversation {conversation}")),
        "the path variable reached the RPC: {body}"
    );
    assert!(
        frames[1].contains(&format!("org {acme}")),
        "the caller's organisation reached the RPC: {body}"
    );
    assert!(frames[2].contains("\"done\""), "{body}");

    let ndjson = edge
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"content": "fail"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.status(), 200, "the stream had started");
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let body = ndjson.text().await.unwrap();
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert_eq!(lines[0]["sequence"], "1");
    assert_eq!(
        lines[2]["error"]["code"], "UNAVAILABLE",
        "in-band error: {body}"
    );
    assert!(!body.contains("internal detail"), "no internal text leaks");
    edge.stop().await;
}

#[tokio::test]
async fn idempotent_reads_retry_within_a_budget_and_client_deadlines_propagate() {
    use std::sync::atomic::Ordering;
    let edge = Edge::start(10_000).await;
    let (agents, base) = gateway_with_fake_agents(&edge, &[]).await;
    let (fail_next, slow, seen_timeout) = (agents.fail_next, agents.slow, agents.seen_timeout);
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let usage = || {
        edge.http
            .get(format!("{base}/api/usage?month=2026-11"))
            .bearer_auth(&token)
            .send()
    };

    let ok = usage().await.unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    // An empty budget: the failure reaches the client.
    fail_next.store(true, Ordering::SeqCst);
    let first = usage().await.unwrap();
    assert_eq!(first.status(), 503, "{}", first.text().await.unwrap());
    // Ten requests earn one retry; the next failure is retried away.
    for _ in 0..10 {
        assert_eq!(usage().await.unwrap().status(), 200);
    }
    fail_next.store(true, Ordering::SeqCst);
    assert_eq!(usage().await.unwrap().status(), 200, "retried once");

    // The client's deadline, when shorter, bounds the call and reaches the service.
    slow.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let response = edge
        .http
        .get(format!("{base}/api/usage"))
        .bearer_auth(&token)
        .header("x-timeout-ms", "200")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let timeout = seen_timeout
        .lock()
        .unwrap()
        .clone()
        .expect("grpc-timeout sent");
    assert!(
        timeout.ends_with('m') || timeout.ends_with('u') || timeout.ends_with('n'),
        "{timeout}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn one_connection_cannot_run_more_streams_at_once_than_its_limit() {
    use std::sync::atomic::Ordering;
    let edge = Edge::start(10_000).await;
    let (agents, base) = gateway_with_fake_agents(
        &edge,
        &[("TREVEN_MAX_STREAMS_PER_CONNECTION", "2".to_owned())],
    )
    .await;
    let (slow, in_flight) = (agents.slow, agents.in_flight);
    slow.store(true, Ordering::SeqCst);
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;

    // One HTTP/2 connection, four concurrent streams.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let calls = (0..4).map(|_| {
        h2.get(format!("{base}/api/usage"))
            .bearer_auth(&token)
            .send()
    });
    let responses = futures::future::join_all(calls).await;
    assert!(
        responses
            .iter()
            .all(|r| r.as_ref().map(|r| r.status() == 200).unwrap_or(false)),
        "every stream completes"
    );
    assert_eq!(
        in_flight.1.load(Ordering::SeqCst),
        2,
        "at most two ran at once"
    );
    edge.stop().await;
}
