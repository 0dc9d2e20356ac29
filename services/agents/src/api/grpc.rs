//! The gRPC handlers of `treven.agents.v1.AgentsService`: each checks the
//! context, converts (see [`super::convert`]) and calls [`crate::app`];
//! streams carry sequence numbers.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use treven_mesh::ServiceError;
use treven_mesh::context::context_of;
use treven_mesh::wire::struct_to_json;
use treven_proto::treven::agents::v1 as pb;
use treven_proto::treven::reports::v1 as reports;

use crate::agent::AgentEvent;
use crate::app::{Agents, ChatEvent, GenerationEvent, SendError};
use crate::provider::cost_nanos;

use super::convert::{
    context_from_pb, conversation_to_pb, decisions_from_pb, generate_input, kind_from_pb,
    message_to_pb, pii_detected_status, run_to_pb, section_to_pb, source_to_pb, tool_call_to_pb,
    usage_to_pb,
};

/// `treven.agents.v1.AgentsService` over [`Agents`].
#[derive(Debug, Clone)]
pub struct AgentsGrpc {
    agents: Agents,
}

impl AgentsGrpc {
    /// Serves `agents`.
    pub fn new(agents: Agents) -> Self {
        Self { agents }
    }
}

type Reply<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn reply<T>(result: Result<T, ServiceError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn chat_stream(mut events: mpsc::Receiver<ChatEvent>) -> BoxStream<pb::SendMessageResponse> {
    use pb::send_message_response::Event;
    Box::pin(async_stream::stream! {
        let mut sequence = 0i64;
        while let Some(event) = events.recv().await {
            let (event, last) = match event {
                ChatEvent::Agent(AgentEvent::Text(text)) => (Event::TextDelta(pb::TextDelta { text }), false),
                ChatEvent::Agent(AgentEvent::Tool(call)) => (Event::ToolCall(tool_call_to_pb(call)), false),
                ChatEvent::Agent(AgentEvent::Citation(source)) => (Event::Citation(source_to_pb(&source)), false),
                ChatEvent::Agent(AgentEvent::Usage { model_id, usage }) => {
                    (Event::Usage(usage_to_pb(usage, cost_nanos(&model_id, usage))), false)
                }
                ChatEvent::Done { user, assistant } => (
                    Event::Done(pb::ReplyDone {
                        user_message: Some(message_to_pb(*user)),
                        assistant_message: Some(message_to_pb(*assistant)),
                    }),
                    true,
                ),
                ChatEvent::Error { code, message } => (
                    Event::Error(pb::StreamError { code: code.as_str().to_owned(), message }),
                    true,
                ),
            };
            sequence += 1;
            yield Ok(pb::SendMessageResponse { sequence, event: Some(event) });
            if last {
                return;
            }
        }
        sequence += 1;
        yield Ok(pb::SendMessageResponse {
            sequence,
            event: Some(Event::Error(pb::StreamError { code: "INTERNAL_ERROR".to_owned(), message: "the reply ended unexpectedly".to_owned() })),
        });
    })
}

fn generation_stream(
    mut events: mpsc::Receiver<GenerationEvent>,
) -> BoxStream<pb::GenerateReportResponse> {
    use pb::generate_report_response::Event;
    Box::pin(async_stream::stream! {
        let mut sequence = 0i64;
        while let Some(event) = events.recv().await {
            let (event, last) = match event {
                GenerationEvent::Section(section) => (Event::Section(section_to_pb(*section)), false),
                GenerationEvent::Tool(call) => (Event::ToolCall(tool_call_to_pb(call)), false),
                GenerationEvent::Usage(usage, cost) => (Event::Usage(usage_to_pb(usage, cost)), false),
                GenerationEvent::Done { run_id, usage, cost_nanos } => (
                    Event::Done(pb::GenerationDone { run_id: run_id.to_string(), usage: Some(usage_to_pb(usage, cost_nanos)) }),
                    true,
                ),
                GenerationEvent::Error { code, message } => (
                    Event::Error(pb::StreamError { code: code.as_str().to_owned(), message }),
                    true,
                ),
            };
            sequence += 1;
            yield Ok(pb::GenerateReportResponse { sequence, event: Some(event) });
            if last {
                return;
            }
        }
        sequence += 1;
        yield Ok(pb::GenerateReportResponse {
            sequence,
            event: Some(Event::Error(pb::StreamError { code: "INTERNAL_ERROR".to_owned(), message: "the generation ended unexpectedly".to_owned() })),
        });
    })
}

#[tonic::async_trait]
impl pb::agents_service_server::AgentsService for AgentsGrpc {
    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Reply<pb::CreateConversationResponse> {
        let ctx = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let context = context_from_pb(message.context.unwrap_or_default())?;
            let conversation = self
                .agents
                .create_conversation(&ctx, context, message.title)
                .await?;
            Ok(pb::CreateConversationResponse {
                conversation: Some(conversation_to_pb(conversation)),
            })
        }
        .await;
        reply(result)
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Reply<pb::ListConversationsResponse> {
        let ctx = context_of(&request)?;
        let message = request.into_inner();
        reply(
            self.agents
                .list_conversations(&ctx, message.limit, &message.cursor)
                .await
                .map(|(items, next_cursor)| pb::ListConversationsResponse {
                    items: items.into_iter().map(conversation_to_pb).collect(),
                    next_cursor,
                }),
        )
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Reply<pb::ListMessagesResponse> {
        let ctx = context_of(&request)?;
        let message = request.into_inner();
        reply(
            self.agents
                .list_messages(
                    &ctx,
                    &message.conversation_id,
                    message.limit,
                    &message.cursor,
                )
                .await
                .map(|(items, next_cursor)| pb::ListMessagesResponse {
                    items: items.into_iter().map(message_to_pb).collect(),
                    next_cursor,
                }),
        )
    }

    type SendMessageStream = BoxStream<pb::SendMessageResponse>;

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Reply<Self::SendMessageStream> {
        let ctx = context_of(&request)?;
        let message = request.into_inner();
        let decisions = decisions_from_pb(&message.pii_decisions)?;
        let events = self
            .agents
            .send_message(&ctx, &message.conversation_id, message.content, decisions)
            .await
            .map_err(|error| match error {
                SendError::PiiDetected(findings) => pii_detected_status(&findings),
                SendError::Service(error) => Status::from(error),
            })?;
        Ok(Response::new(chat_stream(events)))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Reply<pb::GetUsageResponse> {
        let ctx = context_of(&request)?;
        let message = request.into_inner();
        reply(self.agents.usage(&ctx, &message.month).await.map(|usage| {
            pb::GetUsageResponse {
                month: usage.month,
                total: Some(usage_to_pb(usage.total, usage.total_cost_nanos)),
                models: usage
                    .models
                    .into_iter()
                    .map(|m| pb::ModelUsage {
                        model_id: m.model_id,
                        usage: Some(usage_to_pb(m.usage, m.cost_nanos)),
                        calls: m.calls,
                    })
                    .collect(),
            }
        }))
    }

    type GenerateReportStream = BoxStream<pb::GenerateReportResponse>;

    async fn generate_report(
        &self,
        request: Request<pb::GenerateReportRequest>,
    ) -> Reply<Self::GenerateReportStream> {
        let ctx = context_of(&request)?;
        let input = generate_input(request.into_inner())?;
        let events = self.agents.generate_report(&ctx, input).await?;
        Ok(Response::new(generation_stream(events)))
    }

    async fn detect_pii(
        &self,
        request: Request<pb::DetectPiiRequest>,
    ) -> Reply<pb::DetectPiiResponse> {
        context_of(&request)?;
        let text = request.into_inner().text;
        reply(self.agents.detect_pii(&text).await.map(|findings| {
            pb::DetectPiiResponse {
                findings: findings
                    .iter()
                    .map(|f| reports::PiiFinding {
                        id: f.stable_id(""),
                        r#type: f.kind.proto_value(),
                        section: String::new(),
                        field_path: String::new(),
                        start: i64::try_from(f.start).unwrap_or_default(),
                        end: i64::try_from(f.end).unwrap_or_default(),
                        placeholder: f.placeholder.to_owned(),
                    })
                    .collect(),
            }
        }))
    }

    async fn run_agent(
        &self,
        request: Request<pb::RunAgentRequest>,
    ) -> Reply<pb::RunAgentResponse> {
        let ctx = context_of(&request)?;
        let message = request.into_inner();
        let result = async {
            let kind = kind_from_pb(message.kind)?;
            let input = message
                .input
                .as_ref()
                .map(struct_to_json)
                .unwrap_or_else(|| serde_json::json!({}));
            let run = self
                .agents
                .run_agent(&ctx, kind, input, message.model_id.trim())
                .await?;
            Ok(pb::RunAgentResponse {
                run: Some(run_to_pb(run)),
            })
        }
        .await;
        reply(result)
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Reply<pb::GetRunResponse> {
        let ctx = context_of(&request)?;
        let id = request.into_inner().id;
        reply(
            self.agents
                .get_run(&ctx, &id)
                .await
                .map(|run| pb::GetRunResponse {
                    run: Some(run_to_pb(run)),
                }),
        )
    }
}
