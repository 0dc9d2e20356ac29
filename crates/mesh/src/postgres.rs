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
//!
//! # Who connects as what
//!
//! - `treven migrate` (and `treven admin`) connect as the **owner**
//!   ([`owner_options`]: the service's URL with `TREVEN_MIGRATE_DATABASE_USER`
//!   and `TREVEN_MIGRATE_DATABASE_PASSWORD`), apply the migrations and create
//!   or update the service's **login role** ([`ensure_login_role`]).
//! - A service logs in as its login role (the user of its URL): it owns
//!   nothing, is neither superuser nor BYPASSRLS, and inherits `treven_app`,
//!   whose policies confine it to the organisation in `app.org_id` (none when
//!   unset: it sees and writes nothing). Every table with `org_id` has
//!   row-level security enabled and forced, so the owner is confined too.
//! - Per request, [`OrgTx`] switches to `treven_app` and sets `app.org_id`.
//! - Cross-organisation background work (claiming jobs, an outbox relay)
//!   runs in [`begin_background`], as `treven_worker`, whose policies and
//!   column grants allow only that work on only those tables.
//! - The operator's cross-organisation lookups (`treven admin ensure-org`)
//!   run in [`begin_operator`], as `treven_operator`, which only the owner
//!   may enter.

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
///
/// The password variable may also be named after the URL's: for
/// `TREVEN_TENANTS_DATABASE_URL`, `TREVEN_TENANTS_DATABASE_PASSWORD` wins
/// over `TREVEN_DATABASE_PASSWORD` (the migrate task holds every service's
/// password; a service's task holds only its own, as
/// `TREVEN_DATABASE_PASSWORD`).
pub fn database_options(env: &Env, variable: &str) -> Result<PgConnectOptions, ConfigError> {
    let url = env.required(variable)?;
    let options = PgConnectOptions::from_str(&url)
        .map_err(|e| env.error(variable, format!("not a Postgres URL: {e}")))?;
    let options = match login_password(env, variable) {
        Some(password) => options.password(password.expose()),
        None => options,
    };
    let roots = TrustRoots::from_env(env)?;
    let names_root = url.contains("sslrootcert=") || url.contains("ssl-root-cert=");
    Ok(match roots.extra_pem() {
        Some(pem) if !names_root => options.ssl_root_cert_from_pem(pem.to_vec()),
        _ => options,
    })
}

/// The password of the login role `variable` names:
/// `TREVEN_<NAME>_DATABASE_PASSWORD` for `TREVEN_<NAME>_DATABASE_URL`, else
/// `TREVEN_DATABASE_PASSWORD`.
pub fn login_password(env: &Env, variable: &str) -> Option<Password> {
    variable
        .strip_suffix("_URL")
        .and_then(|base| env.get(&format!("{base}_PASSWORD")))
        .or_else(|| env.get("TREVEN_DATABASE_PASSWORD"))
        .map(Password)
}

/// A database password: shown as `***` by `Debug`, so configurations that
/// hold one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself (to hand to Postgres, never to a log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// How `treven migrate` and `treven admin` reach a service's database: as
/// the owner, and which login role the service uses.
#[derive(Clone)]
pub struct OwnerLogin {
    /// The service's connection options with the owner's user and password.
    pub options: PgConnectOptions,
    /// The owner's user name.
    pub owner: String,
    /// The service's login role (the user of its URL).
    pub login: String,
    /// The login role's password, set by `treven migrate` when given.
    pub login_password: Option<Password>,
}

impl std::fmt::Debug for OwnerLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerLogin")
            .field("owner", &self.owner)
            .field("login", &self.login)
            .field("login_password", &self.login_password)
            .finish_non_exhaustive()
    }
}

impl OwnerLogin {
    /// Whether the service logs in as the owner itself (no separate login
    /// role: `TREVEN_MIGRATE_DATABASE_USER` unset or the same user).
    pub fn service_is_owner(&self) -> bool {
        self.owner == self.login
    }
}

