//! Model providers behind one trait.
//!
//! A provider turns a [`ModelRequest`] (system prompt, turns, tool specs)
//! into a stream of [`ModelEvent`]s: text deltas, complete tool calls, the
//! usage of the call and its stop reason. A failure before anything was
//! produced is the stream's first item; the [`router::Router`] retries
//! those (when [`ProviderError::retryable`]) and moves to the secondary, but
//! never once a text delta or tool call has gone out.

pub mod bedrock;
pub mod gemini;
pub mod offline;
pub mod router;

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::generator::SectionTask;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The analyst, or tool results sent back to the model.
    User,
    /// The model.
    Assistant,
}

/// One piece of a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text.
    Text(String),
    /// A tool call the model made.
    ToolUse {
        /// The model's id of the call.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments.
        input: Value,
    },
    /// The result of a tool call, sent back to the model.
    ToolResult {
        /// The id of the call it answers.
        id: String,
        /// The tool's name (Gemini matches results by name).
        name: String,
        /// The result (an object).
        content: Value,
        /// Whether the call failed.
        is_error: bool,
    },
}

/// One turn of the conversation sent to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub blocks: Vec<Block>,
}

impl Turn {
    /// A user turn with one text block.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            blocks: vec![Block::Text(text.into())],
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The name the model uses (`search_sources`).
    pub name: &'static str,
    /// What it does, for the model.
    pub description: &'static str,
    /// The JSON schema of its input.
    pub schema: Value,
}

/// A request to a model.
#[derive(Debug, Clone, Default)]
pub struct ModelRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation so far, oldest first; the last turn is the user's.
    pub turns: Vec<Turn>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// A model id to use instead of the provider's default.
    pub model_override: Option<String>,
    /// The structured task behind the prompt, for the offline provider,
    /// which cannot read prompts (real models ignore it).
    pub task: Option<SectionTask>,
}

impl ModelRequest {
    /// Characters of prompt text (system, turns, tool results), the measure
    /// of the prompt limit.
    pub fn prompt_chars(&self) -> usize {
        let blocks: usize = self
            .turns
            .iter()
            .flat_map(|t| &t.blocks)
            .map(|b| match b {
                Block::Text(text) => text.chars().count(),
                Block::ToolUse { input, .. } => input.to_string().len(),
                Block::ToolResult { content, .. } => content.to_string().len(),
            })
            .sum();
        self.system.chars().count() + blocks
    }
}

/// Why a model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants tool results.
    ToolUse,
    /// It hit the token limit.
    MaxTokens,
    /// Anything else (guardrail, content filter, stop sequence…).
    Other(String),
}

/// Tokens of one model call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens not served from the cache.
    pub input_tokens: i64,
    /// Generated tokens.
    pub output_tokens: i64,
    /// Prompt tokens read from the cache.
    pub cache_read_tokens: i64,
    /// Prompt tokens written to the cache.
    pub cache_write_tokens: i64,
}

impl Usage {
    /// Adds `other` to this.
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }
}

/// What a model stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelEvent {
    /// Emitted by the router before anything else: which provider and
    /// model answer this request.
    Started {
        /// The model id.
        model_id: String,
    },
    /// More text.
    Text(String),
    /// A complete tool call.
    ToolUse {
        /// The model's id of the call.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments.
        input: Value,
    },
    /// The call's tokens.
    Usage(Usage),
    /// The end of the answer.
    Stop(StopReason),
}

/// What kind of failure a provider had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Rate limited (HTTP 429, `ThrottlingException`).
    Throttled,
    /// The service is down or overloaded (5xx, network, timeouts).
    Unavailable,
    /// The model is not ready yet (`ModelNotReadyException`).
    NotReady,
    /// The request was refused as invalid (4xx other than 429).
    Invalid,
    /// Anything else, e.g. a broken stream.
    Failed,
}

/// A provider failure, with a message for logs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ProviderError {
    /// What kind.
    pub kind: ErrorKind,
    /// Detail for logs (may hold provider text; never sent to clients).
    pub message: String,
}

impl ProviderError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether trying again (or elsewhere) may succeed: throttling,
    /// unavailability and a model that is not ready.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::NotReady
        )
    }
}

/// A stream of model events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ModelEvent, ProviderError>> + Send>>;

