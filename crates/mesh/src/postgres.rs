//! What every Postgres-backed service needs the same way: connection options
//! with TLS (up to `sslmode=verify-full` against the system roots plus the
//! RDS CA bundle), a first connection that names the variable and the peer
//! when it fails, which failures are an outage, a lost race or a bug, and the
//! statement that opens a transaction confined to one organisation by
//! row-level security. On top of these, the plumbing every Postgres store
//! shares: the lazily connecting pool ([`PoolOptions`], [`connect_lazy`]),
//! the storage error with its mapping to [`ServiceError`] ([`StoreError`],
//! each store naming its own conflicts through [`StoreConflict`]) and the
//! organisation transaction itself ([`OrgTx`]).

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::config::{ConfigError, Env};
use crate::tls::TrustRoots;
use crate::{OrgId, ServiceError};

/// Postgres connection options from the URL in `variable`:
/// - the password from `TREVEN_DATABASE_PASSWORD` when set (ECS injects it
///   from Secrets Manager so it never sits in a URL);
/// - `sslmode` from the URL (`verify-full` in AWS), the server verified
///   against the public roots plus `SSL_CERT_FILE` and `TREVEN_TLS_CA_FILE`
///   (the RDS CA bundle in the image) unless the URL names `sslrootcert`.
pub fn database_options(env: &Env, variable: &str) -> Result<PgConnectOptions, ConfigError> {
    let url = env.required(variable)?;
    let options = PgConnectOptions::from_str(&url)
        .map_err(|e| env.error(variable, format!("not a Postgres URL: {e}")))?;
    let options = match env.get("TREVEN_DATABASE_PASSWORD") {
        Some(password) => options.password(&password),
        None => options,
    };
    let roots = TrustRoots::from_env(env)?;
    let names_root = url.contains("sslrootcert=") || url.contains("ssl-root-cert=");
    Ok(match roots.extra_pem() {
        Some(pem) if !names_root => options.ssl_root_cert_from_pem(pem.to_vec()),
        _ => options,
    })
}

/// Opens one connection with `options`, so a service refuses to start with
/// a message naming `variable` and the server when Postgres cannot be
/// reached or its TLS is not what the URL demands (a plaintext server under
/// `sslmode=verify-full`, a certificate from another CA or for another name).
pub async fn check_connection(options: &PgConnectOptions, variable: &str) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let peer = format!("{}:{}", options.get_host(), options.get_port());
    let mode = match options.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    let connection = options.connect().await.map_err(|error| {
        let reason = match &error {
            sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "{variable}: cannot connect to Postgres at {peer} (sslmode={mode}): {reason}"
        )
    })?;
    connection
        .close()
        .await
        .with_context(|| format!("{variable}: closing the first connection to {peer}"))?;
    Ok(())
}

/// The statement timeout of every organisation transaction.
pub const STATEMENT_TIMEOUT_MS: u32 = 5_000;

/// What a Postgres failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFailure {
    /// Postgres cannot be reached, is shutting down, is out of resources or
    /// timed the statement out: UNAVAILABLE, retrying may work.
    Unavailable,
    /// A unique constraint (named, when Postgres says) was violated.
    UniqueViolation,
    /// A serialization failure or deadlock: a concurrent transaction won.
    Serialization,
    /// Anything else: a bug or a schema mismatch.
    Other,
}

/// Classifies `error` (connection-level errors and SQLSTATE classes).
pub fn classify(error: &sqlx::Error) -> PgFailure {
    use sqlx::Error as E;
    match error {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => PgFailure::Unavailable,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                "23505" => PgFailure::UniqueViolation,
                "40001" | "40P01" => PgFailure::Serialization,
                // statement timeout, database not accepting connections,
                // database missing (yet)
                "57014" | "55000" | "3D000" => PgFailure::Unavailable,
                // connection exception, operator intervention (shutdown),
                // insufficient resources
                c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                    PgFailure::Unavailable
                }
                _ => PgFailure::Other,
            }
        }
        _ => PgFailure::Other,
    }
}

/// `BEGIN` and the settings that confine a transaction to `org` (the
/// `treven_app` role, `app.org_id` for row-level security, the statement
/// timeout), as one simple query for `Pool::begin_with`: one round trip
/// instead of two on every call. The organisation is a UUID formatted here,
/// never client text.
pub fn org_transaction_start(org: OrgId) -> String {
    format!(
        "BEGIN; SELECT set_config('role', 'treven_app', true), \
         set_config('app.org_id', '{org}', true), \
         set_config('statement_timeout', '{STATEMENT_TIMEOUT_MS}', true)"
    )
}

/// Pool settings of a Postgres store.
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

