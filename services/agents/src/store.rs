//! Conversations, messages, runs and usage in DynamoDB, single-table: every
//! item's partition key is `ORG#<org>`, so no query can leave the caller's
//! organisation. Sort keys: `CONV#<id>`, `MSG#<conversation>#<message v7>`
//! (time-ordered), `RUN#<id>`, `USAGE#<YYYY-MM>#<model>` (counters added
//! atomically). Conversations are also indexed by last activity on GSI1
//! (`GSI1PK = ORG#<org>#CONV`, `GSI1SK = <updated_at>#<id>`).
//!
//! Records are stored as one JSON attribute `body` besides their keys.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use treven_mesh::{OrgId, ServiceError};
use uuid::Uuid;

use crate::model::{Conversation, Message, ModelUsage, Run};
use crate::provider::Usage;

type Item = HashMap<String, AttributeValue>;
type Result<T> = std::result::Result<T, ServiceError>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn pk(org: OrgId) -> String {
    format!("ORG#{org}")
}

fn sortable(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A DynamoDB failure: UNAVAILABLE for outages and throttling, else INTERNAL.
fn classify<E, R>(operation: &'static str, error: SdkError<E, R>) -> ServiceError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let unavailable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let text = service.err().to_string();
            format!("{:?}", service.raw()).contains("status: 5")
                || [
                    "Throttling",
                    "ProvisionedThroughputExceeded",
                    "RequestLimitExceeded",
                ]
                .iter()
                .any(|c| text.contains(c))
        }
        _ => false,
    };
    let source = anyhow::Error::new(error).context(operation);
    if unavailable {
        ServiceError::unavailable(source)
    } else {
        ServiceError::internal(source)
    }
}

fn body<T: Serialize>(value: &T) -> Result<AttributeValue> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| ServiceError::internal(anyhow::anyhow!("serialise record: {e}")))
}

fn parse<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let raw = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("item has no body")))?;
    serde_json::from_str(raw)
        .map_err(|e| ServiceError::internal(anyhow::anyhow!("stored record does not parse: {e}")))
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// Where a listing stopped: the last item's sort keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Position {
    /// `SK` of the last item.
    pub sk: String,
    /// `GSI1SK` of the last item, for index listings.
    pub gsi1sk: Option<String>,
}

/// The agents table.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    /// Uses `table` through `client`.
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

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

    async fn get(&self, org: OrgId, sk: String) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk(org)))
            .key("SK", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("get item", e))?;
        Ok(output.item)
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

    /// Stores or replaces a run.
    pub async fn put_run(&self, run: &Run) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(pk(run.org_id)))
            .item("SK", s(format!("RUN#{}", run.id)))
            .item("kind", s("run"))
            .item("body", body(run)?)
            .send()
            .await
            .map_err(|e| classify("put run", e))?;
        Ok(())
    }

    /// One run of `org`.
    pub async fn run(&self, org: OrgId, id: Uuid) -> Result<Option<Run>> {
        self.get(org, format!("RUN#{id}"))
            .await?
            .map(|item| parse(&item))
            .transpose()
    }

    /// Adds one model call's tokens and cost to `org`'s month.
    pub async fn add_usage(
        &self,
        org: OrgId,
        month: &str,
        model_id: &str,
        usage: Usage,
        cost_nanos: i64,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(pk(org)))
            .key("SK", s(format!("USAGE#{month}#{model_id}")))
            .update_expression(
                "SET kind = :k, model_id = :m ADD input_tokens :i, output_tokens :o, cache_read_tokens :r, cache_write_tokens :w, cost_nanos :c, calls :one",
            )
            .expression_attribute_values(":k", s("usage"))
            .expression_attribute_values(":m", s(model_id))
            .expression_attribute_values(":i", n(usage.input_tokens))
            .expression_attribute_values(":o", n(usage.output_tokens))
            .expression_attribute_values(":r", n(usage.cache_read_tokens))
            .expression_attribute_values(":w", n(usage.cache_write_tokens))
            .expression_attribute_values(":c", n(cost_nanos))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| classify("add usage", e))?;
        Ok(())
    }

    /// `org`'s usage in `month` (`YYYY-MM`), per model.
    pub async fn usage(&self, org: OrgId, month: &str) -> Result<Vec<ModelUsage>> {
        let mut rows = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :p AND begins_with(SK, :u)")
                .expression_attribute_values(":p", s(pk(org)))
                .expression_attribute_values(":u", s(format!("USAGE#{month}#")))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("query usage", e))?;
            for item in output.items.unwrap_or_default() {
                rows.push(ModelUsage {
                    model_id: item
                        .get("model_id")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                    usage: Usage {
                        input_tokens: number(&item, "input_tokens"),
                        output_tokens: number(&item, "output_tokens"),
                        cache_read_tokens: number(&item, "cache_read_tokens"),
                        cache_write_tokens: number(&item, "cache_write_tokens"),
                    },
                    cost_nanos: number(&item, "cost_nanos"),
                    calls: number(&item, "calls"),
                });
            }
            match output.last_evaluated_key {
                Some(key) if rows.len() < 1_000 => start = Some(key),
                _ => break,
            }
        }
        rows.sort_by(|a, b| {
            b.cost_nanos
                .cmp(&a.cost_nanos)
                .then(a.model_id.cmp(&b.model_id))
        });
        Ok(rows)
    }
}
