//! The rules of the agents service: validation, the agent kinds, chat and
//! generation streams, runs, usage metering and events.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use treven_mesh::events::{EventChannel, EventKind, EventPublisher};
use treven_mesh::pagination::{CursorCodec, page_limit};
use treven_mesh::{ErrorCode, MeshContext, OrgId, Role, ServiceError};
use uuid::Uuid;

use crate::agent::{self, AgentEvent, LoopError, Outcome};
use crate::config::Limits;
use crate::generator::{
    CitationIds, GeneratedSection, ScopeBrief, SectionKey, SectionTask, SourceBrief,
};
use crate::model::{
    AgentKind, Conversation, ConversationContext, Message, MessageRole, ModelUsage, Run, RunStatus,
    Tool, ToolCallRecord,
};
use crate::provider::router::Router;
use crate::provider::{ModelEvent, ModelRequest, Turn, Usage, cost_nanos};
use crate::store::{Position, Store};
use crate::tools::{Documents, ToolBox, ToolContext, spec};

/// Longest conversation title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest generation instructions.
pub const MAX_INSTRUCTIONS_CHARS: usize = 2_000;
/// Messages of history sent with a new message.
pub const HISTORY_MESSAGES: u32 = 20;
/// Sources a generation draws on.
pub const GENERATION_SOURCES: i32 = 20;
/// The model id recorded for runs that use no model (pii).
pub const LOCAL_PII_MODEL: &str = "treven-pii";

const CHAT_SYSTEM: &str = "You are Treven's research assistant for analysts working on human trafficking and modern slavery. \
Answer in British English and concisely. Use search_sources and query_dataset to find evidence, make_citation for every source you rely on, \
rate_confidence for judgements, and detect_pii before quoting any text. Never reveal personal data about individuals.";

/// The reports service, as the social agent uses it.
pub trait ReportsLookup: Send + Sync + 'static {
    /// Whether report `id` of the caller is approved, with its key
    /// judgements; NOT_FOUND when the caller's organisation has no such
    /// report.
    fn approved_judgements(
        &self,
        token: &str,
        id: Uuid,
    ) -> futures::future::BoxFuture<'static, Result<(bool, Vec<String>), ServiceError>>;
}

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

/// A streamed generation event.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// A finished section.
    Section(Box<GeneratedSection>),
    /// A tool call.
    Tool(ToolCallRecord),
    /// One model call's tokens and cost.
    Usage(Usage, i64),
    /// The end.
    Done {
        /// The run.
        run_id: Uuid,
        /// All tokens.
        usage: Usage,
        /// Their cost.
        cost_nanos: i64,
    },
    /// Generation failed.
    Error {
        /// Code.
        code: ErrorCode,
        /// Safe message.
        message: String,
    },
}

/// What GenerateReport asks for.
#[derive(Debug, Clone, Default)]
pub struct GenerateInput {
    /// The report.
    pub report_id: Uuid,
    /// The scope.
    pub scope: ScopeBrief,
    /// Sections, in report order; empty means all but the disclaimer.
    pub sections: Vec<SectionKey>,
    /// Citation ids already used in the current draft.
    pub existing_citation_ids: Vec<String>,
    /// The current issue number (0 when new).
    pub issue_number: i32,
    /// Instructions.
    pub instructions: String,
    /// Documents to draw on.
    pub document_ids: Vec<String>,
}

/// Tokens and cost of a month.
#[derive(Debug, Clone)]
pub struct MonthUsage {
    /// `YYYY-MM`.
    pub month: String,
    /// Totals.
    pub total: Usage,
    /// Total cost, nano-dollars.
    pub total_cost_nanos: i64,
    /// Per model, most expensive first.
    pub models: Vec<ModelUsage>,
}

/// The agents service.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    router: Router,
    tools: ToolBox,
    documents: Documents,
    reports: Box<dyn ReportsLookup>,
    events: Option<mpsc::Sender<Publication>>,
    guardrail: Option<crate::guardrail::Guardrail>,
    cursors: CursorCodec,
    limits: Limits,
}

