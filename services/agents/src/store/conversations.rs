//! Conversations (also indexed by last activity on GSI1) and their messages.

use std::collections::HashMap;

use treven_mesh::OrgId;
use treven_mesh::aws::classify;
use uuid::Uuid;

use super::{Item, Position, Result, Store, body, parse, pk, s, sortable};
use crate::model::{Conversation, Message};

impl Store {
    fn conversation_item(c: &Conversation) -> Result<Item> {
        Ok(HashMap::from([
            ("PK".into(), s(pk(c.org_id))),
            ("SK".into(), s(format!("CONV#{}", c.id))),
            ("GSI1PK".into(), s(format!("{}#CONV", pk(c.org_id)))),
            (
                "GSI1SK".into(),
                s(format!("{}#{}", sortable(c.updated_at), c.id)),
            ),
            ("kind".into(), s("conversation")),
            ("body".into(), body(c)?),
        ]))
    }

    /// Stores a new conversation.
    pub async fn create_conversation(&self, c: &Conversation) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::conversation_item(c)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(|e| classify("put conversation", e))?;
        Ok(())
    }

    /// Replaces a conversation (title, activity time).
    pub async fn update_conversation(&self, c: &Conversation) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::conversation_item(c)?))
            .condition_expression("attribute_exists(PK)")
            .send()
            .await
            .map_err(|e| classify("update conversation", e))?;
        Ok(())
    }

    /// One conversation of `org`.
    pub async fn conversation(&self, org: OrgId, id: Uuid) -> Result<Option<Conversation>> {
        self.get(org, format!("CONV#{id}"))
            .await?
            .map(|item| parse(&item))
            .transpose()
    }

    /// Conversations of `org`, most recently active first.
    pub async fn list_conversations(
        &self,
        org: OrgId,
        limit: u32,
        after: Option<Position>,
    ) -> Result<(Vec<Conversation>, Option<Position>)> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("GSI1PK = :p")
            .expression_attribute_values(":p", s(format!("{}#CONV", pk(org))))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(100));
        if let Some(after) = after {
            query = query
                .exclusive_start_key("PK", s(pk(org)))
                .exclusive_start_key("SK", s(after.sk))
                .exclusive_start_key("GSI1PK", s(format!("{}#CONV", pk(org))))
                .exclusive_start_key("GSI1SK", s(after.gsi1sk.unwrap_or_default()));
        }
        let output = query
            .send()
            .await
            .map_err(|e| classify("list conversations", e))?;
        let items = output.items.unwrap_or_default();
        let next = output.last_evaluated_key.and_then(|key| {
            Some(Position {
                sk: key.get("SK")?.as_s().ok()?.clone(),
                gsi1sk: Some(key.get("GSI1SK")?.as_s().ok()?.clone()),
            })
        });
        let conversations = items.iter().map(parse).collect::<Result<Vec<_>>>()?;
        Ok((conversations, next))
    }

    /// Stores a message.
    pub async fn put_message(&self, org: OrgId, message: &Message) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(pk(org)))
            .item(
                "SK",
                s(format!("MSG#{}#{}", message.conversation_id, message.id)),
            )
            .item("kind", s("message"))
            .item("body", body(message)?)
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(|e| classify("put message", e))?;
        Ok(())
    }

    /// Messages of a conversation, newest first.
    pub async fn list_messages(
        &self,
        org: OrgId,
        conversation: Uuid,
        limit: u32,
        after: Option<Position>,
    ) -> Result<(Vec<Message>, Option<Position>)> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :p AND begins_with(SK, :m)")
            .expression_attribute_values(":p", s(pk(org)))
            .expression_attribute_values(":m", s(format!("MSG#{conversation}#")))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(100));
        if let Some(after) = after {
            query = query
                .exclusive_start_key("PK", s(pk(org)))
                .exclusive_start_key("SK", s(after.sk));
        }
        let output = query
            .send()
            .await
            .map_err(|e| classify("list messages", e))?;
        let next = output.last_evaluated_key.and_then(|key| {
            Some(Position {
                sk: key.get("SK")?.as_s().ok()?.clone(),
                gsi1sk: None,
            })
        });
        let messages = output
            .items
            .unwrap_or_default()
            .iter()
            .map(parse)
            .collect::<Result<Vec<_>>>()?;
        Ok((messages, next))
    }
}
