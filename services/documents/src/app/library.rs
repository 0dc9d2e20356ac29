//! The organisation's documents once uploaded: reading, listing, deleting,
//! downloading and their versions.

use treven_mesh::pagination::page_limit;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use uuid::Uuid;

use serde_json::json;

use super::audit::{self, AuditEntry};
use super::{DEFAULT_PAGE, Documents, MAX_PAGE, Result};
use crate::aws::keys;
use crate::model::{Document, DocumentStatus, DocumentVersion};
use crate::store::blobs::Presigned;

impl Documents {
    /// One document (not deleted; an erased one shows its tombstone). The
    /// read is audited as `document.view` once it succeeded, best-effort
    /// beyond the audit log's retries: it shows metadata, never bytes.
    pub async fn document(&self, context: &MeshContext, id: Uuid) -> Result<Document> {
        let record = self.record(context, id).await?;
        if record.document.status == DocumentStatus::Deleted {
            return Err(ServiceError::not_found("document"));
        }
        if let Some(audit) = &self.audit {
            let entry = AuditEntry {
                action: audit::VIEW_ACTION,
                resource_type: audit::DOCUMENT_RESOURCE,
                resource_id: id.to_string(),
                details: json!({ "status": record.document.status.as_str() }),
            };
            if let Err(error) = audit.record(context, entry).await {
                tracing::error!(org = %context.org_id(), document_id = %id, %error, "document view not recorded in the audit log");
            }
        }
        Ok(record.document)
    }