/// An event waiting to be published.
type Publication = (OrgId, EventChannel, EventKind, Value);

/// Events are published in order by one background task, so a slow or
/// unreachable Redis never slows a reply; when the queue is full, events
/// are dropped (and logged): the gRPC stream remains the source of truth.
const EVENT_QUEUE: usize = 4_096;

fn publisher(events: EventPublisher) -> Option<mpsc::Sender<Publication>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (sender, mut queue) = mpsc::channel::<Publication>(EVENT_QUEUE);
    runtime.spawn(async move {
        while let Some((org, channel, kind, data)) = queue.recv().await {
            if let Err(error) = events.publish(org, &channel, kind, data).await {
                tracing::warn!(%channel, error = %error, "event not published");
            }
        }
    });
    Some(sender)
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("router", &self.inner.router)
            .finish_non_exhaustive()
    }
}

fn month_of(time: DateTime<Utc>) -> String {
    time.format("%Y-%m").to_string()
}

fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid_field(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| ServiceError::invalid_field(field, "must be a UUID"))
}

/// Chat, conversations and runs: analysts and admins.
fn require_writer(ctx: &MeshContext) -> Result<(), ServiceError> {
    ctx.require_any(&[Role::Admin, Role::Analyst])
}

/// Reads: any member. (GenerateReport and DetectPii, called by the reports
/// service on a user's behalf, need only a verified context.)
fn require_member(ctx: &MeshContext) -> Result<(), ServiceError> {
    ctx.require_any(&[Role::Admin, Role::Analyst, Role::Viewer])
}

