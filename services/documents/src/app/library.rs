//! The organisation's documents once uploaded: reading, listing, deleting,
//! downloading and their versions.

use treven_mesh::pagination::page_limit;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, Documents, MAX_PAGE, Result};
use crate::aws::keys;
use crate::model::{Document, DocumentStatus, DocumentVersion};
use crate::store::blobs::Presigned;

impl Documents {
    /// One document (not deleted).
    pub async fn document(&self, context: &MeshContext, id: Uuid) -> Result<Document> {
        let record = self.record(context, id).await?;
        if record.document.status == DocumentStatus::Deleted {
            return Err(ServiceError::not_found("document"));
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
    pub async fn delete(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        let record = self.record(context, id).await?;
        if record.document.status == DocumentStatus::Deleted {
            return Err(ServiceError::not_found("document"));
        }
        keys::ensure_inside(context.org_id(), &record.s3_key)?;
        self.blobs.delete(&record.s3_key).await?;
        if !self.meta.mark_deleted(context.org_id(), id).await? {
            return Err(ServiceError::not_found("document"));
        }
        tracing::info!(document_id = %id, "document deleted");
        Ok(())
    }

    /// A presigned download of an available document (or one of its
    /// versions) under its original name.
    pub async fn download(
        &self,
        context: &MeshContext,
        id: Uuid,
        version_id: Option<String>,
    ) -> Result<Presigned> {
        let record = self.record(context, id).await?;
        if record.document.status != DocumentStatus::Available {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                format!("the document is {}", record.document.status),
            ));
        }
        keys::ensure_inside(context.org_id(), &record.s3_key)?;
        let version = version_id.unwrap_or_else(|| record.document.version_id.clone());
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
