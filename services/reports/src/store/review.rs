//! The review workflow's changes to a report row: its reviewer, and a
//! return from review to draft.

use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use crate::model::{Report, ReviewerAssignment};

use super::reports::ReportRow;
use super::{OrgTx, Result};

impl OrgTx {
    /// Sets (or, with `None`, removes) the reviewer of report `id`.
    pub async fn set_reviewer(
        &mut self,
        id: Uuid,
        reviewer: Option<&ReviewerAssignment>,
    ) -> Result<Report> {
        let row: ReportRow = sqlx::query_as(&format!(
            "UPDATE reports SET reviewer_id = $3, reviewer_user_id = $4, reviewer_assigned_by = $5, \
                    reviewer_assigned_at = $6, updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 RETURNING {}",
            super::reports::REPORT_COLUMNS
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(reviewer.map(|r| r.reviewer_id.as_str()))
        .bind(reviewer.map(|r| r.user_id))
        .bind(reviewer.map(|r| r.assigned_by.as_str()))
        .bind(reviewer.map(|r| r.assigned_at))
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.set_reviewer", "UPDATE"))
        .await?;
        row.try_into()
    }

    /// Sends report `id` from review back to draft (the submission stays
    /// recorded until the next one replaces it).
    pub async fn return_to_draft(&mut self, id: Uuid) -> Result<Report> {
        let row: ReportRow = sqlx::query_as(&format!(
            "UPDATE reports SET status = 'draft', updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 AND status = 'in_review' RETURNING {}",
            super::reports::REPORT_COLUMNS
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("reports.return_to_draft", "UPDATE"))
        .await?;
        row.try_into()
    }
}
