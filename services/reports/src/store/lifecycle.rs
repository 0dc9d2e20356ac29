//! Archive and soft delete of reports, inside an [`OrgTx`]. A deleted
//! report keeps its rows (with who deleted it and when); every other read
//! of the store filters it out.

use chrono::{DateTime, Utc};
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use crate::model::Report;

use super::reports::{REPORT_COLUMNS, ReportRow};
use super::{OrgTx, Result};

#[derive(sqlx::FromRow)]
struct WithDeletion {
    #[sqlx(flatten)]
    report: ReportRow,
    deleted_at: Option<DateTime<Utc>>,
}

impl OrgTx {
    /// One report, deleted or not, with when it was deleted (partner links
    /// tell a deleted report from a link that never existed).
    pub async fn report_with_deletion(
        &mut self,
        id: Uuid,
    ) -> Result<Option<(Report, Option<DateTime<Utc>>)>> {
        let row: Option<WithDeletion> = sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS}, deleted_at FROM reports WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.report_with_deletion", "SELECT"))
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((row.report.try_into()?, row.deleted_at))),
        }
    }

    /// Archives (by the transaction's actor, now) or unarchives a live
    /// report; `None` when there is no such live report.
    pub async fn set_archived(&mut self, id: Uuid, archived: bool) -> Result<Option<Report>> {
        let row: Option<ReportRow> = sqlx::query_as(&format!(
            "UPDATE reports SET \
                 archived_at = CASE WHEN $3 THEN clock_timestamp() END, \
                 archived_by = CASE WHEN $3 THEN $4 END, \
                 updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {REPORT_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(archived)
        .bind(self.tx.actor_id().to_owned())
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("reports.set_archived", "UPDATE"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Marks a live report deleted by the transaction's actor, now, and
    /// removes its trends from the map; false when there is no such live
    /// report. Its rows and versions stay.
    pub async fn mark_deleted(&mut self, id: Uuid) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE reports SET deleted_at = clock_timestamp(), deleted_by = $3, \
                    updated_at = clock_timestamp() \
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(self.tx.actor_id().to_owned())
        .execute(&mut *self.tx)
        .traced(trace::postgres("reports.mark_deleted", "UPDATE"))
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.replace_trends(id, &[]).await?;
        Ok(true)
    }
}