impl Agents {
    /// The service over its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        router: Router,
        documents: Documents,
        reports: Box<dyn ReportsLookup>,
        events: Option<EventPublisher>,
        guardrail: Option<crate::guardrail::Guardrail>,
        cursors: CursorCodec,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                router,
                tools: ToolBox::new(documents.clone()),
                documents,
                reports,
                events: events.and_then(publisher),
                guardrail,
                cursors,
                limits,
            }),
        }
    }

    /// The model router (for health and tests).
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    async fn publish(&self, org: OrgId, channel: EventChannel, kind: EventKind, data: Value) {
        if let Some(events) = &self.inner.events
            && events.try_send((org, channel, kind, data)).is_err()
        {
            tracing::warn!(%channel, "event queue full or closed; event dropped");
        }
    }

    async fn record_usage(&self, org: OrgId, model_id: &str, usage: Usage) -> i64 {
        let cost = cost_nanos(model_id, usage);
        if let Err(error) = self
            .inner
            .store
            .add_usage(org, &month_of(Utc::now()), model_id, usage, cost)
            .await
        {
            tracing::error!(%org, model_id, error = %error, "usage not recorded");
        }
        cost
    }

    // ---- conversations ------------------------------------------------

    /// Starts a conversation.
    pub async fn create_conversation(
        &self,
        ctx: &MeshContext,
        context: ConversationContext,
        title: String,
    ) -> Result<Conversation, ServiceError> {
        require_writer(ctx)?;
        let title = title.trim().to_owned();
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(ServiceError::invalid_field(
                "title",
                "must be at most 200 characters",
            ));
        }
        let valid_country = context.country.is_empty()
            || (context.country.len() == 2
                && context.country.chars().all(|c| c.is_ascii_uppercase()));
        if !valid_country {
            return Err(ServiceError::invalid_field(
                "context.country",
                "must be an ISO 3166-1 alpha-2 code such as GB",
            ));
        }
        if context.sector.chars().count() > 100 {
            return Err(ServiceError::invalid_field(
                "context.sector",
                "must be at most 100 characters",
            ));
        }
        if let (Some(from), Some(to)) = (context.from, context.to)
            && from >= to
        {
            return Err(ServiceError::invalid_field(
                "context.time_range",
                "start must be before end",
            ));
        }
        let now = Utc::now();
        let conversation = Conversation {
            id: Uuid::now_v7(),
            org_id: ctx.org_id(),
            title,
            context,
            created_by: ctx.user_id().to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.inner.store.create_conversation(&conversation).await?;
        tracing::info!(org = %conversation.org_id, conversation = %conversation.id, "conversation created");
        Ok(conversation)
    }

    /// The caller's conversations, most recently active first.
    pub async fn list_conversations(
        &self,
        ctx: &MeshContext,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<Conversation>, String), ServiceError> {
        require_member(ctx)?;
        let limit = page_limit(limit, 50, 100)?;
        let org = ctx.org_id();
        let after: Option<Position> = self.inner.cursors.decode(org, "conversations", cursor)?;
        let (items, next) = self
            .inner
            .store
            .list_conversations(org, limit, after)
            .await?;
        let next = next
            .map(|p| self.inner.cursors.encode(org, "conversations", &p))
            .unwrap_or_default();
        Ok((items, next))
    }

    async fn conversation(&self, org: OrgId, raw_id: &str) -> Result<Conversation, ServiceError> {
        let id = parse_uuid("conversation_id", raw_id)?;
        self.inner
            .store
            .conversation(org, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("conversation"))
    }

    /// The messages of a conversation, newest first.
    pub async fn list_messages(
        &self,
        ctx: &MeshContext,
        conversation_id: &str,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<Message>, String), ServiceError> {
        require_member(ctx)?;
        let limit = page_limit(limit, 50, 100)?;
        let org = ctx.org_id();
        let conversation = self.conversation(org, conversation_id).await?;
        let scope = format!("messages:{}", conversation.id);
        let after: Option<Position> = self.inner.cursors.decode(org, &scope, cursor)?;
        let (items, next) = self
            .inner
            .store
            .list_messages(org, conversation.id, limit, after)
            .await?;
        let next = next
            .map(|p| self.inner.cursors.encode(org, &scope, &p))
            .unwrap_or_default();
        Ok((items, next))
    }

    /// Stores the analyst's message and streams the reply.
    pub async fn send_message(
        &self,
        ctx: &MeshContext,
        conversation_id: &str,
        content: String,
    ) -> Result<mpsc::Receiver<ChatEvent>, ServiceError> {
        require_writer(ctx)?;
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
        // the caller's organisation, so reading it before the conversation
        // is known to exist shows nothing of anyone else's.
        let id = parse_uuid("conversation_id", conversation_id)?;
        let (conversation, history) =
            tokio::try_join!(self.conversation(org, conversation_id), async {
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
        let tool_ctx = ToolContext::new(
            ctx.token().to_owned(),
            context.country.clone(),
            context.sector.clone(),
        );
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

    // ---- usage ----------------------------------------------------------

    /// The caller's organisation's tokens in `month` (`YYYY-MM`, default
    /// the current month).
    pub async fn usage(&self, ctx: &MeshContext, month: &str) -> Result<MonthUsage, ServiceError> {
        require_member(ctx)?;
        let month = if month.is_empty() {
            month_of(Utc::now())
        } else {
            NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
                .ok()
                .filter(|_| month.len() == 7)
                .ok_or_else(|| ServiceError::invalid_field("month", "must be YYYY-MM"))?;
            month.to_owned()
        };
        let models = self.inner.store.usage(ctx.org_id(), &month).await?;
        let mut total = Usage::default();
        let mut total_cost_nanos = 0;
        for model in &models {
            total.add(model.usage);
            total_cost_nanos += model.cost_nanos;
        }
        Ok(MonthUsage {
            month,
            total,
            total_cost_nanos,
            models,
        })
    }

    // ---- PII ------------------------------------------------------------

    /// Personal data in `text`: the local detector's findings, plus the
    /// guardrail's that overlap none of them when one is configured (a
    /// failed guardrail call is logged and leaves the local findings).
    pub async fn detect_pii(&self, text: &str) -> Result<Vec<treven_pii::Finding>, ServiceError> {
        let local = treven_pii::detect(text)
            .map_err(|e| ServiceError::invalid_field("text", e.to_string()))?;
        let Some(guardrail) = &self.inner.guardrail else {
            return Ok(local);
        };
        match guardrail.findings(text).await {
            Ok(extra) => Ok(crate::guardrail::merge(local, extra)),
            Err(error) => {
                tracing::warn!(error = %error, "guardrail unavailable; local pii findings only");
                Ok(local)
            }
        }
    }

    // ---- generation -----------------------------------------------------

    /// Checks a generation request and starts it; events stream on the
    /// receiver.
    pub async fn generate_report(
        &self,
        ctx: &MeshContext,
        input: GenerateInput,
    ) -> Result<mpsc::Receiver<GenerationEvent>, ServiceError> {
        if input.instructions.chars().count() > MAX_INSTRUCTIONS_CHARS {
            return Err(ServiceError::invalid_field(
                "instructions",
                "must be at most 2000 characters",
            ));
        }
        if input.sections.contains(&SectionKey::Disclaimer) {
            return Err(ServiceError::invalid_field(
                "sections",
                "the disclaimer is fixed text set by the reports service, not generated",
            ));
        }
        let run = self
            .start_run(
                ctx,
                AgentKind::Generator,
                json!({ "report_id": input.report_id, "sections": input.sections }),
                self.inner.router.primary_model(),
            )
            .await?;
        let (out, receiver) = mpsc::channel(64);
        let service = self.clone();
        let token = ctx.token().to_owned();
        tokio::spawn(async move {
            let started = Instant::now();
            let (sender, mut events) = mpsc::channel(64);
            let work = async {
                let sender = sender;
                tokio::time::timeout(
                    service.inner.limits.max_stream,
                    service.generate(&token, run.org_id, input, &sender),
                )
                .await
            };
            let forward = async {
                while let Some(event) = events.recv().await {
                    let _ = out.send(event).await;
                }
            };
            let (result, ()) = tokio::join!(work, forward);
            let result = result.unwrap_or_else(|_| {
                Err((
                    ErrorCode::Unavailable,
                    "the generation took too long and was stopped".to_owned(),
                    Box::default(),
                ))
            });
            match result {
                Ok((sections, outcome, cost)) => {
                    let output = json!({ "sections": sections });
                    service
                        .finish_run(run.clone(), Ok(output), &outcome, cost, started)
                        .await;
                    let _ = out
                        .send(GenerationEvent::Done {
                            run_id: run.id,
                            usage: outcome.usage,
                            cost_nanos: cost,
                        })
                        .await;
                }
                Err((code, message, outcome)) => {
                    let cost = cost_nanos(&outcome.model_id, outcome.usage);
                    service
                        .finish_run(run, Err(message.clone()), &outcome, cost, started)
                        .await;
                    let _ = out.send(GenerationEvent::Error { code, message }).await;
                }
            }
        });
        Ok(receiver)
    }

    /// Writes the sections; returns them (as JSON), the usage and the cost.
    async fn generate(
        &self,
        token: &str,
        org: OrgId,
        input: GenerateInput,
        events: &mpsc::Sender<GenerationEvent>,
    ) -> Result<(Vec<Value>, Outcome, i64), (ErrorCode, String, Box<Outcome>)> {
        let mut outcome = Outcome::default();
        let sources = self
            .sources_for(token, &input.scope)
            .await
            .map_err(|message| (ErrorCode::Unavailable, message, Box::default()))?;
        outcome.tools_used.push(Tool::SearchSources);
        let sections = if input.sections.is_empty() {
            SectionKey::generated()
        } else {
            let mut sections = input.sections.clone();
            sections.sort();
            sections.dedup();
            sections
        };
        let mut ids = CitationIds::after(input.existing_citation_ids.iter().map(String::as_str));
        let mut instructions = input.instructions.clone();
        if !input.document_ids.is_empty() {
            instructions.push_str(&format!(
                "\nAlso draw on documents {}.",
                input.document_ids.join(", ")
            ));
        }
        let mut written = Vec::new();
        let mut cost = 0;
        for section in sections {
            let task = SectionTask {
                section,
                scope: input.scope.clone(),
                sources: sources.clone(),
                instructions: instructions.clone(),
            };
            let request = ModelRequest {
                system: crate::generator::system_prompt().to_owned(),
                turns: vec![Turn::user(crate::generator::user_prompt(&task))],
                tools: Vec::new(),
                max_tokens: self.inner.limits.max_output_tokens,
                model_override: None,
                task: Some(task.clone()),
            };
            let mut stream = self.inner.router.stream(request);
            let mut text = String::new();
            let mut started = false;
            use futures::StreamExt as _;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ModelEvent::Started { model_id }) => outcome.model_id = model_id,
                    Ok(ModelEvent::Text(delta)) => {
                        started = true;
                        text.push_str(&delta);
                    }
                    Ok(ModelEvent::Usage(usage)) => {
                        outcome.usage.add(usage);
                        let call_cost = self.record_usage(org, &outcome.model_id, usage).await;
                        cost += call_cost;
                        let _ = events.send(GenerationEvent::Usage(usage, call_cost)).await;
                    }
                    Ok(ModelEvent::ToolUse { .. } | ModelEvent::Stop(_)) => {}
                    Err(error) => {
                        let (code, message) = agent::describe(&error, started);
                        return Err((code, message, Box::new(outcome)));
                    }
                }
            }
            let issue = input.issue_number.max(0) + 1;
            let generated = crate::generator::parse_section(
                &task,
                &text,
                &mut ids,
                issue,
                Utc::now(),
            )
            .map_err(|reason| {
                tracing::warn!(section = section.as_str(), %reason, "section answer unusable");
                (
                    ErrorCode::Unavailable,
                    format!(
                        "the model's answer for the {} section could not be used, retry",
                        section.as_str()
                    ),
                    Box::new(outcome.clone()),
                )
            })?;
            written.push(serde_json::to_value(&generated).unwrap_or(Value::Null));
            let _ = events
                .send(GenerationEvent::Section(Box::new(generated)))
                .await;
        }
        Ok((written, outcome, cost))
    }

    async fn sources_for(
        &self,
        token: &str,
        scope: &ScopeBrief,
    ) -> Result<Vec<SourceBrief>, String> {
        let search = |country: String, sector: String| {
            treven_proto::treven::documents::v1::SearchSourcesRequest {
                limit: GENERATION_SOURCES,
                country,
                sector,
                ..Default::default()
            }
        };
        let documents = &self.inner.documents;
        let mut sources = documents
            .search(token, search(scope.country.clone(), scope.sector.clone()))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "sources unavailable");
                "the sources could not be read, retry later".to_owned()
            })?;
        if sources.is_empty() && !scope.sector.is_empty() {
            sources = documents
                .search(token, search(scope.country.clone(), String::new()))
                .await
                .map_err(|_| "the sources could not be read, retry later".to_owned())?;
        }
        Ok(sources)
    }

    // ---- runs -------------------------------------------------------------

    async fn start_run(
        &self,
        ctx: &MeshContext,
        kind: AgentKind,
        input: Value,
        model_id: &str,
    ) -> Result<Run, ServiceError> {
        let run = Run {
            id: Uuid::now_v7(),
            org_id: ctx.org_id(),
            kind,
            model_id: model_id.to_owned(),
            status: RunStatus::Running,
            input,
            output: None,
            error: String::new(),
            tools_used: Vec::new(),
            usage: Usage::default(),
            cost_nanos: 0,
            requested_by: ctx.user_id().to_owned(),
            started_at: Utc::now(),
            duration_ms: None,
        };
        self.inner.store.put_run(&run).await?;
        self.publish(
            run.org_id,
            EventChannel::Run(run.id),
            EventKind::AgentStatus,
            json!({ "id": run.id, "status": "running" }),
        )
        .await;
        tracing::info!(org = %run.org_id, run = %run.id, kind = ?kind, "agent run started");
        Ok(run)
    }

    async fn finish_run(
        &self,
        mut run: Run,
        result: Result<Value, String>,
        outcome: &Outcome,
        cost: i64,
        started: Instant,
    ) {
        if !outcome.model_id.is_empty() {
            run.model_id = outcome.model_id.clone();
        }
        run.tools_used = outcome.tools_used.clone();
        run.usage = outcome.usage;
        run.cost_nanos = cost;
        run.duration_ms = Some(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX));
        match result {
            Ok(output) => {
                run.status = RunStatus::Completed;
                run.output = Some(output);
            }
            Err(error) => {
                run.status = RunStatus::Failed;
                run.error = error;
            }
        }
        if let Err(error) = self.inner.store.put_run(&run).await {
            tracing::error!(run = %run.id, error = %error, "run result not stored");
        }
        let status = if run.status == RunStatus::Completed {
            "completed"
        } else {
            "failed"
        };
        self.publish(
            run.org_id,
            EventChannel::Run(run.id),
            EventKind::AgentStatus,
            json!({ "id": run.id, "status": status, "error": run.error }),
        )
        .await;
        tracing::info!(org = %run.org_id, run = %run.id, status, "agent run finished");
    }

    /// One run of the caller's organisation.
    pub async fn get_run(&self, ctx: &MeshContext, id: &str) -> Result<Run, ServiceError> {
        require_member(ctx)?;
        let id = parse_uuid("id", id)?;
        self.inner
            .store
            .run(ctx.org_id(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found("run"))
    }

    /// Checks and starts an agent run; it continues in the background.
    pub async fn run_agent(
        &self,
        ctx: &MeshContext,
        kind: AgentKind,
        input: Value,
        model_id: &str,
    ) -> Result<Run, ServiceError> {
        require_writer(ctx)?;
        let limits = self.inner.limits;
        let size = input.to_string().chars().count();
        if size > limits.max_prompt_chars {
            return Err(ServiceError::invalid_field(
                "input",
                format!(
                    "is {size} characters; the limit is {}",
                    limits.max_prompt_chars
                ),
            ));
        }
        if !model_id.is_empty()
            && !self
                .inner
                .router
                .known_models()
                .iter()
                .any(|m| m == model_id)
        {
            return Err(ServiceError::invalid_field(
                "model_id",
                format!(
                    "must be one of {}",
                    self.inner.router.known_models().join(", ")
                ),
            ));
        }
        let text = |name: &str| -> Result<String, ServiceError> {
            input
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ServiceError::invalid_field(format!("input.{name}"), "is required"))
        };
        let request = match kind {
            AgentKind::Osint => Plan::Loop {
                prompt: format!(
                    "Collect and rank trusted sources for this scenario, citing each and rating confidence.\n---\n{}",
                    text("scenario")?
                ),
                tools: vec![
                    Tool::SearchSources,
                    Tool::QueryDataset,
                    Tool::RateConfidence,
                    Tool::MakeCitation,
                ],
                system: "You are Treven's OSINT agent. Find, rank and cite trusted sources; prefer tier-1 publishers and recent primary data. Never include personal data.",
            },
            AgentKind::Summarise => {
                let body = match (
                    input.get("before").and_then(Value::as_str),
                    input.get("after").and_then(Value::as_str),
                ) {
                    (Some(before), Some(after)) => format!(
                        "Summarise the changes between these two versions.\nBEFORE:\n{before}\nAFTER:\n---\n{after}"
                    ),
                    _ => format!(
                        "Write an executive summary of this text.\n---\n{}",
                        text("text")?
                    ),
                };
                Plan::Loop {
                    prompt: body,
                    tools: Vec::new(),
                    system: "You are Treven's summarising agent. Write short, faithful summaries in British English without personal data.",
                }
            }
            AgentKind::Social => {
                let report_id = parse_uuid("input.report_id", &text("report_id")?)?;
                let (approved, judgements) = self
                    .inner
                    .reports
                    .approved_judgements(ctx.token(), report_id)
                    .await?;
                if !approved {
                    return Err(ServiceError::new(
                        ErrorCode::FailedPrecondition,
                        "the social agent only writes from approved reports",
                    ));
                }
                Plan::Loop {
                    prompt: format!(
                        "Write one or two safe lines for a public post from these approved key judgements, without citation markers.\n---\n{}",
                        judgements.join(" ")
                    ),
                    tools: Vec::new(),
                    system: "You are Treven's social agent. Write at most two sentences, factual and calm, from approved content only, with no personal data.",
                }
            }
            AgentKind::Pii => {
                let body = text("text")?;
                if body.len() > treven_pii::MAX_INPUT_BYTES {
                    return Err(ServiceError::invalid_field(
                        "input.text",
                        "must be at most 1 MiB",
                    ));
                }
                Plan::Pii(body)
            }
            AgentKind::Generator => {
                let scope = ScopeBrief {
                    country: input
                        .get("country")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    region: input
                        .get("region")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    sector: input
                        .get("sector")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    exploitation: input
                        .get("exploitation_type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_lowercase(),
                    ..ScopeBrief::default()
                };
                if scope.country.is_empty() && scope.region.is_empty() {
                    return Err(ServiceError::invalid_field(
                        "input.country",
                        "a country or region is required",
                    ));
                }
                Plan::Generate(scope)
            }
        };
        let model = if matches!(request, Plan::Pii(_)) {
            LOCAL_PII_MODEL.to_owned()
        } else if model_id.is_empty() {
            self.inner.router.primary_model().to_owned()
        } else {
            model_id.to_owned()
        };
        let run = self.start_run(ctx, kind, input.clone(), &model).await?;
        let service = self.clone();
        let token = ctx.token().to_owned();
        let override_model = (!model_id.is_empty()).then(|| model_id.to_owned());
        let started_run = run.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let org = run.org_id;
            let (result, outcome, cost) = service
                .execute(&token, org, kind, request, override_model)
                .await;
            service
                .finish_run(run, result, &outcome, cost, started)
                .await;
        });
        Ok(started_run)
    }

    async fn execute(
        &self,
        token: &str,
        org: OrgId,
        kind: AgentKind,
        plan: Plan,
        model: Option<String>,
    ) -> (Result<Value, String>, Outcome, i64) {
        let limits = self.inner.limits;
        match plan {
            Plan::Pii(text) => match treven_pii::detect(&text) {
                Ok(findings) => {
                    let outcome = Outcome {
                        tools_used: vec![Tool::DetectPii],
                        model_id: LOCAL_PII_MODEL.to_owned(),
                        ..Outcome::default()
                    };
                    let findings: Vec<Value> = findings
                        .iter()
                        .map(|f| json!({ "type": f.kind.as_str(), "start": f.start, "end": f.end, "placeholder": f.placeholder }))
                        .collect();
                    (Ok(json!({ "findings": findings })), outcome, 0)
                }
                Err(error) => (Err(error.to_string()), Outcome::default(), 0),
            },
            Plan::Generate(scope) => {
                let (sender, mut events) = mpsc::channel(64);
                let drain = async { while events.recv().await.is_some() {} };
                let work = async {
                    let sender = sender;
                    let input = GenerateInput {
                        report_id: Uuid::nil(),
                        scope,
                        ..GenerateInput::default()
                    };
                    tokio::time::timeout(
                        limits.max_stream,
                        self.generate(token, org, input, &sender),
                    )
                    .await
                };
                let (result, ()) = tokio::join!(work, drain);
                match result {
                    Ok(Ok((sections, outcome, cost))) => {
                        (Ok(json!({ "sections": sections })), outcome, cost)
                    }
                    Ok(Err((_, message, outcome))) => {
                        let cost = cost_nanos(&outcome.model_id, outcome.usage);
                        (Err(message), *outcome, cost)
                    }
                    Err(_) => (
                        Err("the run took too long and was stopped".to_owned()),
                        Outcome::default(),
                        0,
                    ),
                }
            }
            Plan::Loop {
                prompt,
                tools,
                system,
            } => {
                let request = ModelRequest {
                    system: system.to_owned(),
                    turns: vec![Turn::user(prompt)],
                    tools: tools.into_iter().map(spec).collect(),
                    max_tokens: limits.max_output_tokens,
                    model_override: model,
                    task: None,
                };
                let ctx = ToolContext::new(token.to_owned(), String::new(), String::new());
                let (sender, mut events) = mpsc::channel(64);
                let usage = async {
                    let mut cost = 0;
                    while let Some(event) = events.recv().await {
                        if let AgentEvent::Usage { model_id, usage } = event {
                            cost += self.record_usage(org, &model_id, usage).await;
                        }
                    }
                    cost
                };
                let work = async {
                    let sender = sender;
                    tokio::time::timeout(
                        limits.max_stream,
                        agent::run(
                            &self.inner.router,
                            &self.inner.tools,
                            &ctx,
                            request,
                            limits.max_turns,
                            &sender,
                        ),
                    )
                    .await
                };
                let (result, cost) = tokio::join!(work, usage);
                match result {
                    Ok(Ok(outcome)) => {
                        let output = match kind {
                            AgentKind::Social => {
                                let redacted = treven_pii::detect(&outcome.text)
                                    .ok()
                                    .and_then(|f| treven_pii::redact(&outcome.text, &f).ok())
                                    .unwrap_or_else(|| outcome.text.clone());
                                json!({ "post": redacted.trim() })
                            }
                            AgentKind::Summarise => json!({ "summary": outcome.text.trim() }),
                            _ => {
                                json!({ "text": outcome.text.trim(), "citations": outcome.citations })
                            }
                        };
                        (Ok(output), outcome, cost)
                    }
                    Ok(Err(error)) => (Err(error.message), error.partial, cost),
                    Err(_) => (
                        Err("the run took too long and was stopped".to_owned()),
                        Outcome::default(),
                        cost,
                    ),
                }
            }
        }
    }
}

