//! The tenants service: organisations, users and roles, partners,
//! report-access grants and the append-only audit log, on Postgres.
//!
//! [`serve`] runs it on a bound listener until shutdown; tests start it on
//! port 0 in-process. Layers: [`api`] (wire: handlers and proto ⇄ domain
//! conversions) → [`app`] (rules, one file per use case group) → [`store`]
//! (SQL, one file per table group), with domain types in [`model`]. Only
//! this file imports [`api`].

pub mod api;
pub mod app;
pub mod model;
pub mod policy;
pub mod store;

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
/// wiring; needs the tenants signing key (cursor MACs).
pub fn routes(store: PgStore, keys: &MeshKeys) -> anyhow::Result<Routes> {
    let signer = keys.require_signer(Principal::Tenants)?;
    let tenants = app::Tenants::new(store, CursorCodec::new(signer.key(), "tenants"));
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
/// tenants on `listener` until `shutdown`.
pub async fn serve(
    config: TenantsConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    treven_mesh::postgres::check_connection(&config.database, "TREVEN_TENANTS_DATABASE_URL")
        .await?;
    let store = PgStore::connect_lazy(config.database, &config.pool);
    treven_mesh::postgres::ensure_migrated(store.pool(), &store::MIGRATOR, "tenants").await?;
    treven_mesh::metrics::observe_pool("tenants", store.pool());
    let service = GrpcService {
        name: "tenants",
        routes: routes(store, keys)?,
        health_names: vec![SERVICE_NAME],
    };
    treven_mesh::server::serve(service, listener, shutdown, config.shutdown).await
}
