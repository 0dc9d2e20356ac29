//! Users of the organisation: listing, invitation, role and profile changes,
//! and removal — never of the last admin.

use treven_mesh::pagination::page_limit;
use treven_mesh::{ErrorCode, MeshContext, Role, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE, Result, Tenants, paginate};
use crate::model::{CognitoSub, Email, Name, NewAuditEvent, Page, User, UserChanges};

impl Tenants {
    /// A page of users by name.
    pub async fn list_users(
        &self,
        context: &MeshContext,
        role: Option<Role>,
        limit: i32,
        cursor: &str,
    ) -> Result<Page<User>> {
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
}

fn last_admin() -> ServiceError {
    ServiceError::new(
        ErrorCode::FailedPrecondition,
        "the organisation must keep at least one admin",
    )
}