/// A tool call as the proto3 JSON of `treven.agents.v1.ToolCall`, the
/// shape WebSocket clients also get from the gRPC stream.
fn tool_call_json(record: &ToolCallRecord) -> Value {
    let tool = match record.tool {
        None => "AGENT_TOOL_UNSPECIFIED".to_owned(),
        Some(tool) => format!("AGENT_TOOL_{}", tool.name().to_ascii_uppercase()),
    };
    let status = match record.status {
        crate::model::ToolStatus::Running => "TOOL_CALL_STATUS_RUNNING",
        crate::model::ToolStatus::Succeeded => "TOOL_CALL_STATUS_SUCCEEDED",
        crate::model::ToolStatus::Failed => "TOOL_CALL_STATUS_FAILED",
    };
    json!({ "id": record.id, "tool": tool, "arguments": record.arguments, "status": status, "summary": record.summary })
}

/// The main fields of a message in proto3 JSON (`treven.agents.v1.Message`).
fn message_json(message: &Message) -> Value {
    let role = match message.role {
        MessageRole::User => "MESSAGE_ROLE_USER",
        MessageRole::Assistant => "MESSAGE_ROLE_ASSISTANT",
        MessageRole::System => "MESSAGE_ROLE_SYSTEM",
    };
    json!({
        "id": message.id,
        "conversationId": message.conversation_id,
        "role": role,
        "content": message.content,
        "modelId": message.model_id,
        "createdAt": message.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
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

/// What a run will do.
enum Plan {
    Loop {
        prompt: String,
        tools: Vec<Tool>,
        system: &'static str,
    },
    Pii(String),
    Generate(ScopeBrief),
}
