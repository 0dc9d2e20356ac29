//! A wire-compatible Amazon Bedrock Runtime fake: a small HTTP server on
//! `127.0.0.1:0` that serves `POST /model/{modelId}/converse-stream` (AWS
//! event-stream framing), `POST /model/{modelId}/converse` (plain JSON) and
//! `POST /guardrail/{id}/version/{version}/apply` (ApplyGuardrail, PII
//! assessments only) so the real `aws-sdk-bedrockruntime` client parses its
//! answers.
//!
//! Each test queues [`Script`]s; every request consumes the next one, and
//! every request is recorded ([`RecordedRequest`]) so the test can assert
//! what was sent. Signatures are ignored.
//!
//! ApplyGuardrail answers as Bedrock does: when it intervenes, `outputs`
//! holds the request's text with each entity found masked as `{TYPE}`
//! (`ANONYMIZED`), or the blocked-input message (`BLOCKED`). A standing
//! [`GuardrailPolicy`] ([`BedrockHandle::set_guardrail`]) answers every
//! ApplyGuardrail request by looking for its entities in the request's
//! text, without consuming scripts, so guardrail calls interleaved with
//! model calls need no scripted order.
//!
//! ```no_run
//! # async fn demo() {
//! use treven_testkit::bedrock::{BedrockFake, Script, Usage};
//! let fake = BedrockFake::start().await;
//! fake.push(Script::text(["Hel", "lo"]).usage(Usage::new(10, 2)));
//! // point the SDK at `fake.endpoint()` …
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Which Bedrock Runtime operation a request called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `POST /model/{modelId}/converse`.
    Converse,
    /// `POST /model/{modelId}/converse-stream`.
    ConverseStream,
    /// `POST /guardrail/{guardrailIdentifier}/version/{guardrailVersion}/apply`
    /// (`model_id` holds `{identifier}:{version}`).
    ApplyGuardrail,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The operation called.
    pub operation: Operation,
    /// The model id, percent-decoded (`…-v1:0`, not `…-v1%3A0`).
    pub model_id: String,
    /// The JSON body as sent (`system`, `messages`, `toolConfig`, …);
    /// `Value::Null` when the body was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// The text of every `system` block, in order.
    pub fn system_texts(&self) -> Vec<String> {
        self.body["system"]
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `messages` array (empty when absent).
    pub fn messages(&self) -> Vec<Value> {
        self.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `toolSpec` of every tool in `toolConfig.tools`.
    pub fn tool_specs(&self) -> Vec<Value> {
        self.body["toolConfig"]["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter(|t| !t["toolSpec"].is_null())
                    .map(|t| t["toolSpec"].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every `toolResult` content block in the messages, in order.
    pub fn tool_results(&self) -> Vec<Value> {
        self.messages()
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .filter(|c| !c["toolResult"].is_null())
            .map(|c| c["toolResult"].clone())
            .collect()
    }
}

/// Token usage reported in the `metadata` event (or the `usage` member of a
/// `converse` answer). `totalTokens` is input + output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `inputTokens`.
    pub input_tokens: i32,
    /// `outputTokens`.
    pub output_tokens: i32,
    /// `cacheReadInputTokens` (sent only when set).
    pub cache_read_input_tokens: Option<i32>,
    /// `cacheWriteInputTokens` (sent only when set).
    pub cache_write_input_tokens: Option<i32>,
}

impl Usage {
    /// Usage with input and output tokens and no cache figures.
    pub fn new(input_tokens: i32, output_tokens: i32) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// Adds prompt-cache read and write token counts.
    pub fn with_cache(mut self, read: i32, write: i32) -> Self {
        self.cache_read_input_tokens = Some(read);
        self.cache_write_input_tokens = Some(write);
        self
    }

    fn to_json(self) -> Value {
        let mut usage = json!({
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens,
        });
        if let Some(read) = self.cache_read_input_tokens {
            usage["cacheReadInputTokens"] = json!(read);
        }
        if let Some(write) = self.cache_write_input_tokens {
            usage["cacheWriteInputTokens"] = json!(write);
        }
        usage
    }
}

/// The modelled exception a stream can end with (`:exception-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamException {
    /// `throttlingException`.
    Throttling,
    /// `modelStreamErrorException`.
    ModelStreamError,
    /// `internalServerException`.
    InternalServer,
    /// `serviceUnavailableException`.
    ServiceUnavailable,
    /// `validationException`.
    Validation,
}

impl StreamException {
    /// The `:exception-type` header value.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Throttling => "throttlingException",
            Self::ModelStreamError => "modelStreamErrorException",
            Self::InternalServer => "internalServerException",
            Self::ServiceUnavailable => "serviceUnavailableException",
            Self::Validation => "validationException",
        }
    }

    /// The HTTP status and `x-amzn-ErrorType` of the same error answered
    /// before any output (used for `converse`).
    pub fn http_status_and_type(self) -> (u16, &'static str) {
        match self {
            Self::Throttling => (429, "ThrottlingException"),
            Self::ModelStreamError => (424, "ModelStreamErrorException"),
            Self::InternalServer => (500, "InternalServerException"),
            Self::ServiceUnavailable => (503, "ServiceUnavailableException"),
            Self::Validation => (400, "ValidationException"),
        }
    }
}