/// The owner's view of the database `login` (the options of the service's
/// URL `variable`): the same server, database and TLS, as
/// `TREVEN_MIGRATE_DATABASE_USER` (default: the URL's user) with
/// `TREVEN_MIGRATE_DATABASE_PASSWORD` (default: none, e.g. trust or a
/// `.pgpass`).
pub fn owner_options(
    env: &Env,
    variable: &str,
    login: &PgConnectOptions,
) -> Result<OwnerLogin, ConfigError> {
    let login_user = login.get_username().to_owned();
    let owner = env
        .get("TREVEN_MIGRATE_DATABASE_USER")
        .unwrap_or_else(|| login_user.clone());
    if !is_role_name(&owner) {
        return Err(env.error(
            "TREVEN_MIGRATE_DATABASE_USER",
            "not a role name (lowercase letters, digits and _, at most 63)",
        ));
    }
    if !is_role_name(&login_user) {
        return Err(env.error(
            variable,
            "its user is not a role name (lowercase letters, digits and _, at most 63)",
        ));
    }
    let mut options = login.clone().username(&owner);
    if let Some(password) = env.get("TREVEN_MIGRATE_DATABASE_PASSWORD") {
        options = options.password(&password);
    }
    Ok(OwnerLogin {
        options,
        owner,
        login: login_user,
        login_password: login_password(env, variable),
    })
}

/// A role name we create and quote without surprises.
fn is_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A string literal for SQL (standard-conforming strings: quotes doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Creates or updates the login role `login` as the owner on `connection`:
/// LOGIN, NOSUPERUSER, NOBYPASSRLS, NOCREATEDB, NOCREATEROLE, INHERIT, a
/// member of each of `member_of` (NOLOGIN roles the migrations created), its
/// password set when given. Refuses a login role that is a superuser, has
/// BYPASSRLS or owns anything in this database (it would slip past row-level
/// security). Roles are cluster-wide: concurrent migrations of other
/// databases may race on them, so each step is retried.
pub async fn ensure_login_role(
    connection: &mut PgConnection,
    login: &str,
    password: Option<&Password>,
    member_of: &[&str],
) -> anyhow::Result<()> {
    anyhow::ensure!(is_role_name(login), "{login:?} is not a role name");
    let mut last = None;
    for attempt in 0..5u64 {
        match ensure_login_role_once(connection, login, password, member_of).await {
            Ok(()) => {
                last = None;
                break;
            }
            Err(error) => {
                last = Some(error);
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
            }
        }
    }
    if let Some(error) = last {
        return Err(error).with_context(|| format!("cannot create or update login role {login}"));
    }
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(login)
            .fetch_one(&mut *connection)
            .await?;
    anyhow::ensure!(
        !superuser && !bypass,
        "login role {login} is a superuser or has BYPASSRLS: row-level security would not apply \
         (ALTER ROLE {login} NOSUPERUSER NOBYPASSRLS as a superuser)"
    );
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_class c \
         WHERE pg_get_userbyid(c.relowner) = $1 \
         UNION ALL SELECT n.nspname::text FROM pg_namespace n WHERE pg_get_userbyid(n.nspowner) = $1",
    )
    .bind(login)
    .fetch_all(&mut *connection)
    .await?;
    anyhow::ensure!(
        owned.is_empty(),
        "login role {login} owns {}: an owner is outside row-level security unless forced; \
         reassign them to the owner",
        owned.join(", ")
    );
    Ok(())
}

