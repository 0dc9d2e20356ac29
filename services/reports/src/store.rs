//! Postgres storage of the reports service.
//!
//! Report data is read and written through an [`OrgTx`]: a transaction that
//! has switched to the `treven_app` role and set `app.org_id`, so row-level
//! security confines it to one organisation (queries filter by organisation
//! as well). The job queue is claimed across organisations by the owner
//! ([`PgStore::claim_job`], [`PgStore::heartbeat`], [`PgStore::release`]);
//! everything a worker then does for a job runs in an [`OrgTx`] of the job's
//! organisation that re-checks the worker still holds the lease. The outbox
//! (`outbox`) is written in an [`OrgTx`] and relayed across organisations
//! by the owner; those relay queries all live in `store/outbox.rs`.

mod comments;
mod jobs;
mod lifecycle;
mod notifications;
mod outbox;
mod reports;
mod review;
mod trends;

pub use comments::{CommentFilter, NewComment};
pub use jobs::{JobClaim, QueueStats};
pub use outbox::{NewOutboxEvent, OutboxEvent, OutboxKind};
pub use reports::{NewVersion, ReportFilter, SearchPosition};

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use treven_mesh::postgres::{self, PgFailure, StoreConflict};
use treven_mesh::trace::{self, Traced as _};
use treven_mesh::{OrgId, ServiceError};

use crate::config::{PoolOptions, SCHEMA};

/// Migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure of the reports store, classified for the client.
pub type StoreError = postgres::StoreError<ConcurrentChange>;

/// A unique constraint was violated or a serialization failure hit: a
/// concurrent write won, so the client reloads and retries.
#[derive(Debug, thiserror::Error)]
#[error("changed concurrently")]
pub struct ConcurrentChange(#[source] sqlx::Error);

impl StoreConflict for ConcurrentChange {
    fn from_failure(failure: PgFailure, error: sqlx::Error) -> Result<Self, sqlx::Error> {
        match failure {
            PgFailure::UniqueViolation | PgFailure::Serialization => Ok(ConcurrentChange(error)),
            PgFailure::Unavailable | PgFailure::UnstorableText | PgFailure::Other => Err(error),
        }
    }

    fn into_service_error(self) -> ServiceError {
        ServiceError::conflict_on(
            "base_version",
            "the report changed concurrently; reload and retry",
        )
        .with_source(self.0)
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
        Self {
            pool: postgres::connect_lazy(options, pool),
        }
    }

    /// The pool (for tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the `reports` schema if needed and applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .execute(&self.pool)
            .traced(trace::postgres("reports.migrate", "CREATE"))
            .await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Opens a transaction confined to `org`, acting for `actor`.
    pub async fn begin(&self, org: OrgId, actor: &str) -> Result<OrgTx> {
        let tx = postgres::OrgTx::begin(&self.pool, org, actor).await?;
        Ok(OrgTx { tx })
    }
}

/// A transaction confined to one organisation, acting for one caller.
pub struct OrgTx {
    tx: postgres::OrgTx,
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
    Ok(postgres::column(name, raw)?)
}

impl OrgTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// The organisation.
    pub fn org_id(&self) -> OrgId {
        self.tx.org_id()
    }
}
