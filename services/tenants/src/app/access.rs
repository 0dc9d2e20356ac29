//! Report-access grants: which partner may read or edit which report.

use chrono::{DateTime, Utc};
use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE, Result, Tenants, paginate};
use crate::model::{NewAuditEvent, Page, Permission, ReportAccess};

impl Tenants {
    /// Grants a partner access to a report (analysts, admins).
    pub async fn grant_access(
        &self,
        context: &MeshContext,
        report_id: Uuid,
        partner_id: Uuid,
        permission: Permission,
    ) -> Result<ReportAccess> {
        let mut tx = self.store.begin(context).await?;
        if tx.partner(partner_id).await?.is_none() {
            return Err(ServiceError::not_found("partner"));
        }
        let access = tx.upsert_access(report_id, partner_id, permission).await?;
        tx.audit(&NewAuditEvent::of(
            "report_access.grant",
            "report",
            report_id,
            serde_json::json!({"partner_id": partner_id, "permission": permission.as_str(), "grant_id": access.id}),
        ))
        .await?;
        tx.commit().await?;
        Ok(access)
    }

    /// A page of grants, newest first.
    pub async fn list_access(
        &self,
        context: &MeshContext,
        report_id: Option<Uuid>,
        partner_id: Option<Uuid>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<ReportAccess>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!(
            "access?report={}&partner={}",
            report_id.map(|id| id.to_string()).unwrap_or_default(),
            partner_id.map(|id| id.to_string()).unwrap_or_default()
        );
        let after: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.store.begin(context).await?;
        let grants = tx
            .access_grants(report_id, partner_id, after.as_ref(), limit + 1)
            .await?;
        Ok(paginate(
            &self.cursors,
            context,
            &scope,
            grants,
            limit,
            |g| (g.granted_at, g.id),
        ))
    }

    /// One grant of the caller's organisation (NOT_FOUND once revoked).
    pub async fn get_access(&self, context: &MeshContext, id: Uuid) -> Result<ReportAccess> {
        let mut tx = self.store.begin(context).await?;
        tx.access_grant(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("report access"))
    }

    /// Withdraws a grant (analysts, admins).
    pub async fn revoke_access(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        let mut tx = self.store.begin(context).await?;
        let access = tx
            .delete_access(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("report access"))?;
        tx.audit(&NewAuditEvent::of(
            "report_access.revoke",
            "report",
            access.report_id,
            serde_json::json!({"partner_id": access.partner_id, "grant_id": access.id}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
