//! The tenants service: organisations, users and roles, partners,
//! report-access grants and the append-only audit log, on Postgres.
//!
//! [`serve`] runs it on a bound listener until shutdown; tests start it on
//! port 0 in-process. Layers: [`api`] (wire: handlers and proto ⇄ domain
//! conversions) → [`app`] (rules, one file per use case group) → [`store`]
//! (SQL, one file per table group), with domain types in [`model`]. Only
//! this file imports [`api`]. [`cognito`] holds every call to the Cognito
//! user pool and [`sync`] keeps the pool in line with the users (a job per
//! change, applied after the commit, retried by a relay).

pub mod api;
pub mod app;
pub mod cognito;
pub mod model;
pub mod policy;
pub mod store;
pub mod sync;

use std::net::SocketAddr;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tonic::service::Routes;
use treven_mesh::CancellationToken;
use treven_mesh::Principal;
use treven_mesh::config::{ConfigError, Env, Environment};
use treven_mesh::keys::MeshKeys;
use treven_mesh::pagination::CursorCodec;
use treven_mesh::postgres::OwnerLogin;
use treven_mesh::server::{GrpcService, ShutdownPolicy};
use treven_proto::treven::tenants::v1::tenants_service_server::TenantsServiceServer;

use crate::store::{PgStore, PoolOptions};

/// The port tenants listens on.
pub const DEFAULT_PORT: u16 = 50051;
/// The full gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "treven.tenants.v1.TenantsService";
/// Largest request message accepted.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The variable naming the Cognito user pool users are invited into.
pub const USER_POOL_ID: &str = "TREVEN_COGNITO_USER_POOL_ID";

/// The variable capping the Cognito sync's retry delay.
pub const SYNC_MAX_BACKOFF: &str = "TREVEN_COGNITO_SYNC_MAX_BACKOFF_MILLIS";

/// The variable naming the tenants database (and its login role).
pub const DATABASE_URL: &str = "TREVEN_TENANTS_DATABASE_URL";

/// The login role of the tenants service in the dev stack and the CDK app.
pub const LOGIN_ROLE: &str = "treven_tenants_svc";

/// The NOLOGIN roles the tenants login role is a member of: `treven_app`
/// (inherited: one organisation at a time) and `treven_worker` (entered
/// with SET LOCAL ROLE by cross-organisation background work only).
pub const LOGIN_ROLE_MEMBER_OF: [&str; 2] = ["treven_app", "treven_worker"];

/// Configuration of the tenants service.
#[derive(Debug, Clone)]
pub struct TenantsConfig {
    /// `TREVEN_TENANTS_ADDR`: where to listen.
    pub listen: SocketAddr,
    /// `TREVEN_TENANTS_DATABASE_URL` (+ `TREVEN_TENANTS_DATABASE_PASSWORD`
    /// or `TREVEN_DATABASE_PASSWORD`): the service's login role.
    pub database: PgConnectOptions,

    /// `TREVEN_TENANTS_DB_MAX_CONNECTIONS`, `TREVEN_DB_ACQUIRE_TIMEOUT_SECS`.
    pub pool: PoolOptions,
    /// Drain and grace periods.
    pub shutdown: ShutdownPolicy,
    /// `TREVEN_COGNITO_USER_POOL_ID` (+ `TREVEN_COGNITO_SYNC_MAX_BACKOFF_MILLIS`):
    /// the user pool users are invited into and removed from. Required in
    /// AWS; locally, without it, users are tenants rows only (signed in
    /// with `cargo xtask token`).
    pub identity: Option<IdentityConfig>,
}

/// Where tenants keeps users' Cognito accounts.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The user pool id (`eu-west-2_AbC123`).
    pub user_pool_id: String,
    /// Timing of the sync.
    pub sync: sync::SyncOptions,
}

