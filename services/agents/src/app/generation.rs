//! Report generation for the reports service: the requested KJ sections
//! written one by one from the organisation's sources, streamed as they
//! finish, and recorded as a generator run.

use std::time::Instant;
use tracing::Instrument as _;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use treven_mesh::{ErrorCode, MeshContext, OrgId, ServiceError};
use uuid::Uuid;

use super::Agents;
use super::prompt::{bounded_text, check_prompt_chars, checked_document_ids, checked_scope};
use crate::agent::{self, Outcome};
use crate::generator::{
    CitationIds, GeneratedSection, ScopeBrief, SectionKey, SectionTask, SourceBrief,
};
use crate::model::{AgentKind, Tool, ToolCallRecord};
use crate::provider::{ModelEvent, ModelRequest, Turn, Usage, cost_nanos};

/// Longest generation instructions (as sent, the document ids are
/// appended to them; the whole prompt is bounded by
/// `TREVEN_MAX_PROMPT_CHARS`).
pub const MAX_INSTRUCTIONS_CHARS: usize = 2_000;
/// Sources a generation draws on.
pub const GENERATION_SOURCES: i32 = 20;

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

impl Agents {
    /// Checks a generation request and starts it; events stream on the
    /// receiver.
    pub async fn generate_report(
        &self,
        ctx: &MeshContext,
        input: GenerateInput,
    ) -> Result<mpsc::Receiver<GenerationEvent>, ServiceError> {
        let input = self.checked_generate_input(input)?;
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
        let caller = ctx.clone();
        // The task continues the call's trace (its span is the parent).
        tokio::spawn(
            async move {
                let started = Instant::now();
                let (sender, mut events) = mpsc::channel(64);
                let work = async {
                    let sender = sender;
                    tokio::time::timeout(
                        service.inner.limits.max_stream,
                        service.generate(&caller, run.org_id, input, &sender),
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
                            .finish_run(&caller, run.clone(), Ok(output), &outcome, cost, started)
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
                            .finish_run(&caller, run, Err(message.clone()), &outcome, cost, started)
                            .await;
                        let _ = out.send(GenerationEvent::Error { code, message }).await;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(receiver)
    }

    /// Writes the sections; returns them (as JSON), the usage and the cost.
    pub(super) async fn generate(
        &self,
        caller: &MeshContext,
        org: OrgId,
        input: GenerateInput,
        events: &mpsc::Sender<GenerationEvent>,
    ) -> Result<(Vec<Value>, Outcome, i64), (ErrorCode, String, Box<Outcome>)> {
        let mut outcome = Outcome::default();
        let sources = self
            .sources_for(caller, &input.scope)
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
        let instructions = analyst_instructions(&input);
        let limit = self.inner.limits.max_prompt_chars;
        let mut written = Vec::new();
        let mut cost = 0;
        for section in sections {
            let mut task = SectionTask {
                section,
                scope: input.scope.clone(),
                sources: sources.clone(),
                instructions: instructions.clone(),
            };
            let mut request = self.section_request(&task);
            // Sources come highest trust first: the least trusted go first
            // when the prompt would be too long.
            while request.prompt_chars() > limit && task.sources.pop().is_some() {
                request = self.section_request(&task);
            }
            if task.sources.len() < sources.len() {
                tracing::warn!(
                    section = section.as_str(),
                    kept = task.sources.len(),
                    dropped = sources.len() - task.sources.len(),
                    limit,
                    "sources dropped to keep the prompt within its limit"
                );
            }
            if request.prompt_chars() > limit {
                return Err((
                    ErrorCode::ValidationError,
                    format!(
                        "the prompt for the {} section would be {} characters; the limit is {limit}",
                        section.as_str(),
                        request.prompt_chars()
                    ),
                    Box::new(outcome),
                ));
            }
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

    /// The model request writing `task`'s section.
    fn section_request(&self, task: &SectionTask) -> ModelRequest {
        ModelRequest {
            system: crate::generator::system_prompt().to_owned(),
            turns: vec![Turn::user(crate::generator::user_prompt(task))],
            tools: Vec::new(),
            max_tokens: self.inner.limits.max_output_tokens,
            model_override: None,
            task: Some(task.clone()),
        }
    }

    /// `input` with every free-text field bounded (see [`super::prompt`]),
    /// refused when a section's prompt would exceed
    /// `TREVEN_MAX_PROMPT_CHARS` before any source is added.
    fn checked_generate_input(&self, input: GenerateInput) -> Result<GenerateInput, ServiceError> {
        let input = GenerateInput {
            instructions: bounded_text(
                "instructions",
                &input.instructions,
                MAX_INSTRUCTIONS_CHARS,
                true,
            )?,
            scope: checked_scope(input.scope, "scope.")?,
            document_ids: checked_document_ids(&input.document_ids)?,
            ..input
        };
        self.check_generation_prompt(&input, "instructions")?;
        Ok(input)
    }

    /// INVALID_ARGUMENT naming `field` when the prompt of any section of
    /// `input` — system prompt, scope, answer shape, instructions and
    /// document ids, before sources — exceeds `TREVEN_MAX_PROMPT_CHARS`.
    /// (Sources are added later, within the same limit, dropping the least
    /// trusted first.)
    pub(super) fn check_generation_prompt(
        &self,
        input: &GenerateInput,
        field: &str,
    ) -> Result<(), ServiceError> {
        let instructions = analyst_instructions(input);
        let sections = if input.sections.is_empty() {
            SectionKey::generated()
        } else {
            input.sections.clone()
        };
        let longest = sections
            .into_iter()
            .map(|section| {
                self.section_request(&SectionTask {
                    section,
                    scope: input.scope.clone(),
                    sources: Vec::new(),
                    instructions: instructions.clone(),
                })
                .prompt_chars()
            })
            .max()
            .unwrap_or_default();
        check_prompt_chars(
            field,
            "the scope, instructions and document ids",
            longest,
            self.inner.limits.max_prompt_chars,
        )
    }

    async fn sources_for(
        &self,
        caller: &MeshContext,
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
            .search(caller, search(scope.country.clone(), scope.sector.clone()))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "sources unavailable");
                "the sources could not be read, retry later".to_owned()
            })?;
        if sources.is_empty() && !scope.sector.is_empty() {
            sources = documents
                .search(caller, search(scope.country.clone(), String::new()))
                .await
                .map_err(|_| "the sources could not be read, retry later".to_owned())?;
        }
        Ok(sources)
    }
}

/// The analyst's part of a section prompt: the instructions, then the
/// documents to draw on.
fn analyst_instructions(input: &GenerateInput) -> String {
    let mut instructions = input.instructions.clone();
    if !input.document_ids.is_empty() {
        instructions.push_str(&format!(
            "\nAlso draw on documents {}.",
            input.document_ids.join(", ")
        ));
    }
    instructions
}
