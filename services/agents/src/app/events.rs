//! Events for WebSocket clients, published through Redis in the background
//! and shaped as the proto3 JSON of the gRPC messages.

use serde_json::{Value, json};
use tokio::sync::mpsc;
use treven_mesh::OrgId;
use treven_mesh::events::{EventChannel, EventKind, EventPublisher};

use super::Agents;
use crate::model::{Message, MessageRole, ToolCallRecord};

/// An event waiting to be published.
pub(super) type Publication = (OrgId, EventChannel, EventKind, Value);

/// Events are published in order by one background task, so a slow or
/// unreachable Redis never slows a reply; when the queue is full, events
/// are dropped (and logged): the gRPC stream remains the source of truth.
const EVENT_QUEUE: usize = 4_096;

pub(super) fn publisher(events: EventPublisher) -> Option<mpsc::Sender<Publication>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (sender, mut queue) = mpsc::channel::<Publication>(EVENT_QUEUE);
    runtime.spawn(async move {
        while let Some((org, channel, kind, data)) = queue.recv().await {
            if let Err(error) = events.publish(org, &channel, kind, data).await {
                tracing::warn!(%channel, error = %error, "event not published");
            }
        }
    });
    Some(sender)
}

impl Agents {
    /// Queues an event for `org`'s WebSocket clients on `channel`.
    pub(super) async fn publish(
        &self,
        org: OrgId,
        channel: EventChannel,
        kind: EventKind,
        data: Value,
    ) {
        if let Some(events) = &self.inner.events
            && events.try_send((org, channel, kind, data)).is_err()
        {
            tracing::warn!(%channel, "event queue full or closed; event dropped");
        }
    }
}

/// A tool call as the proto3 JSON of `treven.agents.v1.ToolCall`, the
/// shape WebSocket clients also get from the gRPC stream.
pub(super) fn tool_call_json(record: &ToolCallRecord) -> Value {
    let tool = match record.tool {
        None => "AGENT_TOOL_UNSPECIFIED".to_owned(),
        Some(tool) => format!("AGENT_TOOL_{}", tool.name().to_ascii_uppercase()),
    };
    let status = match record.status {
        crate::model::ToolStatus::Running => "TOOL_CALL_STATUS_RUNNING",
        crate::model::ToolStatus::Succeeded => "TOOL_CALL_STATUS_SUCCEEDED",
        crate::model::ToolStatus::Failed => "TOOL_CALL_STATUS_FAILED",
    };
    json!({ "id": record.id, "tool": tool, "arguments": record.arguments, "status": status, "summary": record.summary })
}

/// The main fields of a message in proto3 JSON (`treven.agents.v1.Message`).
pub(super) fn message_json(message: &Message) -> Value {
    let role = match message.role {
        MessageRole::User => "MESSAGE_ROLE_USER",
        MessageRole::Assistant => "MESSAGE_ROLE_ASSISTANT",
        MessageRole::System => "MESSAGE_ROLE_SYSTEM",
    };
    json!({
        "id": message.id,
        "conversationId": message.conversation_id,
        "role": role,
        "content": message.content,
        "modelId": message.model_id,
        "createdAt": message.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}
