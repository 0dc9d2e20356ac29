//! The upload flow: register a pending document and presign its upload, then
//! verify the stored object and make the document available or rejected.

use chrono::Utc;
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use uuid::Uuid;

use super::{Documents, Result, Upload};
use crate::aws::keys;
use crate::model::{Document, DocumentStatus, FileName, Sha256Hex};
use crate::store::meta::DocumentRecord;

impl Documents {
    /// Registers a pending document and presigns its upload. Presigning is
    /// local; the metadata write is the only write, so a failure leaves
    /// nothing behind.
    pub async fn create_upload(
        &self,
        context: &MeshContext,
        file_name: FileName,
        content_type: String,
        size: i64,
        sha256: Sha256Hex,
    ) -> Result<Upload> {
        let id = Uuid::now_v7();
        let org = context.org_id();
        let key = keys::upload(org, id, &file_name);
        keys::ensure_inside(org, &key)?;
        let now = Utc::now();
        let document = Document {
            id,
            org_id: org,
            file_name,
            content_type,
            size_bytes: size,
            sha256,
            status: DocumentStatus::Pending,
            rejection_reason: String::new(),
            version_id: String::new(),
            created_by: context.user_id().to_owned(),
            created_at: now,
            updated_at: now,
            erased_at: None,
        };
        let presigned = self
            .blobs
            .presign_put(
                &key,
                &document.content_type,
                size,
                &document.sha256,
                self.config.upload_url_ttl,
            )
            .await?;
        self.meta
            .create_document(&DocumentRecord {
                document: document.clone(),
                s3_key: key,
            })
            .await?;
        tracing::info!(document_id = %id, size, "upload registered");
        Ok(Upload {
            document,
            presigned,
        })
    }

    /// Verifies the uploaded object (HEAD: size and checksum; and, when
    /// configured, a hash of the stored bytes) and makes the document
    /// `available`, or `rejected` with the reason.
    pub async fn complete_upload(&self, context: &MeshContext, id: Uuid) -> Result<Document> {
        let record = self.record(context, id).await?;
        let document = &record.document;
        match document.status {
            DocumentStatus::Pending => {}
            DocumentStatus::Deleted => return Err(ServiceError::not_found("document")),
            DocumentStatus::Erased => {
                return Err(ServiceError::new(
                    ErrorCode::FailedPrecondition,
                    "the document's bytes were erased under the organisation's retention setting",
                ));
            }
            // Completing twice answers with the outcome of the first time.
            DocumentStatus::Available | DocumentStatus::Rejected => return Ok(record.document),
        }
        let Some(head) = self.blobs.head(&record.s3_key).await? else {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                "nothing has been uploaded for this document yet",
            ));
        };
        let mut problem = None;
        if head.size_bytes != document.size_bytes {
            problem = Some(format!(
                "size is {} bytes, {} were declared",
                head.size_bytes, document.size_bytes
            ));
        } else if head
            .sha256
            .as_ref()
            .is_some_and(|stored| stored != &document.sha256)
        {
            problem =
                Some("SHA-256 stored with the object differs from the declared one".to_owned());
        } else if self.config.verify_upload_bytes || head.sha256.is_none() {
            let (digest, size) = self.blobs.hash(&record.s3_key, &head.version_id).await?;
            if size != document.size_bytes {
                problem = Some(format!(
                    "size is {size} bytes, {} were declared",
                    document.size_bytes
                ));
            } else if digest != document.sha256 {
                problem = Some(format!(
                    "SHA-256 of the uploaded bytes is {}, not the declared one",
                    digest.as_str()
                ));
            }
        }
        let (to, reason) = match &problem {
            None => (DocumentStatus::Available, ""),
            Some(reason) => (DocumentStatus::Rejected, reason.as_str()),
        };
        let updated = self
            .meta
            .transition(
                context.org_id(),
                id,
                DocumentStatus::Pending,
                to,
                reason,
                &head.version_id,
            )
            .await?;
        tracing::info!(document_id = %id, status = %to, reason, "upload completed");
        match updated {
            Some(record) => Ok(record.document),
            // A concurrent completion won; answer with its outcome.
            None => Ok(self.record(context, id).await?.document),
        }
    }
}
