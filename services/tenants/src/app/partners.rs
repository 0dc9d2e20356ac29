//! Partners: the organisations reports may be shared with.

use treven_mesh::pagination::page_limit;
use treven_mesh::{MeshContext, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE, Result, Tenants, paginate};
use crate::model::{Email, Name, NewAuditEvent, OrgKind, Page, Partner};

impl Tenants {
    /// A page of partners by name.
    pub async fn list_partners(
        &self,
        context: &MeshContext,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Partner>> {
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let after: Option<(String, Uuid)> =
            self.cursors.decode(context.org_id(), "partners", cursor)?;
        let mut tx = self.store.begin(context).await?;
        let partners = tx.partners(after.as_ref(), limit + 1).await?;
        Ok(paginate(
            &self.cursors,
            context,
            "partners",
            partners,
            limit,
            |p| (p.name.clone(), p.id),
        ))
    }

    /// One partner.
    pub async fn partner(&self, context: &MeshContext, id: Uuid) -> Result<Partner> {
        let mut tx = self.store.begin(context).await?;
        tx.partner(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("partner"))
    }

    /// Adds a partner (admins). The platform owner is never a partner.
    pub async fn create_partner(
        &self,
        context: &MeshContext,
        name: Name,
        kind: OrgKind,
        contact: Email,
    ) -> Result<Partner> {
        if kind == OrgKind::Owner {
            return Err(ServiceError::invalid_field("kind", "must be fi, ngo or le"));
        }
        let mut tx = self.store.begin(context).await?;
        let partner = tx.insert_partner(&name, kind, &contact).await?;
        tx.audit(&NewAuditEvent::of(
            "partner.create",
            "partner",
            partner.id,
            serde_json::json!({"kind": kind.as_str()}),
        ))
        .await?;
        tx.commit().await?;
        Ok(partner)
    }

    /// Removes a partner and its grants (admins).
    pub async fn delete_partner(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        let mut tx = self.store.begin(context).await?;
        if !tx.delete_partner(id).await? {
            return Err(ServiceError::not_found("partner"));
        }
        tx.audit(&NewAuditEvent::of(
            "partner.delete",
            "partner",
            id,
            serde_json::json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