async fn ensure_login_role_once(
    connection: &mut PgConnection,
    login: &str,
    password: Option<&Password>,
    member_of: &[&str],
) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(login)
            .fetch_one(&mut *connection)
            .await?;
    if !exists {
        let created = sqlx::query(&format!(
            "CREATE ROLE \"{login}\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE \
             NOREPLICATION INHERIT"
        ))
        .execute(&mut *connection)
        .await;
        // A concurrent migration of another database created it: fine.
        if let Err(error) = created
            && !matches!(&error, sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("42710") | Some("23505")))
        {
            return Err(error.into());
        }
    } else {
        // SUPERUSER and BYPASSRLS can only be changed by a superuser: they
        // are checked afterwards instead.
        sqlx::query(&format!(
            "ALTER ROLE \"{login}\" LOGIN NOCREATEDB NOCREATEROLE INHERIT"
        ))
        .execute(&mut *connection)
        .await?;
    }
    if let Some(password) = password {
        // Never logged here (nor in the error: only the role is named).
        sqlx::query(&format!(
            "ALTER ROLE \"{login}\" PASSWORD {}",
            literal(password.expose())
        ))
        .execute(&mut *connection)
        .await?;
    }
    for role in member_of {
        anyhow::ensure!(is_role_name(role), "{role:?} is not a role name");
        let member: bool = sqlx::query_scalar("SELECT pg_has_role($1::name, $2::name, 'MEMBER')")
            .bind(login)
            .bind(*role)
            .fetch_one(&mut *connection)
            .await?;
        if !member {
            sqlx::query(&format!("GRANT \"{role}\" TO \"{login}\""))
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(())
}

/// Opens one connection with `options`, so a service refuses to start with
/// a message naming `variable` and the server when Postgres cannot be
/// reached or its TLS is not what the URL demands (a plaintext server under
/// `sslmode=verify-full`, a certificate from another CA or for another name).
pub async fn check_connection(options: &PgConnectOptions, variable: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let connection = connect_checked(options, variable).await?;
    connection.close().await.with_context(|| {
        format!(
            "{variable}: closing the first connection to {}:{}",
            options.get_host(),
            options.get_port()
        )
    })?;
    Ok(())
}

/// Before a service serves, on one connection (one TLS handshake, not
/// two): Postgres can be reached as `variable` says (see
/// [`check_connection`]), and whether every migration of `migrator` is
/// applied (see [`is_migrated`]). The connection is closed in the
/// background; the pool opens its own when it is first used (see
/// [`open_first_connection`]).
pub async fn check_before_serving(
    options: &PgConnectOptions,
    variable: &str,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<bool> {
    use sqlx::Connection as _;
    let mut connection = connect_checked(options, variable).await?;
    let migrated = is_migrated(&mut connection, migrator).await;
    tokio::spawn(async move {
        let _ = connection.close().await;
    });
    Ok(migrated)
}

/// Opens the pool's first connection in the background, so the first call
/// after start-up does not wait for it. A failure is only logged: calls
/// answer UNAVAILABLE until Postgres is back (see [`connect_lazy`]).
pub fn open_first_connection(pool: &PgPool) {
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(error) = pool.acquire().await {
            tracing::warn!(%error, "cannot open the pool's first Postgres connection yet");
        }
    });
}

async fn connect_checked(
    options: &PgConnectOptions,
    variable: &str,
) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::ConnectOptions as _;
    let peer = format!("{}:{}", options.get_host(), options.get_port());
    let mode = match options.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    options.connect().await.map_err(|error| {
        let reason = match &error {
            sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "{variable}: cannot connect to Postgres at {peer} (sslmode={mode}): {reason}"
        )
    })
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
    /// Client text Postgres cannot hold (U+0000 in `text`, or `\u0000` in
    /// `jsonb`): INVALID_ARGUMENT, never an internal error. The request
    /// rules refuse such text first where they can.
    UnstorableText,
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
                // character not in repertoire; unsupported Unicode escape
                "22021" | "22P05" => PgFailure::UnstorableText,
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

/// The NOLOGIN role of cross-organisation background work (see the module
/// documentation).
pub const WORKER_ROLE: &str = "treven_worker";

/// The NOLOGIN role of the operator's cross-organisation lookups.
pub const OPERATOR_ROLE: &str = "treven_operator";

/// `BEGIN` as `role` (SET LOCAL ROLE) with the statement timeout and no
/// organisation, for [`begin_background`] and [`begin_operator`].
fn role_transaction_start(role: &str) -> String {
    format!(
        "BEGIN; SELECT set_config('role', '{role}', true), \
         set_config('app.org_id', '', true), \
         set_config('statement_timeout', '{STATEMENT_TIMEOUT_MS}', true)"
    )
}