#[derive(Clone, Debug)]
enum Block {
    Text(Vec<String>),
    ToolUse {
        id: String,
        name: String,
        input_chunks: Vec<String>,
    },
}

#[derive(Clone, Debug)]
struct HttpError {
    status: u16,
    error_type: String,
    message: String,
}

#[derive(Clone, Debug)]
struct MidStream {
    after_deltas: usize,
    exception: StreamException,
    message: String,
}

/// What the fake answers to one request. Built with the constructors and
/// chained methods; the default stop reason is `end_turn` (`tool_use` once a
/// tool-use block is added) and the default usage is 0/0.
#[derive(Clone, Debug)]
pub struct Script {
    blocks: Vec<Block>,
    token_delay: Option<Duration>,
    stop_reason: Option<String>,
    usage: Usage,
    http_error: Option<HttpError>,
    mid_stream: Option<MidStream>,
    guardrail_pii: Vec<(String, String)>,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    /// An empty answer (no content blocks).
    pub fn new() -> Self {
        Self {
            blocks: Vec::new(),
            token_delay: None,
            stop_reason: None,
            usage: Usage::default(),
            http_error: None,
            mid_stream: None,
            guardrail_pii: Vec::new(),
        }
    }

    /// An `ApplyGuardrail` answer whose sensitive-information assessment
    /// found these `(type, match)` PII entities (e.g. `("EMAIL", "a@b.com")`);
    /// none means the guardrail did not intervene.
    pub fn guardrail_pii(entities: &[(&str, &str)]) -> Self {
        let mut script = Self::new();
        script.guardrail_pii = entities
            .iter()
            .map(|(kind, text)| ((*kind).to_owned(), (*text).to_owned()))
            .collect();
        script
    }

    /// The body of an `ApplyGuardrail` answer to a request for `text`.
    fn guardrail_body(&self, text: &str) -> Value {
        guardrail_answer(&self.guardrail_pii, false, text)
    }

    /// An answer with one text block streamed as these deltas.
    pub fn text<I, S>(deltas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new().then_text(deltas)
    }

    /// An answer with one tool-use block (see [`Script::then_tool_use`]).
    pub fn tool_use<I, S>(tool_use_id: &str, name: &str, input_chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new().then_tool_use(tool_use_id, name, input_chunks)
    }

    /// An HTTP 429 `ThrottlingException` before any stream.
    pub fn throttled(message: &str) -> Self {
        Self::http_error(429, "ThrottlingException", message)
    }

    /// An HTTP error before any stream: `status`, `x-amzn-ErrorType:
    /// {error_type}` and body `{"message": …}`.
    pub fn http_error(status: u16, error_type: &str, message: &str) -> Self {
        let mut script = Self::new();
        script.http_error = Some(HttpError {
            status,
            error_type: error_type.to_owned(),
            message: message.to_owned(),
        });
        script
    }

    /// Appends a text content block streamed as these deltas.
    pub fn then_text<I, S>(mut self, deltas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.blocks
            .push(Block::Text(deltas.into_iter().map(Into::into).collect()));
        self
    }