/// A lazily connecting pool: the service starts even while Postgres is
/// down, answers UNAVAILABLE, and recovers when it is back. Connections are
/// checked before use, so ones killed by a restart are replaced.
pub fn connect_lazy(options: PgConnectOptions, pool: &PoolOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(options)
}

/// What one store calls a conflict: which Postgres failures it reports as
/// one, and how the client is told. Its `Display` is the conflict's
/// message and its `source` the cause, if the store keeps one.
pub trait StoreConflict: std::error::Error + Send + Sync + Sized + 'static {
    /// The conflict `error` (classified as `failure`, never
    /// [`PgFailure::Unavailable`]) stands for, or `error` back when it is
    /// not a conflict of this store (then it is internal).
    fn from_failure(failure: PgFailure, error: sqlx::Error) -> Result<Self, sqlx::Error>;

    /// The client's view of this conflict.
    fn into_service_error(self) -> ServiceError;
}

/// A storage failure, classified for the client; `C` is the store's own
/// notion of a conflict.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<C: StoreConflict> {
    /// Postgres cannot be reached or is shutting down; retrying may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A conflict of the store (a unique constraint, a concurrent write).
    #[error(transparent)]
    Conflict(C),
    /// Anything else: a bug or a schema mismatch.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
}

impl<C: StoreConflict> From<sqlx::Error> for StoreError<C> {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            PgFailure::Unavailable => StoreError::Unavailable(error),
            failure => match C::from_failure(failure, error) {
                Ok(conflict) => StoreError::Conflict(conflict),
                Err(error) => StoreError::Internal(error),
            },
        }
    }
}

impl<C: StoreConflict> From<StoreError<C>> for ServiceError {
    fn from(error: StoreError<C>) -> Self {
        match error {
            StoreError::Unavailable(source) => ServiceError::unavailable(source),
            StoreError::Conflict(conflict) => conflict.into_service_error(),
            StoreError::Internal(source) => ServiceError::internal(source),
        }
    }
}

/// A text column that does not parse is a schema/code mismatch: a decode
/// error, which every store reports as internal.
pub fn column<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, sqlx::Error>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e: T::Err| sqlx::Error::Decode(format!("{name}: {e}").into()))
}

/// A transaction confined to one organisation by row-level security (see
/// [`org_transaction_start`]), acting for one caller. It dereferences to
/// the connection, so queries run on `&mut *tx`; dropping it uncommitted
/// rolls back.
#[derive(Debug)]
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org_id: OrgId,
    actor_id: String,
}

impl OrgTx {
    /// Opens a transaction on `pool` confined to `org`, acting for `actor`.
    /// Failing to get a connection at all is always UNAVAILABLE.
    pub async fn begin<C: StoreConflict>(
        pool: &PgPool,
        org: OrgId,
        actor: &str,
    ) -> Result<Self, StoreError<C>> {
        let tx = pool
            .begin_with(org_transaction_start(org))
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Internal(e) => StoreError::Unavailable(e),
                other => other,
            })?;
        Ok(Self {
            tx,
            org_id: org,
            actor_id: actor.to_owned(),
        })
    }

    /// The organisation.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    /// The caller the transaction acts for.
    pub fn actor_id(&self) -> &str {
        &self.actor_id
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls back (as dropping does, but waiting for Postgres to confirm).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for OrgTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for OrgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_the_rest_other() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), PgFailure::Unavailable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), PgFailure::Other);
    }

    /// A store whose only conflict is a unique violation.
    #[derive(Debug, thiserror::Error)]
    #[error("clash")]
    struct Clash;

    impl StoreConflict for Clash {
        fn from_failure(failure: PgFailure, error: sqlx::Error) -> Result<Self, sqlx::Error> {
            match failure {
                PgFailure::UniqueViolation => Ok(Clash),
                _ => Err(error),
            }
        }

        fn into_service_error(self) -> ServiceError {
            ServiceError::conflict_on("id", "clash")
        }
    }

    #[test]
    fn store_errors_are_unavailable_or_internal_unless_the_store_calls_them_conflicts() {
        let unavailable = StoreError::<Clash>::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(unavailable, StoreError::Unavailable(_)));
        let undecodable = column::<u32>("count", "many").expect_err("not a number");
        let internal = StoreError::<Clash>::from(undecodable);
        assert!(matches!(internal, StoreError::Internal(_)));
        assert_eq!(internal.to_string(), "database error");
    }

    #[test]
    fn the_transaction_start_names_only_the_organisation() {
        let org: OrgId = "0191a3c4-0000-7000-8000-000000000001"
            .parse()
            .expect("uuid");
        let statement = org_transaction_start(org);
        assert!(statement.starts_with("BEGIN; "));
        assert!(statement.contains("'app.org_id', '0191a3c4-0000-7000-8000-000000000001'"));
    }
}
