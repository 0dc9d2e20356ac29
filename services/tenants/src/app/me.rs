//! Who the caller is: their own record and organisation, and the lookup by
//! Cognito subject that links an invited user at first sign-in.

use treven_mesh::Role;
use treven_mesh::{MeshContext, ServiceError};

use super::{Result, Tenants};
use crate::model::{CognitoSub, Email, NewAuditEvent, Organisation, User};

impl Tenants {
    /// The caller and their organisation: one statement in a read-only
    /// transaction, which ends without waiting for Postgres.
    pub async fn me(&self, context: &MeshContext) -> Result<(User, Organisation)> {
        let mut tx = self.store.begin(context).await?;
        let found = tx.user_and_organisation_by_sub(context.user_id()).await?;
        tx.end_read();
        let (user, org) = found.ok_or_else(|| ServiceError::not_found("user"))?;
        let org = org.ok_or_else(|| ServiceError::not_found("organisation"))?;
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
            context.require_any(Role::ADMINS)?;
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
}
