//! Report artifacts (rendered exports): storing the bytes and presigning
//! their download.

use chrono::Utc;
use treven_mesh::Role;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::{Documents, Result};
use crate::aws::keys;
use crate::model::{Artifact, ArtifactFormat, FileName, Sha256Hex};
use crate::store::blobs::Presigned;

impl Documents {
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
        context.require_any(Role::EDITORS)?;
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
        context.require_any(Role::MEMBERS)?;
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
