//! Evidence packs: the sources a report relied on, stored as one export and
//! read back by presigned URL.

use std::io::Write as _;

use chrono::Utc;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::{Documents, EvidencePack, MAX_EVIDENCE_BYTES, MAX_EVIDENCE_SOURCES, Result};
use crate::aws::keys;
use crate::model::{FileName, Sha256Hex};

impl Documents {
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
}