    /// Appends a tool-use content block: `contentBlockStart` with the id and
    /// name, then the input JSON as these delta strings (their concatenation
    /// must be the JSON input). Makes the default stop reason `tool_use`.
    pub fn then_tool_use<I, S>(mut self, tool_use_id: &str, name: &str, input_chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.blocks.push(Block::ToolUse {
            id: tool_use_id.to_owned(),
            name: name.to_owned(),
            input_chunks: input_chunks.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Waits this long before each delta (a slow model).
    pub fn token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = Some(delay);
        self
    }

    /// Sets the stop reason (`end_turn`, `tool_use`, `max_tokens`, …).
    pub fn stop_reason(mut self, reason: &str) -> Self {
        self.stop_reason = Some(reason.to_owned());
        self
    }

    /// Sets the usage reported in the `metadata` event.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Ends the stream with an exception frame after `after_deltas` deltas
    /// (`messageStart` is always sent first); nothing follows the exception.
    /// For `converse` the same error is answered as an HTTP error.
    pub fn fail_mid_stream(
        mut self,
        after_deltas: usize,
        exception: StreamException,
        message: &str,
    ) -> Self {
        self.mid_stream = Some(MidStream {
            after_deltas,
            exception,
            message: message.to_owned(),
        });
        self
    }

    fn effective_stop_reason(&self) -> String {
        self.stop_reason.clone().unwrap_or_else(|| {
            if self
                .blocks
                .iter()
                .any(|b| matches!(b, Block::ToolUse { .. }))
            {
                "tool_use".to_owned()
            } else {
                "end_turn".to_owned()
            }
        })
    }

    /// The frames of a `converse-stream` answer, each with the delay before it.
    fn frames(&self) -> Vec<(Option<Duration>, Bytes)> {
        let mut frames = Vec::new();
        let mut deltas_sent = 0usize;
        frames.push((None, event("messageStart", &json!({"role": "assistant"}))));
        let exception = |m: &MidStream| {
            (
                None,
                exception_frame(m.exception.event_type(), &json!({"message": m.message})),
            )
        };
        for (index, block) in self.blocks.iter().enumerate() {
            let deltas: Vec<Value> = match block {
                Block::Text(texts) => texts.iter().map(|t| json!({"text": t})).collect(),
                Block::ToolUse {
                    id,
                    name,
                    input_chunks,
                } => {
                    frames.push((
                        None,
                        event(
                            "contentBlockStart",
                            &json!({
                                "contentBlockIndex": index,
                                "start": {"toolUse": {"toolUseId": id, "name": name}},
                            }),
                        ),
                    ));
                    input_chunks
                        .iter()
                        .map(|c| json!({"toolUse": {"input": c}}))
                        .collect()
                }
            };
            for delta in deltas {
                if let Some(m) = &self.mid_stream
                    && deltas_sent >= m.after_deltas
                {
                    frames.push(exception(m));
                    return frames;
                }
                frames.push((
                    self.token_delay,
                    event(
                        "contentBlockDelta",
                        &json!({"contentBlockIndex": index, "delta": delta}),
                    ),
                ));
                deltas_sent += 1;
            }
            frames.push((
                None,
                event("contentBlockStop", &json!({"contentBlockIndex": index})),
            ));
        }
        if let Some(m) = &self.mid_stream {
            frames.push(exception(m));
            return frames;
        }
        frames.push((
            None,
            event(
                "messageStop",
                &json!({"stopReason": self.effective_stop_reason()}),
            ),
        ));
        frames.push((
            None,
            event(
                "metadata",
                &json!({"usage": self.usage.to_json(), "metrics": {"latencyMs": 1}}),
            ),
        ));
        frames
    }

    /// The body of a `converse` answer.
    fn converse_body(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|block| match block {
                Block::Text(texts) => json!({"text": texts.concat()}),
                Block::ToolUse {
                    id,
                    name,
                    input_chunks,
                } => {
                    let raw = input_chunks.concat();
                    let input = if raw.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&raw).unwrap_or(Value::String(raw))
                    };
                    json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
                }
            })
            .collect();
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self.effective_stop_reason(),
            "usage": self.usage.to_json(),
            "metrics": {"latencyMs": 1},
        })
    }
}

fn string_header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

fn encode(message: &Message) -> Bytes {
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(message, &mut buf)
        .expect("event-stream frame encodes");
    Bytes::from(buf)
}

/// An event frame: `:message-type: event`, `:event-type`, JSON payload.
fn event(event_type: &'static str, payload: &Value) -> Bytes {
    encode(&Message::new_from_parts(
        vec![
            string_header(":message-type", "event"),
            string_header(":event-type", event_type),
            string_header(":content-type", "application/json"),
        ],
        payload.to_string(),
    ))
}

