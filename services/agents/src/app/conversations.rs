//! Conversations: starting one, listing them and their messages.

use chrono::Utc;
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, OrgId, ServiceError};
use uuid::Uuid;

use super::{Agents, parse_uuid, require_member, require_writer};
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
        require_writer(ctx)?;
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
        if context.sector.chars().count() > 100 {
            return Err(ServiceError::invalid_field(
                "context.sector",
                "must be at most 100 characters",
            ));
        }
        if let (Some(from), Some(to)) = (context.from, context.to)
            && from >= to
        {
            return Err(ServiceError::invalid_field(
                "context.time_range",
                "start must be before end",
            ));
        }
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
        require_member(ctx)?;
        let limit = page_limit(limit, 50, 100)?;
        let org = ctx.org_id();
        let after: Option<Position> = self.inner.cursors.decode(org, "conversations", cursor)?;
        let (items, next) = self
            .inner
            .store
            .list_conversations(org, limit, after)
            .await?;
        let next = next
            .map(|p| self.inner.cursors.encode(org, "conversations", &p))
            .unwrap_or_default();
        Ok((items, next))
    }

    pub(super) async fn conversation(
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

    /// The messages of a conversation, newest first.
    pub async fn list_messages(
        &self,
        ctx: &MeshContext,
        conversation_id: &str,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<Message>, String), ServiceError> {
        require_member(ctx)?;
        let limit = page_limit(limit, 50, 100)?;
        let org = ctx.org_id();
        let conversation = self.conversation(org, conversation_id).await?;
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