    /// A page of documents, newest first.
    pub async fn list(
        &self,
        context: &MeshContext,
        status: Option<DocumentStatus>,
        content_type: Option<String>,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<Document>, String)> {
        if status == Some(DocumentStatus::Deleted) {
            return Err(ServiceError::invalid_field(
                "status",
                "deleted documents are not listed",
            ));
        }
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)? as usize;
        let scope = format!(
            "documents?status={}&type={}",
            status.map_or("", DocumentStatus::as_str),
            content_type.as_deref().unwrap_or("")
        );
        let after: Option<String> = self.cursors.decode(context.org_id(), &scope, cursor)?;
        let (items, more) = self
            .meta
            .documents(
                context.org_id(),
                status,
                content_type.as_deref(),
                after,
                limit,
            )
            .await?;
        let next = match (more, items.last()) {
            (true, Some(last)) => {
                self.cursors
                    .encode(context.org_id(), &scope, &format!("DOC#{}", last.id))
            }
            _ => String::new(),
        };
        Ok((items, next))
    }

    /// Deletes a document: a delete marker in S3 (older versions are kept)
    /// and `deleted` in its metadata. S3 goes first, so a failure can be
    /// retried and never leaves metadata that says deleted over live bytes.
    ///
    /// Audited as `document.delete` *before* anything changes, with an event
    /// id derived from the document (a retried delete records one entry);
    /// when the entry cannot be recorded nothing is deleted (UNAVAILABLE).
    /// An erased document has no bytes left: only its metadata is marked.
    pub async fn delete(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        let record = self.record(context, id).await?;
        if record.document.status == DocumentStatus::Deleted {
            return Err(ServiceError::not_found("document"));
        }
        self.audit_before(
            context,
            AuditEntry {
                action: audit::DELETE_ACTION,
                resource_type: audit::DOCUMENT_RESOURCE,
                resource_id: id.to_string(),
                details: json!({ "status": record.document.status.as_str() }),
            },
            audit::derived_event_id(&[
                audit::DELETE_ACTION,
                &context.org_id().to_string(),
                &id.to_string(),
            ]),
            "the delete",
        )
        .await?;
        if record.document.erased_at.is_none() {
            keys::ensure_inside(context.org_id(), &record.s3_key)?;
            self.blobs.delete(&record.s3_key).await?;
        }
        if !self.meta.mark_deleted(context.org_id(), id).await? {
            return Err(ServiceError::not_found("document"));
        }
        tracing::info!(document_id = %id, "document deleted");
        Ok(())
    }

    /// A presigned download of an available document (or one of its
    /// versions) under its original name.
    ///
    /// Fails closed: the download (who, which document, which version, the
    /// URL's lifetime) is recorded as `document.download` *before* the URL
    /// is signed, and when the audit log cannot take it the caller gets
    /// UNAVAILABLE and no URL. An erased document is FAILED_PRECONDITION.
    pub async fn download(
        &self,
        context: &MeshContext,
        id: Uuid,
        version_id: Option<String>,
    ) -> Result<Presigned> {
        let record = self.record(context, id).await?;
        if record.document.status == DocumentStatus::Erased {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                "the document's bytes were erased under the organisation's retention setting",
            ));
        }
        if record.document.status != DocumentStatus::Available {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                format!("the document is {}", record.document.status),
            ));
        }
        keys::ensure_inside(context.org_id(), &record.s3_key)?;
        let version = version_id.unwrap_or_else(|| record.document.version_id.clone());
        self.audit_before(
            context,
            AuditEntry {
                action: audit::DOWNLOAD_ACTION,
                resource_type: audit::DOCUMENT_RESOURCE,
                resource_id: id.to_string(),
                details: json!({
                    "version_id": version,
                    "current_version": version == record.document.version_id,
                    "url_ttl_secs": self.config.download_url_ttl.as_secs(),
                }),
            },
            Uuid::now_v7(),
            "the download",
        )
        .await?;
        self.blobs
            .presign_get(
                &record.s3_key,
                Some(&version),
                &record.document.file_name.content_disposition(),
                &record.document.content_type,
                self.config.download_url_ttl,
            )
            .await
    }

    /// The stored versions of a document, deleted ones included.
    pub async fn versions(
        &self,
        context: &MeshContext,
        id: Uuid,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<DocumentVersion>, String)> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)? as usize;
        let scope = format!("versions?document={id}");
        let after: Option<String> = self.cursors.decode(context.org_id(), &scope, cursor)?;
        let record = self.record(context, id).await?;
        if record.document.erased_at.is_some() {
            // Every version was erased.
            return Ok((Vec::new(), String::new()));
        }
        keys::ensure_inside(context.org_id(), &record.s3_key)?;
        let (mut versions, more) = self.blobs.versions(&record.s3_key, after, limit).await?;
        // The version verified at completion has a known digest even where
        // the store kept no checksum with it.
        for version in versions
            .iter_mut()
            .filter(|v| v.sha256.is_none() && v.version_id == record.document.version_id)
        {
            version.sha256 = Some(record.document.sha256.clone());
        }
        let next = match (more, versions.last()) {
            (true, Some(last)) => self
                .cursors
                .encode(context.org_id(), &scope, &last.version_id),
            _ => String::new(),
        };
        Ok((versions, next))
    }
}

impl Documents {
    /// Records `entry` before `what` is done: UNAVAILABLE (nothing done)
    /// when the audit log cannot take it after its retries. Without an
    /// audit log (library builds) it is logged and the work goes on.
    pub(super) async fn audit_before(
        &self,
        context: &MeshContext,
        entry: AuditEntry,
        event_id: Uuid,
        what: &str,
    ) -> Result<()> {
        let Some(audit) = &self.audit else {
            tracing::warn!(org = %context.org_id(), action = entry.action, "no audit log is wired: not recorded");
            return Ok(());
        };
        let action = entry.action;
        audit
            .record_with(context, entry, event_id, audit::RECORD_ATTEMPTS)
            .await
            .map_err(|error| {
            tracing::error!(org = %context.org_id(), action, %error, "audit entry not recorded; refused");
            ServiceError::new(
                ErrorCode::Unavailable,
                format!("{what} could not be recorded in the audit log; nothing was done, retry later"),
            )
        })
    }
}
