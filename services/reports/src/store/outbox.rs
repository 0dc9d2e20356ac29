//! The outbox table: events that must follow a change (the audit entries
//! tenants keeps), stored in the change's own transaction and relayed after
//! commit by [`crate::outbox::Relay`].
//!
//! Two paths, kept apart on purpose:
//! - [`OrgTx::enqueue`]: inside an organisation transaction (role
//!   `treven_app`, row-level security), the only write the service role may
//!   make (INSERT).
//! - The relay's queries ([`PgStore::claim_outbox`],
//!   [`PgStore::outbox_delivered`], [`PgStore::outbox_failed`],
//!   [`PgStore::outbox_release`], [`PgStore::outbox_pending`]): across
//!   organisations, each in a background transaction as `treven_worker`
//!   (`treven_mesh::postgres::begin_background`), whose only grants are the
//!   job lease columns and this table (migration `0004_roles.sql`). They are
//!   the ONLY cross-organisation outbox queries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use treven_mesh::{OrgId, Role};
use uuid::Uuid;

use super::{OrgTx, PgStore, Result, from_json, to_json};

/// The kind of an outbox event, which says who receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// An audit entry for tenants `RecordAuditEvent`.
    Audit,
}

impl OutboxKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Audit => "audit",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        match raw {
            "audit" => Ok(OutboxKind::Audit),
            other => Err(super::StoreError::Internal(sqlx::Error::Decode(
                format!("outbox kind {other:?}").into(),
            ))),
        }
    }
}

/// An event to store with a change.
#[derive(Debug, Clone)]
pub struct NewOutboxEvent<'a> {
    /// Its kind.
    pub kind: OutboxKind,
    /// Who made the change.
    pub actor_id: &'a str,
    /// Their roles at the time.
    pub actor_roles: &'a [Role],
    /// The request that made it.
    pub request_id: &'a str,
    /// What to deliver (a JSON object).
    pub payload: serde_json::Value,
}

/// A pending event the relay has claimed.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// The event id, the one the receiver de-duplicates on.
    pub id: Uuid,
    /// The organisation of the change.
    pub org_id: OrgId,
    /// Its kind.
    pub kind: OutboxKind,
    /// Who made the change.
    pub actor_id: String,
    /// Their roles at the time.
    pub actor_roles: Vec<Role>,
    /// The request that made it.
    pub request_id: String,
    /// What to deliver.
    pub payload: serde_json::Value,
    /// When the change committed (about).
    pub created_at: DateTime<Utc>,
    /// Failed deliveries so far.
    pub attempts: i32,
}

impl OrgTx {
    /// Stores `event` in this transaction: it exists exactly when the
    /// change it follows commits. Returns its id.
    pub async fn enqueue(&mut self, event: NewOutboxEvent<'_>) -> Result<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO outbox (id, org_id, kind, actor_id, actor_roles, request_id, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(self.tx.org_id().as_uuid())
        .bind(event.kind.as_str())
        .bind(event.actor_id)
        .bind(to_json(&event.actor_roles)?)
        .bind(event.request_id)
        .bind(event.payload)
        .execute(&mut *self.tx)
        .await?;
        Ok(id)
    }
}

impl PgStore {
    /// Relay path (across organisations): claims up to `limit` events that
    /// are due, oldest first, by moving their next attempt `lease` ahead —
    /// so no other relay takes them meanwhile, and a relay that dies holding
    /// them lets them come due again after `lease`. No lock is held while
    /// they are delivered.
    pub async fn claim_outbox(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxEvent>> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "UPDATE outbox SET next_attempt_at = clock_timestamp() + $2 * interval '1 millisecond' \
             WHERE id IN ( \
                 SELECT id FROM outbox WHERE next_attempt_at <= clock_timestamp() \
                 ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, org_id, kind, actor_id, actor_roles, request_id, payload, created_at, attempts",
        )
        .bind(i64::from(limit))
        .bind(lease.as_millis() as f64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut events = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<Vec<OutboxEvent>>>()?;
        events.sort_by_key(|e| (e.created_at, e.id));
        Ok(events)
    }

    /// Relay path: `id` was delivered; it leaves the outbox.
    pub async fn outbox_delivered(&self, id: Uuid) -> Result<()> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Relay path: delivering `id` failed with `error`; count the attempt
    /// and try again after `delay`.
    pub async fn outbox_failed(&self, id: Uuid, error: &str, delay: Duration) -> Result<()> {
        let error: String = error.chars().take(1_000).collect();
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                    next_attempt_at = clock_timestamp() + $3 * interval '1 millisecond' \
             WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(delay.as_millis() as f64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Relay path: gives back claimed events it did not try (their receiver
    /// is down), due again after `delay`; the attempt is not counted.
    pub async fn outbox_release(&self, ids: &[Uuid], delay: Duration) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = clock_timestamp() + $2 * interval '1 millisecond' \
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(delay.as_millis() as f64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Operations (and tests): how many events are still to be delivered,
    /// across organisations.
    pub async fn outbox_pending(&self) -> Result<i64> {
        let mut tx = treven_mesh::postgres::begin_background(&self.pool).await?;
        let pending = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(pending)
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: Uuid,
    org_id: Uuid,
    kind: String,
    actor_id: String,
    actor_roles: serde_json::Value,
    request_id: String,
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
    attempts: i32,
}

impl TryFrom<OutboxRow> for OutboxEvent {
    type Error = super::StoreError;
    fn try_from(row: OutboxRow) -> Result<Self> {
        Ok(OutboxEvent {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            kind: OutboxKind::parse(&row.kind)?,
            actor_id: row.actor_id,
            actor_roles: from_json("actor_roles", row.actor_roles)?,
            request_id: row.request_id,
            payload: row.payload,
            created_at: row.created_at,
            attempts: row.attempts,
        })
    }
}
