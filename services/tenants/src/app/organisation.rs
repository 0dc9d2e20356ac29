//! The caller's organisation: reading it and changing its name and
//! settings; and the platform owner creating organisations.

use treven_mesh::{MeshContext, OrgId, Role, ServiceError};
use uuid::Uuid;

use super::{Result, Tenants};
use crate::model::{
    Email, IdentityState, Name, NewAuditEvent, OrgKind, Organisation, OrganisationChanges, User,
};

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

    /// Creates an organisation and invites its first admin (admins of the
    /// platform-owner organisation only: anyone else is FORBIDDEN). One
    /// transaction: the check and an `organisation.create` entry in the
    /// owner's audit log, then — confined to the new organisation — the
    /// organisation, its admin (invited like [`Tenants::create_user`] does),
    /// their audit entries and the Cognito sync job. A taken name is a
    /// conflict on `name`.
    pub async fn create_organisation(
        &self,
        context: &MeshContext,
        name: Name,
        kind: OrgKind,
        admin_email: Email,
        admin_name: Name,
    ) -> Result<(Organisation, User)> {
        if kind == OrgKind::Owner {
            return Err(ServiceError::invalid_field(
                "kind",
                "must be fi, ngo or le: there is one platform owner",
            ));
        }
        let mut tx = self.store.begin(context).await?;
        let own = tx
            .organisation()
            .await?
            .ok_or_else(|| ServiceError::not_found("organisation"))?;
        if own.kind != OrgKind::Owner {
            return Err(ServiceError::forbidden(
                "only admins of the platform owner create organisations",
            ));
        }
        let new_org = OrgId::new(Uuid::now_v7());
        tx.audit(&NewAuditEvent::of(
            "organisation.create",
            "organisation",
            new_org,
            serde_json::json!({"name": name.as_str(), "kind": kind.as_str()}),
        ))
        .await?;
        tx.switch_organisation(new_org).await?;
        let org = tx.insert_organisation(&name, kind).await?;
        tx.audit(&NewAuditEvent::of(
            "organisation.create",
            "organisation",
            new_org,
            serde_json::json!({"name": name.as_str(), "kind": kind.as_str(), "created_by_org": own.id.to_string()}),
        ))
        .await?;
        let managed = self.identity.is_some();
        let admin = tx
            .insert_user(
                &admin_email,
                &admin_name,
                Role::Admin,
                None,
                managed.then_some(IdentityState::Pending),
            )
            .await?;
        tx.audit(&NewAuditEvent::of(
            "user.create",
            "user",
            admin.id,
            serde_json::json!({"role": Role::Admin.as_str(), "invited": managed}),
        ))
        .await?;
        let job = self
            .queue_identity_sync(&mut tx, admin.id, admin_email.as_str())
            .await?;
        tx.commit().await?;
        tracing::info!(org_id = %new_org, kind = kind.as_str(), "organisation created");
        let admin = self.refreshed_after_sync(context, admin, job).await?;
        Ok((org, admin))
    }
}
