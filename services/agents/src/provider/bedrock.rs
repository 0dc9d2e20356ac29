//! Amazon Bedrock through `ConverseStream`: system prompt with a cache
//! point, messages with tool uses and tool results, tool specs (followed by
//! a cache point), stop reasons and usage including prompt-cache tokens.
//! Throttling, unavailability and a model that is not ready are typed as
//! retryable [`ProviderError`]s.
//!
//! With a guardrail (`TREVEN_GUARDRAIL_ID`), every call carries it as
//! `guardrailConfig` (synchronous stream processing: a chunk leaves Bedrock
//! only once the guardrail has assessed it), so Bedrock checks the prompt
//! and the answer. Converse's guardrail does not assess tool results: the
//! agent loop sends those through `ApplyGuardrail` itself
//! ([`crate::guardrail`]).

use std::collections::HashMap;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, ContentBlock, ContentBlockDelta, ContentBlockStart,
    ConversationRole, ConverseStreamOutput, GuardrailStreamConfiguration,
    GuardrailStreamProcessingMode, GuardrailTrace, InferenceConfiguration, Message,
    SystemContentBlock, Tool, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use serde_json::Value;

use super::{
    Block, ErrorKind, EventStream, ModelEvent, ModelRequest, Provider, ProviderError, Role,
    StopReason, Usage,
};
use crate::config::BedrockConfig;

/// The Bedrock provider.
#[derive(Debug, Clone)]
pub struct BedrockProvider {
    client: Client,
    model_id: String,
    /// The guardrail (id, version) every call carries, if any.
    guardrail: Option<(String, String)>,
}

/// A Bedrock Runtime client for `config` (region, endpoint override, SDK
/// attempts), with credentials from `sdk`.
pub fn client(config: &BedrockConfig, sdk: &aws_config::SdkConfig) -> Client {
    let mut builder = aws_sdk_bedrockruntime::config::Builder::from(sdk)
        .region(aws_config::Region::new(config.region.clone()))
        .retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(config.sdk_max_attempts),
        );
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

impl BedrockProvider {
    /// A provider for `config`, with credentials from `sdk`.
    pub fn new(config: &BedrockConfig, sdk: &aws_config::SdkConfig) -> Self {
        Self {
            client: client(config, sdk),
            model_id: config.model_id.clone(),
            guardrail: config
                .guardrail_id
                .clone()
                .map(|id| (id, config.guardrail_version.clone())),
        }
    }

    /// A provider over an existing client.
    pub fn with_client(client: Client, model_id: impl Into<String>) -> Self {
        Self {
            client,
            model_id: model_id.into(),
            guardrail: None,
        }
    }

    /// The same provider with every call guarded by guardrail `id` at
    /// `version` (`guardrailConfig`).
    #[must_use]
    pub fn with_guardrail(mut self, id: impl Into<String>, version: impl Into<String>) -> Self {
        self.guardrail = Some((id.into(), version.into()));
        self
    }
}

/// JSON as a Smithy document.
pub fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Document::Number(Number::PosInt(u))
            } else if let Some(i) = n.as_i64() {
                Document::Number(Number::NegInt(i))
            } else {
                Document::Number(Number::Float(n.as_f64().unwrap_or_default()))
            }
        }
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn object(value: &Value) -> Value {
    if value.is_object() {
        value.clone()
    } else {
        serde_json::json!({ "result": value })
    }
}

fn invalid(what: &str, error: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, format!("{what}: {error}"))
}

