//! Share an approved report with a partner through a tenants report-access
//! grant.

use treven_mesh::MeshContext;
use treven_proto::treven::tenants::v1 as tenants;
use uuid::Uuid;

use crate::model::Status;

use super::{Reports, Result, failed_precondition};

impl Reports {
    /// Shares an approved report with a partner of the caller's organisation
    /// through a tenants grant (analysts, admins).
    pub async fn share(
        &self,
        context: &MeshContext,
        id: Uuid,
        partner: Uuid,
        permission: tenants::ReportPermission,
    ) -> Result<tenants::ReportAccess> {
        let report = {
            let mut tx = self.begin(context).await?;
            self.existing(&mut tx, id).await?
        };
        if !matches!(report.status, Status::Approved | Status::Exported) {
            return Err(failed_precondition(format!(
                "the report is {}; only approved reports can be shared",
                report.status
            ))
            .into());
        }
        // Tenants checks the partner belongs to the caller's organisation and
        // records the grant in the audit log.
        Ok(self
            .clients
            .grant_access(context, id, partner, permission)
            .await?)
    }
}
