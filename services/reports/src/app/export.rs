//! Export the approved version (markdown, PDF, DOCX) after the PII gate, as a
//! short-lived download URL.

use serde_json::json;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{ExportFormat, PiiDecision, Section, Status};
use crate::pii::{GateError, gate};
use crate::render;

use super::{Export, Reports, ReportsError, Result, failed_precondition, not_found};

impl Reports {
    /// Renders the approved version, stores it through documents and returns
    /// a download URL (analysts, admins). FAILED_PRECONDITION unless approved.
    pub async fn export(
        &self,
        context: &MeshContext,
        id: Uuid,
        format: ExportFormat,
        decisions: Vec<PiiDecision>,
    ) -> Result<Export> {
        let (report, approval, mut content, kept) = {
            let mut tx = self.begin(context).await?;
            let report = self.existing(&mut tx, id).await?;
            let approval = match (&report.status, &report.approval) {
                (Status::Approved | Status::Exported, Some(approval)) => approval.clone(),
                _ => {
                    return Err(failed_precondition(format!(
                        "the report is {}; it must be approved before export",
                        report.status
                    ))
                    .into());
                }
            };
            let (_, content) = tx
                .version(id, approval.version)
                .await?
                .ok_or_else(|| ServiceError::not_found("version"))?;
            let kept = tx.kept_findings(id, approval.version).await?;
            (report, approval, content, kept)
        };
        let decided = match gate(&mut content, &Section::ALL, &decisions, &kept) {
            Ok(decided) => decided,
            Err(GateError::Service(error)) => return Err(error.into()),
            Err(GateError::Undecided(findings)) => {
                self.audit_blocked(context, id, &findings, "export").await?;
                return Err(ReportsError::Pii(findings));
            }
        };
        let started = std::time::Instant::now();
        let bytes = render::render(&content, format).map_err(ServiceError::internal)?;
        let size = bytes.len();
        tracing::info!(report_id = %id, format = %format, size, elapsed_ms = started.elapsed().as_millis() as u64, "report rendered");
        self.clients
            .put_artifact(context, id, approval.version, format, bytes)
            .await?;
        let name = format!(
            "{}-v{}.{}",
            slug(&report.title),
            approval.version,
            format.extension()
        );
        let (url, expires_at) = self
            .clients
            .presign_artifact(context, id, approval.version, format, &name)
            .await?;
        let mut tx = self.begin(context).await?;
        let current = tx.report(id, true).await?.ok_or_else(not_found)?;
        if current.approval.as_ref().map(|a| a.version) != Some(approval.version)
            || !matches!(current.status, Status::Approved | Status::Exported)
        {
            return Err(ServiceError::conflict_on(
                "id",
                "the report changed while it was exported; retry",
            )
            .into());
        }
        let updated = tx.set_status(id, Status::Exported, None, "").await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.export",
                id,
                json!({"version": approval.version, "format": format.as_str(), "size_bytes": size}),
            ),
        )
        .await?;
        self.audit_decisions(&mut tx, context, id, approval.version, &decided, "export")
            .await?;
        self.commit(tx).await?;
        self.publish_status(&updated).await;
        Ok(Export {
            version: approval.version,
            format,
            url,
            expires_at,
        })
    }
}

pub(super) fn slug(title: &str) -> String {
    let slug: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().take(60).collect();
    if slug.is_empty() {
        "report".to_owned()
    } else {
        slug
    }
}
