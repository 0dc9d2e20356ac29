//! Chat: the analyst's message stored, the reply streamed from the agent
//! loop, stored, and published to WebSocket clients.

use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;
use treven_mesh::events::{EventChannel, EventKind};
use treven_mesh::{ErrorCode, MeshContext, OrgId, ServiceError};
use uuid::Uuid;

use super::events::{message_json, tool_call_json};
use super::{Agents, parse_uuid};
use crate::agent::{self, AgentEvent, LoopError};
use crate::model::{Conversation, Message, MessageRole, Tool};
use crate::provider::{ModelRequest, Turn};
use crate::tools::{ToolContext, spec};

/// Messages of history sent with a new message.
pub const HISTORY_MESSAGES: u32 = 20;

/// The chat agent's system prompt.
const CHAT_SYSTEM: &str = "You are Treven's research assistant for analysts working on human trafficking and modern slavery. \
Answer in British English and concisely. Use search_sources and query_dataset to find evidence, make_citation for every source you rely on, \
rate_confidence for judgements, and detect_pii before quoting any text. Never reveal personal data about individuals.";

/// A streamed chat event.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// From the agent loop.
    Agent(AgentEvent),
    /// The end: both stored messages.
    Done {
        /// The analyst's message.
        user: Box<Message>,
        /// The reply.
        assistant: Box<Message>,
    },
    /// The reply failed.
    Error {
        /// Code.
        code: ErrorCode,
        /// Safe message.
        message: String,
    },
}

impl Agents {
    /// Stores the analyst's message and streams the reply.
    pub async fn send_message(
        &self,
        ctx: &MeshContext,
        conversation_id: &str,
        content: String,
    ) -> Result<mpsc::Receiver<ChatEvent>, ServiceError> {
        let limits = self.inner.limits;
        let org = ctx.org_id();
        if content.trim().is_empty() {
            return Err(ServiceError::invalid_field("content", "must not be empty"));
        }
        let chars = content.chars().count();
        if chars > limits.max_message_chars {
            return Err(ServiceError::invalid_field(
                "content",
                format!(
                    "must be at most {} characters, got {chars}",
                    limits.max_message_chars
                ),
            ));
        }
        // The conversation and its history are read at once: both sit in
        // front of the time to first token. The history query is keyed by
        // the caller's organisation, and is used only once the conversation
        // is known to be the caller's own (only its owner writes to it), so
        // reading it first shows nothing of anyone else's.
        let id = parse_uuid("conversation_id", conversation_id)?;
        let (conversation, history) =
            tokio::try_join!(self.own_conversation(ctx, conversation_id), async {
                self.inner
                    .store
                    .list_messages(org, id, HISTORY_MESSAGES, None)
                    .await
                    .map(|(history, _)| history)
            },)?;
        let mut system = CHAT_SYSTEM.to_owned();
        let context = &conversation.context;
        if !context.country.is_empty() || !context.sector.is_empty() {
            system.push_str(&format!(
                "\nResearch context: country {}, sector {}.",
                if context.country.is_empty() {
                    "any"
                } else {
                    &context.country
                },
                if context.sector.is_empty() {
                    "any"
                } else {
                    &context.sector
                },
            ));
        }
        let mut turns = alternating(&history);
        match turns.last_mut() {
            // The last message went unanswered: the new one joins it.
            Some(last) if last.role == crate::provider::Role::User => {
                last.blocks
                    .push(crate::provider::Block::Text(content.clone()));
            }
            _ => turns.push(Turn::user(content.clone())),
        }
        let mut request = ModelRequest {
            system,
            turns,
            tools: [
                Tool::SearchSources,
                Tool::QueryDataset,
                Tool::DetectPii,
                Tool::MakeCitation,
                Tool::RateConfidence,
            ]
            .into_iter()
            .map(spec)
            .collect(),
            max_tokens: limits.max_output_tokens,
            ..ModelRequest::default()
        };
        while request.prompt_chars() > limits.max_prompt_chars && request.turns.len() > 1 {
            // Drop the oldest exchange.
            request.turns.drain(..2.min(request.turns.len() - 1));
        }
        if request.prompt_chars() > limits.max_prompt_chars {
            return Err(ServiceError::invalid_field(
                "content",
                format!(
                    "the prompt exceeds the limit of {} characters",
                    limits.max_prompt_chars
                ),
            ));
        }
        let now = Utc::now();
        let user = Message {
            id: Uuid::now_v7(),
            conversation_id: conversation.id,
            role: MessageRole::User,
            content,
            tool_calls: Vec::new(),
            citations: Vec::new(),
            model_id: String::new(),
            usage: None,
            cost_nanos: 0,
            created_at: now,
        };
        self.inner.store.put_message(org, &user).await?;
        let (out, receiver) = mpsc::channel(256);
        let service = self.clone();
        let tool_ctx =
            ToolContext::new(ctx.clone(), context.country.clone(), context.sector.clone());
        tokio::spawn(async move {
            service
                .reply(org, conversation, user, request, tool_ctx, out)
                .await;
        });
        Ok(receiver)
    }