/// Reads the identity settings: the pool id must look like one
/// (`<region>_<id>`) and is required outside `local`.
fn identity_config(
    env: &Env,
    environment: Environment,
) -> Result<Option<IdentityConfig>, ConfigError> {
    let max_backoff: u64 = env.parse_or(SYNC_MAX_BACKOFF, 300_000u64)?;
    if !(100..=3_600_000).contains(&max_backoff) {
        return Err(env.error(SYNC_MAX_BACKOFF, "must be 100–3600000 milliseconds"));
    }
    let pool = match env.get(USER_POOL_ID).filter(|v| !v.is_empty()) {
        Some(pool) => pool,
        None if environment == Environment::Local => return Ok(None),
        None => {
            return Err(env.error(
                USER_POOL_ID,
                "is required in AWS: tenants invites users into this Cognito user pool",
            ));
        }
    };
    let valid = pool.len() <= 55
        && pool.split_once('_').is_some_and(|(region, id)| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if !valid {
        return Err(env.error(
            USER_POOL_ID,
            format!("must be a Cognito user pool id like eu-west-2_AbC123, got {pool:?}"),
        ));
    }
    let mut sync = sync::SyncOptions {
        max_backoff: std::time::Duration::from_millis(max_backoff),
        ..sync::SyncOptions::default()
    };
    sync.base_backoff = sync.base_backoff.min(sync.max_backoff);
    Ok(Some(IdentityConfig {
        user_pool_id: pool,
        sync,
    }))
}

impl TenantsConfig {
    /// Reads and validates the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        Ok(Self {
            listen: env.socket_addr_or(
                "TREVEN_TENANTS_ADDR",
                environment.default_listen(DEFAULT_PORT),
            )?,
            database: database_options(env, DATABASE_URL)?.application_name("treven-tenants"),
            pool: PoolOptions {
                max_connections: env.parse_or("TREVEN_TENANTS_DB_MAX_CONNECTIONS", 10u32)?,
                acquire_timeout: env.seconds_or("TREVEN_DB_ACQUIRE_TIMEOUT_SECS", 3, 1..=60)?,
            },
            shutdown: ShutdownPolicy::from_env(env)?,
            identity: identity_config(env, environment)?,
        })
    }
}

/// Postgres connection options from a URL variable (TLS, password): see
/// [`treven_mesh::postgres::database_options`].
pub fn database_options(env: &Env, variable: &str) -> Result<PgConnectOptions, ConfigError> {
    treven_mesh::postgres::database_options(env, variable)
}

/// Builds the tenants gRPC routes over `store`, behind the access table
/// ([`policy::POLICY`]). Exposed so tests and `treven serve` share one
/// wiring; needs the tenants signing key (cursor MACs). Users are tenants
/// rows only: see [`routes_with_identity`].
pub fn routes(store: PgStore, keys: &MeshKeys) -> anyhow::Result<Routes> {
    routes_with_identity(store, keys, None)
}

/// [`routes`] whose users' Cognito accounts follow them through `identity`.
pub fn routes_with_identity(
    store: PgStore,
    keys: &MeshKeys,
    identity: Option<sync::IdentitySync>,
) -> anyhow::Result<Routes> {
    let signer = keys.require_signer(Principal::Tenants)?;
    let mut tenants = app::Tenants::new(store, CursorCodec::new(signer.key(), "tenants"));
    if let Some(identity) = identity {
        tenants = tenants.with_identity(identity);
    }
    let server = TenantsServiceServer::new(api::TenantsGrpc::new(tenants))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    Ok(Routes::new(
        policy::POLICY.guard(server, keys.verifier(Principal::Tenants)),
    ))
}

/// What `treven migrate` and `treven admin` read: the tenants database as
/// its owner (`TREVEN_MIGRATE_DATABASE_USER`,
/// `TREVEN_MIGRATE_DATABASE_PASSWORD`) and the service's login role (the
/// user of `TREVEN_TENANTS_DATABASE_URL`, whose password is
/// `TREVEN_TENANTS_DATABASE_PASSWORD` or `TREVEN_DATABASE_PASSWORD`).
pub fn owner_config(env: &Env) -> Result<OwnerLogin, ConfigError> {
    let database = database_options(env, DATABASE_URL)?.application_name("treven-migrate");
    treven_mesh::postgres::owner_options(env, DATABASE_URL, &database)
}

