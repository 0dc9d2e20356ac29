//! The JSON messages of `/ws`, both ways.
//!
//! Client → server, one JSON object per text frame:
//! - `{"type":"subscribe","channel":"report:<uuid>","lastEventId":"<optional>"}`
//! - `{"type":"unsubscribe","channel":"report:<uuid>"}`
//! - `{"type":"chat","conversationId":"<uuid>","content":"…","piiDecisions":[…]}`
//!   where the optional `piiDecisions` are the proto3 JSON of
//!   `treven.reports.v1.PiiDecision`, as in the REST body of
//!   `POST /api/conversations/{id}/messages`:
//!   `{"findingId","action":"PII_ACTION_REDACT"|"PII_ACTION_KEEP","justification"}`
//!
//! Server → client:
//! - events, `{"id","channel","type","data"}` with `type` one of
//!   `report:update`, `chat:response`, `chat:tool`, `agent:status`
//!   ([`treven_mesh::events::Event`]);
//! - chat replies, `{"type":"chat:response"|"chat:tool","conversationId","data"}`
//!   where `data` is the proto3 JSON of one `SendMessageResponse` (its
//!   `done` field marks the end);
//! - `{"type":"subscribed","channel","replayed":<n>}` once a subscription
//!   is live (the `n` replayed events follow it),
//!   `{"type":"unsubscribed","channel"}`;
//! - `{"type":"resync","channel","message"}` when more events were missed
//!   than can be replayed: reload the resource, live events follow;
//! - `{"type":"error","code","message"[,"channel"|"conversationId"][,"details"]}`
//!   with a code of the REST error table (`FORBIDDEN`, `NOT_FOUND`,
//!   `VALIDATION_ERROR`, `RATE_LIMITED`, `UNAVAILABLE`, `PII_DETECTED`, …)
//!   and, when the service gave them, the `details` of the REST error body:
//!   a chat message with undecided personal data is refused with
//!   `PII_DETECTED` and `details.piiDetected.findings` (nothing was stored
//!   or sent to a model); the client decides each finding and sends the
//!   message again with `piiDecisions`. A `FORBIDDEN`
//!   naming a channel after a role change means that subscription was
//!   dropped, and one without a channel, followed by close 1008 `access
//!   revoked`, that the user is no longer a member.

use axum::extract::ws::{Message, Utf8Bytes};
use serde::Deserialize;
use serde_json::{Value, json};
use treven_mesh::ErrorCode;
use treven_mesh::events::EventChannel;

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Follow a resource, optionally resuming after an event id.
    Subscribe {
        /// `report:<uuid>`, `conversation:<uuid>` or `run:<uuid>`.
        channel: String,
        /// The last event id the client saw.
        #[serde(rename = "lastEventId", default)]
        last_event_id: Option<String>,
    },
    /// Stop following a resource.
    Unsubscribe {
        /// As subscribed.
        channel: String,
    },
    /// Send a message in a conversation; the reply streams back.
    Chat {
        /// The conversation's UUID.
        #[serde(rename = "conversationId")]
        conversation_id: String,
        /// The analyst's message.
        content: String,
        /// Decisions on the personal data found in `content` (proto3 JSON
        /// of `treven.reports.v1.PiiDecision`); none when it has none.
        #[serde(rename = "piiDecisions", default)]
        pii_decisions: Vec<Value>,
    },
}

