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

use axum::extract::ws::Message;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use treven_mesh::context::attach_context;
use treven_mesh::{ErrorCode, Principal};
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::agents::v1::send_message_response::Event as ReplyEvent;
use treven_proto::treven::agents::v1::{SendMessageRequest, SendMessageResponse};

use super::protocol::{self, Scope};
use crate::caller::Caller;

/// Full name of the streamed message, for proto3 JSON.
const RESPONSE_MESSAGE: &str = "treven.agents.v1.SendMessageResponse";

/// Sends `content` to `conversation_id` as `caller` and writes each event of
/// the reply to `out` until the reply ends or the connection goes away.
pub async fn relay_chat(
    agents: AgentsServiceClient<Channel>,
    pool: DescriptorPool,
    caller: Caller,
    conversation_id: String,
    content: String,
    out: mpsc::Sender<Message>,
) {
    let fail = |code: ErrorCode, message: &str| {
        protocol::error(code, message, Scope::Conversation(&conversation_id))
    };
    let mut request = tonic::Request::new(SendMessageRequest {
        conversation_id: conversation_id.clone(),
        content,
        // The WebSocket message carries no decisions: a message with
        // personal data is refused (PII_DETECTED) and decided over REST.
        pii_decisions: Vec::new(),
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
            let _ = out.send(status_error(&status, &conversation_id)).await;
            return;
        }
    };
    loop {
        let frame = match stream.message().await {
            Ok(Some(event)) => event_frame(&pool, &conversation_id, &event),
            Ok(None) => return,
            Err(status) => Frame::Last(status_error(&status, &conversation_id)),
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

/// A gRPC failure as an `error` frame with a safe message.
fn status_error(status: &tonic::Status, conversation_id: &str) -> Message {
    let code = ErrorCode::of_status(status);
    tracing::info!(%code, grpc = ?status.code(), detail = status.message(), "chat failed");
    let message = match code {
        ErrorCode::Unavailable => "the assistant is unavailable, retry later".to_owned(),
        ErrorCode::Internal => "internal error".to_owned(),
        // Treven services send client-safe messages for the other codes.
        _ => status.message().to_owned(),
    };
    protocol::error(code, &message, Scope::Conversation(conversation_id))
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
    }
}
