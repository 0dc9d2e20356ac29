//! Conversations (also indexed by last activity on GSI1) and their messages.

use std::collections::HashMap;
use treven_mesh::trace::{self, Traced as _};

use treven_mesh::aws::classify;
use treven_mesh::{OrgId, ServiceError};
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

/// One page of messages examined by the retention job.
#[derive(Debug, Clone, Default)]
pub struct ExpiredMessages {
    /// Messages written before the cutoff whose bodies are not erased yet,
    /// in sort-key order.
    pub messages: Vec<Message>,
    /// The sort key to continue after; `None` when every conversation
    /// started before the cutoff has been examined.
    pub next: Option<String>,
}

impl Store {
    /// Up to `limit` messages of `org` written before `cutoff` whose bodies
    /// are not erased, after sort key `after`, from at most one page of
    /// 100 items. Conversation ids are UUID v7, so the range `MSG#` ..
    /// `MSG#<largest id of the cutoff's millisecond>$` holds exactly the
    /// messages of conversations started before the cutoff (none started
    /// later can hold an expired message); each message's own time is
    /// checked here.
    pub async fn messages_written_before(
        &self,
        org: OrgId,
        cutoff: chrono::DateTime<chrono::Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<ExpiredMessages> {
        let millis = u128::try_from(cutoff.timestamp_millis().max(0)).unwrap_or(0);
        let last_conversation = Uuid::from_u128((millis << 80) | ((1u128 << 80) - 1));
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :p AND SK BETWEEN :first AND :last")
            .filter_expression("attribute_not_exists(erased_at)")
            .expression_attribute_values(":p", s(pk(org)))
            .expression_attribute_values(":first", s("MSG#"))
            .expression_attribute_values(":last", s(format!("MSG#{last_conversation}$")))
            .consistent_read(true)
            .limit(100);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("PK", s(pk(org)))
                .exclusive_start_key("SK", s(after));
        }
        let output = query
            .send()
            .traced(trace::with_org(trace::dynamodb("Query", &self.table), org))
            .await
            .map_err(|e| classify("messages to erase", e))?;
        let mut found = ExpiredMessages::default();
        for item in output.items() {
            let message: Message = parse(item)?;
            if message.created_at < cutoff && message.erased_at.is_none() {
                found.messages.push(message);
                if found.messages.len() == limit {
                    let sk = item.get("SK").and_then(|v| v.as_s().ok()).cloned();
                    found.next = sk;
                    return Ok(found);
                }
            }
        }
        found.next = output
            .last_evaluated_key
            .and_then(|key| key.get("SK")?.as_s().ok().cloned());
        Ok(found)
    }

    /// Replaces a message's body with its erased form (`erased`, see
    /// [`Message::erased`]) and marks the item `erased_at`, unless it is
    /// already marked; `false` then, so a re-run changes nothing.
    pub async fn erase_message(&self, org: OrgId, erased: &Message) -> Result<bool> {
        let at = erased
            .erased_at
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("message not erased")))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(pk(org)))
            .key(
                "SK",
                s(format!("MSG#{}#{}", erased.conversation_id, erased.id)),
            )
            .update_expression("SET body = :body, erased_at = :at")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(erased_at)")
            .expression_attribute_values(":body", body(erased)?)
            .expression_attribute_values(":at", s(at.to_rfc3339()))
            .send()
            .traced(trace::with_org(
                trace::dynamodb("UpdateItem", &self.table),
                org,
            ))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .map(|e| e.is_conditional_check_failed_exception())
                    == Some(true) =>
            {
                Ok(false)
            }
            Err(error) => Err(classify("erase message", error)),
        }
    }
}
