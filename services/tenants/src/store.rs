//! Postgres storage of the tenants service.
//!
//! All tenant data is read and written through an [`OrgTx`]: a transaction
//! that has switched to the `treven_app` role and set `app.org_id`, so
//! row-level security confines it to one organisation. Queries filter by
//! organisation as well; the policy is the second lock, not the only one.
//! Operator actions (`treven admin`) use [`PgStore::admin`] functions that run
//! as the owner.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use treven_mesh::{MeshContext, OrgId, Role, ServiceError};
use uuid::Uuid;

use crate::model::{
    AuditEvent, AuditFilter, CognitoSub, Email, Name, NewAuditEvent, OrgKind, Organisation,
    OrganisationChanges, Partner, Permission, ReportAccess, User, UserChanges,
};

use treven_mesh::postgres::{PgFailure, classify, org_transaction_start};

/// Migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure, classified for the client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres cannot be reached or is shutting down; retrying may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint on `field` was violated.
    #[error("{field} already exists")]
    Conflict {
        /// The request field that clashes.
        field: &'static str,
    },
    /// Anything else: a bug or a schema mismatch.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            PgFailure::Unavailable => StoreError::Unavailable(error),
            PgFailure::UniqueViolation => {
                let constraint = match &error {
                    sqlx::Error::Database(db) => db.constraint().map(str::to_owned),
                    _ => None,
                };
                let field = match constraint.as_deref() {
                    Some("users_org_email_key") => "email",
                    Some("users_org_sub_key") => "cognito_sub",
                    Some("partners_org_name_key") | Some("organisations_name_key") => "name",
                    _ => "id",
                };
                StoreError::Conflict { field }
            }
            PgFailure::Serialization | PgFailure::Other => StoreError::Internal(error),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => ServiceError::unavailable(source),
            StoreError::Conflict { field } => {
                ServiceError::conflict_on(field, "already exists in this organisation")
            }
            StoreError::Internal(source) => ServiceError::internal(source),
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections held.
    pub max_connections: u32,
    /// How long a call waits for a connection before UNAVAILABLE.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// The tenants store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A lazily connecting pool: the service starts even while Postgres is
    /// down, answers UNAVAILABLE, and recovers when it is back. Connections
    /// are checked before use, so ones killed by a restart are replaced.
    pub fn connect_lazy(options: PgConnectOptions, pool: &PoolOptions) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Self { pool }
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool (for migrations and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Opens a transaction confined to the caller's organisation.
    pub async fn begin(&self, context: &MeshContext) -> Result<OrgTx> {
        let tx = self
            .pool
            .begin_with(org_transaction_start(context.org_id()))
            .await
            .map_err(|e| match StoreError::from(e) {
                // Failing to get a connection at all is always "unavailable".
                StoreError::Internal(e) => StoreError::Unavailable(e),
                other => other,
            })?;
        Ok(OrgTx {
            tx,
            org_id: context.org_id(),
            actor_id: context.user_id().to_owned(),
            request_id: context.request_id().to_owned(),
        })
    }

    /// Operator action: the organisation named `name`, created with `kind`
    /// if there is none. Runs as the owner, outside row-level security.
    pub async fn admin_ensure_org(&self, name: &Name, kind: OrgKind) -> Result<Organisation> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO organisations (id, name, kind) VALUES ($1, $2, $3) \
             ON CONFLICT ((lower(name))) DO NOTHING",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(kind.as_str())
        .execute(&self.pool)
        .await?;
        let row: OrgRow = sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM organisations WHERE lower(name) = lower($1)"
        ))
        .bind(name.as_str())
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    /// Operator action: the user `email` of `org`, created (or updated) with
    /// `name`, `role` and `cognito_sub`. Audited as done by `operator`.
    pub async fn admin_ensure_user(
        &self,
        org: OrgId,
        email: &Email,
        name: &Name,
        role: Role,
        cognito_sub: Option<&CognitoSub>,
    ) -> Result<User> {
        let mut tx = self.pool.begin().await?;
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

/// A transaction confined to one organisation, acting for one caller.
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org_id: OrgId,
    actor_id: String,
    request_id: String,
}

const ORG_COLUMNS: &str = "id, name, kind, settings, created_at, updated_at";
const USER_COLUMNS: &str = "id, org_id, cognito_sub, email, name, role, created_at, updated_at";
const PARTNER_COLUMNS: &str = "id, org_id, name, kind, contact_email, created_at";
const ACCESS_COLUMNS: &str =
    "id, org_id, report_id, partner_id, permission, granted_by, granted_at";
const AUDIT_COLUMNS: &str =
    "id, org_id, actor_id, action, resource_type, resource_id, details, request_id, occurred_at";