/// A model provider.
pub trait Provider: Send + Sync + 'static {
    /// `bedrock`, `gemini` or `offline`, for logs.
    fn name(&self) -> &'static str;
    /// The model used when a request names none.
    fn model_id(&self) -> &str;
    /// Streams the answer to `request`. A failure before any output is the
    /// first item; a failure later ends the stream.
    fn stream(&self, request: ModelRequest) -> EventStream;
}

/// `stream`, a call to `model` of `provider`, in a `gen_ai` span (see
/// [`treven_mesh::trace::model_call`]) that lasts until the stream ends or
/// is dropped: the tokens used, the time to the first output and why the
/// model stopped are recorded on it; a failure marks it as an error. The
/// prompt and the answer are not.
pub fn traced(provider: &'static str, model: &str, stream: EventStream) -> EventStream {
    Box::pin(TracedStream {
        inner: stream,
        span: treven_mesh::trace::model_call(provider, model),
        started: std::time::Instant::now(),
        answered: false,
    })
}

struct TracedStream {
    inner: EventStream,
    span: tracing::Span,
    started: std::time::Instant,
    answered: bool,
}

impl Stream for TracedStream {
    type Item = Result<ModelEvent, ProviderError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(ModelEvent::Text(_) | ModelEvent::ToolUse { .. })))
                if !this.answered =>
            {
                this.answered = true;
                this.span.record(
                    "gen_ai.server.time_to_first_token",
                    this.started.elapsed().as_secs_f64(),
                );
            }
            std::task::Poll::Ready(Some(Ok(ModelEvent::Usage(usage)))) => {
                this.span
                    .record("gen_ai.usage.input_tokens", usage.input_tokens);
                this.span
                    .record("gen_ai.usage.output_tokens", usage.output_tokens);
                this.span
                    .record("gen_ai.usage.cache_read_tokens", usage.cache_read_tokens);
            }
            std::task::Poll::Ready(Some(Ok(ModelEvent::Stop(reason)))) => {
                let reason = match reason {
                    StopReason::EndTurn => "stop",
                    StopReason::ToolUse => "tool_calls",
                    StopReason::MaxTokens => "length",
                    StopReason::Other(_) => "other",
                };
                this.span.record("gen_ai.response.finish_reasons", reason);
            }
            std::task::Poll::Ready(Some(Err(error))) => {
                let kind = match error.kind {
                    ErrorKind::Throttled => "throttled",
                    ErrorKind::Unavailable => "unavailable",
                    ErrorKind::NotReady => "not_ready",
                    ErrorKind::Invalid => "invalid",
                    ErrorKind::Failed => "failed",
                };
                treven_mesh::trace::record_error(&this.span, kind);
            }
            _ => {}
        }
        polled
    }
}

/// Nano-dollars (USD × 10⁻⁹) per token: input, output, cache read, cache write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Per prompt token.
    pub input: i64,
    /// Per generated token.
    pub output: i64,
    /// Per prompt token read from the cache.
    pub cache_read: i64,
    /// Per prompt token written to the cache.
    pub cache_write: i64,
}

/// The list price of `model_id` (Claude Opus 4.5: $5/$25 per million, cache
/// reads $0.50, writes $6.25; Gemini 2.5 Pro: $1.25/$10, cache reads
/// $0.31; the offline provider is free; unknown models are priced as Opus
/// so spend is never under-reported).
pub fn price_of(model_id: &str) -> Price {
    if model_id.starts_with("offline") {
        return Price {
            input: 0,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        };
    }
    if model_id.starts_with("gemini") {
        return Price {
            input: 1_250,
            output: 10_000,
            cache_read: 310,
            cache_write: 1_250,
        };
    }
    Price {
        input: 5_000,
        output: 25_000,
        cache_read: 500,
        cache_write: 6_250,
    }
}

/// The cost of `usage` on `model_id`, in nano-dollars.
pub fn cost_nanos(model_id: &str, usage: Usage) -> i64 {
    let price = price_of(model_id);
    usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_the_price_list() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        };
        assert_eq!(
            cost_nanos("eu.anthropic.claude-opus-4-5-20251101-v1:0", usage),
            30_000_000_000
        );
        assert_eq!(cost_nanos("offline-kj-1", usage), 0);
        assert_eq!(cost_nanos("gemini-2.5-pro", usage), 11_250_000_000);
    }
}