fn messages(request: &ModelRequest) -> Result<Vec<Message>, ProviderError> {
    request
        .turns
        .iter()
        .map(|turn| {
            let mut message = Message::builder().role(match turn.role {
                Role::User => ConversationRole::User,
                Role::Assistant => ConversationRole::Assistant,
            });
            for block in &turn.blocks {
                let content = match block {
                    Block::Text(text) => ContentBlock::Text(text.clone()),
                    Block::ToolUse { id, name, input } => ContentBlock::ToolUse(
                        ToolUseBlock::builder()
                            .tool_use_id(id)
                            .name(name)
                            .input(to_document(&object(input)))
                            .build()
                            .map_err(|e| invalid("tool use", e))?,
                    ),
                    Block::ToolResult {
                        id,
                        content,
                        is_error,
                        ..
                    } => ContentBlock::ToolResult(
                        ToolResultBlock::builder()
                            .tool_use_id(id)
                            .content(ToolResultContentBlock::Json(to_document(&object(content))))
                            .status(if *is_error {
                                ToolResultStatus::Error
                            } else {
                                ToolResultStatus::Success
                            })
                            .build()
                            .map_err(|e| invalid("tool result", e))?,
                    ),
                };
                message = message.content(content);
            }
            message.build().map_err(|e| invalid("message", e))
        })
        .collect()
}

fn tool_config(request: &ModelRequest) -> Result<Option<ToolConfiguration>, ProviderError> {
    if request.tools.is_empty() {
        return Ok(None);
    }
    let mut config = ToolConfiguration::builder();
    for tool in &request.tools {
        config = config.tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name(tool.name)
                .description(tool.description)
                .input_schema(ToolInputSchema::Json(to_document(&tool.schema)))
                .build()
                .map_err(|e| invalid("tool spec", e))?,
        ));
    }
    // The tool list is the same on every turn: cache it with the system prompt.
    config = config.tools(Tool::CachePoint(cache_point()?));
    config
        .build()
        .map(Some)
        .map_err(|e| invalid("tool config", e))
}

fn cache_point() -> Result<CachePointBlock, ProviderError> {
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .build()
        .map_err(|e| invalid("cache point", e))
}

/// The kind of an error code Bedrock returned.
pub fn kind_of_code(code: Option<&str>) -> ErrorKind {
    match code {
        Some("ThrottlingException" | "throttlingException" | "TooManyRequestsException") => {
            ErrorKind::Throttled
        }
        Some(
            "ServiceUnavailableException"
            | "serviceUnavailableException"
            | "InternalServerException"
            | "internalServerException"
            | "ModelTimeoutException",
        ) => ErrorKind::Unavailable,
        Some("ModelNotReadyException") => ErrorKind::NotReady,
        Some(
            "ValidationException"
            | "validationException"
            | "AccessDeniedException"
            | "ResourceNotFoundException"
            | "ServiceQuotaExceededException"
            | "ModelErrorException",
        ) => ErrorKind::Invalid,
        _ => ErrorKind::Failed,
    }
}

fn classify_call(
    error: SdkError<ConverseStreamError, aws_sdk_bedrockruntime::config::http::HttpResponse>,
) -> ProviderError {
    let kind = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorKind::Unavailable
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code();
            match kind_of_code(code) {
                ErrorKind::Failed if service.raw().status().is_server_error() => {
                    ErrorKind::Unavailable
                }
                ErrorKind::Failed if service.raw().status().as_u16() == 429 => ErrorKind::Throttled,
                kind => kind,
            }
        }
        _ => ErrorKind::Failed,
    };
    let message = match &error {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("unknown"),
            service.err().message().unwrap_or_default()
        ),
        other => format!("{other:?}"),
    };
    ProviderError::new(kind, message)
}

fn classify_stream<R: std::fmt::Debug>(
    error: SdkError<ConverseStreamOutputError, R>,
) -> ProviderError {
    match &error {
        SdkError::ServiceError(service) => ProviderError::new(
            kind_of_code(service.err().code()),
            format!(
                "{}: {}",
                service.err().code().unwrap_or("unknown"),
                service.err().message().unwrap_or_default()
            ),
        ),
        other => ProviderError::new(ErrorKind::Unavailable, format!("{other:?}")),
    }
}

