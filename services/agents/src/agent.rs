//! The agent loop: call the model, run the tools it asks for, send the
//! results back, until it answers (or the turn limit is reached, when the
//! last call is made without tools so it must answer).
//!
//! Tool call arguments the model writes are redacted (every finding of the
//! PII detector replaced by its placeholder) before the call is reported,
//! stored, run or sent back to the model; only `detect_pii`, which runs
//! locally and keeps nothing, reads the text as written. Tool summaries are
//! redacted too, and tool results go back to the model only as
//! [`ToolBox::screen_result`] lets them (redacted; masked or withheld by the
//! guardrail when one is configured).

use futures::StreamExt as _;
use tokio::sync::mpsc;
use treven_mesh::ErrorCode;

use crate::generator::SourceRef;
use crate::model::{Tool, ToolCallRecord, ToolStatus};
use crate::provider::router::Router;
use crate::provider::{
    Block, ModelEvent, ModelRequest, ProviderError, Role, StopReason, Turn, Usage,
};
use crate::redaction::{Redactions, redact_json, redact_text};
use crate::tools::{ToolBox, ToolContext};

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// Text to append.
    Text(String),
    /// A tool call started or finished.
    Tool(ToolCallRecord),
    /// A source cited.
    Citation(SourceRef),
    /// One model call's tokens, with the model that used them.
    Usage {
        /// The model.
        model_id: String,
        /// Its tokens.
        usage: Usage,
    },
}

/// The result of a loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The answer.
    pub text: String,
    /// Tool calls, final states.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Sources cited.
    pub citations: Vec<SourceRef>,
    /// Tools used, each once, in order of first use.
    pub tools_used: Vec<Tool>,
    /// All tokens.
    pub usage: Usage,
    /// The model that answered (the last one used).
    pub model_id: String,
    /// Personal data redacted from tool call arguments, results and
    /// summaries (and from the output, for runs that redact it).
    pub redactions: Redactions,
    /// Each finding redacted from a run's output, to be audited as a
    /// decision (social and osint runs).
    pub output_redactions: Vec<crate::redaction::AutoRedaction>,
}

/// Why a loop failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LoopError {
    /// The code for the client.
    pub code: ErrorCode,
    /// A message safe to show.
    pub message: String,
    /// What was done before the failure.
    pub partial: Outcome,
}

/// The client-facing code and message of a provider failure.
pub fn describe(error: &ProviderError, started: bool) -> (ErrorCode, String) {
    use crate::provider::ErrorKind;
    if started {
        return (
            ErrorCode::Unavailable,
            "the model stream failed; the answer is incomplete, retry later".to_owned(),
        );
    }
    match error.kind {
        ErrorKind::Throttled => (
            ErrorCode::RateLimited,
            "the models are busy, retry later".to_owned(),
        ),
        ErrorKind::Unavailable | ErrorKind::NotReady | ErrorKind::Failed => (
            ErrorCode::Unavailable,
            "the models are unavailable, retry later".to_owned(),
        ),
        ErrorKind::Invalid => (
            ErrorCode::ValidationError,
            "the model refused the request as invalid".to_owned(),
        ),
    }
}

/// Runs the loop for `request` with `tools`; events go to `events` (a
/// closed receiver does not stop the loop: the answer is still stored).
pub async fn run(
    router: &Router,
    toolbox: &ToolBox,
    ctx: &ToolContext,
    mut request: ModelRequest,
    max_turns: usize,
    events: &mpsc::Sender<AgentEvent>,
) -> Result<Outcome, LoopError> {
    let mut outcome = Outcome::default();
    for turn in 0..max_turns {
        if turn + 1 == max_turns {
            request.tools.clear();
        }
        let mut stream = router.stream(request.clone());
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut stop = StopReason::EndTurn;
        let mut started = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(ModelEvent::Started { model_id }) => outcome.model_id = model_id,
                Ok(ModelEvent::Text(delta)) => {
                    started = true;
                    text.push_str(&delta);
                    outcome.text.push_str(&delta);
                    let _ = events.send(AgentEvent::Text(delta)).await;
                }
                Ok(ModelEvent::ToolUse { id, name, input }) => {
                    started = true;
                    calls.push((id, name, input));
                }
                Ok(ModelEvent::Usage(usage)) => {
                    outcome.usage.add(usage);
                    let _ = events
                        .send(AgentEvent::Usage {
                            model_id: outcome.model_id.clone(),
                            usage,
                        })
                        .await;
                }
                Ok(ModelEvent::Stop(reason)) => stop = reason,
                Err(error) => {
                    let (code, message) = describe(&error, started || !outcome.text.is_empty());
                    return Err(LoopError {
                        code,
                        message,
                        partial: outcome,
                    });
                }
            }
        }
        if calls.is_empty() || stop != StopReason::ToolUse {
            return Ok(outcome);
        }
        let mut assistant = Vec::new();
        if !text.is_empty() {
            assistant.push(Block::Text(text));
        }
        let mut results = Vec::new();
        for (id, name, written) in calls {
            let mut input = written.clone();
            outcome.redactions.add(&redact_json(&mut input));
            assistant.push(Block::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            });
            let tool = Tool::from_name(&name);
            let mut record = ToolCallRecord {
                id: id.clone(),
                tool,
                arguments: input.clone(),
                status: ToolStatus::Running,
                summary: String::new(),
            };
            let _ = events.send(AgentEvent::Tool(record.clone())).await;
            let allowed = tool.filter(|t| request.tools.iter().any(|s| s.name == t.name()));
            let result = match allowed {
                Some(tool) => {
                    if !outcome.tools_used.contains(&tool) {
                        outcome.tools_used.push(tool);
                    }
                    let input = if tool == Tool::DetectPii {
                        &written
                    } else {
                        &input
                    };
                    toolbox.call(ctx, tool, input).await
                }
                None => Err(format!("unknown tool `{name}`")),
            };
            let (content, is_error) = match result {
                Ok(output) => {
                    record.status = ToolStatus::Succeeded;
                    let (summary, found) = redact_text(&output.summary);
                    outcome.redactions.add(&found);
                    record.summary = summary;
                    if let Some(citation) = output.citation
                        && !outcome.citations.contains(&citation)
                    {
                        outcome.citations.push(citation.clone());
                        let _ = events.send(AgentEvent::Citation(citation)).await;
                    }
                    (output.result, false)
                }
                Err(message) => {
                    tracing::info!(tool = %name, error = %message, "tool call failed");
                    record.status = ToolStatus::Failed;
                    let (summary, found) = redact_text(&message);
                    outcome.redactions.add(&found);
                    record.summary = summary.chars().take(200).collect();
                    (serde_json::json!({ "error": message }), true)
                }
            };
            let (content, is_error) = toolbox
                .screen_result(content, is_error, &mut outcome.redactions)
                .await;
            let _ = events.send(AgentEvent::Tool(record.clone())).await;
            outcome.tool_calls.push(record);
            results.push(Block::ToolResult {
                id,
                name,
                content,
                is_error,
            });
        }
        request.turns.push(Turn {
            role: Role::Assistant,
            blocks: assistant,
        });
        request.turns.push(Turn {
            role: Role::User,
            blocks: results,
        });
    }
    Ok(outcome)
}
