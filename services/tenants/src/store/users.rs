//! The `users` table: members, invitations linked at first sign-in, and the
//! admin count that keeps an organisation administrable.

use chrono::{DateTime, Utc};
use treven_mesh::trace::{self, Traced as _};
use treven_mesh::{OrgId, Role};
use uuid::Uuid;

use super::audit::insert_audit;
use super::organisations::OrgRow;
use super::{OrgTx, PgStore, Result, StoreError, column};
use crate::model::{
    CognitoSub, Email, IdentityState, Name, NewAuditEvent, Organisation, User, UserChanges,
};

const USER_COLUMNS: &str =
    "id, org_id, cognito_sub, email, name, role, identity_state, created_at, updated_at";

impl PgStore {
    /// Operator action: the user `email` of `org`, created (or updated) with
    /// `name`, `role` and `cognito_sub`. Audited as done by `operator`. Runs
    /// confined to `org` (as `treven_app`, like a request), so any
    /// connecting role will do: the owner is under forced row-level security
    /// too.
    pub async fn admin_ensure_user(
        &self,
        org: OrgId,
        email: &Email,
        name: &Name,
        role: Role,
        cognito_sub: Option<&CognitoSub>,
    ) -> Result<User> {
        let mut tx = treven_mesh::postgres::OrgTx::begin(&self.pool, org, "operator").await?;
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (id, org_id, email, name, role, cognito_sub) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, lower(email)) DO UPDATE \
               SET name = EXCLUDED.name, role = EXCLUDED.role, \
                   cognito_sub = COALESCE(EXCLUDED.cognito_sub, users.cognito_sub), updated_at = now() \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(org.as_uuid())
        .bind(email.as_str())
        .bind(name.as_str())
        .bind(role.as_str())
        .bind(cognito_sub.map(CognitoSub::as_str))
        .fetch_one(&mut *tx)
        .traced(trace::postgres("tenants.admin_ensure_user", "INSERT"))
        .await?;
        let user: User = row.try_into()?;
        insert_audit(
            &mut tx,
            org,
            "operator",
            "",
            &NewAuditEvent::of(
                "user.ensure",
                "user",
                user.id,
                serde_json::json!({"role": role.as_str()}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }
}

impl OrgTx {
    /// The user with Cognito subject `sub`.
    pub async fn user_by_sub(&mut self, sub: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND cognito_sub = $2"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(sub)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.user_by_sub", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The user with Cognito subject `sub` and their organisation, in one
    /// statement (`GetMe`, the call behind every page the frontend opens:
    /// one round trip instead of two). The organisation is `None` only if
    /// row-level security hid it, which a user of the transaction's own
    /// organisation never meets.
    pub async fn user_and_organisation_by_sub(
        &mut self,
        sub: &str,
    ) -> Result<Option<(User, Option<Organisation>)>> {
        let row: Option<UserWithOrgRow> = sqlx::query_as(
            "SELECT u.id, u.org_id, u.cognito_sub, u.email, u.name, u.role, u.identity_state,                     u.created_at, u.updated_at,                     o.name AS org_name, o.kind AS org_kind, o.settings AS org_settings,                     o.created_at AS org_created_at, o.updated_at AS org_updated_at              FROM users u LEFT JOIN organisations o ON o.id = u.org_id              WHERE u.org_id = $1 AND u.cognito_sub = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(sub)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.user_and_organisation_by_sub", "SELECT"))
        .await?;
        let Some(row) = row else { return Ok(None) };
        let org = match (
            row.org_name,
            row.org_kind,
            row.org_settings,
            row.org_created_at,
            row.org_updated_at,
        ) {
            (Some(name), Some(kind), Some(settings), Some(created_at), Some(updated_at)) => {
                Some(Organisation::try_from(OrgRow {
                    id: row.user.org_id,
                    name,
                    kind,
                    settings,
                    created_at,
                    updated_at,
                })?)
            }
            _ => None,
        };
        Ok(Some((row.user.try_into()?, org)))
    }

    /// Links the not-yet-linked user with `email` to Cognito subject `sub`.
    pub async fn link_invited_user(
        &mut self,
        email: &Email,
        sub: &CognitoSub,
    ) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET cognito_sub = $3, updated_at = now() \
             WHERE org_id = $1 AND lower(email) = lower($2) AND cognito_sub IS NULL RETURNING {USER_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(email.as_str())
        .bind(sub.as_str())
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.link_invited_user", "UPDATE"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// One user.
    pub async fn user(&mut self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.user", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Up to `limit` users after `after` (name, id), by name then id.
    pub async fn users(
        &mut self,
        role: Option<Role>,
        after: Option<&(String, Uuid)>,
        limit: u32,
    ) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 \
               AND ($2::text IS NULL OR role = $2) \
               AND ($3::text IS NULL OR (name, id) > ($3, $4)) \
             ORDER BY name, id LIMIT $5"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(role.map(Role::as_str))
        .bind(after.map(|(name, _)| name.as_str()))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .traced(trace::postgres("tenants.users", "SELECT"))
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Adds a user; `identity` is where their Cognito account starts
    /// (`None`: not managed by tenants).
    pub async fn insert_user(
        &mut self,
        email: &Email,
        name: &Name,
        role: Role,
        sub: Option<&CognitoSub>,
        identity: Option<IdentityState>,
    ) -> Result<User> {
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (id, org_id, email, name, role, cognito_sub, identity_state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(self.tx.org_id().as_uuid())
        .bind(email.as_str())
        .bind(name.as_str())
        .bind(role.as_str())
        .bind(sub.map(CognitoSub::as_str))
        .bind(identity.map(IdentityState::as_str))
        .fetch_one(&mut *self.tx)
        .traced(trace::postgres("tenants.insert_user", "INSERT"))
        .await?;
        row.try_into()
    }

    /// The user with `email` (case-insensitive).
    pub async fn user_by_email(&mut self, email: &Email) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND lower(email) = lower($2)"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(email.as_str())
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.user_by_email", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// One user, locked until the transaction ends (a Cognito sync job
    /// completes against the state it applied).
    pub async fn lock_user(&mut self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND id = $2 FOR UPDATE"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.lock_user", "SELECT"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Sets where the user's Cognito account stands and, when given, their
    /// Cognito subject as the pool has it (the pool is the authority on
    /// subjects: a subject sent with CreateUser that the pool does not know
    /// is replaced, so the user can still sign in).
    pub async fn set_identity(
        &mut self,
        id: Uuid,
        state: IdentityState,
        sub: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE users SET identity_state = $3, cognito_sub = COALESCE($4, cognito_sub) \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(state.as_str())
        .bind(sub)
        .execute(&mut *self.tx)
        .traced(trace::postgres("tenants.set_identity", "UPDATE"))
        .await?;
        Ok(())
    }

    /// Changes a user; `None` when there is no such user.
    pub async fn update_user(&mut self, id: Uuid, changes: &UserChanges) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET name = COALESCE($3, name), email = COALESCE($4, email), role = COALESCE($5, role), \
                              updated_at = now() \
             WHERE org_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
        ))
        .bind(self.tx.org_id().as_uuid())
        .bind(id)
        .bind(changes.name.as_ref().map(Name::as_str))
        .bind(changes.email.as_ref().map(Email::as_str))
        .bind(changes.role.map(Role::as_str))
        .fetch_optional(&mut *self.tx)
        .traced(trace::postgres("tenants.update_user", "UPDATE"))
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Removes a user; whether there was one.
    pub async fn delete_user(&mut self, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE org_id = $1 AND id = $2")
            .bind(self.tx.org_id().as_uuid())
            .bind(id)
            .execute(&mut *self.tx)
            .traced(trace::postgres("tenants.delete_user", "DELETE"))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Locks the organisation's admin rows until the transaction ends, so two
    /// concurrent demotions cannot both see "one admin left".
    pub async fn lock_admins(&mut self) -> Result<()> {
        sqlx::query("SELECT id FROM users WHERE org_id = $1 AND role = 'admin' FOR UPDATE")
            .bind(self.tx.org_id().as_uuid())
            .execute(&mut *self.tx)
            .traced(trace::postgres("tenants.lock_admins", "SELECT"))
            .await?;
        Ok(())
    }

    /// How many admins the organisation has.
    pub async fn admin_count(&mut self) -> Result<i64> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE org_id = $1 AND role = 'admin'")
                .bind(self.tx.org_id().as_uuid())
                .fetch_one(&mut *self.tx)
                .traced(trace::postgres("tenants.admin_count", "SELECT"))
                .await?;
        Ok(count)
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    org_id: Uuid,
    cognito_sub: Option<String>,
    email: String,
    name: String,
    role: String,
    identity_state: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A user and their organisation's columns (`org_*`; all NULL when the
/// organisation is hidden).
#[derive(sqlx::FromRow)]
struct UserWithOrgRow {
    #[sqlx(flatten)]
    user: UserRow,
    org_name: Option<String>,
    org_kind: Option<String>,
    org_settings: Option<serde_json::Value>,
    org_created_at: Option<DateTime<Utc>>,
    org_updated_at: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self> {
        Ok(User {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            cognito_sub: row.cognito_sub,
            email: row.email,
            name: row.name,
            role: column("role", &row.role)?,
            identity_state: row
                .identity_state
                .as_deref()
                .map(|raw| column("identity_state", raw))
                .transpose()?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
