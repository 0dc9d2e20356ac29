//! Review: submit a draft for review, approve the version in review (which
//! derives its trends).

use chrono::Utc;
use serde_json::json;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{Approval, Report, Status};

use super::trends::derive_trends;
use super::{Reports, Result, failed_precondition, not_found, stale};

impl Reports {
    /// Sends the latest version of a draft for review (analysts, admins).
    pub async fn submit(&self, context: &MeshContext, id: Uuid, version: i32) -> Result<Report> {
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.status != Status::Draft {
            return Err(failed_precondition(format!(
                "the report is {}; only a draft can be submitted",
                report.status
            ))
            .into());
        }
        if version != report.latest_version {
            return Err(stale("version", report.latest_version).into());
        }
        let (latest, _) = tx
            .version(id, version)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        if !latest.rejected_sections.is_empty() {
            let names: Vec<&str> = latest
                .rejected_sections
                .iter()
                .map(|s| s.as_str())
                .collect();
            return Err(failed_precondition(format!(
                "rejected sections must be edited or regenerated first: {}",
                names.join(", ")
            ))
            .into());
        }
        let updated = tx.set_status(id, Status::InReview, None, "").await?;
        self.audit(
            context,
            AuditEntry::report("report.submit", id, json!({"version": version})),
        )
        .await?;
        tx.commit().await?;
        self.publish_status(&updated).await;
        Ok(updated)
    }

    /// Approves the version in review (analysts, admins) and derives trends.
    pub async fn approve(&self, context: &MeshContext, id: Uuid, version: i32) -> Result<Report> {
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.status != Status::InReview {
            return Err(failed_precondition(format!(
                "the report is {}; only a report in review can be approved",
                report.status
            ))
            .into());
        }
        if version != report.latest_version {
            return Err(stale("version", report.latest_version).into());
        }
        let (_, content) = tx
            .version(id, version)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        let approval = Approval {
            approved_by: context.user_id().to_owned(),
            approved_at: Utc::now(),
            version,
        };
        let updated = tx
            .set_status(id, Status::Approved, Some(&approval), "")
            .await?;
        let trends = derive_trends(&updated, version, &content, approval.approved_at);
        tx.replace_trends(id, &trends).await?;
        // The sources behind the approved version become its evidence pack
        // (`GET /api/reports/{id}/evidence`, served by documents).
        let mut sources: Vec<String> = content
            .citations
            .iter()
            .map(|c| c.source.source_id.clone())
            // Documents' source ids (32 hex characters); a citation of
            // anything else (an internal dataset label) has no evidence file.
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        sources.sort();
        sources.dedup();
        let evidence = sources.len();
        if !sources.is_empty() {
            self.clients
                .store_evidence(context, id, version, sources)
                .await?;
        }
        self.audit(
            context,
            AuditEntry::report(
                "report.approve",
                id,
                json!({"version": version, "trends": trends.len(), "evidence_sources": evidence}),
            ),
        )
        .await?;
        tx.commit().await?;
        self.publish_status(&updated).await;
        Ok(updated)
    }
}
