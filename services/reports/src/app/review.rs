//! Review: submit a draft for review (the blocking quality gates), approve
//! the version in review (four-eyes; derives its trends).

use chrono::Utc;
use serde_json::json;
use treven_mesh::{MeshContext, Role, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{
    Approval, NewNotification, NotificationKind, QualityCheck, Report, Status, Submission,
    recipients,
};
use crate::quality;

use super::trends::derive_trends;
use super::{Reports, ReportsError, Result, failed_precondition, not_found, stale};

/// Why the submitter or author of a version may not approve it.
pub const SELF_APPROVAL_REFUSED: &str = "a report cannot be approved by the analyst who submitted or wrote it; \
     another analyst must approve it (or an admin may allow self-approval in the organisation's settings)";

impl Reports {
    /// Sends the latest version of a draft for review (analysts, admins),
    /// recording who submitted it. A version failing a blocking quality
    /// check is refused (FAILED_PRECONDITION naming each check) unless an
    /// admin gives `override_justification`, which is audited.
    ///
    /// Notifies the report's reviewer; when none is assigned, the
    /// organisation's analysts and admins other than the submitter (listed
    /// from tenants before the report is locked, best-effort: a submission
    /// never waits more than two seconds on tenants, and notifies nobody
    /// when tenants does not answer).
    pub async fn submit(
        &self,
        context: &MeshContext,
        id: Uuid,
        version: i32,
        override_justification: Option<&str>,
    ) -> Result<Report> {
        let fallback_reviewers = {
            let mut tx = self.begin(context).await?;
            let report = tx.report(id, false).await?.ok_or_else(not_found)?;
            drop(tx);
            if report.status == Status::Draft && report.reviewer.is_none() {
                self.clients.org_reviewers(context).await
            } else {
                Vec::new()
            }
        };
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
        let (latest, content) = tx
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
        let failed: Vec<QualityCheck> = quality::checks(&content)
            .into_iter()
            .filter(|c| c.kind.is_blocking() && !c.passed)
            .collect();
        let overridden = if failed.is_empty() {
            None
        } else {
            let Some(justification) = override_justification else {
                return Err(ReportsError::QualityFailed(failed));
            };
            if !context.has_role(Role::Admin) {
                return Err(ServiceError::forbidden(
                    "only an admin may override failed quality checks",
                )
                .into());
            }
            Some((failed, justification))
        };
        let submission = Submission {
            submitted_by: context.user_id().to_owned(),
            submitted_at: Utc::now(),
            version,
        };
        let updated = tx.set_submitted(id, &submission).await?;
        let to: Vec<&str> = match &report.reviewer {
            Some(reviewer) => vec![reviewer.reviewer_id.as_str()],
            None => fallback_reviewers.iter().map(String::as_str).collect(),
        };
        let notified = self
            .notify(
                &mut tx,
                NewNotification {
                    kind: NotificationKind::ReportSubmitted,
                    report_id: id,
                    comment_id: None,
                    version,
                    recipients: recipients(context.user_id(), to),
                },
            )
            .await?;
        if let Some((failed, justification)) = overridden {
            let checks: Vec<_> = failed
                .iter()
                .map(|c| json!({"check": c.kind.as_str(), "detail": c.detail}))
                .collect();
            self.audit(
                &mut tx,
                context,
                AuditEntry::report(
                    "report.quality_override",
                    id,
                    json!({"version": version, "failed_checks": checks, "justification": justification}),
                ),
            )
            .await?;
        }
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.submit",
                id,
                json!({"version": version, "notified": notified.len()}),
            ),
        )
        .await?;
        self.commit(tx).await?;
        self.publish_status(&updated).await;
        self.clients
            .push_notifications(context.org_id(), &notified)
            .await;
        Ok(updated)
    }

    /// Approves the version in review (analysts, admins) and derives trends.
    /// FORBIDDEN when the approver submitted or wrote the version, unless
    /// the organisation's settings allow self-approval.
    ///
    /// Every remote call comes before the report is locked: a first read
    /// (no lock) finds the version and whether this is a self-approval; only
    /// then are tenants' settings read (UNAVAILABLE if tenants is down, and
    /// nothing has changed) and the evidence stored through documents.
    /// The locked transaction re-checks the report, approves, and stores the
    /// audit entry in the outbox; tenants is not called while it is open.
    pub async fn approve(&self, context: &MeshContext, id: Uuid, version: i32) -> Result<Report> {
        let (report, approved, content) = {
            let mut tx = self.begin(context).await?;
            let report = tx.report(id, false).await?.ok_or_else(not_found)?;
            check_approvable(&report, version)?;
            let (approved, content) = tx
                .version(id, version)
                .await?
                .ok_or_else(|| ServiceError::not_found("version"))?;
            (report, approved, content)
        };
        // Four-eyes: neither the submitter nor the version's author approves
        // it, unless the organisation allows it (then audited as such).
        let self_approval = is_self_approval(context, &report, &approved.author_id);
        if self_approval && !self.clients.allows_self_approval(context).await? {
            return Err(ServiceError::forbidden(SELF_APPROVAL_REFUSED).into());
        }
        // The sources behind the approved version become its evidence pack
        // (`GET /api/reports/{id}/evidence`, served by documents). Storing is
        // idempotent per version; if the approval below loses a race, the
        // evidence of a version that was in review stays, unused.
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

        let mut tx = self.begin(context).await?;
        let locked = tx.report(id, true).await?.ok_or_else(not_found)?;
        check_approvable(&locked, version)?;
        if is_self_approval(context, &locked, &approved.author_id) != self_approval {
            return Err(ServiceError::conflict_on(
                "version",
                "the report changed while it was approved; reload and retry",
            )
            .into());
        }
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
        let submitter = locked.submission.as_ref().map(|s| s.submitted_by.as_str());
        let notified = self
            .notify(
                &mut tx,
                NewNotification {
                    kind: NotificationKind::ReportApproved,
                    report_id: id,
                    comment_id: None,
                    version,
                    recipients: recipients(context.user_id(), submitter),
                },
            )
            .await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.approve",
                id,
                json!({
                    "version": version,
                    "trends": trends.len(),
                    "evidence_sources": evidence,
                    "self_approval": self_approval,
                }),
            ),
        )
        .await?;
        self.commit(tx).await?;
        self.publish_status(&updated).await;
        self.clients
            .push_notifications(context.org_id(), &notified)
            .await;
        Ok(updated)
    }
}

/// Whether `report` may be approved at `version`: in review, and that is
/// its latest version.
fn check_approvable(report: &Report, version: i32) -> Result<()> {
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
    Ok(())
}

/// Whether the caller submitted `report` or wrote the version (`author`).
fn is_self_approval(context: &MeshContext, report: &Report, author: &str) -> bool {
    let approver = context.user_id();
    let submitted_by = report.submission.as_ref().map(|s| s.submitted_by.as_str());
    submitted_by == Some(approver) || author == approver
}
