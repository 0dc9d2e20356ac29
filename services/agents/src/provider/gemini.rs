//! Gemini on Vertex AI through `streamGenerateContent?alt=sse`, with
//! function calling: tool specs become `functionDeclarations`, tool uses
//! `functionCall` parts and tool results `functionResponse` parts.
//!
//! Authentication is from configuration: an OAuth 2 access token
//! (`Authorization: Bearer`) or a Vertex API key (`x-goog-api-key`).

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Block, ErrorKind, EventStream, ModelEvent, ModelRequest, Provider, ProviderError, Role,
    StopReason, Usage,
};
use crate::config::{GeminiConfig, GeminiCredential};

/// The Gemini provider.
#[derive(Clone)]
pub struct GeminiProvider {
    http: reqwest::Client,
    config: GeminiConfig,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// A provider for `config`.
    pub fn new(config: GeminiConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { http, config })
    }

    fn url(&self, model: &str) -> String {
        format!(
            "{}/v1/projects/{}/locations/{}/publishers/google/models/{}:streamGenerateContent?alt=sse",
            self.config.endpoint, self.config.project, self.config.location, model
        )
    }
}

/// The `generateContent` body for `request`.
pub fn request_body(request: &ModelRequest) -> Value {
    let contents: Vec<Value> = request
        .turns
        .iter()
        .map(|turn| {
            let parts: Vec<Value> = turn
                .blocks
                .iter()
                .map(|block| match block {
                    Block::Text(text) => json!({ "text": text }),
                    Block::ToolUse { name, input, .. } => {
                        json!({ "functionCall": { "name": name, "args": input } })
                    }
                    Block::ToolResult {
                        name,
                        content,
                        is_error,
                        ..
                    } => {
                        let response = if *is_error {
                            json!({ "error": content })
                        } else {
                            json!({ "content": content })
                        };
                        json!({ "functionResponse": { "name": name, "response": response } })
                    }
                })
                .collect();
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            json!({ "role": role, "parts": parts })
        })
        .collect();
    let mut body = json!({
        "contents": contents,
        "generationConfig": { "maxOutputTokens": request.max_tokens },
    });
    if !request.system.is_empty() {
        body["systemInstruction"] = json!({ "parts": [{ "text": request.system }] });
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(
                |t| json!({ "name": t.name, "description": t.description, "parameters": t.schema }),
            )
            .collect();
        body["tools"] = json!([{ "functionDeclarations": declarations }]);
    }
    body
}

fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Invalid,
    }
}

fn usage_of(chunk: &Value) -> Option<Usage> {
    let meta = chunk.get("usageMetadata")?;
    let number = |name: &str| meta.get(name).and_then(Value::as_i64).unwrap_or_default();
    let cached = number("cachedContentTokenCount");
    Some(Usage {
        input_tokens: (number("promptTokenCount") - cached).max(0),
        output_tokens: number("candidatesTokenCount") + number("thoughtsTokenCount"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    })
}

fn stop_of(reason: &str) -> StopReason {
    match reason {
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        other => StopReason::Other(other.to_ascii_lowercase()),
    }
}

impl Provider for GeminiProvider {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn model_id(&self) -> &str {
        &self.config.model
    }

    fn stream(&self, request: ModelRequest) -> EventStream {
        let model = request
            .model_override
            .clone()
            .unwrap_or_else(|| self.config.model.clone());
        let url = self.url(&model);
        let mut call = self.http.post(url).json(&request_body(&request));
        call = match &self.config.credential {
            GeminiCredential::AccessToken(token) => call.bearer_auth(token),
            GeminiCredential::ApiKey(key) => call.header("x-goog-api-key", key),
        };
        Box::pin(async_stream::stream! {
            let mut response = match call.send().await {
                Ok(response) => response,
                Err(error) => {
                    yield Err(ProviderError::new(ErrorKind::Unavailable, format!("gemini call: {error}")));
                    return;
                }
            };
            let status = response.status();
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                let detail: String = body.chars().take(300).collect();
                yield Err(ProviderError::new(kind_of_status(status.as_u16()), format!("gemini {status}: {detail}")));
                return;
            }
            let mut buffer = String::new();
            let mut usage = Usage::default();
            let mut stop = StopReason::EndTurn;
            let mut calls = 0usize;
            let mut saw_call = false;
            loop {
                let chunk = match response.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(error) => {
                        yield Err(ProviderError::new(ErrorKind::Unavailable, format!("gemini stream: {error}")));
                        return;
                    }
                };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                let normalised = buffer.replace("\r\n", "\n");
                buffer = normalised;
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    let data: String = frame
                        .lines()
                        .filter_map(|line| line.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect::<Vec<_>>()
                        .join("\n");
                    if data.is_empty() {
                        continue;
                    }
                    let value: Value = match serde_json::from_str(&data) {
                        Ok(value) => value,
                        Err(e) => {
                            yield Err(ProviderError::new(ErrorKind::Failed, format!("gemini event is not JSON: {e}")));
                            return;
                        }
                    };
                    if let Some(error) = value.get("error") {
                        let code = error.get("code").and_then(Value::as_u64).unwrap_or(500);
                        yield Err(ProviderError::new(
                            kind_of_status(u16::try_from(code).unwrap_or(500)),
                            format!("gemini stream error: {error}"),
                        ));
                        return;
                    }
                    if let Some(u) = usage_of(&value) {
                        usage = u;
                    }
                    let candidate = &value["candidates"][0];
                    for part in candidate["content"]["parts"].as_array().into_iter().flatten() {
                        if let Some(text) = part.get("text").and_then(Value::as_str) {
                            if !text.is_empty() && part.get("thought").and_then(Value::as_bool) != Some(true) {
                                yield Ok(ModelEvent::Text(text.to_owned()));
                            }
                        } else if let Some(function) = part.get("functionCall") {
                            calls += 1;
                            saw_call = true;
                            let id = function
                                .get("id")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .unwrap_or_else(|| format!("gemini-call-{calls}"));
                            yield Ok(ModelEvent::ToolUse {
                                id,
                                name: function["name"].as_str().unwrap_or_default().to_owned(),
                                input: function.get("args").cloned().unwrap_or_else(|| json!({})),
                            });
                        }
                    }
                    if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                        stop = stop_of(reason);
                    }
                }
            }
            if saw_call && stop == StopReason::EndTurn {
                stop = StopReason::ToolUse;
            }
            yield Ok(ModelEvent::Usage(usage));
            yield Ok(ModelEvent::Stop(stop));
        })
    }
}
