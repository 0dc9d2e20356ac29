//! What the documents service does: role checks, validation that needs
//! configuration, the upload → verify → available flow, sources, evidence
//! packs and artifacts. Wire types stay in `grpc.rs`; AWS calls in `meta.rs`
//! and `blobs.rs`.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use treven_mesh::pagination::{CursorCodec, page_limit};
use treven_mesh::{ErrorCode, MeshContext, Role, ServiceError};
use uuid::Uuid;

use crate::aws::keys;
use crate::blobs::{BlobStore, Presigned};
use crate::config::DocumentsConfig;
use crate::meta::{DocumentRecord, MetaStore};
use crate::model::{
    Artifact, ArtifactFormat, Document, DocumentStatus, DocumentVersion, FileName, Sha256Hex,
};
use crate::sources::{Source, SourceQuery, TrustScore};

/// Default page size.
pub const DEFAULT_PAGE: u32 = 20;
/// Largest page size.
pub const MAX_PAGE: u32 = 100;
/// Most sources behind one report version.
pub const MAX_EVIDENCE_SOURCES: usize = 500;
/// Largest evidence JSON read back into a pack.
const MAX_EVIDENCE_BYTES: usize = 1024 * 1024;

const MEMBERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Viewer];
const EDITORS: &[Role] = &[Role::Admin, Role::Analyst];

type Result<T> = std::result::Result<T, ServiceError>;

/// A new upload: its document and where to PUT the bytes.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The pending document.
    pub document: Document,
    /// The presigned PUT.
    pub presigned: Presigned,
}

/// An evidence pack ready to download.
#[derive(Debug, Clone)]
pub struct EvidencePack {
    /// The export id.
    pub export_id: Uuid,
    /// The report version it covers.
    pub version: u32,
    /// How many sources it holds.
    pub source_count: usize,
    /// The presigned GET.
    pub presigned: Presigned,
}

/// The documents service.
#[derive(Debug, Clone)]
pub struct Documents {
    config: DocumentsConfig,
    meta: MetaStore,
    blobs: BlobStore,
    cursors: CursorCodec,
}

