//! The caller's organisation: reading it and changing its name and settings.

use treven_mesh::{MeshContext, ServiceError};

use super::{Result, Tenants};
use crate::model::{NewAuditEvent, Organisation, OrganisationChanges};

impl Tenants {
    /// The caller's organisation.
    pub async fn organisation(&self, context: &MeshContext) -> Result<Organisation> {
        let mut tx = self.store.begin(context).await?;
        tx.organisation()
            .await?
            .ok_or_else(|| ServiceError::not_found("organisation"))
    }

    /// Changes the caller's organisation (admins).
    pub async fn update_organisation(
        &self,
        context: &MeshContext,
        changes: OrganisationChanges,
    ) -> Result<Organisation> {
        let mut tx = self.store.begin(context).await?;
        let org = tx
            .update_organisation(&changes)
            .await?
            .ok_or_else(|| ServiceError::not_found("organisation"))?;
        let fields: Vec<&str> = [
            changes.name.as_ref().map(|_| "name"),
            changes.settings.as_ref().map(|_| "settings"),
        ]
        .into_iter()
        .flatten()
        .collect();
        tx.audit(&NewAuditEvent::of(
            "organisation.update",
            "organisation",
            org.id,
            serde_json::json!({"fields": fields}),
        ))
        .await?;
        tx.commit().await?;
        Ok(org)
    }
}