/// `treven migrate`: as the owner, applies pending migrations, then creates
/// or updates the service's login role (the user of
/// `TREVEN_TENANTS_DATABASE_URL`, its password when given) unless the
/// service logs in as the owner itself.
pub async fn migrate(owner: &OwnerLogin) -> anyhow::Result<()> {
    treven_mesh::postgres::check_connection(
        &owner.options,
        "TREVEN_TENANTS_DATABASE_URL (as the owner)",
    )
    .await?;
    let store = owner_store(owner);
    store
        .migrate()
        .await
        .context("tenants: cannot run database migrations")?;
    if owner.service_is_owner() {
        tracing::warn!(
            role = %owner.login,
            "tenants logs in as the database owner: set TREVEN_MIGRATE_DATABASE_USER to the owner \
             and give the service its own login role"
        );
    } else {
        let mut connection = store.pool().acquire().await?;
        treven_mesh::postgres::ensure_login_role(
            &mut connection,
            &owner.login,
            owner.login_password.as_ref(),
            &LOGIN_ROLE_MEMBER_OF,
        )
        .await
        .context("tenants")?;
    }
    store.pool().close().await;
    Ok(())
}

/// A store connected as the owner (`treven migrate`, and `treven admin`:
/// the operator's paths).
pub fn owner_store(owner: &OwnerLogin) -> PgStore {
    PgStore::connect_lazy(owner.options.clone(), &PoolOptions::default())
}

/// Checks the schema is current (applying pending migrations when it logs
/// in as the owner; a login role needs `treven migrate` first), then serves
/// tenants on `listener` until `shutdown`. With a user pool configured, the
/// AWS SDK settings come from the process environment, loaded while
/// Postgres is checked.
pub async fn serve(
    config: TenantsConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sdk = async {
        match &config.identity {
            Some(_) => Some(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(
                        aws_config::meta::region::RegionProviderChain::default_provider()
                            .or_else("eu-west-2"),
                    )
                    .load()
                    .await,
            ),
            None => None,
        }
    };
    // Postgres first: its round trips wait while the SDK reads trust roots.
    let (migrated, sdk) = tokio::join!(check_database(&config), sdk);
    serve_checked(config, keys, sdk.as_ref(), migrated?, listener, shutdown).await
}

/// [`serve`] calling Cognito with `sdk` (`None`: no user pool is
/// configured, or it is not given, which is an error when one is). Runs the
/// Cognito sync relay beside the server.
pub async fn serve_with_sdk(
    config: TenantsConfig,
    keys: &MeshKeys,
    sdk: Option<&aws_config::SdkConfig>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let migrated = check_database(&config).await?;
    serve_checked(config, keys, sdk, migrated, listener, shutdown).await
}

/// Postgres can be reached; whether the schema is current.
async fn check_database(config: &TenantsConfig) -> anyhow::Result<bool> {
    treven_mesh::postgres::check_before_serving(
        &config.database,
        "TREVEN_TENANTS_DATABASE_URL",
        &store::MIGRATOR,
    )
    .await
}

async fn serve_checked(
    config: TenantsConfig,
    keys: &MeshKeys,
    sdk: Option<&aws_config::SdkConfig>,
    migrated: bool,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = PgStore::connect_lazy(config.database, &config.pool);
    if !migrated {
        treven_mesh::postgres::apply_pending_migrations(store.pool(), &store::MIGRATOR, "tenants")
            .await?;
    }
    treven_mesh::postgres::open_first_connection(store.pool());
    treven_mesh::metrics::observe_pool("tenants", store.pool());
    let identity = match (&config.identity, sdk) {
        (Some(identity), Some(sdk)) => {
            let directory = cognito::Directory::new(sdk, &identity.user_pool_id);
            let sync = sync::IdentitySync::new(store.clone(), directory, identity.sync.clone());
            tokio::spawn(sync.clone().run(shutdown.clone()));
            Some(sync)
        }
        (Some(_), None) => anyhow::bail!("tenants: a user pool is configured but no AWS SDK"),
        (None, _) => {
            tracing::info!(
                "no TREVEN_COGNITO_USER_POOL_ID: users are not invited into Cognito (local only)"
            );
            None
        }
    };
    let service = GrpcService {
        name: "tenants",
        routes: routes_with_identity(store, keys, identity)?,
        health_names: vec![SERVICE_NAME],
    };
    treven_mesh::server::serve(service, listener, shutdown, config.shutdown).await
}
