//! Reviewer assignment: an analyst or admin of the organisation (checked
//! with tenants `GetUser`, as the caller) who is not the report's author or
//! submitter reviews a draft or a report in review; the reviewer is
//! notified, and submissions notify them.

use chrono::Utc;
use serde_json::json;
use treven_mesh::{MeshContext, Role, ServiceError};
use uuid::Uuid;

use crate::clients::AuditEntry;
use crate::model::{
    NewNotification, NotificationKind, Report, ReviewerAssignment, Status, recipients,
};
use crate::store::OrgTx;

use super::{Reports, Result, failed_precondition, not_found};

/// Whether the reviewer of `report` may change: a draft or in review.
fn check_reviewable(report: &Report) -> Result<()> {
    match report.status {
        Status::Draft | Status::InReview => Ok(()),
        other => Err(failed_precondition(format!(
            "the report is {other}; a reviewer is assigned only to a draft or a report in review"
        ))
        .into()),
    }
}

impl Reports {
    /// Assigns user `user_id` (tenants) as the reviewer of report `id`
    /// (analysts, admins). The user must be an analyst or admin of the
    /// caller's organisation who has signed in, and neither the report's
    /// author, its latest version's author nor its submitter. Assigning the
    /// current reviewer again changes nothing.
    pub async fn assign_reviewer(
        &self,
        context: &MeshContext,
        id: Uuid,
        user_id: Uuid,
    ) -> Result<Report> {
        // The report first (NOT_FOUND before anything else), then tenants,
        // before any lock is taken.
        {
            let mut tx = self.begin(context).await?;
            let report = self.existing(&mut tx, id).await?;
            check_reviewable(&report)?;
        }
        let user = self.clients.org_user(context, user_id).await?;
        if !matches!(user.role, Some(Role::Analyst | Role::Admin)) {
            return Err(
                ServiceError::invalid_field("user_id", "must be an analyst or an admin").into(),
            );
        }
        if user.subject.is_empty() {
            return Err(failed_precondition(
                "the user has not signed in yet; assign them once they have",
            )
            .into());
        }
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        check_reviewable(&report)?;
        if self
            .writers(&mut tx, &report)
            .await?
            .contains(&user.subject)
        {
            return Err(ServiceError::invalid_field(
                "user_id",
                "the report's author or submitter cannot review it",
            )
            .into());
        }
        let previous = report.reviewer.as_ref().map(|r| r.reviewer_id.clone());
        if previous.as_deref() == Some(user.subject.as_str()) {
            return Ok(report);
        }
        let assignment = ReviewerAssignment {
            reviewer_id: user.subject.clone(),
            user_id,
            assigned_by: context.user_id().to_owned(),
            assigned_at: Utc::now(),
        };
        let updated = tx.set_reviewer(id, Some(&assignment)).await?;
        let notified = self
            .notify(
                &mut tx,
                NewNotification {
                    kind: NotificationKind::ReviewerAssigned,
                    report_id: id,
                    comment_id: None,
                    version: report.latest_version,
                    recipients: recipients(context.user_id(), [user.subject.as_str()]),
                },
            )
            .await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.reviewer.assign",
                id,
                json!({
                    "reviewer_id": user.subject,
                    "reviewer_user_id": user_id,
                    "previous_reviewer_id": previous,
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

    /// Removes the reviewer of a draft or a report in review (analysts,
    /// admins); a report without one is returned unchanged.
    pub async fn unassign_reviewer(&self, context: &MeshContext, id: Uuid) -> Result<Report> {
        let mut tx = self.begin(context).await?;
        let report = tx.report(id, true).await?.ok_or_else(not_found)?;
        check_reviewable(&report)?;
        let Some(previous) = report.reviewer.clone() else {
            return Ok(report);
        };
        let updated = tx.set_reviewer(id, None).await?;
        self.audit(
            &mut tx,
            context,
            AuditEntry::report(
                "report.reviewer.unassign",
                id,
                json!({
                    "reviewer_id": previous.reviewer_id,
                    "reviewer_user_id": previous.user_id,
                }),
            ),
        )
        .await?;
        self.commit(tx).await?;
        self.publish_status(&updated).await;
        Ok(updated)
    }

    /// Who wrote or submitted `report`: its requester, its latest
    /// version's author and its submitter (these never review it).
    async fn writers(&self, tx: &mut OrgTx, report: &Report) -> Result<Vec<String>> {
        let mut writers = vec![report.created_by.clone()];
        if report.latest_version >= 1
            && let Some((version, _)) = tx.version(report.id, report.latest_version).await?
        {
            writers.push(version.author_id);
        }
        if report.status == Status::InReview
            && let Some(submission) = &report.submission
        {
            writers.push(submission.submitted_by.clone());
        }
        Ok(writers)
    }
}