/// An exception frame: `:message-type: exception`, `:exception-type`.
fn exception_frame(exception_type: &'static str, payload: &Value) -> Bytes {
    encode(&Message::new_from_parts(
        vec![
            string_header(":message-type", "exception"),
            string_header(":exception-type", exception_type),
            string_header(":content-type", "application/json"),
        ],
        payload.to_string(),
    ))
}

/// What Bedrock answers in place of a blocked input.
pub const BLOCKED_INPUT_MESSAGE: &str = "Sorry, the model cannot answer this question.";

/// The body of an `ApplyGuardrail` answer for `text`: the `(type, match)`
/// entities are reported as found; with `block` the text is replaced by
/// [`BLOCKED_INPUT_MESSAGE`], otherwise each match is masked as `{TYPE}`.
fn guardrail_answer(entities: &[(String, String)], block: bool, text: &str) -> Value {
    let action = if block { "BLOCKED" } else { "ANONYMIZED" };
    let found: Vec<Value> = entities
        .iter()
        .map(|(kind, matched)| json!({"match": matched, "type": kind, "action": action, "detected": true}))
        .collect();
    let intervened = !found.is_empty();
    let outputs = if !intervened {
        json!([])
    } else if block {
        json!([{ "text": BLOCKED_INPUT_MESSAGE }])
    } else {
        let masked = entities
            .iter()
            .fold(text.to_owned(), |acc, (kind, matched)| {
                acc.replace(matched.as_str(), &format!("{{{kind}}}"))
            });
        json!([{ "text": masked }])
    };
    json!({
        "usage": {
            "topicPolicyUnits": 0, "contentPolicyUnits": 0, "wordPolicyUnits": 0,
            "sensitiveInformationPolicyUnits": 1, "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0,
        },
        "action": if intervened { "GUARDRAIL_INTERVENED" } else { "NONE" },
        "outputs": outputs,
        "assessments": [{"sensitiveInformationPolicy": {"piiEntities": found, "regexes": []}}],
    })
}

/// The text of an `ApplyGuardrail` request: its `content[].text.text`.
fn guardrail_request_text(body: &Value) -> String {
    body["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"]["text"].as_str())
        .collect()
}

/// A standing guardrail: answers every `ApplyGuardrail` request itself
/// (no script is consumed), reporting each of its entities whose text
/// occurs in the request.
#[derive(Clone, Debug, Default)]
pub struct GuardrailPolicy {
    entities: Vec<(String, String)>,
    block: bool,
    unavailable: bool,
}

impl GuardrailPolicy {
    /// Masks these `(type, match)` entities (`("EMAIL", "a@b.org")`) as
    /// `{TYPE}` wherever they occur, as an `ANONYMIZE` filter does.
    pub fn anonymize(entities: &[(&str, &str)]) -> Self {
        Self {
            entities: entities
                .iter()
                .map(|(kind, text)| ((*kind).to_owned(), (*text).to_owned()))
                .collect(),
            ..Self::default()
        }
    }

    /// Blocks any text holding one of these entities, as a `BLOCK` filter
    /// does.
    pub fn block(entities: &[(&str, &str)]) -> Self {
        Self {
            block: true,
            ..Self::anonymize(entities)
        }
    }

    /// Answers every request HTTP 503 `ServiceUnavailableException`.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    fn answer(&self, text: &str) -> Response {
        if self.unavailable {
            return error_response(503, "ServiceUnavailableException", "guardrail unavailable");
        }
        let found: Vec<(String, String)> = self
            .entities
            .iter()
            .filter(|(_, matched)| text.contains(matched.as_str()))
            .cloned()
            .collect();
        (
            [(header::CONTENT_TYPE, "application/json")],
            guardrail_answer(&found, self.block, text).to_string(),
        )
            .into_response()
    }
}

#[derive(Default)]
struct FakeState {
    scripts: VecDeque<Script>,
    requests: Vec<RecordedRequest>,
    guardrail: Option<GuardrailPolicy>,
}

/// A cloneable handle on a running fake: queue scripts, read the requests.
#[derive(Clone, Default)]
pub struct BedrockHandle {
    state: Arc<Mutex<FakeState>>,
}

impl BedrockHandle {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a script; requests consume scripts in the order pushed. A
    /// request with no script queued gets an HTTP 500 naming the problem.
    pub fn push(&self, script: Script) {
        self.lock().scripts.push_back(script);
    }