fn stop_reason(reason: &aws_sdk_bedrockruntime::types::StopReason) -> StopReason {
    use aws_sdk_bedrockruntime::types::StopReason as S;
    match reason {
        S::EndTurn | S::StopSequence => StopReason::EndTurn,
        S::ToolUse => StopReason::ToolUse,
        S::MaxTokens => StopReason::MaxTokens,
        other => StopReason::Other(other.as_str().to_owned()),
    }
}

impl Provider for BedrockProvider {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn stream(&self, request: ModelRequest) -> EventStream {
        let client = self.client.clone();
        let guardrail = self.guardrail.clone();
        let model = request
            .model_override
            .clone()
            .unwrap_or_else(|| self.model_id.clone());
        Box::pin(async_stream::stream! {
            let (messages, tools, cache) = match (messages(&request), tool_config(&request), cache_point()) {
                (Ok(m), Ok(t), Ok(c)) => (m, t, c),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    yield Err(e);
                    return;
                }
            };
            let mut call = client
                .converse_stream()
                .model_id(&model)
                .set_messages(Some(messages))
                .set_tool_config(tools)
                .inference_config(
                    InferenceConfiguration::builder()
                        .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
                        .build(),
                );
            if !request.system.is_empty() {
                call = call
                    .system(SystemContentBlock::Text(request.system.clone()))
                    .system(SystemContentBlock::CachePoint(cache));
            }
            if let Some((id, version)) = &guardrail {
                call = call.guardrail_config(
                    GuardrailStreamConfiguration::builder()
                        .guardrail_identifier(id)
                        .guardrail_version(version)
                        .stream_processing_mode(GuardrailStreamProcessingMode::Sync)
                        .trace(GuardrailTrace::Disabled)
                        .build(),
                );
            }
            let output = match call.send().await {
                Ok(output) => output,
                Err(error) => {
                    yield Err(classify_call(error));
                    return;
                }
            };
            let mut stream = output.stream;
            let mut tool: Option<(String, String, String)> = None;
            let mut usage = Usage::default();
            let mut stop = StopReason::EndTurn;
            loop {
                match stream.recv().await {
                    Ok(Some(event)) => match event {
                        ConverseStreamOutput::ContentBlockStart(start) => {
                            if let Some(ContentBlockStart::ToolUse(t)) = start.start {
                                tool = Some((t.tool_use_id, t.name, String::new()));
                            }
                        }
                        ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta {
                            Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                                yield Ok(ModelEvent::Text(text));
                            }
                            Some(ContentBlockDelta::ToolUse(part)) => {
                                if let Some((_, _, input)) = tool.as_mut() {
                                    input.push_str(&part.input);
                                }
                            }
                            _ => {}
                        },
                        ConverseStreamOutput::ContentBlockStop(_) => {
                            if let Some((id, name, raw)) = tool.take() {
                                let input = if raw.trim().is_empty() {
                                    Value::Object(serde_json::Map::new())
                                } else {
                                    match serde_json::from_str(&raw) {
                                        Ok(value) => value,
                                        Err(e) => {
                                            yield Err(ProviderError::new(ErrorKind::Failed, format!("tool input is not JSON: {e}")));
                                            return;
                                        }
                                    }
                                };
                                yield Ok(ModelEvent::ToolUse { id, name, input });
                            }
                        }
                        ConverseStreamOutput::MessageStop(end) => stop = stop_reason(&end.stop_reason),
                        ConverseStreamOutput::Metadata(meta) => {
                            if let Some(u) = meta.usage {
                                usage = Usage {
                                    input_tokens: i64::from(u.input_tokens),
                                    output_tokens: i64::from(u.output_tokens),
                                    cache_read_tokens: i64::from(u.cache_read_input_tokens.unwrap_or_default()),
                                    cache_write_tokens: i64::from(u.cache_write_input_tokens.unwrap_or_default()),
                                };
                            }
                        }
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(error) => {
                        yield Err(classify_stream(error));
                        return;
                    }
                }
            }
            yield Ok(ModelEvent::Usage(usage));
            yield Ok(ModelEvent::Stop(stop));
        })
    }
}
