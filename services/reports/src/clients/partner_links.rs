//! The calls partner links make: the grant a link was minted for (tenants)
//! and the files it may hand out (documents), always acting for the
//! organisation that owns the report.

use chrono::{DateTime, Utc};
use treven_mesh::wire::from_timestamp;
use treven_mesh::{MeshContext, OrgId, Principal, Role, ServiceError};
use treven_proto::treven::documents::v1 as documents;
use treven_proto::treven::tenants::v1 as tenants;
use uuid::Uuid;

use super::{Clients, remote_error};

impl Clients {
    /// The context of a partner opening a link of `org`: reports acting for
    /// `actor` (`partner:<id>`) with the viewer role, so its onward calls
    /// (the grant check, a presigned URL, the audit entry) stay inside that
    /// organisation and can read but never change anything. Built only
    /// after the link's signature verified.
    pub fn acting_for_partner(&self, org: OrgId, actor: &str, request_id: &str) -> MeshContext {
        self.signer
            .acting_for(org, actor, &[Role::Viewer], request_id)
    }

    /// A 32-byte key derived from the reports signing key for `label`.
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        self.signer.key().derive(label)
    }

    /// One report-access grant of the context's organisation (NOT_FOUND
    /// once revoked).
    pub async fn get_report_access(
        &self,
        context: &MeshContext,
        grant: Uuid,
    ) -> Result<tenants::ReportAccess, ServiceError> {
        let request = self.request(
            context,
            Principal::Tenants,
            tenants::GetReportAccessRequest {
                id: grant.to_string(),
            },
        )?;
        self.tenants
            .clone()
            .get_report_access(request)
            .await
            .map_err(|s| remote_error("tenants", s))?
            .into_inner()
            .access
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("tenants returned no grant")))
    }

    /// A presigned download URL of the evidence pack of `report` version
    /// `version`, and its expiry.
    pub async fn evidence_pack(
        &self,
        context: &MeshContext,
        report: Uuid,
        version: i32,
    ) -> Result<(String, DateTime<Utc>), ServiceError> {
        let request = self.request(
            context,
            Principal::Documents,
            documents::GetEvidencePackRequest {
                report_id: report.to_string(),
                version,
            },
        )?;
        let response = self
            .documents
            .clone()
            .get_evidence_pack(request)
            .await
            .map_err(|s| remote_error("documents", s))?
            .into_inner();
        let expires_at = response
            .expires_at
            .as_ref()
            .map(|ts| from_timestamp("expires_at", ts))
            .transpose()
            .map_err(ServiceError::internal)?
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("documents gave no expiry")))?;
        Ok((response.url, expires_at))
    }
}