/// Where an error belongs.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The connection as a whole.
    Connection,
    /// One channel (as the client wrote it).
    Channel(&'a str),
    /// One chat.
    Conversation(&'a str),
}

/// Cuts what the client sent to a length worth echoing.
fn echo(text: &str) -> &str {
    match text.char_indices().nth(100) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A text frame of `value`.
pub fn text(value: &Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

/// `{"type":"error","code","message",…}`.
pub fn error(code: ErrorCode, message: &str, scope: Scope<'_>) -> Message {
    error_with_details(code, message, scope, None)
}

/// An `error` frame as [`error`], with the REST error body's `details`
/// (for example `piiDetected.findings`) when there are any.
pub fn error_with_details(
    code: ErrorCode,
    message: &str,
    scope: Scope<'_>,
    details: Option<&Value>,
) -> Message {
    let mut value = json!({"type": "error", "code": code.as_str(), "message": message});
    match scope {
        Scope::Connection => {}
        Scope::Channel(channel) => value["channel"] = json!(echo(channel)),
        Scope::Conversation(id) => value["conversationId"] = json!(echo(id)),
    }
    if let Some(details) = details.filter(|d| d.as_object().is_some_and(|o| !o.is_empty())) {
        value["details"] = details.clone();
    }
    text(&value)
}

/// `{"type":"subscribed","channel","replayed"}`.
pub fn subscribed(channel: &EventChannel, replayed: usize) -> Message {
    text(&json!({"type": "subscribed", "channel": channel.to_string(), "replayed": replayed}))
}

/// `{"type":"unsubscribed","channel"}`.
pub fn unsubscribed(channel: &EventChannel) -> Message {
    text(&json!({"type": "unsubscribed", "channel": channel.to_string()}))
}

/// `{"type":"resync","channel","message"}`.
pub fn resync(channel: &EventChannel) -> Message {
    text(&json!({
        "type": "resync",
        "channel": channel.to_string(),
        "message": "more events were missed than can be replayed; reload the resource",
    }))
}

/// `{"type": kind, "conversationId", "data"}` for a chat reply event.
pub fn chat(kind: &str, conversation_id: &str, data: Value) -> Message {
    text(&json!({"type": kind, "conversationId": conversation_id, "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_refuse_the_unknown() {
        let parse = |s: &str| serde_json::from_str::<ClientMessage>(s);
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":"report:x","lastEventId":"1-0"}"#).ok(),
            Some(ClientMessage::Subscribe {
                channel: "report:x".into(),
                last_event_id: Some("1-0".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":"run:x"}"#).ok(),
            Some(ClientMessage::Subscribe {
                channel: "run:x".into(),
                last_event_id: None
            })
        );
        assert_eq!(
            parse(r#"{"type":"chat","conversationId":"c","content":"hi"}"#).ok(),
            Some(ClientMessage::Chat {
                conversation_id: "c".into(),
                content: "hi".into(),
                pii_decisions: Vec::new(),
            })
        );
        assert_eq!(
            parse(r#"{"type":"chat","conversationId":"c","content":"hi","piiDecisions":[{"findingId":"f","action":"PII_ACTION_REDACT"}]}"#).ok(),
            Some(ClientMessage::Chat {
                conversation_id: "c".into(),
                content: "hi".into(),
                pii_decisions: vec![json!({"findingId": "f", "action": "PII_ACTION_REDACT"})],
            })
        );
        for bad in [
            r#"{"type":"publish","channel":"report:x"}"#,
            r#"{"channel":"report:x"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","channel":"report:x","orgId":"other"}"#,
            "[]",
            "not json",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_echo_a_bounded_scope() {
        let long = "x".repeat(500);
        let Message::Text(frame) = error(ErrorCode::NotFound, "gone", Scope::Channel(&long)) else {
            panic!("a text frame");
        };
        let value: Value = serde_json::from_str(frame.as_str()).unwrap_or_default();
        assert_eq!(value["type"], "error");
        assert_eq!(value["code"], "NOT_FOUND");
        assert_eq!(value["channel"].as_str().map(str::len), Some(100));
        assert!(value.get("details").is_none(), "{value}");

        let details =
            json!({"piiDetected": {"findings": [{"id": "f1", "type": "PII_TYPE_EMAIL"}]}});
        let Message::Text(frame) = error_with_details(
            ErrorCode::PiiDetected,
            "personal data found",
            Scope::Conversation("c-1"),
            Some(&details),
        ) else {
            panic!("a text frame");
        };
        let value: Value = serde_json::from_str(frame.as_str()).unwrap_or_default();
        assert_eq!(value["code"], "PII_DETECTED");
        assert_eq!(value["conversationId"], "c-1");
        assert_eq!(value["details"], details);
    }
}