/// A transaction for cross-organisation background work: as `treven_worker`
/// (SET LOCAL ROLE; the connecting login role must be a member), whose
/// policies and column grants allow only what the workers need (claiming,
/// heartbeating and releasing generation jobs; an outbox relay's reads and
/// marks) on only those tables; every other table is out of reach. Anything
/// done for one organisation afterwards goes through an [`OrgTx`].
pub async fn begin_background(
    pool: &PgPool,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(role_transaction_start(WORKER_ROLE)).await
}

/// A transaction for the operator's cross-organisation lookups (`treven
/// admin ensure-org`): as `treven_operator`, which only the owner may enter
/// and which may only find and create organisations.
pub async fn begin_operator(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(role_transaction_start(OPERATOR_ROLE)).await
}

/// Whether every migration of `migrator` is applied (read from
/// `_sqlx_migrations`, which `treven_app` may read); false when the table
/// does not exist yet.
pub async fn is_migrated(
    connection: &mut sqlx::PgConnection,
    migrator: &sqlx::migrate::Migrator,
) -> bool {
    let applied: Result<Vec<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(connection)
            .await;
    match applied {
        Ok(applied) => migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.contains(&m.version)),
        Err(_) => false,
    }
}

/// Before serving, when [`check_before_serving`] found pending migrations:
/// applies them, which only the owner can (a login role gets an error
/// saying to run `treven migrate`).
pub async fn apply_pending_migrations(
    pool: &PgPool,
    migrator: &sqlx::migrate::Migrator,
    service: &str,
) -> anyhow::Result<()> {
    migrator.run(pool).await.with_context(|| {
        format!(
            "{service}: the database has pending migrations and this login cannot apply them: \
             run `treven migrate --target {service}` (as the owner, TREVEN_MIGRATE_DATABASE_USER)"
        )
    })
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

/// How long a pooled connection may sit idle and still be handed out
/// without a check (see [`connect_lazy`]).
pub const CHECK_IDLE_CONNECTIONS_AFTER: Duration = Duration::from_secs(1);

/// A lazily connecting pool: the service starts even while Postgres is
/// down, answers UNAVAILABLE, and recovers when it is back.
///
/// Connections that have been idle for [`CHECK_IDLE_CONNECTIONS_AFTER`] or
/// longer are checked (pinged) before use, so ones killed by a Postgres
/// restart are replaced before a call meets them. A connection given back
/// less than a second ago is handed out as it is: sqlx already pings every
/// connection when it is given back (and drops a broken one then), so
/// checking it again on the next call would only add a round trip to every
/// call (sqlx's `test_before_acquire`, measured in bench rows 6 and 7).
pub fn connect_lazy(options: PgConnectOptions, pool: &PoolOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for < CHECK_IDLE_CONNECTIONS_AFTER {
                    return Ok(true);
                }
                // An error closes the connection and sqlx takes another.
                sqlx::Connection::ping(connection).await.map(|()| true)
            })
        })
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
    /// Client text the database cannot store ([`PgFailure::UnstorableText`]).
    #[error("text the database cannot store")]
    Unstorable(#[source] sqlx::Error),
    /// Anything else: a bug or a schema mismatch.
    #[error("database error")]
    Internal(#[source] sqlx::Error),
}

impl<C: StoreConflict> From<sqlx::Error> for StoreError<C> {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            PgFailure::Unavailable => StoreError::Unavailable(error),
            PgFailure::UnstorableText => StoreError::Unstorable(error),
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
            StoreError::Unstorable(_) => ServiceError::new(
                crate::ErrorCode::ValidationError,
                "the request holds a character that cannot be stored (U+0000)",
            ),
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

    /// Confines the rest of the transaction to `org` instead (row-level
    /// security follows `app.org_id` at once). For the one action that
    /// spans two organisations in one atomic change: the platform owner
    /// creating an organisation (checked and audited in the owner's,
    /// created in the new one's).
    pub async fn switch_organisation(&mut self, org: OrgId) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT set_config('app.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *self.tx)
            .await?;
        self.org_id = org;
        Ok(())
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Ends a transaction that only read, without waiting: it rolls back
    /// (there is nothing to keep), and sqlx sends the `ROLLBACK` together
    /// with the check it makes of every connection given back to its pool:
    /// one round trip, after the reply. [`OrgTx::commit`] would wait for a
    /// round trip of its own before that check (measured in bench row 7).
    pub fn end_read(self) {
        drop(self.tx);
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

    /// Real Postgres refusals of NUL characters (the local server of the
    /// tests): a client's text, not a bug.
    #[tokio::test]
    async fn text_postgres_cannot_store_is_the_clients_invalid_argument() {
        use sqlx::Connection as _;
        let url = std::env::var("TREVEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("local Postgres");
        let text = sqlx::query("SELECT $1::text")
            .bind("a\u{0}b")
            .execute(&mut conn)
            .await
            .expect_err("NUL in text is refused");
        let json = sqlx::query("SELECT $1::text::jsonb")
            .bind(r#"{"a": "\u0000"}"#)
            .execute(&mut conn)
            .await
            .expect_err("an escaped NUL in jsonb is refused");
        for error in [text, json] {
            assert_eq!(classify(&error), PgFailure::UnstorableText, "{error}");
            let service = ServiceError::from(StoreError::<Clash>::from(error));
            assert_eq!(service.code(), crate::ErrorCode::ValidationError);
        }
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
    fn the_owner_is_the_migrate_user_over_the_services_url_and_the_login_its_user() {
        let env = Env::from_pairs([
            (
                "TREVEN_TENANTS_DATABASE_URL",
                "postgres://treven_tenants_svc@db.example:5433/treven?sslmode=disable",
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", "treven"),
            ("TREVEN_MIGRATE_DATABASE_PASSWORD", "owner-secret"),
            ("TREVEN_TENANTS_DATABASE_PASSWORD", "login-secret"),
            ("TREVEN_DATABASE_PASSWORD", "generic"),
        ]);
        let login = database_options(&env, "TREVEN_TENANTS_DATABASE_URL").expect("options");
        let owner = owner_options(&env, "TREVEN_TENANTS_DATABASE_URL", &login).expect("owner");
        assert_eq!(owner.owner, "treven");
        assert_eq!(owner.login, "treven_tenants_svc");
        assert!(!owner.service_is_owner());
        assert_eq!(owner.options.get_username(), "treven");
        assert_eq!(owner.options.get_host(), "db.example");
        assert_eq!(owner.options.get_port(), 5433);
        assert_eq!(
            owner.login_password.as_ref().map(Password::expose),
            Some("login-secret"),
            "the URL's own password variable wins over TREVEN_DATABASE_PASSWORD"
        );
        let shown = format!("{owner:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn without_a_migrate_user_the_service_is_the_owner_and_bad_names_are_refused() {
        let env = Env::from_pairs([(
            "TREVEN_REPORTS_DATABASE_URL",
            "postgres://postgres@127.0.0.1/x",
        )]);
        let login = database_options(&env, "TREVEN_REPORTS_DATABASE_URL").expect("options");
        let owner = owner_options(&env, "TREVEN_REPORTS_DATABASE_URL", &login).expect("owner");
        assert!(owner.service_is_owner());
        assert_eq!(owner.login_password, None);

        let env = Env::from_pairs([
            (
                "TREVEN_REPORTS_DATABASE_URL",
                "postgres://postgres@127.0.0.1/x",
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", "Robert'); DROP"),
        ]);
        let login = database_options(&env, "TREVEN_REPORTS_DATABASE_URL").expect("options");
        let error =
            owner_options(&env, "TREVEN_REPORTS_DATABASE_URL", &login).expect_err("bad name");
        assert_eq!(error.variable, "TREVEN_MIGRATE_DATABASE_USER");
        assert_eq!(literal("it's"), "'it''s'");
        assert!(
            is_role_name("treven_reports_svc") && !is_role_name("9lives") && !is_role_name("a\"b")
        );
    }

    #[test]
    fn background_and_operator_transactions_switch_role_and_clear_the_organisation() {
        let start = role_transaction_start(WORKER_ROLE);
        assert!(start.starts_with("BEGIN; "));
        assert!(start.contains("set_config('role', 'treven_worker', true)"));
        assert!(start.contains("set_config('app.org_id', '', true)"));
        assert!(role_transaction_start(OPERATOR_ROLE).contains("'treven_operator'"));
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