    /// Answers every later `ApplyGuardrail` request with `policy` (recorded
    /// as usual, consuming no script); `None` goes back to scripts.
    pub fn set_guardrail(&self, policy: Option<GuardrailPolicy>) {
        self.lock().guardrail = policy;
    }

    /// The requests of `operation` received so far, oldest first.
    pub fn requests_of(&self, operation: Operation) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.operation == operation)
            .cloned()
            .collect()
    }

    /// How many queued scripts have not been consumed yet.
    pub fn pending_scripts(&self) -> usize {
        self.lock().scripts.len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.lock().requests.last().cloned()
    }

    fn take(&self, request: RecordedRequest) -> Option<Script> {
        let mut state = self.lock();
        state.requests.push(request);
        state.scripts.pop_front()
    }
}

/// The running fake; the server stops when this is dropped. Derefs to its
/// [`BedrockHandle`].
pub struct BedrockFake {
    endpoint: String,
    handle: BedrockHandle,
    server: JoinHandle<()>,
}

impl BedrockFake {
    /// Binds `127.0.0.1:0` and serves on the current Tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Bedrock fake");
        let addr = listener.local_addr().expect("local addr");
        let handle = BedrockHandle::default();
        let app = Router::new()
            .route("/model/{model_id}/converse-stream", post(converse_stream))
            .route("/model/{model_id}/converse", post(converse))
            .route(
                "/guardrail/{guardrail_id}/version/{version}/apply",
                post(apply_guardrail),
            )
            .with_state(handle.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            handle,
            server,
        }
    }

    /// The endpoint URL to give the SDK (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A cloneable handle to queue scripts and read requests.
    pub fn handle(&self) -> BedrockHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for BedrockFake {
    type Target = BedrockHandle;

    fn deref(&self) -> &BedrockHandle {
        &self.handle
    }
}

impl Drop for BedrockFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            ("x-amzn-errortype", error_type.to_owned()),
            (header::CONTENT_TYPE.as_str(), "application/json".to_owned()),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn receive(
    handle: &BedrockHandle,
    operation: Operation,
    model_id: String,
    body: &Bytes,
) -> Result<Script, HttpError> {
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    let script = handle.take(RecordedRequest {
        operation,
        model_id,
        body,
    });
    let Some(script) = script else {
        return Err(HttpError {
            status: 500,
            error_type: "InternalServerException".to_owned(),
            message: "bedrock fake: no script queued for this request".to_owned(),
        });
    };
    if let Some(e) = script.http_error.clone() {
        return Err(e);
    }
    Ok(script)
}

async fn converse_stream(
    State(handle): State<BedrockHandle>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Response {
    let script = match receive(&handle, Operation::ConverseStream, model_id, &body) {
        Ok(script) => script,
        Err(e) => return error_response(e.status, &e.error_type, &e.message),
    };
    let frames = script.frames();
    let stream = futures::stream::unfold(frames.into_iter(), |mut frames| async move {
        let (delay, frame) = frames.next()?;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, std::convert::Infallible>(frame), frames))
    });
    (
        [
            (header::CONTENT_TYPE, "application/vnd.amazon.eventstream"),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                "bedrock-fake",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn converse(
    State(handle): State<BedrockHandle>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Response {
    let script = match receive(&handle, Operation::Converse, model_id, &body) {
        Ok(script) => script,
        Err(e) => return error_response(e.status, &e.error_type, &e.message),
    };
    if let Some(m) = &script.mid_stream {
        let (status, error_type) = m.exception.http_status_and_type();
        return error_response(status, error_type, &m.message);
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        script.converse_body().to_string(),
    )
        .into_response()
}

async fn apply_guardrail(
    State(handle): State<BedrockHandle>,
    Path((guardrail_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let target = format!("{guardrail_id}:{version}");
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = guardrail_request_text(&request);
    let standing = {
        let mut state = handle.lock();
        let policy = state.guardrail.clone();
        if policy.is_some() {
            state.requests.push(RecordedRequest {
                operation: Operation::ApplyGuardrail,
                model_id: target.clone(),
                body: request,
            });
        }
        policy
    };
    if let Some(policy) = standing {
        return policy.answer(&text);
    }
    let script = match receive(&handle, Operation::ApplyGuardrail, target, &body) {
        Ok(script) => script,
        Err(e) => return error_response(e.status, &e.error_type, &e.message),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        script.guardrail_body(&text).to_string(),
    )
        .into_response()
}
