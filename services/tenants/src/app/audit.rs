//! The audit log: recording entries for other services and listing them.

use chrono::{DateTime, Utc};
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE, Result, Tenants, paginate};
use crate::model::{AuditEvent, AuditFilter, NewAuditEvent, Page};
use crate::store::{FieldConflict, StoreError};

impl Tenants {
    /// Appends an audit entry by the caller. An entry with an event id is
    /// recorded once: delivering the same event again returns the entry
    /// stored the first time; the id of another entry is CONFLICT.
    pub async fn record_audit(
        &self,
        context: &MeshContext,
        event: NewAuditEvent,
    ) -> Result<AuditEvent> {
        let mut tx = self.store.begin(context).await?;
        let stored = tx.audit(&event).await.map_err(|error| match error {
            StoreError::Conflict(FieldConflict { field: "event_id" }) => {
                ServiceError::conflict_on("event_id", "is already the id of another audit entry")
            }
            other => other.into(),
        })?;
        tx.commit().await?;
        Ok(stored)
    }

    /// A page of audit entries, newest first (analysts, admins).
    pub async fn list_audit(
        &self,
        context: &MeshContext,
        filter: AuditFilter,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<AuditEvent>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!(
            "audit?{}",
            serde_json::to_string(&filter).map_err(ServiceError::internal)?
        );
        let after: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.store.begin(context).await?;
        let events = tx.audit_events(&filter, after.as_ref(), limit + 1).await?;
        Ok(paginate(
            &self.cursors,
            context,
            &scope,
            events,
            limit,
            |e| (e.occurred_at, e.id),
        ))
    }
}
