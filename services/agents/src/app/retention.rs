//! The retention job's part in agents: erasing the bodies of messages
//! written before the organisation's cutoff (`retention.message_bodies_days`
//! of its settings, read by the job from tenants). Called by
//! `treven admin retention` for one organisation at a time, acting as the
//! operator in that organisation.
//!
//! A message's body is its content and its tool calls' arguments and
//! result summaries ([`crate::model::Message::erased`]); its id, role,
//! citations, model, tokens, cost and times are kept, so usage and the
//! conversation's shape survive.
//!
//! Per page of messages (at most 100), in this order, so that a crash
//! anywhere is completed by the next run and audited at least once:
//! 1. per conversation, `conversation.messages_erased` is recorded with
//!    the ids of the messages about to be erased and an event id derived
//!    from them (a re-run over the same messages records the same id,
//!    which tenants stores once); no entry, no erasure;
//! 2. each message's body is replaced and the item marked `erased_at`,
//!    conditional on not being marked (a re-run changes nothing).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};

use super::audit::{AuditEntry, AuditLog, derived_event_id};
use crate::store::Store;

/// The audit action of message bodies erased under the retention setting.
pub const MESSAGES_ERASED_ACTION: &str = "conversation.messages_erased";
/// Most message bodies one call erases.
pub const MAX_ERASE_BATCH: usize = 1000;
/// Most pages of 100 items one call reads.
const MAX_PAGES: usize = 20;

/// What one erasure pass did in one organisation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageErasure {
    /// Message bodies erased.
    pub messages: u64,
    /// Conversations they belong to (counted once per page).
    pub conversations: u64,
    /// Where the next pass continues (a sort key); `None` when every
    /// conversation started before the cutoff was examined.
    pub next: Option<String>,
}

/// The erasure of expired message bodies: the agents table and the audit
/// log, without the rest of the service (the retention job needs no
/// models).
#[derive(Debug, Clone)]
pub struct MessageRetention {
    store: Store,
    audit: AuditLog,
}

impl MessageRetention {
    /// Erases in `store`, recording in `audit`.
    pub fn new(store: Store, audit: AuditLog) -> Self {
        Self { store, audit }
    }

    /// Erases the bodies of up to `limit` (at most [`MAX_ERASE_BATCH`])
    /// messages of the context's organisation written before `cutoff`,
    /// continuing after `after` (the previous pass's
    /// [`MessageErasure::next`]); see the module's documentation for the
    /// order and its guarantees.
    pub async fn erase_expired_message_bodies(
        &self,
        ctx: &MeshContext,
        cutoff: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<MessageErasure, ServiceError> {
        let audit = &self.audit;
        let org = ctx.org_id();
        let limit = limit.clamp(1, MAX_ERASE_BATCH);
        let mut done = MessageErasure {
            next: after,
            ..MessageErasure::default()
        };
        let mut first = true;
        for _ in 0..MAX_PAGES {
            if !first && done.next.is_none() {
                break;
            }
            first = false;
            let remaining = limit - done.messages as usize;
            if remaining == 0 {
                break;
            }
            let page = self
                .store
                .messages_written_before(org, cutoff, done.next.take(), remaining.min(100))
                .await?;
            done.next = page.next;
            let mut by_conversation: BTreeMap<uuid::Uuid, Vec<crate::model::Message>> =
                BTreeMap::new();
            for message in page.messages {
                by_conversation
                    .entry(message.conversation_id)
                    .or_default()
                    .push(message);
            }
            for (conversation, messages) in by_conversation {
                let ids: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
                let mut parts = vec![MESSAGES_ERASED_ACTION.to_owned(), org.to_string()];
                parts.extend(ids.iter().cloned());
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                let entry = AuditEntry {
                    action: MESSAGES_ERASED_ACTION,
                    resource_type: "conversation",
                    resource_id: conversation.to_string(),
                    details: json!({
                        "reason": "retention",
                        "cutoff": cutoff,
                        "count": ids.len(),
                        "message_ids": ids,
                    }),
                };
                audit
                    .record_with(ctx, entry, derived_event_id(&parts), super::audit::RECORD_ATTEMPTS)
                    .await
                    .map_err(|error| {
                        tracing::error!(%org, %conversation, %error, "retention: erasure not recorded in the audit log; nothing erased");
                        ServiceError::new(
                            ErrorCode::Unavailable,
                            "the erasure could not be recorded in the audit log; nothing was erased, retry later",
                        )
                    })?;
                let now = Utc::now();
                let mut erased = 0;
                for message in messages {
                    if self.store.erase_message(org, &message.erased(now)).await? {
                        erased += 1;
                    }
                }
                tracing::info!(%org, %conversation, erased, "retention: message bodies erased");
                done.messages += erased;
                done.conversations += 1;
            }
        }
        tracing::info!(%org, %cutoff, messages = done.messages, conversations = done.conversations, more = done.next.is_some(), "retention: message bodies pass done");
        Ok(done)
    }
}
