//! Chat: the analyst's message passed through the PII gate and stored, the
//! reply streamed from the agent loop, stored, and published to WebSocket
//! clients.
//!
//! The reply is redacted before anyone sees it: its text deltas go through
//! a [`StreamRedactor`], which holds back the last
//! [`crate::redaction::STREAM_HOLDBACK_BYTES`] bytes and lets text out only
//! up to whitespace outside any finding, so personal data split over several
//! deltas is redacted whole while the reply still streams (buffering the
//! whole reply would hold every token until the end). The stored reply is
//! what was streamed, scanned once more whole. Tool call arguments and
//! summaries are redacted by the agent loop.

use chrono::Utc;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use treven_mesh::events::{EventChannel, EventKind};
use treven_mesh::{ErrorCode, MeshContext, OrgId, ServiceError};
use uuid::Uuid;

use super::audit::AuditEntry;
use super::events::{message_json, tool_call_json};
use super::oversight::CONVERSATION_RESOURCE;
use super::pii::{GateError, gate_message};
use super::{Agents, parse_uuid};
use crate::agent::{self, AgentEvent, LoopError};
use crate::model::{Conversation, Message, MessageFinding, MessageRole, PiiDecision, Tool};
use crate::provider::{ModelRequest, Turn};
use crate::redaction::{Redactions, StreamRedactor, redact_text};
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

/// The audit action of a decision on personal data in a chat message.
pub const PII_DECISION_ACTION: &str = "conversation.pii_decision";
/// The audit action of a chat message refused for undecided personal data.
pub const PII_BLOCKED_ACTION: &str = "conversation.pii_blocked";
/// The audit action of personal data redacted from a reply.
pub const PII_REDACTED_ACTION: &str = "conversation.pii_redacted";

/// Why a message was not accepted.
#[derive(Debug)]
pub enum SendError {
    /// Personal data without a decision: nothing was stored or sent.
    PiiDetected(Vec<MessageFinding>),
    /// Anything else.
    Service(ServiceError),
}

impl From<ServiceError> for SendError {
    fn from(error: ServiceError) -> Self {
        SendError::Service(error)
    }
}

