//! Postgres storage of the tenants service.
//!
//! All tenant data is read and written through an [`OrgTx`]: a transaction
//! that has switched to the `treven_app` role and set `app.org_id`, so
//! row-level security confines it to one organisation. Queries filter by
//! organisation as well; the policy is the second lock, not the only one.
//! Operator actions (`treven admin`) use [`PgStore::admin`] functions that run
//! as the owner.
//!
//! This file holds the pool, the transaction and the error; the queries live
//! with their table group: `organisations`, `users`, `partners`,
//! `access` (report-access grants), `audit` and `cognito_sync` (jobs that
//! keep the Cognito user pool in line with `users`).

mod access;
mod audit;
mod cognito_sync;
mod organisations;
mod partners;
mod users;

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use treven_mesh::postgres::{self, PgFailure, StoreConflict};
use treven_mesh::{MeshContext, OrgId, ServiceError};

pub use cognito_sync::CognitoSyncJob;
pub use treven_mesh::postgres::PoolOptions;

/// Migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure of the tenants store, classified for the client.
pub type StoreError = postgres::StoreError<FieldConflict>;

/// A unique constraint of the tenants tables was violated: the request
/// field that clashes (`email`, `cognito_sub`, `name`, else `id`).
/// Serialization failures are not conflicts here: they are internal.
#[derive(Debug, thiserror::Error)]
#[error("{field} already exists")]
pub struct FieldConflict {
    /// The request field that clashes.
    pub field: &'static str,
}

impl StoreConflict for FieldConflict {
    fn from_failure(failure: PgFailure, error: sqlx::Error) -> Result<Self, sqlx::Error> {
        if failure != PgFailure::UniqueViolation {
            return Err(error);
        }
        let constraint = match &error {
            sqlx::Error::Database(db) => db.constraint(),
            _ => None,
        };
        let field = match constraint {
            Some("users_org_email_key") => "email",
            Some("users_org_sub_key") => "cognito_sub",
            Some("partners_org_name_key") | Some("organisations_name_key") => "name",
            _ => "id",
        };
        Ok(FieldConflict { field })
    }

    fn into_service_error(self) -> ServiceError {
        ServiceError::conflict_on(self.field, "already exists in this organisation")
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

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
        Self {
            pool: postgres::connect_lazy(options, pool),
        }
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
        let tx = postgres::OrgTx::begin(&self.pool, context.org_id(), context.user_id()).await?;
        Ok(OrgTx {
            tx,
            request_id: context.request_id().to_owned(),
        })
    }
}

impl PgStore {
    /// Opens a transaction confined to `org`, acting for `actor` in request
    /// `request_id`: background work done for one organisation (a Cognito
    /// sync job acts for the user who made the change).
    pub async fn begin_as(&self, org: OrgId, actor: &str, request_id: &str) -> Result<OrgTx> {
        let tx = postgres::OrgTx::begin(&self.pool, org, actor).await?;
        Ok(OrgTx {
            tx,
            request_id: request_id.to_owned(),
        })
    }
}

/// A transaction confined to one organisation, acting for one caller, in
/// one request (the request id goes into the audit log).
pub struct OrgTx {
    tx: postgres::OrgTx,
    request_id: String,
}

impl OrgTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Ends a transaction that only read (see
    /// [`treven_mesh::postgres::OrgTx::end_read`]).
    pub fn end_read(self) {
        self.tx.end_read();
    }
}

/// A text column that does not parse is a schema/code mismatch: internal.
pub(crate) fn column<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    Ok(postgres::column(name, raw)?)
}
