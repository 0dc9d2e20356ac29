//! Request changes: a reviewer (not the submitter) sends a report in review
//! back to draft with a reason, stored as a review comment on the version
//! (after the PII gate); the submitter is notified. The author revises and
//! submits again; approval still needs someone other than the latest
//! submitter and the version's author.

use serde_json::json;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{NewNotification, NotificationKind, PiiDecision, Report, Status, recipients};
use crate::store::NewComment;

use super::{Reports, Result, failed_precondition, not_found, stale};

/// Why the submitter may not request changes on their own submission.
pub const OWN_SUBMISSION_REFUSED: &str = "changes are requested by a reviewer, not by the analyst who \
     submitted the report; edit the report to take it back to draft";

impl Reports {
    /// Sends the report in review back to draft (analysts, admins other
    /// than its submitter: FORBIDDEN). `reason` becomes a review comment on
    /// the version; `comment_ids` (comments of this report, NOT_FOUND
    /// otherwise) are the ones to address.
    pub async fn request_changes(
        &self,
        context: &MeshContext,
        id: Uuid,
        version: i32,
        reason: String,
        comment_ids: Vec<Uuid>,
        decisions: Vec<PiiDecision>,
    ) -> Result<Report> {
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        if report.status != Status::InReview {
            return Err(failed_precondition(format!(
                "the report is {}; changes can be requested only while it is in review",
                report.status
            ))
            .into());
        }
        if version != report.latest_version {
            return Err(stale("version", report.latest_version).into());
        }
        let submitter = report
            .submission
            .as_ref()
            .map(|s| s.submitted_by.clone())
            .unwrap_or_default();
        if submitter == context.user_id() {
            return Err(ServiceError::forbidden(OWN_SUBMISSION_REFUSED).into());
        }
        let found = tx.existing_comments(id, &comment_ids).await?;
        if let Some(index) = comment_ids.iter().position(|c| !found.contains(c)) {
            return Err(ServiceError::new(
                treven_mesh::ErrorCode::NotFound,
                format!("comment_ids[{index}]: no such comment on this report"),
            )
            .into());
        }
        let (mut tx, reason, decided) = self
            .gate_comment_text(
                context,
                tx,
                id,
                "reason",
                &reason,
                &decisions,
                "request_changes",
            )
            .await?;
        let decisions: Vec<PiiDecision> = decided.iter().map(|d| d.decision.clone()).collect();
        let comment = tx
            .insert_comment(&NewComment {
                report_id: id,
                version,
                section: None,
                reply_to: None,
                body: &reason,
                pii_decisions: &decisions,
            })
            .await?;
        let updated = tx.return_to_draft(id).await?;
        let notified = self
            .notify(
                &mut tx,
                NewNotification {
                    kind: NotificationKind::ChangesRequested,
                    report_id: id,
                    comment_id: Some(comment.id),
                    version,
                    recipients: recipients(context.user_id(), [submitter.as_str()]),
                },
            )
            .await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.changes_requested",
                id,
                json!({
                    "version": version,
                    "comment_id": comment.id,
                    "comment_ids": comment_ids,
                    "submitted_by": submitter,
                }),
            ),
        )
        .await?;
        self.audit_decisions(&mut tx, context, id, version, &decided, "request_changes")
            .await?;
        self.commit(tx).await?;
        self.publish_status(&updated).await;
        self.clients
            .push_notifications(context.org_id(), &notified)
            .await;
        Ok(updated)
    }
}
