//! Conversations (also indexed by last activity on GSI1) and their messages.

use std::collections::HashMap;
use treven_mesh::trace::{self, Traced as _};

use treven_mesh::OrgId;
use treven_mesh::aws::classify;
use uuid::Uuid;

use super::{Item, Position, Result, Store, body, parse, pk, s, sortable};
use crate::model::{Conversation, Message};

/// Most index pages read from the legacy partition for one listing page.
const LEGACY_QUERIES: usize = 5;
/// Items evaluated per query of the legacy partition (most belong to other
/// users and are filtered out server-side).
const LEGACY_PAGE: i32 = 100;

/// The GSI1 partition of `owner`'s conversations in `org`.
fn owner_partition(org: OrgId, owner: &str) -> String {
    if owner.is_empty() {
        format!("{}#CONV#UNOWNED", pk(org))
    } else {
        format!("{}#CONV#OWNER#{owner}", pk(org))
    }
}

/// The GSI1 partition conversations of `org` were written to before each
/// owner had their own.
fn legacy_partition(org: OrgId) -> String {
    format!("{}#CONV", pk(org))
}

/// Where a listing stops after `item` of an index query.
fn position_of(item: &Item, legacy: bool) -> Option<Position> {
    Some(Position {
        sk: item.get("SK")?.as_s().ok()?.clone(),
        gsi1sk: Some(item.get("GSI1SK")?.as_s().ok()?.clone()),
        legacy,
    })
}

impl Store {
    fn conversation_item(c: &Conversation) -> Result<Item> {
        Ok(HashMap::from([
            ("PK".into(), s(pk(c.org_id))),
            ("SK".into(), s(format!("CONV#{}", c.id))),
            ("GSI1PK".into(), s(owner_partition(c.org_id, &c.created_by))),
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
            .traced(trace::dynamodb("PutItem", &self.table))
            .await
            .map_err(|e| classify("put conversation", e))?;
        Ok(())
    }

    /// Replaces a conversation (title, activity time); a row of the legacy
    /// partition moves to its owner's.
    pub async fn update_conversation(&self, c: &Conversation) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::conversation_item(c)?))
            .condition_expression("attribute_exists(PK)")
            .send()
            .traced(trace::dynamodb("PutItem", &self.table))
            .await
            .map_err(|e| classify("update conversation", e))?;
        Ok(())
    }

    /// One conversation of `org`, whoever owns it (the caller decides who
    /// may see it).
    pub async fn conversation(&self, org: OrgId, id: Uuid) -> Result<Option<Conversation>> {
        self.get(org, format!("CONV#{id}"))
            .await?
            .map(|item| parse(&item))
            .transpose()
    }

    /// The conversations of `org` started by `owner`, most recently active
    /// first: first `owner`'s partition of GSI1 (a key condition), then the
    /// rows written before owners had partitions, filtered server-side on
    /// the owner recorded in their body (and checked again here). Rows with
    /// no owner are listed for nobody.
    pub async fn list_conversations(
        &self,
        org: OrgId,
        owner: &str,
        limit: u32,
        after: Option<Position>,
    ) -> Result<(Vec<Conversation>, Option<Position>)> {
        if owner.is_empty() {
            return Ok((Vec::new(), None));
        }
        let limit = usize::try_from(limit).unwrap_or(100).clamp(1, 100);
        let mut found = Vec::new();
        let mut legacy_after = match after {
            Some(position) if position.legacy => Some(position),
            after => {
                let (items, next) = self
                    .query_conversations(org, &owner_partition(org, owner), None, limit, after)
                    .await?;
                found.extend(
                    items
                        .iter()
                        .map(parse)
                        .collect::<Result<Vec<Conversation>>>()?,
                );
                if next.is_some() {
                    return Ok((found, next));
                }
                None
            }
        };
        // Only this owner's rows of the legacy partition can match.
        let needle = format!(
            "\"created_by\":{}",
            serde_json::to_string(owner).unwrap_or_default()
        );
        for _ in 0..LEGACY_QUERIES {
            if found.len() == limit {
                let start = legacy_after.unwrap_or(Position {
                    sk: String::new(),
                    gsi1sk: None,
                    legacy: true,
                });
                return Ok((found, Some(start)));
            }
            let (items, next) = self
                .query_conversations(
                    org,
                    &legacy_partition(org),
                    Some(&needle),
                    usize::try_from(LEGACY_PAGE).unwrap_or(100),
                    legacy_after.take(),
                )
                .await?;
            for item in &items {
                let conversation: Conversation = parse(item)?;
                if conversation.created_by != owner {
                    continue;
                }
                found.push(conversation);
                if found.len() == limit {
                    // Stop after this item, even if the page had more.
                    return Ok((found, position_of(item, true)));
                }
            }
            match next {
                Some(mut next) => {
                    next.legacy = true;
                    legacy_after = Some(next);
                }
                None => return Ok((found, None)),
            }
        }
        // A short page: the caller continues from the cursor.
        Ok((found, legacy_after))
    }

    /// One page of GSI1 `partition`, newest first, after `after`, with the
    /// body containing `needle` when given.
    async fn query_conversations(
        &self,
        org: OrgId,
        partition: &str,
        needle: Option<&str>,
        limit: usize,
        after: Option<Position>,
    ) -> Result<(Vec<Item>, Option<Position>)> {
        let legacy = needle.is_some();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("GSI1PK = :p")
            .expression_attribute_values(":p", s(partition))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(100));
        if let Some(needle) = needle {
            query = query
                .filter_expression("contains(body, :owner)")
                .expression_attribute_values(":owner", s(needle));
        }
        if let Some(after) = after.filter(|a| !a.sk.is_empty()) {
            query = query
                .exclusive_start_key("PK", s(pk(org)))
                .exclusive_start_key("SK", s(after.sk))
                .exclusive_start_key("GSI1PK", s(partition))
                .exclusive_start_key("GSI1SK", s(after.gsi1sk.unwrap_or_default()));
        }
        let output = query
            .send()
            .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
            .await
            .map_err(|e| classify("list conversations", e))?;
        let next = output
            .last_evaluated_key
            .and_then(|key| position_of(&key, legacy));
        Ok((output.items.unwrap_or_default(), next))
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
            .traced(trace::with_org(
                trace::dynamodb("PutItem", &self.table),
                org,
            ))
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
            .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
            .await
            .map_err(|e| classify("list messages", e))?;
        let next = output.last_evaluated_key.and_then(|key| {
            Some(Position {
                sk: key.get("SK")?.as_s().ok()?.clone(),
                gsi1sk: None,
                legacy: false,
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
