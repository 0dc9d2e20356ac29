//! Users of the organisation: listing, invitation, role and profile changes,
//! and removal — never of the last admin.

use treven_mesh::pagination::page_limit;
use treven_mesh::{ErrorCode, MeshContext, Role, ServiceError};
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE, Result, Tenants, paginate};
use crate::model::{
    CognitoSub, Email, IdentityState, Name, NewAuditEvent, Page, User, UserChanges,
};

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

    /// Invites a user (admins): the tenants user and, when a user pool is
    /// configured, a Cognito sync job in one transaction, the job applied
    /// right after the commit (the user comes back SYNCED, or PENDING when
    /// Cognito could not be reached: the relay finishes). Sending the same
    /// e-mail, name and role again is a retry: the same user comes back
    /// (its invitation driven again if it is not synced); the e-mail of
    /// another user is a conflict.
    pub async fn create_user(
        &self,
        context: &MeshContext,
        email: Email,
        name: Name,
        role: Role,
        sub: Option<CognitoSub>,
    ) -> Result<User> {
        let mut tx = self.store.begin(context).await?;
        let (user, job) = match tx.user_by_email(&email).await? {
            Some(existing) if existing.role == role && existing.name == name.as_str() => {
                let job = if existing.identity_state == Some(IdentityState::Synced) {
                    None
                } else {
                    let username = existing
                        .cognito_sub
                        .clone()
                        .unwrap_or(existing.email.clone());
                    self.queue_identity_sync(&mut tx, existing.id, &username)
                        .await?
                };
                (existing, job)
            }
            Some(_) => {
                return Err(ServiceError::conflict_on(
                    "email",
                    "already exists in this organisation",
                ));
            }
            None => {
                let managed = self.identity.is_some();
                let user = tx
                    .insert_user(
                        &email,
                        &name,
                        role,
                        sub.as_ref(),
                        managed.then_some(IdentityState::Pending),
                    )
                    .await?;
                tx.audit(&NewAuditEvent::of(
                    "user.create",
                    "user",
                    user.id,
                    serde_json::json!({"role": role.as_str(), "invited": managed}),
                ))
                .await?;
                let username = sub.as_ref().map_or(email.as_str(), CognitoSub::as_str);
                let job = self.queue_identity_sync(&mut tx, user.id, username).await?;
                (user, job)
            }
        };
        tx.commit().await?;
        self.refreshed_after_sync(context, user, job).await
    }

    /// `user` as it stands after its sync job (if any) was applied.
    pub(super) async fn refreshed_after_sync(
        &self,
        context: &MeshContext,
        user: User,
        job: Option<Uuid>,
    ) -> Result<User> {
        if job.is_none() {
            return Ok(user);
        }
        self.sync_identity_now(context, user.org_id, job).await;
        let mut tx = self
            .store
            .begin_as(user.org_id, context.user_id(), context.request_id())
            .await?;
        Ok(tx.user(user.id).await?.unwrap_or(user))
    }

    /// Changes a user (admins). The organisation keeps at least one admin.
    /// A new role or e-mail reaches Cognito like an invitation does (the
    /// role's group, the e-mail attribute).
    pub async fn update_user(
        &self,
        context: &MeshContext,
        id: Uuid,
        changes: UserChanges,
    ) -> Result<User> {
        let mut tx = self.store.begin(context).await?;
        tx.lock_admins().await?;
        let before = tx
            .user(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        let mut user = tx
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
        let job = if before.role != user.role || before.email != user.email {
            let username = before.cognito_sub.clone().unwrap_or(before.email.clone());
            let job = self.queue_identity_sync(&mut tx, id, &username).await?;
            if job.is_some() {
                tx.set_identity(id, IdentityState::Pending, None).await?;
                user.identity_state = Some(IdentityState::Pending);
            }
            job
        } else {
            None
        };
        tx.commit().await?;
        self.refreshed_after_sync(context, user, job).await
    }

    /// Removes a user (admins). The organisation keeps at least one admin.
    /// Their Cognito user is disabled and signed out everywhere (queued in
    /// the same transaction, applied right after it).
    pub async fn delete_user(&self, context: &MeshContext, id: Uuid) -> Result<()> {
        let mut tx = self.store.begin(context).await?;
        tx.lock_admins().await?;
        let Some(before) = tx.user(id).await? else {
            return Err(ServiceError::not_found("user"));
        };
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
        let username = before.cognito_sub.unwrap_or(before.email);
        let job = self.queue_identity_sync(&mut tx, id, &username).await?;
        tx.commit().await?;
        self.sync_identity_now(context, context.org_id(), job).await;
        Ok(())
    }
}

fn last_admin() -> ServiceError {
    ServiceError::new(
        ErrorCode::FailedPrecondition,
        "the organisation must keep at least one admin",
    )
}
