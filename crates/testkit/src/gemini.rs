//! A small fake of the Vertex AI Gemini streaming API: serves
//! `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent?alt=sse`
//! as server-sent events (`data: {GenerateContentResponse}` frames) with
//! text parts, `functionCall` parts, `finishReason` and `usageMetadata`.
//!
//! Tests queue [`GeminiScript`]s; each request takes the next one and is
//! recorded ([`GeminiRequest`]) with its auth headers and JSON body.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct GeminiRequest {
    /// `projects/{project}/locations/{location}/publishers/google/models/{model}:{method}`.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `x-goog-api-key` header, if any.
    pub api_key: Option<String>,
    /// The JSON body (`contents`, `tools`, `systemInstruction`…).
    pub body: Value,
}

impl GeminiRequest {
    /// Every `functionResponse` part of the contents, in order.
    pub fn function_responses(&self) -> Vec<Value> {
        self.body["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["parts"].as_array())
            .flatten()
            .filter(|p| !p["functionResponse"].is_null())
            .map(|p| p["functionResponse"].clone())
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Call { name: String, args: Value },
}

/// What the fake answers to one request.
#[derive(Clone, Debug, Default)]
pub struct GeminiScript {
    parts: Vec<Part>,
    delay: Option<Duration>,
    usage: (i64, i64),
    http_error: Option<(u16, String)>,
    fail_after: Option<usize>,
}

impl GeminiScript {
    /// Text streamed as one frame per chunk.
    pub fn text<I: IntoIterator<Item = S>, S: Into<String>>(chunks: I) -> Self {
        Self {
            parts: chunks.into_iter().map(|c| Part::Text(c.into())).collect(),
            ..Self::default()
        }
    }

    /// One `functionCall` part.
    pub fn function_call(name: &str, args: Value) -> Self {
        Self {
            parts: vec![Part::Call {
                name: name.to_owned(),
                args,
            }],
            ..Self::default()
        }
    }

    /// An HTTP error before the stream (`{"error": {"code", "message", "status"}}`).
    pub fn http_error(status: u16, message: &str) -> Self {
        Self {
            http_error: Some((status, message.to_owned())),
            ..Self::default()
        }
    }

    /// Waits this long before each frame.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets `usageMetadata` (prompt and candidate tokens) on the last frame.
    pub fn usage(mut self, prompt: i64, candidates: i64) -> Self {
        self.usage = (prompt, candidates);
        self
    }

    /// Sends an `{"error": …}` frame (code 503) after `frames` frames.
    pub fn fail_after(mut self, frames: usize) -> Self {
        self.fail_after = Some(frames);
        self
    }

    fn frames(&self) -> Vec<String> {
        let mut frames = Vec::new();
        let count = self.parts.len();
        for (index, part) in self.parts.iter().enumerate() {
            if self.fail_after == Some(index) {
                frames.push(json!({"error": {"code": 503, "message": "backend error", "status": "UNAVAILABLE"}}).to_string());
                return frames;
            }
            let part = match part {
                Part::Text(text) => json!({"text": text}),
                Part::Call { name, args } => json!({"functionCall": {"name": name, "args": args}}),
            };
            let mut frame = json!({
                "candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                "modelVersion": "gemini-fake",
            });
            if index + 1 == count {
                frame["candidates"][0]["finishReason"] = json!("STOP");
                frame["usageMetadata"] = json!({
                    "promptTokenCount": self.usage.0,
                    "candidatesTokenCount": self.usage.1,
                    "totalTokenCount": self.usage.0 + self.usage.1,
                });
            }
            frames.push(frame.to_string());
        }
        if self.fail_after.is_some_and(|n| n >= count) {
            frames.push(json!({"error": {"code": 503, "message": "backend error", "status": "UNAVAILABLE"}}).to_string());
        }
        frames
    }
}

#[derive(Default)]
struct FakeState {
    scripts: VecDeque<GeminiScript>,
    requests: Vec<GeminiRequest>,
}

/// A cloneable handle on a running fake.
#[derive(Clone, Default)]
pub struct GeminiHandle {
    state: Arc<Mutex<FakeState>>,
}

impl GeminiHandle {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a script; a request with none queued gets HTTP 500.
    pub fn push(&self, script: GeminiScript) {
        self.lock().scripts.push_back(script);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<GeminiRequest> {
        self.lock().requests.clone()
    }
}

/// The running fake; stops when dropped. Derefs to its [`GeminiHandle`].
pub struct GeminiFake {
    endpoint: String,
    handle: GeminiHandle,
    server: JoinHandle<()>,
}

impl GeminiFake {
    /// Binds `127.0.0.1:0` and serves on the current Tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Gemini fake");
        let addr = listener.local_addr().expect("local addr");
        let handle = GeminiHandle::default();
        let app = Router::new()
            .route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{call}",
                post(generate),
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

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl std::ops::Deref for GeminiFake {
    type Target = GeminiHandle;

    fn deref(&self) -> &GeminiHandle {
        &self.handle
    }
}

impl Drop for GeminiFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn generate(
    State(handle): State<GeminiHandle>,
    Path((project, location, call)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let script = {
        let mut state = handle.lock();
        state.requests.push(GeminiRequest {
            path: format!(
                "projects/{project}/locations/{location}/publishers/google/models/{call}"
            ),
            authorization: header("authorization"),
            api_key: header("x-goog-api-key"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        state.scripts.pop_front()
    };
    if !call.ends_with(":streamGenerateContent") {
        return (StatusCode::NOT_FOUND, "only streamGenerateContent is faked").into_response();
    }
    let Some(script) = script else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "gemini fake: no script queued",
        )
            .into_response();
    };
    if let Some((status, message)) = &script.http_error {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": {"code": status.as_u16(), "message": message}}).to_string(),
        )
            .into_response();
    }
    let delay = script.delay;
    let frames = script.frames();
    let stream = futures::stream::unfold(frames.into_iter(), move |mut frames| async move {
        let frame = frames.next()?;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {frame}\r\n\r\n"))),
            frames,
        ))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}
