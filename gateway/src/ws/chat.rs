//! `{"type":"chat"}`: sends the analyst's message with
//! `AgentsService/SendMessage` (the generated tonic client, with the caller's
//! mesh context) and relays the streamed reply to the one connection that
//! asked, event by event:
//!
//! - text deltas, citations, usage and `done` as `chat:response`;
//! - tool calls as `chat:tool`;
//! - a failure (the stream's own `error` event, or a gRPC error before or
//!   during the stream, such as UNAVAILABLE while the agents service is not
//!   deployed) as `error` with the conversation id.
//!
//! `data` is the proto3 JSON of the `SendMessageResponse`, as the REST and
//! SSE surface would give it.
//!
//! The message's `piiDecisions` (proto3 JSON of
//! `treven.reports.v1.PiiDecision`, as in the REST body) go with it. A
//! message with undecided personal data is refused by the agents service
//! before anything is stored or sent to a model; the refusal comes back as
//! an `error` frame with code `PII_DETECTED` and the REST error body's
//! `details` (`piiDetected.findings`), so the client can decide each
//! finding and send the message again.

use axum::extract::ws::Message;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::transport::Channel;
use treven_mesh::context::attach_context;
use treven_mesh::{ErrorCode, Principal};
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::agents::v1::send_message_response::Event as ReplyEvent;
use treven_proto::treven::agents::v1::{SendMessageRequest, SendMessageResponse};
use treven_proto::treven::reports::v1::PiiDecision;

use super::connection::ChatOut;
use super::protocol::{self, Scope};
use crate::caller::Caller;

/// Full name of the streamed message, for proto3 JSON.
const RESPONSE_MESSAGE: &str = "treven.agents.v1.SendMessageResponse";
/// Full name of a decision on a PII finding, for proto3 JSON.
const DECISION_MESSAGE: &str = "treven.reports.v1.PiiDecision";

/// Most decisions one chat message may carry.
pub const MAX_PII_DECISIONS: usize = 100;

/// One `{"type":"chat"}` message.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    /// The conversation's id as the client wrote it.
    pub conversation_id: String,
    /// The analyst's message.
    pub content: String,
    /// Decisions on its PII findings, proto3 JSON as the client sent them.
    pub pii_decisions: Vec<serde_json::Value>,
}

/// The decisions of a chat message, parsed as the REST surface parses
/// `piiDecisions`; the error names the first bad one
/// (`piiDecisions[2]: …`). Whether each names a finding of the message is
/// for the agents service to say.
pub fn parse_decisions(
    pool: &DescriptorPool,
    decisions: &[serde_json::Value],
) -> Result<Vec<PiiDecision>, String> {
    if decisions.len() > MAX_PII_DECISIONS {
        return Err(format!(
            "piiDecisions: at most {MAX_PII_DECISIONS} decisions, got {}",
            decisions.len()
        ));
    }
    let descriptor = pool
        .get_message_by_name(DECISION_MESSAGE)
        .ok_or_else(|| format!("{DECISION_MESSAGE} is not in the pool"))?;
    decisions
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let dynamic = DynamicMessage::deserialize(descriptor.clone(), value)
                .map_err(|e| format!("piiDecisions[{index}]: {e}"))?;
            PiiDecision::decode(dynamic.encode_to_vec().as_slice())
                .map_err(|e| format!("piiDecisions[{index}]: {e}"))
        })
        .collect()
}

/// Sends `message` as `caller` and writes each event of the reply to `out`
/// until the reply ends or the connection goes away.
pub(super) async fn relay_chat(
    agents: AgentsServiceClient<Channel>,
    pool: DescriptorPool,
    caller: Caller,
    message: ChatMessage,
    out: ChatOut,
) {
    let ChatMessage {
        conversation_id,
        content,
        pii_decisions,
    } = message;
    let fail = |code: ErrorCode, message: &str| {
        protocol::error(code, message, Scope::Conversation(&conversation_id))
    };
    let pii_decisions = match parse_decisions(&pool, &pii_decisions) {
        Ok(decisions) => decisions,
        Err(reason) => {
            let _ = out.send(fail(ErrorCode::ValidationError, &reason)).await;
            return;
        }
    };
    let mut request = tonic::Request::new(SendMessageRequest {
        conversation_id: conversation_id.clone(),
        content,
        pii_decisions,
    });
    if let Err(error) = attach_context(&mut request, &caller.context_for(Principal::Agents)) {
        let _ = out.send(fail(error.code(), "internal error")).await;
        return;
    }
    if let Ok(value) = caller.request_id.parse() {
        request.metadata_mut().insert("x-request-id", value);
    }
    let mut stream = match agents.clone().send_message(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let _ = out
                .send(status_error(&pool, &status, &conversation_id))
                .await;
            return;
        }
    };
    loop {
        let frame = match stream.message().await {
            Ok(Some(event)) => event_frame(&pool, &conversation_id, &event),
            Ok(None) => return,
            Err(status) => Frame::Last(status_error(&pool, &status, &conversation_id)),
        };
        let last = matches!(&frame, Frame::Last(_));
        let message = match frame {
            Frame::More(m) | Frame::Last(m) => m,
        };
        if out.send(message).await.is_err() || last {
            return;
        }
    }
}

enum Frame {
    More(Message),
    Last(Message),
}

