//! The `report_access` table: which partner may read or edit which report.

use chrono::{DateTime, Utc};
use treven_mesh::OrgId;
use treven_mesh::trace::{self, Traced as _};
use uuid::Uuid;

use super::{OrgTx, Result, StoreError, column};
use crate::model::{Permission, ReportAccess};

const ACCESS_COLUMNS: &str =
    "id, org_id, report_id, partner_id, permission, granted_by, granted_at";

impl OrgTx {
    /// Grants (or re-grants with a new permission) a partner access to a report.
    pub async fn upsert_access(
        &mut self,
        report_id: Uuid,
        partner_id: Uuid,
        permission: Permission,
    ) -> Result<ReportAccess> {
        let row: AccessRow = sqlx::query_as(&format!(
            "INSERT INTO report_access (id, org_id, report_id, partner_id, permission, granted_by) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, report_id, partner_id) DO UPDATE \
               SET permission = EXCLUDED.permission, granted_by = EXCLUDED.granted_by, granted_at = now() \
             RETURNING {ACCESS_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(self.tx.org_id().as_uuid())
        .bind(report_id)
        .bind(partner_id)
        .bind(permission.as_str())
        .bind(self.tx.actor_id().to_owned())
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("tenants.upsert_access", "INSERT"))
        .await?;
        row.try_into()
    }

    /// Up to `limit` grants after `after` (time, id), newest first.
    pub async fn access_grants(
        &mut self,
        report_id: Option<Uuid>,
        partner_id: Option<Uuid>,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<ReportAccess>> {
        let rows: Vec<AccessRow> = sqlx::query_as(&format!(
            "SELECT {ACCESS_COLUMNS} FROM report_access WHERE org_id = $1 \
               AND ($2::uuid IS NULL OR report_id = $2) AND ($3::uuid IS NULL OR partner_id = $3) \
               AND ($4::timestamptz IS NULL OR (granted_at, id) < ($4, $5)) \
             ORDER BY granted_at DESC, id DESC LIMIT $6"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(report_id)
        .bind(partner_id)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("tenants.access_grants", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// One grant by id.
    pub async fn access_grant(&mut self, id: Uuid) -> Result<Option<ReportAccess>> {
        let row: Option<AccessRow> = sqlx::query_as(&format!(
            "SELECT {ACCESS_COLUMNS} FROM report_access WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.access_grant", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Removes a grant, returning it.
    pub async fn delete_access(&mut self, id: Uuid) -> Result<Option<ReportAccess>> {
        let row: Option<AccessRow> = sqlx::query_as(&format!(
            "DELETE FROM report_access WHERE org_id = $1 AND id = $2 RETURNING {ACCESS_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.delete_access", "DELETE"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }
}

#[derive(sqlx::FromRow)]
struct AccessRow {
    id: Uuid,
    org_id: Uuid,
    report_id: Uuid,
    partner_id: Uuid,
    permission: String,
    granted_by: String,
    granted_at: DateTime<Utc>,
}

impl TryFrom<AccessRow> for ReportAccess {
    type Error = StoreError;
    fn try_from(row: AccessRow) -> Result<Self> {
        Ok(ReportAccess {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            report_id: row.report_id,
            partner_id: row.partner_id,
            permission: column("permission", &row.permission)?,
            granted_by: row.granted_by,
            granted_at: row.granted_at,
        })
    }
}
