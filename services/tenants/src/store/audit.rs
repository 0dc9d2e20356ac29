//! The `audit_log` table: append-only entries, written in the transaction of
//! the change they record.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use treven_mesh::OrgId;
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use super::{FieldConflict, OrgTx, Result, StoreError};
use crate::model::{AuditEvent, AuditFilter, NewAuditEvent};

const AUDIT_COLUMNS: &str =
    "id, org_id, actor_id, action, resource_type, resource_id, details, request_id, occurred_at";

impl OrgTx {
    /// Appends an audit entry by the caller, in this transaction.
    pub async fn audit(&mut self, event: &NewAuditEvent) -> Result<AuditEvent> {
        let org_id = self.tx.org_id();
        let actor_id = self.tx.actor_id().to_owned();
        insert_audit(&mut self.tx, org_id, &actor_id, &self.request_id, event).await
    }

    /// Up to `limit` audit entries matching `filter` after `after`, newest first.
    pub async fn audit_events(
        &mut self,
        filter: &AuditFilter,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 \
               AND ($2::text IS NULL OR resource_type = $2) AND ($3::text IS NULL OR resource_id = $3) \
               AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND ($5::timestamptz IS NULL OR occurred_at < $5) \
               AND ($6::timestamptz IS NULL OR (occurred_at, id) < ($6, $7)) \
             ORDER BY occurred_at DESC, id DESC LIMIT $8"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(filter.resource_type.as_deref())
        .bind(filter.resource_id.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("tenants.audit_events", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Up to `limit` audit entries in `filter`'s range after `after`,
    /// oldest first: one page of an export.
    pub async fn audit_events_oldest_first(
        &mut self,
        filter: &AuditFilter,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 \
               AND ($2::text IS NULL OR resource_type = $2) AND ($3::text IS NULL OR resource_id = $3) \
               AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND ($5::timestamptz IS NULL OR occurred_at < $5) \
               AND ($6::timestamptz IS NULL OR (occurred_at, id) > ($6, $7)) \
             ORDER BY occurred_at, id LIMIT $8"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(filter.resource_type.as_deref())
        .bind(filter.resource_id.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

/// Appends `event`. With an event id the insert is idempotent: the id is
/// the entry's id, and when an entry with that id exists (the caller
/// delivered the same event again) nothing is written and that entry is
/// returned; an existing entry with that id but another action, resource or
/// actor (or in another organisation) is a conflict on `event_id`.
pub(super) async fn insert_audit(
    connection: &mut PgConnection,
    org_id: OrgId,
    actor_id: &str,
    request_id: &str,
    event: &NewAuditEvent,
) -> Result<AuditEvent> {
    let id = event.event_id.unwrap_or_else(Uuid::now_v7);
    let inserted: Option<AuditRow> = sqlx::query_as(&format!(
        "INSERT INTO audit_log (id, org_id, actor_id, action, resource_type, resource_id, details, request_id, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, clock_timestamp())) \
         ON CONFLICT (id) DO NOTHING RETURNING {AUDIT_COLUMNS}"
    ))
    .bind(id)
    .bind(org_id.as_uuid())
    .bind(actor_id)
    .bind(&event.action)
    .bind(&event.resource_type)
    .bind(&event.resource_id)
    .bind(&event.details)
    .bind(request_id)
    .bind(event.occurred_at)
    .fetch_optional(&mut *connection)
    .traced(trace::postgres("tenants.insert_audit", "INSERT"))
    .await?;
    if let Some(row) = inserted {
        return row.try_into();
    }
    // Delivered before: the entry recorded the first time (row-level
    // security hides an entry of another organisation, a clash as well).
    let existing: Option<AuditRow> = sqlx::query_as(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id.as_uuid())
    .bind(id)
    .fetch_optional(&mut *connection)
    .await?;
    match existing {
        Some(row)
            if row.action == event.action
                && row.resource_type == event.resource_type
                && row.resource_id == event.resource_id
                && row.actor_id == actor_id =>
        {
            tracing::info!(event_id = %id, org_id = %org_id, action = %event.action, "audit event delivered again; kept the first entry");
            row.try_into()
        }
        _ => Err(StoreError::Conflict(FieldConflict { field: "event_id" })),
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    org_id: Uuid,
    actor_id: String,
    action: String,
    resource_type: String,
    resource_id: String,
    details: serde_json::Value,
    request_id: String,
    occurred_at: DateTime<Utc>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self> {
        Ok(AuditEvent {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            actor_id: row.actor_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            details: row.details,
            request_id: row.request_id,
            occurred_at: row.occurred_at,
        })
    }
}
