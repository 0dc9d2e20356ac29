//! Conversations, messages, runs and usage in DynamoDB, single-table: every
//! item's partition key is `ORG#<org>`, so no query can leave the caller's
//! organisation. Sort keys: `CONV#<id>`, `MSG#<conversation>#<message v7>`
//! (time-ordered), `RUN#<id>`, `USAGE#<YYYY-MM>#<model>` (counters added
//! atomically). Conversations are also indexed by last activity on GSI1,
//! one partition per owner (`GSI1PK = ORG#<org>#CONV#OWNER#<user>`,
//! `GSI1SK = <updated_at>#<id>`), so listing one user's conversations is a
//! key condition, not a filter. Rows written before conversations had
//! owners' partitions sit under `ORG#<org>#CONV` and move to their owner's
//! partition the next time they are written (see `store::conversations`).
//!
//! Records are stored as one JSON attribute `body` besides their keys.
//! Per record kind: `conversations` (and their messages), `runs`,
//! `usage`.

use std::collections::HashMap;
use treven_mesh::trace::{self, Traced as _};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use treven_mesh::aws::classify;
use treven_mesh::{OrgId, ServiceError};

mod conversations;
mod runs;
mod usage;

pub use conversations::ExpiredMessages;

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
    /// Whether the listing had reached the pre-owner (legacy) partition of
    /// conversations (see `store::conversations`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
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

    /// The item of `org` under sort key `sk`, read consistently.
    async fn get(&self, org: OrgId, sk: String) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk(org)))
            .key("SK", s(sk))
            .consistent_read(true)
            .send()
            .traced(trace::with_org(
                trace::dynamodb("GetItem", &self.table),
                org,
            ))
            .await
            .map_err(|e| classify("get item", e))?;
        Ok(output.item)
    }
}
