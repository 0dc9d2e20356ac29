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
//! `access` (report-access grants) and `audit`.

mod access;
mod audit;
mod organisations;
mod partners;
mod users;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use treven_mesh::{MeshContext, OrgId, ServiceError};

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

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

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
}

/// A transaction confined to one organisation, acting for one caller.
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org_id: OrgId,
    actor_id: String,
    request_id: String,
}

impl OrgTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A text column that does not parse is a schema/code mismatch: internal.
pub(crate) fn column<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| {
        StoreError::Internal(sqlx::Error::Decode(format!("{name}: {e}").into()))
    })
}
