//! The Bedrock AgentCore Runtime contract: `GET /ping` answers
//! `{"status":"Healthy"}` and `POST /invocations` runs the chat agent loop
//! and streams its events as server-sent events.
//!
//! AgentCore authenticates callers in front of the container (IAM SigV4 or
//! a JWT authorizer). Inside, `/invocations` also requires the mesh context
//! header (`x-treven-context`, the same signed token the gRPC side needs),
//! so the organisation always comes from a verified token, never from the
//! payload. `/ping` is open, as the contract requires.
//!
//! Payload: `{"conversation_id": "<uuid>", "message": "<text>",
//! "pii_decisions": [{"finding_id", "action": "redact"|"keep",
//! "justification"}]}` (decisions optional). A message with undecided
//! personal data answers 422 `{"error": {"code": "PII_DETECTED", "message",
//! "details": {"piiDetected": {"findings": […]}}}}`, as the gateway shows the
//! gRPC answer, and nothing is stored or sent to a model. Events:
//! `{"type":"text","text":…}`, `{"type":"tool","tool_call":{…}}`,
//! `{"type":"citation",…}`, `{"type":"usage",…}`, then one
//! `{"type":"done",…}` or `{"type":"error","code":…,"message":…}`.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use treven_mesh::context::{CONTEXT_HEADER, ContextVerifier};
use treven_mesh::{ErrorCode, ServiceError};

use crate::agent::AgentEvent;
use crate::app::{Agents, ChatEvent, SendError};
use crate::model::{MAX_PII_DECISIONS, MessageFinding, PiiAction, PiiDecision};

#[derive(Clone)]
struct RuntimeState {
    agents: Agents,
    verifier: ContextVerifier,
}

/// The body of `POST /invocations`.
#[derive(Debug, Deserialize)]
pub struct Invocation {
    /// The conversation to continue.
    #[serde(default)]
    pub conversation_id: String,
    /// The analyst's message.
    #[serde(default)]
    pub message: String,
    /// Decisions on the personal data in `message`.
    #[serde(default)]
    pub pii_decisions: Vec<InvocationDecision>,
}

/// A decision of an invocation, as `treven.reports.v1.PiiDecision`.
#[derive(Debug, Deserialize)]
pub struct InvocationDecision {
    /// The finding's id.
    #[serde(default)]
    pub finding_id: String,
    /// `redact` or `keep`.
    #[serde(default)]
    pub action: String,
    /// Why it is kept.
    #[serde(default)]
    pub justification: String,
}

/// The runtime's routes.
pub fn router(agents: Agents, verifier: ContextVerifier) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/invocations", post(invoke))
        .with_state(RuntimeState { agents, verifier })
}

async fn ping() -> impl IntoResponse {
    axum::Json(json!({ "status": "Healthy" }))
}

fn error(code: ErrorCode, message: &str) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({ "error": { "code": code.as_str(), "message": message } })),
    )
        .into_response()
}

fn event_json(event: ChatEvent) -> Value {
    match event {
        ChatEvent::Agent(AgentEvent::Text(text)) => json!({ "type": "text", "text": text }),
        ChatEvent::Agent(AgentEvent::Tool(call)) => json!({ "type": "tool", "tool_call": call }),
        ChatEvent::Agent(AgentEvent::Citation(source)) => {
            json!({ "type": "citation", "source": source })
        }
        ChatEvent::Agent(AgentEvent::Usage { model_id, usage }) => {
            json!({ "type": "usage", "model_id": model_id, "usage": usage })
        }
        ChatEvent::Done { user, assistant } => json!({
            "type": "done",
            "user_message_id": user.id,
            "assistant_message_id": assistant.id,
            "content": assistant.content,
            "model_id": assistant.model_id,
        }),
        ChatEvent::Error { code, message } => {
            json!({ "type": "error", "code": code.as_str(), "message": message })
        }
    }
}

async fn invoke(
    State(state): State<RuntimeState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = headers.get(CONTEXT_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(
            ErrorCode::Unauthorized,
            "the mesh context header is required",
        );
    };
    let ctx = match state.verifier.verify(token) {
        Ok(ctx) => ctx,
        Err(reason) => {
            tracing::info!(reason = %reason, "runtime invocation refused");
            return error(ErrorCode::Unauthorized, "the mesh context is not valid");
        }
    };
    if let Err(denied) = crate::policy::RUNTIME_POLICY.authorize(&ctx, "invocations") {
        tracing::info!(caller = %ctx.issuer(), "runtime invocation denied");
        return service_error(&denied);
    }
    let invocation: Invocation = match serde_json::from_slice(&body) {
        Ok(invocation) => invocation,
        Err(_) => {
            return error(
                ErrorCode::ValidationError,
                "the body must be {\"conversation_id\", \"message\"} JSON",
            );
        }
    };
    let decisions = match decisions(&invocation.pii_decisions) {
        Ok(decisions) => decisions,
        Err(e) => return service_error(&e),
    };
    let mut events = match state
        .agents
        .send_message(
            &ctx,
            &invocation.conversation_id,
            invocation.message,
            decisions,
        )
        .await
    {
        Ok(events) => events,
        Err(SendError::PiiDetected(findings)) => return pii_detected(&findings),
        Err(SendError::Service(e)) => return service_error(&e),
    };
    let stream = async_stream::stream! {
        while let Some(event) = events.recv().await {
            let last = matches!(event, ChatEvent::Done { .. } | ChatEvent::Error { .. });
            yield Ok::<_, Infallible>(Event::default().data(event_json(event).to_string()));
            if last {
                break;
            }
        }
    };
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn service_error(e: &ServiceError) -> Response {
    let message = match e.code() {
        ErrorCode::Internal => "internal error",
        _ => e.message(),
    };
    error(e.code(), message)
}

fn decisions(raw: &[InvocationDecision]) -> Result<Vec<PiiDecision>, ServiceError> {
    if raw.len() > MAX_PII_DECISIONS {
        return Err(ServiceError::invalid_field(
            "pii_decisions",
            format!("at most {MAX_PII_DECISIONS} decisions"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, d)| {
            let action = match d.action.to_ascii_lowercase().as_str() {
                "redact" => Some(PiiAction::Redact),
                "keep" => Some(PiiAction::Keep),
                _ => None,
            };
            PiiDecision::parse(i, &d.finding_id, action, &d.justification)
        })
        .collect()
}

fn pii_detected(findings: &[MessageFinding]) -> Response {
    let code = ErrorCode::PiiDetected;
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let findings: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "type": f.kind.as_str(),
                "fieldPath": "content",
                "start": f.start,
                "end": f.end,
                "placeholder": f.placeholder,
            })
        })
        .collect();
    (
        status,
        axum::Json(json!({ "error": {
            "code": code.as_str(),
            "message": format!(
                "personal data found ({} findings): redact each or keep it with a justification",
                findings.len()
            ),
            "details": { "piiDetected": { "findings": findings } },
        } })),
    )
        .into_response()
}
