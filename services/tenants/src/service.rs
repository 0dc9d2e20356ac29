//! What the tenants service does, independent of the wire: role checks,
//! business rules, audit entries and pagination, over the [`PgStore`].

use chrono::{DateTime, Utc};
use treven_mesh::pagination::{CursorCodec, page_limit};
use treven_mesh::{ErrorCode, MeshContext, Role, ServiceError};
use uuid::Uuid;

use crate::model::{
    AuditEvent, AuditFilter, CognitoSub, Email, Name, NewAuditEvent, OrgKind, Organisation,
    OrganisationChanges, Page, Partner, Permission, ReportAccess, User, UserChanges,
};
use crate::store::PgStore;

/// Default page size.
pub const DEFAULT_PAGE: u32 = 50;
/// Largest page size.
pub const MAX_PAGE: u32 = 100;

/// Everyone who belongs to the organisation.
const MEMBERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Viewer];
/// Those who research, edit and share.
const EDITORS: &[Role] = &[Role::Admin, Role::Analyst];
/// Those who manage the organisation.
const ADMINS: &[Role] = &[Role::Admin];

type Result<T> = std::result::Result<T, ServiceError>;

/// The tenants service.
#[derive(Debug, Clone)]
pub struct Tenants {
    store: PgStore,
    cursors: CursorCodec,
}

/// Turns `limit + 1` fetched rows into a page with the cursor of its last item.
fn paginate<T, P: serde::Serialize>(
    cursors: &CursorCodec,
    context: &MeshContext,
    scope: &str,
    mut items: Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> P,
) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => cursors.encode(context.org_id(), scope, &position(last)),
        _ => String::new(),
    };
    Page { items, next_cursor }
}

impl Tenants {
    /// The service over `store`, signing cursors with `cursors`.
    pub fn new(store: PgStore, cursors: CursorCodec) -> Self {
        Self { store, cursors }
    }

    /// The caller and their organisation.
    pub async fn me(&self, context: &MeshContext) -> Result<(User, Organisation)> {
        let mut tx = self.store.begin(context).await?;
        let user = tx
            .user_by_sub(context.user_id())
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        let org = tx
            .organisation()
            .await?
            .ok_or_else(|| ServiceError::not_found("organisation"))?;
        tx.commit().await?;
        Ok((user, org))
    }