    async fn forward_chat(
        &self,
        org: OrgId,
        channel: EventChannel,
        mut events: mpsc::Receiver<AgentEvent>,
        out: &mpsc::Sender<ChatEvent>,
    ) -> i64 {
        let mut cost = 0;
        while let Some(event) = events.recv().await {
            match &event {
                AgentEvent::Usage { model_id, usage } => {
                    cost += self.record_usage(org, model_id, *usage).await;
                }
                AgentEvent::Tool(record) => {
                    self.publish(
                        org,
                        channel,
                        EventKind::ChatTool,
                        json!({ "toolCall": tool_call_json(record) }),
                    )
                    .await;
                }
                AgentEvent::Text(text) => {
                    self.publish(
                        org,
                        channel,
                        EventKind::ChatResponse,
                        json!({ "textDelta": { "text": text } }),
                    )
                    .await;
                }
                AgentEvent::Citation(citation) => {
                    self.publish(
                        org,
                        channel,
                        EventKind::ChatResponse,
                        json!({ "citation": { "sourceId": citation.source_id, "label": citation.label, "url": citation.url } }),
                    )
                    .await;
                }
            }
            let _ = out.send(ChatEvent::Agent(event)).await;
        }
        cost
    }

    async fn reply(
        &self,
        org: OrgId,
        mut conversation: Conversation,
        user: Message,
        request: ModelRequest,
        tool_ctx: ToolContext,
        out: mpsc::Sender<ChatEvent>,
    ) {
        let limits = self.inner.limits;
        let channel = EventChannel::Conversation(conversation.id);
        let (sender, receiver) = mpsc::channel(256);
        let run = async {
            let sender = sender;
            tokio::time::timeout(
                limits.max_stream,
                agent::run(
                    &self.inner.router,
                    &self.inner.tools,
                    &tool_ctx,
                    request,
                    limits.max_turns,
                    &sender,
                ),
            )
            .await
        };
        let (result, cost) = tokio::join!(run, self.forward_chat(org, channel, receiver, &out));
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(LoopError { code, message, .. })) => {
                self.fail_chat(org, channel, &out, code, message).await;
                return;
            }
            Err(_) => {
                self.fail_chat(
                    org,
                    channel,
                    &out,
                    ErrorCode::Unavailable,
                    "the reply took too long and was stopped".to_owned(),
                )
                .await;
                return;
            }
        };
        let assistant = Message {
            id: Uuid::now_v7(),
            conversation_id: conversation.id,
            role: MessageRole::Assistant,
            content: outcome.text,
            tool_calls: outcome.tool_calls,
            citations: outcome.citations,
            model_id: outcome.model_id,
            usage: Some(outcome.usage),
            cost_nanos: cost,
            created_at: Utc::now(),
        };
        if let Err(error) = self.inner.store.put_message(org, &assistant).await {
            tracing::error!(%org, conversation = %conversation.id, error = %error, "reply not stored");
            self.fail_chat(
                org,
                channel,
                &out,
                ErrorCode::Unavailable,
                "the reply could not be saved, retry later".to_owned(),
            )
            .await;
            return;
        }
        conversation.updated_at = assistant.created_at;
        if conversation.title.is_empty() {
            conversation.title = user
                .content
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(60)
                .collect();
        }
        if let Err(error) = self.inner.store.update_conversation(&conversation).await {
            tracing::warn!(conversation = %conversation.id, error = %error, "conversation activity not updated");
        }
        self.publish(
            org,
            channel,
            EventKind::ChatResponse,
            json!({ "done": {
                "userMessage": message_json(&user),
                "assistantMessage": message_json(&assistant),
            } }),
        )
        .await;
        let _ = out
            .send(ChatEvent::Done {
                user: Box::new(user),
                assistant: Box::new(assistant),
            })
            .await;
    }

    async fn fail_chat(
        &self,
        org: OrgId,
        channel: EventChannel,
        out: &mpsc::Sender<ChatEvent>,
        code: ErrorCode,
        message: String,
    ) {
        tracing::warn!(%org, %channel, %code, "reply failed");
        self.publish(
            org,
            channel,
            EventKind::ChatResponse,
            json!({ "error": { "code": code.as_str(), "message": message } }),
        )
        .await;
        let _ = out.send(ChatEvent::Error { code, message }).await;
    }
}

/// The stored history (newest first) as model turns, oldest first,
/// alternating and starting with the user, as the providers require.
/// Messages of one role in a row (after a failed reply) are merged.
fn alternating(history: &[Message]) -> Vec<Turn> {
    use crate::provider::{Block, Role as Speaker};
    let mut turns: Vec<Turn> = Vec::new();
    for message in history.iter().rev().filter(|m| !m.content.is_empty()) {
        let role = match message.role {
            MessageRole::Assistant => Speaker::Assistant,
            MessageRole::User | MessageRole::System => Speaker::User,
        };
        if turns.is_empty() && role == Speaker::Assistant {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.blocks.push(Block::Text(message.content.clone()));
            }
            _ => turns.push(Turn {
                role,
                blocks: vec![Block::Text(message.content.clone())],
            }),
        }
    }
    turns
}
