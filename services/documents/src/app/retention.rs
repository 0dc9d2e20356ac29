//! The retention job's part in documents: erasing the bytes of uploads
//! registered before the organisation's cutoff (`retention.uploads_days`
//! of its settings, read by the job from tenants). Called by
//! `treven admin retention` for one organisation at a time, acting as the
//! operator in that organisation.
//!
//! Per document, in this order, so that a crash anywhere is completed by
//! the next run and audited once:
//! 1. `document.erase` is recorded with an event id derived from the
//!    organisation and the document (a re-run records the same id, which
//!    tenants stores once); no entry, no erasure.
//! 2. Every version and delete marker of its S3 key is deleted
//!    permanently (a key with none left is a no-op).
//! 3. The metadata becomes a tombstone (`erased_at`, size 0, no key, no
//!    version, status `erased`; a deleted document stays `deleted`),
//!    conditional on not being one already.
//!
//! A call erases at most `limit` documents; the caller calls again with
//! [`UploadErasure::next`] while it is set.

use chrono::{DateTime, Utc};
use serde_json::json;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};

use super::audit::{self, AuditEntry};
use super::{Documents, Result};
use crate::aws::keys;

/// Most documents one call erases.
pub const MAX_ERASE_BATCH: usize = 1000;

/// What one erasure pass did in one organisation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadErasure {
    /// Documents turned into tombstones.
    pub documents: u64,
    /// S3 object versions and delete markers deleted.
    pub versions: u64,
    /// Where the next call continues (a sort key); `None` when every
    /// document registered before the cutoff was examined.
    pub next: Option<String>,
}

impl Documents {
    /// Erases the bytes of up to `limit` (at most [`MAX_ERASE_BATCH`])
    /// documents of the context's organisation registered before `cutoff`,
    /// continuing after `after` (the previous call's
    /// [`UploadErasure::next`]); see the module's documentation for the
    /// order and its guarantees.
    /// Refused with FAILED_PRECONDITION when no audit log is wired: an
    /// erasure is never unaudited.
    pub async fn erase_expired_uploads(
        &self,
        context: &MeshContext,
        cutoff: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<UploadErasure> {
        if self.audit.is_none() {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                "uploads are erased only with an audit log to record each erasure",
            ));
        }
        let org = context.org_id();
        let limit = limit.clamp(1, MAX_ERASE_BATCH);
        let (records, next) = self
            .meta
            .documents_registered_before(org, cutoff, after, limit)
            .await?;
        tracing::info!(%org, %cutoff, found = records.len(), more = next.is_some(), "retention: uploads to erase");
        let mut done = UploadErasure {
            next,
            ..UploadErasure::default()
        };
        for record in records {
            let document = &record.document;
            keys::ensure_inside(org, &record.s3_key)?;
            self.audit_before(
                context,
                AuditEntry {
                    action: audit::ERASE_ACTION,
                    resource_type: audit::DOCUMENT_RESOURCE,
                    resource_id: document.id.to_string(),
                    details: json!({
                        "reason": "retention",
                        "registered_at": document.created_at,
                        "cutoff": cutoff,
                        "status": document.status.as_str(),
                        "size_bytes": document.size_bytes,
                    }),
                },
                audit::derived_event_id(&[
                    audit::ERASE_ACTION,
                    &org.to_string(),
                    &document.id.to_string(),
                ]),
                "the erasure",
            )
            .await?;
            let versions = self.blobs.delete_every_version(&record.s3_key).await?;
            let marked = self
                .meta
                .mark_erased(org, document.id, document.status, Utc::now())
                .await?;
            tracing::info!(%org, document_id = %document.id, versions, marked, "retention: upload erased");
            done.versions += versions;
            if marked {
                done.documents += 1;
            }
        }
        Ok(done)
    }
}