    /// The user with Cognito subject `sub`; links an invited user with the
    /// same verified `email` on first sign-in. Callers may look up only
    /// themselves, unless they are admins.
    pub async fn lookup_by_sub(
        &self,
        context: &MeshContext,
        sub: &CognitoSub,
        email: Option<&Email>,
    ) -> Result<User> {
        if sub.as_str() != context.user_id() {
            context.require_any(ADMINS)?;
        }
        let mut tx = self.store.begin(context).await?;
        if let Some(user) = tx.user_by_sub(sub.as_str()).await? {
            return Ok(user);
        }
        let Some(email) = email else {
            return Err(ServiceError::not_found("user"));
        };
        let user = tx
            .link_invited_user(email, sub)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        tx.audit(&NewAuditEvent::of(
            "user.link",
            "user",
            user.id,
            serde_json::json!({"cognito_sub": sub.as_str()}),
        ))
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The caller's organisation.
    pub async fn organisation(&self, context: &MeshContext) -> Result<Organisation> {
        context.require_any(MEMBERS)?;
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
        context.require_any(ADMINS)?;
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

    /// A page of users by name.
    pub async fn list_users(
        &self,
        context: &MeshContext,
        role: Option<Role>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<User>> {
        context.require_any(MEMBERS)?;
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!("users?role={}", role.map_or("", Role::as_str));
        let after: Option<(String, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.store.begin(context).await?;
        let users = tx.users(role, after.as_ref(), limit + 1).await?;
        Ok(paginate(
            &self.cursors,
            context,
            &scope,
            users,
            limit,
            |u| (u.name.clone(), u.id),
        ))
    }

    /// One user.
    pub async fn user(&self, context: &MeshContext, id: Uuid) -> Result<User> {
        context.require_any(MEMBERS)?;
        let mut tx = self.store.begin(context).await?;
        tx.user(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))
    }

    /// Adds a user (admins).
    pub async fn create_user(
        &self,
        context: &MeshContext,
        email: Email,
        name: Name,
        role: Role,
        sub: Option<CognitoSub>,
    ) -> Result<User> {
        context.require_any(ADMINS)?;
        let mut tx = self.store.begin(context).await?;
        let user = tx.insert_user(&email, &name, role, sub.as_ref()).await?;
        tx.audit(&NewAuditEvent::of(
            "user.create",
            "user",
            user.id,
            serde_json::json!({"role": role.as_str()}),
        ))
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Changes a user (admins). The organisation keeps at least one admin.
    pub async fn update_user(
        &self,
        context: &MeshContext,
        id: Uuid,
        changes: UserChanges,
    ) -> Result<User> {
        context.require_any(ADMINS)?;
        let mut tx = self.store.begin(context).await?;
        tx.lock_admins().await?;
        let user = tx
            .update_user(id, &changes)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        if tx.admin_count().await? == 0 {
            return Err(last_admin());
        }
        let fields: Vec<&str> = [
            changes.name.as_ref().map(|_| "name"),
            changes.email.as_ref().map(|_| "email"),
            changes.role.as_ref().map(|_| "role"),
        ]
        .into_iter()
        .flatten()
        .collect();
        tx.audit(&NewAuditEvent::of(
            "user.update",
            "user",
            user.id,
            serde_json::json!({"fields": fields, "role": user.role.as_str()}),
        ))
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Removes a user (admins). The organisation keeps at least one admin.
    pub async fn delete_user(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        context.require_any(ADMINS)?;
        let mut tx = self.store.begin(context).await?;
        tx.lock_admins().await?;
        if !tx.delete_user(id).await? {
            return Err(ServiceError::not_found("user"));
        }
        if tx.admin_count().await? == 0 {
            return Err(last_admin());
        }
        tx.audit(&NewAuditEvent::of(
            "user.delete",
            "user",
            id,
            serde_json::json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A page of partners by name.
    pub async fn list_partners(
        &self,
        context: &MeshContext,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<Partner>> {
        context.require_any(MEMBERS)?;
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
        context.require_any(MEMBERS)?;
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
        context.require_any(ADMINS)?;
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
        context.require_any(ADMINS)?;
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

    /// Grants a partner access to a report (analysts, admins).
    pub async fn grant_access(
        &self,
        context: &MeshContext,
        report_id: Uuid,
        partner_id: Uuid,
        permission: Permission,
    ) -> Result<ReportAccess> {
        context.require_any(EDITORS)?;
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
        context.require_any(MEMBERS)?;
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

    /// Withdraws a grant (analysts, admins).
    pub async fn revoke_access(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        context.require_any(EDITORS)?;
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

    /// Appends an audit entry by the caller.
    pub async fn record_audit(
        &self,
        context: &MeshContext,
        event: NewAuditEvent,
    ) -> Result<AuditEvent> {
        context.require_any(MEMBERS)?;
        let mut tx = self.store.begin(context).await?;
        let stored = tx.audit(&event).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// A page of audit entries, newest first (analysts, admins).
    pub async fn list_audit(
        &self,
        context: &MeshContext,
        filter: AuditFilter,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<AuditEvent>> {
        context.require_any(EDITORS)?;
        let limit = page_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let scope = format!(
            "audit?{}",
            serde_json::to_string(&filter).map_err(ServiceError::internal)?
        );
        let after: Option<(DateTime<Utc>, Uuid)> =
            self.cursors.decode(context.org_id(), &scope, cursor)?;
        let mut tx = self.store.begin(context).await?;
        let events = tx.audit_events(&filter, after.as_ref(), limit + 1).await?;
        Ok(paginate(
            &self.cursors,
            context,
            &scope,
            events,
            limit,
            |e| (e.occurred_at, e.id),
        ))
    }
}

fn last_admin() -> ServiceError {
    ServiceError::new(
        ErrorCode::FailedPrecondition,
        "the organisation must keep at least one admin",
    )
}
