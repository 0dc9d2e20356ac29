//! Postgres storage of the reports service.
//!
//! Report data is read and written through an [`OrgTx`]: a transaction that
//! has switched to the `treven_app` role and set `app.org_id`, so row-level
//! security confines it to one organisation (queries filter by organisation
//! as well). The job queue is claimed across organisations by the owner
//! ([`PgStore::claim_job`], [`PgStore::heartbeat`], [`PgStore::release`]);
//! everything a worker then does for a job runs in an [`OrgTx`] of the job's
//! organisation that re-checks the worker still holds the lease.

mod jobs;
mod reports;
mod trends;

pub use jobs::JobClaim;
pub use reports::NewVersion;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use treven_mesh::{OrgId, ServiceError};

use crate::config::{PoolOptions, SCHEMA};

use treven_mesh::postgres::{PgFailure, classify, org_transaction_start};

/// Migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure, classified for the client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres cannot be reached or is shutting down; retrying may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint was violated (a concurrent write won).
    #[error("changed concurrently")]
    Conflict(#[source] sqlx::Error),
    /// Anything else: a bug or a schema mismatch.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            PgFailure::Unavailable => StoreError::Unavailable(error),
            PgFailure::UniqueViolation | PgFailure::Serialization => StoreError::Conflict(error),
            PgFailure::Other => StoreError::Internal(error),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => ServiceError::unavailable(source),
            StoreError::Conflict(source) => ServiceError::conflict_on(
                "base_version",
                "the report changed concurrently; reload and retry",
            )
            .with_source(source),
            StoreError::Internal(source) => ServiceError::internal(source),
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The reports store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A lazily connecting pool (the service starts while Postgres is down
    /// and answers UNAVAILABLE until it is back).
    pub fn connect_lazy(options: PgConnectOptions, pool: &PoolOptions) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Self { pool }
    }

    /// The pool (for tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the `reports` schema if needed and applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .execute(&self.pool)
            .await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Opens a transaction confined to `org`, acting for `actor`.
    pub async fn begin(&self, org: OrgId, actor: &str) -> Result<OrgTx> {
        let tx = self
            .pool
            .begin_with(org_transaction_start(org))
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Internal(e) => StoreError::Unavailable(e),
                other => other,
            })?;
        Ok(OrgTx {
            tx,
            org_id: org,
            actor_id: actor.to_owned(),
        })
    }
}

/// A transaction confined to one organisation, acting for one caller.
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org_id: OrgId,
    actor_id: String,
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Internal(sqlx::Error::Encode(Box::new(e))))
}

fn from_json<T: serde::de::DeserializeOwned>(name: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Internal(sqlx::Error::Decode(format!("{name}: {e}").into())))
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

impl OrgTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// The organisation.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }
}
