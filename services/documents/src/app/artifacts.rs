//! Report artifacts (rendered exports): storing the bytes and presigning
//! their download.

use std::sync::Arc;

use chrono::Utc;
use futures::{Stream, StreamExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use treven_mesh::{ErrorCode, MeshContext, ServiceError};
use uuid::Uuid;

use super::{Documents, Result};
use crate::aws::keys;
use crate::model::{Artifact, ArtifactFormat, FileName, Sha256Hex};
use crate::store::blobs::{Presigned, StreamingPut};

/// The bound on artifact uploads streamed at once
/// (`TREVEN_DOCUMENTS_MAX_CONCURRENT_UPLOADS`): each holds up to one
/// multipart part in memory, so this bounds the memory uploads use.
#[derive(Debug, Clone)]
pub(crate) struct UploadSlots {
    semaphore: Arc<Semaphore>,
    limit: usize,
}

impl UploadSlots {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot, or RESOURCE_EXHAUSTED at once when all are taken: a refused
    /// caller retries later rather than queueing behind 50 MB streams.
    fn acquire(&self) -> Result<OwnedSemaphorePermit> {
        self.semaphore.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(
                limit = self.limit,
                "artifact upload refused: every slot is busy"
            );
            ServiceError::new(
                ErrorCode::RateLimited,
                format!(
                    "{} artifact uploads are already in progress; retry shortly",
                    self.limit
                ),
            )
        })
    }
}

impl Documents {
    /// Stores a rendered report under `{org}/reports/{report}/v{n}/report.{ext}`,
    /// streaming `chunks` to S3 without holding the whole artifact: at most
    /// one multipart part per upload is in memory, and at most
    /// `max_concurrent_uploads` uploads run at once. The size cap and the
    /// declared SHA-256 are checked while streaming and at the end; any
    /// failure (or a cancelled call) aborts the upload, and the metadata is
    /// written only once S3 has the whole object.
    pub async fn put_artifact<S>(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: u32,
        format: ArtifactFormat,
        declared: Option<Sha256Hex>,
        chunks: S,
    ) -> Result<Artifact>
    where
        S: Stream<Item = Result<Vec<u8>>> + Unpin,
    {
        let _slot = self.uploads.acquire()?;
        let org = context.org_id();
        let key = keys::artifact(org, report, version, format);
        let mut put = self.blobs.start_put(&key, format.content_type());
        let (sha256, size_bytes) = match self.receive_artifact(&mut put, chunks, declared).await {
            Ok(received) => received,
            Err(error) => {
                put.abort().await;
                return Err(error);
            }
        };
        // Bytes first, metadata second: metadata never points at bytes that
        // are not there.
        let version_id = put.finish().await?;
        tracing::info!(%report, version, size_bytes, "artifact stored");
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

    /// Writes `chunks` into `put` within the size cap; their SHA-256 (which
    /// must match `declared`, when given) and size.
    async fn receive_artifact<S>(
        &self,
        put: &mut StreamingPut,
        mut chunks: S,
        declared: Option<Sha256Hex>,
    ) -> Result<(Sha256Hex, i64)>
    where
        S: Stream<Item = Result<Vec<u8>>> + Unpin,
    {
        let max = self.config.max_artifact_bytes as u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if put.written() + chunk.len() as u64 > max {
                return Err(ServiceError::invalid_field(
                    "chunk",
                    format!("the artifact exceeds {max} bytes"),
                ));
            }
            put.write(&chunk).await?;
        }
        if put.written() == 0 {
            return Err(ServiceError::invalid_field(
                "chunk",
                "the artifact is empty",
            ));
        }
        let sha256 = put.sha256();
        if declared.as_ref().is_some_and(|d| d != &sha256) {
            return Err(ServiceError::invalid_field(
                "header.sha256",
                "does not match the bytes sent",
            ));
        }
        Ok((sha256, put.written() as i64))
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
