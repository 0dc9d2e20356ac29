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
use treven_mesh::server::{GrpcService, ShutdownPolicy};
use treven_proto::treven::tenants::v1::tenants_service_server::TenantsServiceServer;

use crate::store::{PgStore, PoolOptions};

/// The port tenants listens on.
pub const DEFAULT_PORT: u16 = 50051;
/// The full gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "treven.tenants.v1.TenantsService";
/// Largest request message accepted.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Configuration of the tenants service.
#[derive(Debug, Clone)]
pub struct TenantsConfig {
    /// `TREVEN_TENANTS_ADDR`: where to listen.
    pub listen: SocketAddr,
    /// `TREVEN_TENANTS_DATABASE_URL` (+ `TREVEN_DATABASE_PASSWORD`).
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
            database: database_options(env, "TREVEN_TENANTS_DATABASE_URL")?
                .application_name("treven-tenants"),
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

/// Applies pending migrations (`treven migrate`; `serve` runs them too).
pub async fn migrate(config: &TenantsConfig) -> anyhow::Result<()> {
    treven_mesh::postgres::check_connection(&config.database, "TREVEN_TENANTS_DATABASE_URL")
        .await?;
    let store = PgStore::connect_lazy(config.database.clone(), &config.pool);
    store
        .migrate()
        .await
        .context("tenants: cannot run database migrations")?;
    store.pool().close().await;
    Ok(())
}

/// Runs migrations, then serves tenants on `listener` until `shutdown`.
pub async fn serve(
    config: TenantsConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    treven_mesh::postgres::check_connection(&config.database, "TREVEN_TENANTS_DATABASE_URL")
        .await?;
    let store = PgStore::connect_lazy(config.database, &config.pool);
    store
        .migrate()
        .await
        .context("tenants: cannot run database migrations")?;
    treven_mesh::metrics::observe_pool("tenants", store.pool());
    let service = GrpcService {
        name: "tenants",
        routes: routes(store, keys)?,
        health_names: vec![SERVICE_NAME],
    };
    treven_mesh::server::serve(service, listener, shutdown, config.shutdown).await
}
