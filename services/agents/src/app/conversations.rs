//! Conversations: starting one, listing them and their messages.
//!
//! A conversation belongs to the user who started it
//! (`MeshContext::user_id`). Only its owner lists it, reads it or writes to
//! it; anyone else gets NOT_FOUND, exactly as for an id that does not
//! exist, so its existence is not revealed. Admins may also read another
//! user's conversation for oversight (never write to it); each such read
//! is first recorded in the audit log (see [`super::oversight`]), and is
//! refused as NOT_FOUND when no audit log is wired. A row with no owner
//! (none is written today) is nobody's: admins may read it for oversight,
//! nobody may write to it.

use chrono::Utc;
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, OrgId, Role, ServiceError};
use uuid::Uuid;

use super::prompt::bounded_text;
use super::{Agents, parse_uuid};
use crate::model::{Conversation, ConversationContext, Message};
use crate::store::Position;

/// Longest conversation title.
pub const MAX_TITLE_CHARS: usize = 200;

impl Agents {
    /// Starts a conversation.
    pub async fn create_conversation(
        &self,
        ctx: &MeshContext,
        context: ConversationContext,
        title: String,
    ) -> Result<Conversation, ServiceError> {
        if ctx.user_id().is_empty() {
            return Err(ServiceError::forbidden(
                "a conversation is started by a signed-in user",
            ));
        }
        let title = title.trim().to_owned();
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(ServiceError::invalid_field(
                "title",
                "must be at most 200 characters",
            ));
        }
        let valid_country = context.country.is_empty()
            || (context.country.len() == 2
                && context.country.chars().all(|c| c.is_ascii_uppercase()));
        if !valid_country {
            return Err(ServiceError::invalid_field(
                "context.country",
                "must be an ISO 3166-1 alpha-2 code such as GB",
            ));
        }
        // The sector goes into the chat's system prompt.
        let context = ConversationContext {
            sector: bounded_text("context.sector", &context.sector, 100, false)?,
            ..context
        };
        // The period between the two instants, whichever is written first:
        // the OpenAPI document cannot say "start before end" (JSON Schema
        // does not compare two fields), and refusing a range written the
        // other way round helps nobody.
        let context = match (context.from, context.to) {
            (Some(from), Some(to)) if from > to => ConversationContext {
                from: Some(to),
                to: Some(from),
                ..context
            },
            _ => context,
        };
        let now = Utc::now();
        let conversation = Conversation {
            id: Uuid::now_v7(),
            org_id: ctx.org_id(),
            title,
            context,
            created_by: ctx.user_id().to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.inner.store.create_conversation(&conversation).await?;
        tracing::info!(org = %conversation.org_id, conversation = %conversation.id, "conversation created");
        Ok(conversation)
    }

    /// The caller's conversations, most recently active first.
    pub async fn list_conversations(
        &self,
        ctx: &MeshContext,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<Conversation>, String), ServiceError> {
        let limit = page_limit(limit, 50, 100)?;
        let org = ctx.org_id();
        let owner = ctx.user_id();
        // A cursor is good only for the listing of the user it was made for.
        let scope = format!("conversations:{owner}");
        let after: Option<Position> = self.inner.cursors.decode(org, &scope, cursor)?;
        let (items, next) = self
            .inner
            .store
            .list_conversations(org, owner, limit, after)
            .await?;
        let next = next
            .map(|p| self.inner.cursors.encode(org, &scope, &p))
            .unwrap_or_default();
        Ok((items, next))
    }

    /// The stored conversation `raw_id` of `org`, whoever owns it.
    async fn stored_conversation(
        &self,
        org: OrgId,
        raw_id: &str,
    ) -> Result<Conversation, ServiceError> {
        let id = parse_uuid("conversation_id", raw_id)?;
        self.inner
            .store
            .conversation(org, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("conversation"))
    }

    /// Conversation `raw_id` if the caller owns it; NOT_FOUND otherwise
    /// (admins included: nobody writes to another user's conversation).
    pub(super) async fn own_conversation(
        &self,
        ctx: &MeshContext,
        raw_id: &str,
    ) -> Result<Conversation, ServiceError> {
        let conversation = self.stored_conversation(ctx.org_id(), raw_id).await?;
        if is_owner(ctx, &conversation) {
            Ok(conversation)
        } else {
            Err(ServiceError::not_found("conversation"))
        }
    }

    /// Conversation `raw_id` for reading: the owner's, or, for an admin,
    /// anyone's once the oversight read is audited (`rpc` names the read in
    /// the entry); NOT_FOUND for anyone else.
    pub(super) async fn readable_conversation(
        &self,
        ctx: &MeshContext,
        raw_id: &str,
        rpc: &'static str,
    ) -> Result<Conversation, ServiceError> {
        let conversation = self.stored_conversation(ctx.org_id(), raw_id).await?;
        if is_owner(ctx, &conversation) {
            return Ok(conversation);
        }
        if !ctx.has_role(Role::Admin) {
            return Err(ServiceError::not_found("conversation"));
        }
        self.audit_oversight_read(ctx, &conversation, rpc).await?;
        Ok(conversation)
    }

    /// The messages of a conversation, newest first.
    pub async fn list_messages(
        &self,
        ctx: &MeshContext,
        conversation_id: &str,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<Message>, String), ServiceError> {
        let limit = page_limit(limit, 50, 100)?;
        let org = ctx.org_id();
        let conversation = self
            .readable_conversation(ctx, conversation_id, "ListMessages")
            .await?;
        let scope = format!("messages:{}", conversation.id);
        let after: Option<Position> = self.inner.cursors.decode(org, &scope, cursor)?;
        let (items, next) = self
            .inner
            .store
            .list_messages(org, conversation.id, limit, after)
            .await?;
        let next = next
            .map(|p| self.inner.cursors.encode(org, &scope, &p))
            .unwrap_or_default();
        Ok((items, next))
    }
}

/// Whether the caller started `conversation` (a row with no owner is
/// nobody's).
fn is_owner(ctx: &MeshContext, conversation: &Conversation) -> bool {
    !conversation.created_by.is_empty() && conversation.created_by == ctx.user_id()
}
