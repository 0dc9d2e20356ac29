//! Agent runs: checked, recorded as running, executed in the background
//! (the agent loop, the local PII detector or the generator) and recorded
//! with their result, tokens and cost.
//!
//! The text of social and osint runs is redacted before it is stored (every
//! finding replaced by its placeholder), as are tool call arguments and
//! results of every run; what was redacted is audited as
//! [`RUN_PII_REDACTED_ACTION`] with kinds and counts, never the text. Each
//! finding redacted from a social or osint output is also audited as a
//! decision ([`RUN_PII_DECISION_ACTION`]: finding id, type, field, action
//! `redact`, `automatic`), as the reports service audits the redactions of
//! a generated report; a run whose decisions cannot be recorded fails and
//! stores no output.

use std::time::Instant;
use tracing::Instrument as _;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use treven_mesh::{ErrorCode, MeshContext, OrgId, ServiceError};
use uuid::Uuid;

use super::audit::AuditEntry;
use super::prompt::{bounded_text, check_prompt_chars, checked_scope};
use super::{Agents, GenerateInput, parse_uuid};
use crate::agent::{self, AgentEvent, Outcome};
use crate::generator::ScopeBrief;
use crate::model::{AgentKind, Run, Tool};
use crate::provider::{ModelRequest, Turn, cost_nanos};
use crate::redaction::redact_field;
use crate::tools::{ToolContext, spec};

/// The model id recorded for runs that use no model (pii).
pub const LOCAL_PII_MODEL: &str = "treven-pii";
/// The audit action of personal data redacted from a run's output or tool
/// calls.
pub const RUN_PII_REDACTED_ACTION: &str = "agent_run.pii_redacted";
/// The audit action of one finding redacted automatically from a run's
/// output.
pub const RUN_PII_DECISION_ACTION: &str = "agent_run.pii_decision";
/// The audit resource type of agent runs.
pub const RUN_RESOURCE: &str = "agent_run";

impl Agents {
    /// One run of the caller's organisation.
    pub async fn get_run(&self, ctx: &MeshContext, id: &str) -> Result<Run, ServiceError> {
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
            // The models are this deployment's: an unknown id names no model
            // here (NOT_FOUND), like an id of a resource that does not exist.
            return Err(ServiceError::new(
                ErrorCode::NotFound,
                format!(
                    "model {model_id:?} is not available; available: {}",
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
                    bounded_text(
                        "input.scenario",
                        &text("scenario")?,
                        limits.max_message_chars,
                        true,
                    )?
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
                    .approved_judgements(ctx, report_id)
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
                let scope = checked_scope(
                    ScopeBrief {
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
                    },
                    "input.",
                )?;
                let generation = GenerateInput {
                    scope: scope.clone(),
                    ..GenerateInput::default()
                };
                self.check_generation_prompt(&generation, "input")?;
                Plan::Generate(scope)
            }
        };
        if let Plan::Loop { prompt, system, .. } = &request {
            // What is sent: the system prompt and the assembled prompt.
            let (field, what) = match kind {
                AgentKind::Summarise
                    if input.get("before").and_then(Value::as_str).is_some()
                        && input.get("after").and_then(Value::as_str).is_some() =>
                {
                    ("input.after", "the two versions")
                }
                AgentKind::Summarise => ("input.text", "the text"),
                AgentKind::Social => ("input.report_id", "the report's key judgements"),
                _ => ("input", "the input"),
            };
            check_prompt_chars(
                field,
                what,
                system.chars().count() + prompt.chars().count(),
                limits.max_prompt_chars,
            )?;
        }
        let model = if matches!(request, Plan::Pii(_)) {
            LOCAL_PII_MODEL.to_owned()
        } else if model_id.is_empty() {
            self.inner.router.primary_model().to_owned()
        } else {
            model_id.to_owned()
        };
        let run = self.start_run(ctx, kind, input.clone(), &model).await?;
        let service = self.clone();
        let caller = ctx.clone();
        let override_model = (!model_id.is_empty()).then(|| model_id.to_owned());
        let started_run = run.clone();
        // The task continues the call's trace (its span is the parent).
        tokio::spawn(
            async move {
                let started = Instant::now();
                let org = run.org_id;
                let (mut result, outcome, cost) = service
                    .execute(&caller, org, kind, request, override_model)
                    .await;
                if result.is_ok()
                    && let Err(message) = service
                        .audit_output_decisions(&caller, run.id, kind, &outcome)
                        .await
                {
                    result = Err(message);
                }
                if !outcome.redactions.is_empty() {
                    service
                        .audit_best_effort(
                            &caller,
                            AuditEntry {
                                action: RUN_PII_REDACTED_ACTION,
                                resource_type: RUN_RESOURCE,
                                resource_id: run.id.to_string(),
                                details: json!({
                                    "kind": kind,
                                    "redacted": outcome.redactions.to_json(),
                                    "total": outcome.redactions.total(),
                                }),
                            },
                        )
                        .await;
                }
                service
                    .finish_run(&caller, run, result, &outcome, cost, started)
                    .await;
            }
            .in_current_span(),
        );
        Ok(started_run)
    }

    /// Records each finding redacted from a run's output as a decision;
    /// the message the run fails with when one cannot be recorded (without
    /// an audit log they are not recorded; the counts are logged).
    async fn audit_output_decisions(
        &self,
        caller: &MeshContext,
        run: Uuid,
        kind: AgentKind,
        outcome: &Outcome,
    ) -> Result<(), String> {
        if outcome.output_redactions.is_empty() {
            return Ok(());
        }
        let Some(audit) = &self.audit else {
            tracing::warn!(org = %caller.org_id(), %run, found = outcome.output_redactions.len(), "no audit log is wired: output redactions not recorded");
            return Ok(());
        };
        for redaction in &outcome.output_redactions {
            let entry = AuditEntry {
                action: RUN_PII_DECISION_ACTION,
                resource_type: RUN_RESOURCE,
                resource_id: run.to_string(),
                details: json!({
                    "kind": kind,
                    "finding_id": redaction.finding_id,
                    "type": redaction.kind.as_str(),
                    "field_path": redaction.field_path,
                    "action": "redact",
                    "automatic": true,
                    "during": "generated",
                }),
            };
            if let Err(error) = audit.record(caller, entry).await {
                tracing::warn!(org = %caller.org_id(), %run, error = %error, "run output decision not recorded; run failed");
                return Err(
                    "the redactions of personal data could not be recorded in the audit log; retry the run"
                        .to_owned(),
                );
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        caller: &MeshContext,
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
                        self.generate(caller, org, input, &sender),
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
                let ctx = ToolContext::new(caller.clone(), String::new(), String::new());
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
                    Ok(Ok(mut outcome)) => {
                        let output = match kind {
                            AgentKind::Social => {
                                let (redacted, found, decided) =
                                    redact_field(&outcome.text, "post");
                                outcome.redactions.add(&found);
                                outcome.output_redactions = decided;
                                json!({ "post": redacted.trim() })
                            }
                            AgentKind::Summarise => json!({ "summary": outcome.text.trim() }),
                            _ => {
                                let (redacted, found, decided) =
                                    redact_field(&outcome.text, "text");
                                outcome.redactions.add(&found);
                                outcome.output_redactions = decided;
                                json!({ "text": redacted.trim(), "citations": outcome.citations })
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