impl Documents {
    /// The service over its stores.
    pub fn new(
        config: DocumentsConfig,
        meta: MetaStore,
        blobs: BlobStore,
        cursors: CursorCodec,
    ) -> Self {
        Self {
            config,
            meta,
            blobs,
            cursors,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DocumentsConfig {
        &self.config
    }

    /// Validates an upload's content type against the allow-list.
    pub fn content_type(&self, raw: &str) -> Result<String> {
        let content_type = raw.trim().to_ascii_lowercase();
        if self.config.content_types.contains(&content_type) {
            Ok(content_type)
        } else {
            Err(ServiceError::invalid_field(
                "content_type",
                format!("must be one of {}", self.config.content_types.join(", ")),
            ))
        }
    }

    /// Validates a declared size against the cap.
    pub fn size(&self, raw: i64) -> Result<i64> {
        if (1..=self.config.max_upload_bytes).contains(&raw) {
            Ok(raw)
        } else {
            Err(ServiceError::invalid_field(
                "size_bytes",
                format!(
                    "must be between 1 and {} bytes",
                    self.config.max_upload_bytes
                ),
            ))
        }
    }

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
        context.require_any(EDITORS)?;
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

    async fn record(&self, context: &MeshContext, id: Uuid) -> Result<DocumentRecord> {
        self.meta
            .document(context.org_id(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found("document"))
    }

    /// Verifies the uploaded object (HEAD: size and checksum; and, when
    /// configured, a hash of the stored bytes) and makes the document
    /// `available`, or `rejected` with the reason.
    pub async fn complete_upload(&self, context: &MeshContext, id: Uuid) -> Result<Document> {
        context.require_any(EDITORS)?;
        let record = self.record(context, id).await?;
        let document = &record.document;
        match document.status {
            DocumentStatus::Pending => {}
            DocumentStatus::Deleted => return Err(ServiceError::not_found("document")),
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

    /// One document (not deleted).
    pub async fn document(&self, context: &MeshContext, id: Uuid) -> Result<Document> {
        context.require_any(MEMBERS)?;
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
        context.require_any(MEMBERS)?;
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
        context.require_any(EDITORS)?;
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
        context.require_any(MEMBERS)?;
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
        context.require_any(MEMBERS)?;
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

    /// Creates or updates a source (keyed by its locator) and scores it.
    pub async fn upsert_source(
        &self,
        context: &MeshContext,
        mut source: Source,
    ) -> Result<(Source, TrustScore)> {
        context.require_any(EDITORS)?;
        if let Some(existing) = self.meta.source(context.org_id(), &source.id).await? {
            source.created_at = existing.created_at;
        }
        self.meta.put_source(context.org_id(), &source).await?;
        let score = source.trust(Utc::now());
        Ok((source, score))
    }

    /// Sources matching `query`, by trust score then recency.
    pub async fn search_sources(
        &self,
        context: &MeshContext,
        query: SourceQuery,
        limit: i32,
        cursor: &str,
    ) -> Result<(Vec<(Source, TrustScore)>, String)> {
        context.require_any(MEMBERS)?;
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)? as usize;
        let scope = format!(
            "sources?{}",
            serde_json::to_string(&query).map_err(ServiceError::internal)?
        );
        let after: Option<(u8, Option<DateTime<Utc>>, String)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let now = Utc::now();
        let mut ranked: Vec<(Source, TrustScore)> = self
            .meta
            .sources(context.org_id())
            .await?
            .into_iter()
            .filter(|s| s.matches(&query))
            .map(|s| {
                let score = s.trust(now);
                (s, score)
            })
            .filter(|(_, score)| score.total >= query.min_trust)
            .collect();
        let rank = |(s, score): &(Source, TrustScore)| {
            (
                std::cmp::Reverse(score.total),
                std::cmp::Reverse(s.published_at),
                s.id.clone(),
            )
        };
        ranked.sort_by_key(rank);
        if let Some((total, published, id)) = after {
            let position = (std::cmp::Reverse(total), std::cmp::Reverse(published), id);
            ranked.retain(|entry| rank(entry) > position);
        }
        let more = ranked.len() > limit;
        ranked.truncate(limit);
        let next = match (more, ranked.last()) {
            (true, Some((s, score))) => self.cursors.encode(
                context.org_id(),
                &scope,
                &(score.total, s.published_at, s.id.clone()),
            ),
            _ => String::new(),
        };
        Ok((ranked, next))
    }

    /// Stores the sources behind a report version as
    /// `{org}/reports/{report}/evidence/{source}.json`. Storing the same
    /// version again is a no-op per source.
    pub async fn store_evidence(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: u32,
        source_ids: Vec<String>,
    ) -> Result<usize> {
        context.require_any(EDITORS)?;
        if source_ids.is_empty() || source_ids.len() > MAX_EVIDENCE_SOURCES {
            return Err(ServiceError::invalid_field(
                "source_ids",
                format!("must list 1 to {MAX_EVIDENCE_SOURCES} sources"),
            ));
        }
        let org = context.org_id();
        // Every source must exist before anything is written.
        let mut sources = Vec::with_capacity(source_ids.len());
        for (index, id) in source_ids.iter().enumerate() {
            let source = self.meta.source(org, id).await?;
            sources.push(source.ok_or_else(|| {
                ServiceError::invalid_field(format!("source_ids[{index}]"), "no such source")
            })?);
        }
        let now = Utc::now();
        for source in &sources {
            let key = keys::evidence(org, report, &source.id);
            let body = serde_json::to_vec_pretty(&serde_json::json!({
                "report_id": report,
                "version": version,
                "stored_at": now,
                "trust": source.trust(now),
                "source": source,
            }))
            .map_err(ServiceError::internal)?;
            let version_id = self.blobs.put(&key, body, "application/json").await?;
            self.meta
                .record_evidence(org, report, version, &source.id, &key, &version_id)
                .await?;
        }
        tracing::info!(report_id = %report, version, sources = sources.len(), "evidence stored");
        Ok(sources.len())
    }

    /// Zips the evidence of a report version (newest when `version` is
    /// `None`) with a manifest into `{org}/exports/{export}/bundle.zip` and
    /// presigns its download.
    pub async fn evidence_pack(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: Option<u32>,
    ) -> Result<EvidencePack> {
        context.require_any(MEMBERS)?;
        let org = context.org_id();
        let (version, entries) = self
            .meta
            .evidence(org, report, version)
            .await?
            .ok_or_else(|| ServiceError::not_found("evidence for this report version"))?;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut manifest = Vec::new();
        for (source_id, key, version_id) in &entries {
            keys::ensure_inside(org, key)?;
            let bytes = self.blobs.read(key, version_id, MAX_EVIDENCE_BYTES).await?;
            zip.start_file(format!("sources/{source_id}.json"), options)
                .map_err(ServiceError::internal)?;
            zip.write_all(&bytes).map_err(ServiceError::internal)?;
            manifest.push(serde_json::json!({"source_id": source_id, "sha256": Sha256Hex::of(&bytes).as_str()}));
        }
        zip.start_file("manifest.json", options)
            .map_err(ServiceError::internal)?;
        let manifest = serde_json::json!({"report_id": report, "version": version, "created_at": Utc::now(), "sources": manifest});
        zip.write_all(&serde_json::to_vec_pretty(&manifest).map_err(ServiceError::internal)?)
            .map_err(ServiceError::internal)?;
        let bytes = zip.finish().map_err(ServiceError::internal)?.into_inner();

        let export_id = Uuid::now_v7();
        let key = keys::export(org, export_id);
        let version_id = self.blobs.put(&key, bytes, "application/zip").await?;
        self.meta
            .record_export(org, export_id, report, version, &key, context.user_id())
            .await?;
        let name = FileName::parse("file_name", &format!("evidence-{report}-v{version}.zip"))?;
        let presigned = self
            .blobs
            .presign_get(
                &key,
                Some(&version_id),
                &name.content_disposition(),
                "application/zip",
                self.config.download_url_ttl,
            )
            .await?;
        Ok(EvidencePack {
            export_id,
            version,
            source_count: entries.len(),
            presigned,
        })
    }

    /// Stores a rendered report under `{org}/reports/{report}/v{n}/report.{ext}`.
    pub async fn put_artifact(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: u32,
        format: ArtifactFormat,
        bytes: Vec<u8>,
        declared: Option<Sha256Hex>,
    ) -> Result<Artifact> {
        context.require_any(EDITORS)?;
        if bytes.is_empty() {
            return Err(ServiceError::invalid_field(
                "chunk",
                "the artifact is empty",
            ));
        }
        let sha256 = Sha256Hex::of(&bytes);
        if declared.as_ref().is_some_and(|d| d != &sha256) {
            return Err(ServiceError::invalid_field(
                "header.sha256",
                "does not match the bytes sent",
            ));
        }
        let org = context.org_id();
        let key = keys::artifact(org, report, version, format);
        let size_bytes = bytes.len() as i64;
        // Bytes first, metadata second: metadata never points at bytes that
        // are not there.
        let version_id = self.blobs.put(&key, bytes, format.content_type()).await?;
        let artifact = Artifact {
            report_id: report,
            version,
            format,
            size_bytes,
            sha256,
            version_id,
            stored_at: Utc::now(),
        };
        self.meta.record_artifact(org, &artifact, &key).await
    }

    /// Presigns the download of a stored artifact.
    pub async fn presign_artifact(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: u32,
        format: ArtifactFormat,
        name: Option<FileName>,
    ) -> Result<Presigned> {
        context.require_any(MEMBERS)?;
        let org = context.org_id();
        let (artifact, key) = self
            .meta
            .artifact(org, report, version, format)
            .await?
            .ok_or_else(|| ServiceError::not_found("artifact"))?;
        keys::ensure_inside(org, &key)?;
        let name = match name {
            Some(name) => name,
            None => FileName::parse(
                "download_name",
                &format!("report-v{version}.{}", format.extension()),
            )?,
        };
        self.blobs
            .presign_get(
                &key,
                Some(&artifact.version_id),
                &name.content_disposition(),
                format.content_type(),
                self.config.download_url_ttl,
            )
            .await
    }
}
