//! The audit log: recording entries for other services and listing them.

use chrono::{DateTime, Utc};
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE, Result, Tenants, paginate};
use crate::model::{AuditEvent, AuditFilter, NewAuditEvent, Page};

impl Tenants {
    /// Appends an audit entry by the caller.
    pub async fn record_audit(
        &self,
        context: &MeshContext,
        event: NewAuditEvent,
    ) -> Result<AuditEvent> {
        let mut tx = self.store.begin(context).await?;
        let stored = tx.audit(&event).await?;
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