impl Agents {
    /// Passes the analyst's message through the PII gate (`decisions` on its
    /// findings, each audited), stores it and streams the reply.
    pub async fn send_message(
        &self,
        ctx: &MeshContext,
        conversation_id: &str,
        content: String,
        decisions: Vec<PiiDecision>,
    ) -> Result<mpsc::Receiver<ChatEvent>, SendError> {
        let limits = self.inner.limits;
        let org = ctx.org_id();
        if content.trim().is_empty() {
            return Err(ServiceError::invalid_field("content", "must not be empty").into());
        }
        let chars = content.chars().count();
        if chars > limits.max_message_chars {
            return Err(ServiceError::invalid_field(
                "content",
                format!(
                    "must be at most {} characters, got {chars}",
                    limits.max_message_chars
                ),
            )
            .into());
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
        let gated = match gate_message(&content, &decisions) {
            Ok(gated) => gated,
            Err(GateError::Service(error)) => return Err(error.into()),
            Err(GateError::Undecided(findings)) => {
                self.audit_blocked_message(ctx, conversation.id, &findings)
                    .await;
                return Err(SendError::PiiDetected(findings));
            }
        };
        let content = gated.text;
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
            )
            .into());
        }
        let message_id = Uuid::now_v7();
        // Decisions are audited before the model sees the message: a kept
        // finding reaches no model without its audit entry.
        self.audit_decisions(ctx, conversation.id, message_id, &gated.decided)
            .await?;
        let user = Message {
            id: message_id,
            conversation_id: conversation.id,
            role: MessageRole::User,
            content,
            tool_calls: Vec::new(),
            citations: Vec::new(),
            model_id: String::new(),
            usage: None,
            cost_nanos: 0,
            created_at: Utc::now(),
            erased_at: None,
        };
        // The model is asked at once, and the message stored meanwhile: the
        // store's round trip is spent inside the model's time to first token
        // rather than before it (#18, row 5). The reply task shows, records
        // and stores nothing until `stored` says the message is stored; if
        // it is not (an error, or the caller gone), the task is aborted with
        // its model call and the caller gets the error, as before.
        let (stored, stored_signal) = oneshot::channel();
        let (out, receiver) = mpsc::channel(256);
        let service = self.clone();
        let tool_ctx =
            ToolContext::new(ctx.clone(), context.country.clone(), context.sector.clone());
        let pending_user = user.clone();
        // The task continues the call's trace (its span is the parent).
        let reply = AbortUnlessStored(Some(
            tokio::spawn(
                async move {
                    service
                        .reply(
                            conversation,
                            pending_user,
                            request,
                            tool_ctx,
                            stored_signal,
                            out,
                        )
                        .await;
                }
                .in_current_span(),
            )
            .abort_handle(),
        ));
        self.inner.store.put_message(org, &user).await?;
        reply.disarm();
        // The task waits for this signal, so its receiving end is still there.
        let _ = stored.send(());
        Ok(receiver)
    }

    /// Records each decision on the message `message` of `conversation`;
    /// an error (nothing is stored) when one cannot be recorded.
    async fn audit_decisions(
        &self,
        ctx: &MeshContext,
        conversation: Uuid,
        message: Uuid,
        decided: &[(MessageFinding, PiiDecision)],
    ) -> Result<(), ServiceError> {
        if decided.is_empty() {
            return Ok(());
        }
        let Some(audit) = &self.audit else {
            tracing::warn!(org = %ctx.org_id(), %conversation, "pii decisions refused: no audit log is wired");
            return Err(ServiceError::new(
                ErrorCode::Unavailable,
                "decisions on personal data cannot be recorded; retry later",
            ));
        };
        for (finding, decision) in decided {
            let entry = AuditEntry {
                action: PII_DECISION_ACTION,
                resource_type: CONVERSATION_RESOURCE,
                resource_id: conversation.to_string(),
                details: json!({
                    "message_id": message,
                    "finding_id": finding.id,
                    "type": finding.kind.as_str(),
                    "field_path": "content",
                    "action": decision.action.as_str(),
                    "justification": decision.justification,
                }),
            };
            if let Err(error) = audit.record(ctx, entry).await {
                tracing::warn!(org = %ctx.org_id(), %conversation, error = %error, "pii decision not recorded; message refused");
                return Err(ServiceError::new(
                    ErrorCode::Unavailable,
                    "decisions on personal data could not be recorded in the audit log; retry later",
                ));
            }
        }
        Ok(())
    }

    /// Records that a message was refused for undecided personal data
    /// (finding ids and kinds only); a failure is logged.
    async fn audit_blocked_message(
        &self,
        ctx: &MeshContext,
        conversation: Uuid,
        findings: &[MessageFinding],
    ) {
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        let types: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        self.audit_best_effort(
            ctx,
            AuditEntry {
                action: PII_BLOCKED_ACTION,
                resource_type: CONVERSATION_RESOURCE,
                resource_id: conversation.to_string(),
                details: json!({ "findings": ids, "types": types }),
            },
        )
        .await;
    }

    /// Records `entry` when an audit log is wired; a failure is logged (for
    /// entries about something already made safe, such as a redaction).
    pub(super) async fn audit_best_effort(&self, ctx: &MeshContext, entry: AuditEntry) {
        let Some(audit) = &self.audit else {
            return;
        };
        let action = entry.action;
        if let Err(error) = audit.record(ctx, entry).await {
            tracing::warn!(org = %ctx.org_id(), action, error = %error, "audit entry not recorded");
        }
    }

    /// Relays the loop's events to the caller and WebSocket clients, text
    /// through `redactor`; returns the cost of the model calls.
    async fn forward_chat(
        &self,
        org: OrgId,
        channel: EventChannel,
        mut events: mpsc::Receiver<AgentEvent>,
        out: &mpsc::Sender<ChatEvent>,
        redactor: &mut StreamRedactor,
    ) -> i64 {
        let mut cost = 0;
        while let Some(event) = events.recv().await {
            let event = match event {
                AgentEvent::Text(delta) => match redactor.push(&delta) {
                    Some(text) => AgentEvent::Text(text),
                    None => continue,
                },
                AgentEvent::Tool(record) => {
                    // The text before a tool call is complete.
                    if let Some(text) = redactor.finish() {
                        self.relay_text(org, channel, out, text).await;
                    }
                    AgentEvent::Tool(record)
                }
                other => other,
            };
            if let AgentEvent::Text(text) = event {
                self.relay_text(org, channel, out, text).await;
                continue;
            }
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
                AgentEvent::Text(_) => {}
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
        if let Some(text) = redactor.finish() {
            self.relay_text(org, channel, out, text).await;
        }
        cost
    }

    /// Publishes and sends redacted reply text.
    async fn relay_text(
        &self,
        org: OrgId,
        channel: EventChannel,
        out: &mpsc::Sender<ChatEvent>,
        text: String,
    ) {
        self.publish(
            org,
            channel,
            EventKind::ChatResponse,
            json!({ "textDelta": { "text": text } }),
        )
        .await;
        let _ = out.send(ChatEvent::Agent(AgentEvent::Text(text))).await;
    }

    async fn reply(
        &self,
        mut conversation: Conversation,
        user: Message,
        request: ModelRequest,
        tool_ctx: ToolContext,
        stored: oneshot::Receiver<()>,
        out: mpsc::Sender<ChatEvent>,
    ) {
        let org = tool_ctx.context.org_id();
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
        let mut redactor = StreamRedactor::new();
        // The loop's events wait in `receiver` until the analyst's message
        // is stored: nothing of the reply is shown, published or counted
        // for a message that was refused.
        let forward = async {
            stored.await.ok()?;
            Some(
                self.forward_chat(org, channel, receiver, &out, &mut redactor)
                    .await,
            )
        };
        let (result, cost) = tokio::join!(run, forward);
        let Some(cost) = cost else {
            // The message was not stored (`send_message` aborts this task
            // then too): nothing to show or keep.
            return;
        };
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
        // What was streamed, scanned once more whole (personal data split
        // across a tool call is caught here).
        let mut redactions = redactor.redactions().clone();
        redactions.add(&outcome.redactions);
        let (content, late) = redact_text(redactor.released_text());
        if !late.is_empty() {
            tracing::warn!(%org, conversation = %conversation.id, found = late.total(), "personal data found only in the whole reply");
            redactions.add(&late);
        }
        let assistant = Message {
            id: Uuid::now_v7(),
            conversation_id: conversation.id,
            role: MessageRole::Assistant,
            content,
            tool_calls: outcome.tool_calls,
            citations: outcome.citations,
            model_id: outcome.model_id,
            usage: Some(outcome.usage),
            cost_nanos: cost,
            created_at: Utc::now(),
            erased_at: None,
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
        self.audit_reply_redactions(&tool_ctx.context, &conversation, assistant.id, &redactions)
            .await;
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

    /// Records what was redacted from a reply (kinds and counts).
    async fn audit_reply_redactions(
        &self,
        ctx: &MeshContext,
        conversation: &Conversation,
        message: Uuid,
        redactions: &Redactions,
    ) {
        if redactions.is_empty() {
            return;
        }
        self.audit_best_effort(
            ctx,
            AuditEntry {
                action: PII_REDACTED_ACTION,
                resource_type: CONVERSATION_RESOURCE,
                resource_id: conversation.id.to_string(),
                details: json!({
                    "message_id": message,
                    "redacted": redactions.to_json(),
                    "total": redactions.total(),
                }),
            },
        )
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

/// Aborts the reply task when dropped armed: `send_message` returned early
/// (the analyst's message was not stored) or was itself dropped (the caller
/// went away) before the message was stored, so the model call stops and
/// nothing of it is kept or metered unseen. (tokio-util's
/// `AbortOnDropHandle` does this, behind its `rt` feature, which nothing
/// else in the workspace builds.)
struct AbortUnlessStored(Option<tokio::task::AbortHandle>);

impl AbortUnlessStored {
    /// The message is stored: the task runs on.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortUnlessStored {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
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