/// One reply event as a frame for the client.
fn event_frame(pool: &DescriptorPool, conversation_id: &str, event: &SendMessageResponse) -> Frame {
    let scope = Scope::Conversation(conversation_id);
    let kind = match &event.event {
        Some(ReplyEvent::Error(error)) => {
            let code = ErrorCode::from_reason(&error.code).unwrap_or(ErrorCode::Internal);
            return Frame::Last(protocol::error(code, &error.message, scope));
        }
        Some(ReplyEvent::ToolCall(_)) => "chat:tool",
        _ => "chat:response",
    };
    let data = match to_json(pool, event) {
        Ok(data) => data,
        Err(reason) => {
            tracing::error!(%reason, "reply event not convertible to JSON");
            return Frame::Last(protocol::error(
                ErrorCode::Internal,
                "internal error",
                scope,
            ));
        }
    };
    let message = protocol::chat(kind, conversation_id, data);
    if matches!(event.event, Some(ReplyEvent::Done(_))) {
        Frame::Last(message)
    } else {
        Frame::More(message)
    }
}

fn to_json(
    pool: &DescriptorPool,
    event: &SendMessageResponse,
) -> Result<serde_json::Value, String> {
    let descriptor = pool
        .get_message_by_name(RESPONSE_MESSAGE)
        .ok_or_else(|| format!("{RESPONSE_MESSAGE} is not in the pool"))?;
    let dynamic = DynamicMessage::decode(descriptor, event.encode_to_vec().as_slice())
        .map_err(|e| e.to_string())?;
    treven_transcode::message_json(&dynamic).map_err(|e| e.to_string())
}

/// A gRPC failure as an `error` frame with a safe message and the details
/// the REST surface would give (`piiDetected.findings`, `fields`…).
fn status_error(pool: &DescriptorPool, status: &tonic::Status, conversation_id: &str) -> Message {
    let code = ErrorCode::of_status(status);
    tracing::info!(%code, grpc = ?status.code(), detail = status.message(), "chat failed");
    let (message, details) = match code {
        ErrorCode::Unavailable => ("the assistant is unavailable, retry later".to_owned(), None),
        ErrorCode::Internal => ("internal error".to_owned(), None),
        // Treven services send client-safe messages for the other codes;
        // the details are those of the REST error body.
        _ => {
            let error = treven_transcode::http_error(status, Some(pool)).error_object();
            (status.message().to_owned(), error.get("details").cloned())
        }
    };
    protocol::error_with_details(
        code,
        &message,
        Scope::Conversation(conversation_id),
        details.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use treven_proto::treven::agents::v1::{StreamError, TextDelta};

    fn json_of(frame: Frame) -> (bool, serde_json::Value) {
        let (last, message) = match frame {
            Frame::More(m) => (false, m),
            Frame::Last(m) => (true, m),
        };
        let Message::Text(text) = message else {
            return (last, serde_json::Value::Null);
        };
        (
            last,
            serde_json::from_str(text.as_str()).unwrap_or_default(),
        )
    }

    #[test]
    fn reply_events_become_chat_frames() {
        let pool = treven_transcode::Transcoder::builtin()
            .map(|t| t.pool().clone())
            .unwrap_or_else(|_| unreachable!());
        let delta = SendMessageResponse {
            sequence: 3,
            event: Some(ReplyEvent::TextDelta(TextDelta { text: "Hel".into() })),
        };
        let (last, value) = json_of(event_frame(&pool, "c-1", &delta));
        assert!(!last);
        assert_eq!(value["type"], "chat:response");
        assert_eq!(value["conversationId"], "c-1");
        assert_eq!(value["data"]["sequence"], "3");
        assert_eq!(value["data"]["textDelta"]["text"], "Hel");

        let failed = SendMessageResponse {
            sequence: 4,
            event: Some(ReplyEvent::Error(StreamError {
                code: "UNAVAILABLE".into(),
                message: "the model is busy".into(),
            })),
        };
        let (last, value) = json_of(event_frame(&pool, "c-1", &failed));
        assert!(last);
        assert_eq!(value["type"], "error");
        assert_eq!(value["code"], "UNAVAILABLE");

        let (last, value) = json_of(Frame::Last(status_error(
            &pool,
            &tonic::Status::unavailable("tcp connect error: 127.0.0.1:50054"),
            "c-1",
        )));
        assert!(last);
        assert_eq!(value["code"], "UNAVAILABLE");
        assert!(
            !value["message"]
                .as_str()
                .unwrap_or_default()
                .contains("127.0.0.1"),
            "no internals: {value}"
        );
        assert!(value.get("details").is_none(), "{value}");
    }

    #[test]
    fn decisions_parse_as_rest_parses_them_and_name_the_bad_one() {
        let pool = treven_transcode::Transcoder::builtin()
            .map(|t| t.pool().clone())
            .unwrap_or_else(|_| unreachable!());
        let parsed = parse_decisions(
            &pool,
            &[
                serde_json::json!({"findingId": "a1", "action": "PII_ACTION_REDACT"}),
                serde_json::json!({"findingId": "b2", "action": "PII_ACTION_KEEP", "justification": "named in the public court record"}),
            ],
        )
        .unwrap_or_default();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].finding_id, "a1");
        assert_eq!(parsed[0].action, 1);
        assert_eq!(parsed[1].action, 2);
        assert_eq!(parsed[1].justification, "named in the public court record");
        let bad = parse_decisions(
            &pool,
            &[
                serde_json::json!({"findingId": "a1", "action": "PII_ACTION_REDACT"}),
                serde_json::json!({"findingId": "b2", "action": "SHRED"}),
            ],
        );
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.starts_with("piiDecisions[1]")),
            "{bad:?}"
        );
        let too_many = vec![serde_json::json!({}); MAX_PII_DECISIONS + 1];
        assert!(parse_decisions(&pool, &too_many).is_err());
    }
}
