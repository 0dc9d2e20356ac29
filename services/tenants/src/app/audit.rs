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

/// Longest time range one export covers.
pub const MAX_EXPORT_RANGE: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// Entries read per page of an export (each page its own short
/// transaction, so an export never holds a transaction open while the
/// client reads).
const EXPORT_PAGE: u32 = 500;

/// Pages read ahead of the client: memory stays bounded by
/// `EXPORT_PAGE * EXPORT_READ_AHEAD` entries however slow the client is.
const EXPORT_READ_AHEAD: usize = 2;

impl Tenants {
    /// Every entry of `filter`'s range (which must be set, ordered and at
    /// most [`MAX_EXPORT_RANGE`]), oldest first, as a stream. The export
    /// is audited (`audit.export`) before the first entry is read; a
    /// client that goes away stops the reads.
    pub async fn export_audit(
        &self,
        context: &MeshContext,
        filter: AuditFilter,
    ) -> Result<tokio_stream::wrappers::ReceiverStream<Result<AuditEvent>>> {
        let (since, until) = match (filter.since, filter.until) {
            (Some(since), Some(until)) => (since, until),
            (None, _) => return Err(ServiceError::invalid_field("since", "is required")),
            (_, None) => return Err(ServiceError::invalid_field("until", "is required")),
        };
        if until <= since {
            return Err(ServiceError::invalid_field("until", "must be after since"));
        }
        if until - since > MAX_EXPORT_RANGE {
            return Err(ServiceError::invalid_field(
                "until",
                format!(
                    "must be at most {} days after since",
                    MAX_EXPORT_RANGE.num_days()
                ),
            ));
        }
        let mut tx = self.store.begin(context).await?;
        tx.audit(&NewAuditEvent::of(
            "audit.export",
            "audit_log",
            "",
            serde_json::json!({
                "since": since,
                "until": until,
                "resource_type": filter.resource_type,
                "resource_id": filter.resource_id,
            }),
        ))
        .await?;
        tx.commit().await?;

        let (sender, receiver) =
            tokio::sync::mpsc::channel(EXPORT_PAGE as usize * EXPORT_READ_AHEAD);
        let store = self.store.clone();
        let context = context.clone();
        tokio::spawn(async move {
            let mut after: Option<(DateTime<Utc>, Uuid)> = None;
            loop {
                let page = async {
                    let mut tx = store.begin(&context).await?;
                    let page = tx
                        .audit_events_oldest_first(&filter, after.as_ref(), EXPORT_PAGE)
                        .await?;
                    tx.commit().await?;
                    Ok::<_, ServiceError>(page)
                }
                .await;
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        // The client gets the error in-band after what was sent.
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let last = page.len() < EXPORT_PAGE as usize;
                after = page.last().map(|e| (e.occurred_at, e.id));
                for event in page {
                    if sender.send(Ok(event)).await.is_err() {
                        tracing::debug!("audit export: the client went away");
                        return;
                    }
                }
                if last {
                    return;
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver))
    }
}