impl OrgTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Appends an audit entry by the caller, in this transaction.
    pub async fn audit(&mut self, event: &NewAuditEvent) -> Result<AuditEvent> {
        insert_audit(
            &mut self.tx,
            self.org_id,
            &self.actor_id,
            &self.request_id,
            event,
        )
        .await
    }

    /// The caller's organisation.
    pub async fn organisation(&mut self) -> Result<Option<Organisation>> {
        let row: Option<OrgRow> = sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM organisations WHERE id = $1"
        ))
        .bind(self.org_id.as_uuid())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Changes the caller's organisation.
    pub async fn update_organisation(
        &mut self,
        changes: &OrganisationChanges,
    ) -> Result<Option<Organisation>> {
        let row: Option<OrgRow> = sqlx::query_as(&format!(
            "UPDATE organisations SET name = COALESCE($2, name), settings = COALESCE($3, settings), updated_at = now() \
             WHERE id = $1 RETURNING {ORG_COLUMNS}"
        ))
        .bind(self.org_id.as_uuid())
        .bind(changes.name.as_ref().map(Name::as_str))
        .bind(changes.settings.as_ref())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The user with Cognito subject `sub`.
    pub async fn user_by_sub(&mut self, sub: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND cognito_sub = $2"
        ))
        .bind(self.org_id.as_uuid())
        .bind(sub)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
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
        .bind(self.org_id.as_uuid())
        .bind(email.as_str())
        .bind(sub.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// One user.
    pub async fn user(&mut self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.org_id.as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
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
        .bind(self.org_id.as_uuid())
        .bind(role.map(Role::as_str))
        .bind(after.map(|(name, _)| name.as_str()))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Adds a user.
    pub async fn insert_user(
        &mut self,
        email: &Email,
        name: &Name,
        role: Role,
        sub: Option<&CognitoSub>,
    ) -> Result<User> {
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (id, org_id, email, name, role, cognito_sub) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(self.org_id.as_uuid())
        .bind(email.as_str())
        .bind(name.as_str())
        .bind(role.as_str())
        .bind(sub.map(CognitoSub::as_str))
        .fetch_one(&mut *self.tx)
        .await?;
        row.try_into()
    }

    /// Changes a user; `None` when there is no such user.
    pub async fn update_user(&mut self, id: Uuid, changes: &UserChanges) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET name = COALESCE($3, name), email = COALESCE($4, email), role = COALESCE($5, role), \
                              updated_at = now() \
             WHERE org_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
        ))
        .bind(self.org_id.as_uuid())
        .bind(id)
        .bind(changes.name.as_ref().map(Name::as_str))
        .bind(changes.email.as_ref().map(Email::as_str))
        .bind(changes.role.map(Role::as_str))
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Removes a user; whether there was one.
    pub async fn delete_user(&mut self, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE org_id = $1 AND id = $2")
            .bind(self.org_id.as_uuid())
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Locks the organisation's admin rows until the transaction ends, so two
    /// concurrent demotions cannot both see "one admin left".
    pub async fn lock_admins(&mut self) -> Result<()> {
        sqlx::query("SELECT id FROM users WHERE org_id = $1 AND role = 'admin' FOR UPDATE")
            .bind(self.org_id.as_uuid())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// How many admins the organisation has.
    pub async fn admin_count(&mut self) -> Result<i64> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE org_id = $1 AND role = 'admin'")
                .bind(self.org_id.as_uuid())
                .fetch_one(&mut *self.tx)
                .await?;
        Ok(count)
    }

    /// One partner.
    pub async fn partner(&mut self, id: Uuid) -> Result<Option<Partner>> {
        let row: Option<PartnerRow> = sqlx::query_as(&format!(
            "SELECT {PARTNER_COLUMNS} FROM partners WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.org_id.as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Up to `limit` partners after `after` (name, id).
    pub async fn partners(
        &mut self,
        after: Option<&(String, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Partner>> {
        let rows: Vec<PartnerRow> = sqlx::query_as(&format!(
            "SELECT {PARTNER_COLUMNS} FROM partners WHERE org_id = $1 \
               AND ($2::text IS NULL OR (name, id) > ($2, $3)) ORDER BY name, id LIMIT $4"
        ))
        .bind(self.org_id.as_uuid())
        .bind(after.map(|(name, _)| name.as_str()))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Adds a partner.
    pub async fn insert_partner(
        &mut self,
        name: &Name,
        kind: OrgKind,
        contact: &Email,
    ) -> Result<Partner> {
        let row: PartnerRow = sqlx::query_as(&format!(
            "INSERT INTO partners (id, org_id, name, kind, contact_email) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {PARTNER_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(self.org_id.as_uuid())
        .bind(name.as_str())
        .bind(kind.as_str())
        .bind(contact.as_str())
        .fetch_one(&mut *self.tx)
        .await?;
        row.try_into()
    }

    /// Removes a partner (and, by cascade, its grants); whether there was one.
    pub async fn delete_partner(&mut self, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM partners WHERE org_id = $1 AND id = $2")
            .bind(self.org_id.as_uuid())
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Grants (or re-grants with a new permission) a partner access to a report.
    pub async fn upsert_access(
        &mut self,
        report_id: Uuid,
        partner_id: Uuid,
        permission: Permission,
    ) -> Result<ReportAccess> {
        let row: AccessRow = sqlx::query_as(&format!(
            "INSERT INTO report_access (id, org_id, report_id, partner_id, permission, granted_by) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, report_id, partner_id) DO UPDATE \
               SET permission = EXCLUDED.permission, granted_by = EXCLUDED.granted_by, granted_at = now() \
             RETURNING {ACCESS_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(self.org_id.as_uuid())
        .bind(report_id)
        .bind(partner_id)
        .bind(permission.as_str())
        .bind(&self.actor_id)
        .fetch_one(&mut *self.tx)
        .await?;
        row.try_into()
    }

    /// Up to `limit` grants after `after` (time, id), newest first.
    pub async fn access_grants(
        &mut self,
        report_id: Option<Uuid>,
        partner_id: Option<Uuid>,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<ReportAccess>> {
        let rows: Vec<AccessRow> = sqlx::query_as(&format!(
            "SELECT {ACCESS_COLUMNS} FROM report_access WHERE org_id = $1 \
               AND ($2::uuid IS NULL OR report_id = $2) AND ($3::uuid IS NULL OR partner_id = $3) \
               AND ($4::timestamptz IS NULL OR (granted_at, id) < ($4, $5)) \
             ORDER BY granted_at DESC, id DESC LIMIT $6"
        ))
        .bind(self.org_id.as_uuid())
        .bind(report_id)
        .bind(partner_id)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Removes a grant, returning it.
    pub async fn delete_access(&mut self, id: Uuid) -> Result<Option<ReportAccess>> {
        let row: Option<AccessRow> = sqlx::query_as(&format!(
            "DELETE FROM report_access WHERE org_id = $1 AND id = $2 RETURNING {ACCESS_COLUMNS}"
        ))
        .bind(self.org_id.as_uuid())
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Up to `limit` audit entries matching `filter` after `after`, newest first.
    pub async fn audit_events(
        &mut self,
        filter: &AuditFilter,
        after: Option<&(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1 \
               AND ($2::text IS NULL OR resource_type = $2) AND ($3::text IS NULL OR resource_id = $3) \
               AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND ($5::timestamptz IS NULL OR occurred_at < $5) \
               AND ($6::timestamptz IS NULL OR (occurred_at, id) < ($6, $7)) \
             ORDER BY occurred_at DESC, id DESC LIMIT $8"
        ))
        .bind(self.org_id.as_uuid())
        .bind(filter.resource_type.as_deref())
        .bind(filter.resource_id.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(after.map(|(at, _)| *at))
        .bind(after.map(|(_, id)| *id))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    org_id: OrgId,
    actor_id: &str,
    request_id: &str,
    event: &NewAuditEvent,
) -> Result<AuditEvent> {
    let row: AuditRow = sqlx::query_as(&format!(
        "INSERT INTO audit_log (id, org_id, actor_id, action, resource_type, resource_id, details, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {AUDIT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(org_id.as_uuid())
    .bind(actor_id)
    .bind(&event.action)
    .bind(&event.resource_type)
    .bind(&event.resource_id)
    .bind(&event.details)
    .bind(request_id)
    .fetch_one(&mut **tx)
    .await?;
    row.try_into()
}

/// A text column that does not parse is a schema/code mismatch: internal.
fn column<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| {
        StoreError::Internal(sqlx::Error::Decode(format!("{name}: {e}").into()))
    })
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
    kind: String,
    settings: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<OrgRow> for Organisation {
    type Error = StoreError;
    fn try_from(row: OrgRow) -> Result<Self> {
        Ok(Organisation {
            id: OrgId::new(row.id),
            name: row.name,
            kind: column("kind", &row.kind)?,
            settings: row.settings,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
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
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PartnerRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    kind: String,
    contact_email: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<PartnerRow> for Partner {
    type Error = StoreError;
    fn try_from(row: PartnerRow) -> Result<Self> {
        Ok(Partner {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            name: row.name,
            kind: column("kind", &row.kind)?,
            contact_email: row.contact_email,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AccessRow {
    id: Uuid,
    org_id: Uuid,
    report_id: Uuid,
    partner_id: Uuid,
    permission: String,
    granted_by: String,
    granted_at: DateTime<Utc>,
}

impl TryFrom<AccessRow> for ReportAccess {
    type Error = StoreError;
    fn try_from(row: AccessRow) -> Result<Self> {
        Ok(ReportAccess {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            report_id: row.report_id,
            partner_id: row.partner_id,
            permission: column("permission", &row.permission)?,
            granted_by: row.granted_by,
            granted_at: row.granted_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    org_id: Uuid,
    actor_id: String,
    action: String,
    resource_type: String,
    resource_id: String,
    details: serde_json::Value,
    request_id: String,
    occurred_at: DateTime<Utc>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self> {
        Ok(AuditEvent {
            id: row.id,
            org_id: OrgId::new(row.org_id),
            actor_id: row.actor_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            details: row.details,
            request_id: row.request_id,
            occurred_at: row.occurred_at,
        })
    }
}
