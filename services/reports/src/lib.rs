//! The reports service: Key Judgement reports on Postgres — durable
//! generation jobs, versions with content hashes and diffs, quality checks,
//! the PII gate on every save and export, review and approval, exports
//! (markdown, PDF, DOCX) stored through documents, sharing through tenants,
//! and the trends shown on the map.
//!
//! [`serve`] runs the gRPC service and the generation workers on a bound
//! listener until shutdown; tests start it on port 0 in-process with
//! [`ReportsApp`] and [`routes`]. Layers, arrows pointing one way:
//! [`api`] (gRPC handlers, proto ⇄ domain) → [`app`] (one file per use case)
//! → [`store`] (SQL: reports, the job queue, trends) and [`clients`] (every
//! outbound call, typed) → [`model`] (domain types; the KJ content from
//! `treven_kj`). [`worker`] runs generation jobs over store and clients and
//! never uses `api`; only this file names `api`. [`outbox`] relays the
//! audit entries each change stored in its own transaction to tenants.

pub mod api;
pub mod app;
pub mod clients;
pub mod config;
pub mod diff;
pub mod links;
pub mod model;
pub mod outbox;
pub mod pii;
pub mod policy;
pub mod quality;
pub mod render;
pub mod store;
pub mod wire;
pub mod worker;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::service::Routes;
use treven_mesh::CancellationToken;
use treven_mesh::keys::MeshKeys;
use treven_mesh::pagination::CursorCodec;
use treven_mesh::server::GrpcService;
use treven_mesh::{Principal, Signer};
use treven_proto::treven::reports::v1::reports_service_server::ReportsServiceServer;

pub use config::{ReportsConfig, database_options, owner_config};

use crate::clients::Clients;
use crate::config::PoolOptions;
use crate::outbox::Relay;
use crate::store::PgStore;
use crate::worker::Worker;

/// The full gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "treven.reports.v1.ReportsService";
/// Largest request message accepted.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// How often the job queue's gauges (queued, running, oldest age) are
/// refreshed from the database.
pub const QUEUE_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The service and its workers, wired over one store and one set of clients.
#[derive(Debug, Clone)]
pub struct ReportsApp {
    /// The configuration it was built from.
    pub config: ReportsConfig,
    /// The service.
    pub reports: app::Reports,
    /// The store.
    pub store: PgStore,
    clients: Clients,
    keys: MeshKeys,
    signer: Signer,
    wake: Arc<Notify>,
    relay: Arc<Notify>,
}

impl ReportsApp {
    /// Wires the service (lazy connections: nothing is contacted yet).
    pub fn build(config: ReportsConfig, keys: &MeshKeys) -> anyhow::Result<Self> {
        let signer = keys.require_signer(Principal::Reports)?;
        let store = PgStore::connect_lazy(config.database.clone(), &config.pool);
        let clients =
            Clients::connect_lazy(&config, signer.clone()).context("reports: service clients")?;
        let wake = Arc::new(Notify::new());
        let relay = Arc::new(Notify::new());
        let reports = app::Reports::new(
            store.clone(),
            CursorCodec::new(signer.key(), "reports"),
            clients.clone(),
            config.limits,
            wake.clone(),
            relay.clone(),
        );
        let reports = match &config.link_key {
            Some(key) => reports.with_link_key(key.clone()),
            None => reports,
        };
        Ok(Self {
            config,
            reports,
            store,
            clients,
            keys: keys.clone(),
            signer,
            wake,
            relay,
        })
    }

    /// A new generation worker (run it with [`Worker::run`]).
    pub fn worker(&self) -> Worker {
        Worker::new(
            self.store.clone(),
            self.clients.clone(),
            self.config.workers,
            self.signer.clone(),
            self.wake.clone(),
            self.relay.clone(),
        )
    }

    /// The outbox relay of this app (run one per process with
    /// [`Relay::run`]); every commit of the service and its workers wakes it.
    pub fn relay(&self) -> Relay {
        Relay::new(
            self.store.clone(),
            self.clients.clone(),
            self.signer.clone(),
            self.config.outbox,
            self.relay.clone(),
        )
    }

    /// Samples the job queue for its gauges every [`QUEUE_SAMPLE_INTERVAL`]
    /// until `shutdown` (see [`worker::sample_queue`]).
    pub fn sample_queue(
        &self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        worker::sample_queue(self.store.clone(), QUEUE_SAMPLE_INTERVAL, shutdown)
    }

    /// The gRPC routes of this app.
    pub fn routes(&self) -> Routes {
        routes(
            self.reports.clone(),
            &self.keys,
            self.config.workers.generation_timeout,
        )
    }
}

/// Builds the reports gRPC routes, behind the access table
/// ([`policy::POLICY`]).
pub fn routes(
    reports: app::Reports,
    keys: &MeshKeys,
    regenerate_deadline: std::time::Duration,
) -> Routes {
    let server = ReportsServiceServer::new(api::ReportsGrpc::new(reports, regenerate_deadline))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    Routes::new(policy::POLICY.guard(server, keys.verifier(Principal::Reports)))
}

/// `treven migrate`: as the owner, creates the `reports` schema, applies
/// pending migrations, then creates or updates the service's login role
/// (the user of `TREVEN_REPORTS_DATABASE_URL`, its password when given)
/// unless the service logs in as the owner itself.
pub async fn migrate(owner: &treven_mesh::postgres::OwnerLogin) -> anyhow::Result<()> {
    treven_mesh::postgres::check_connection(
        &owner.options,
        "TREVEN_REPORTS_DATABASE_URL (as the owner)",
    )
    .await?;
    let store = PgStore::connect_lazy(owner.options.clone(), &PoolOptions::default());
    store
        .migrate()
        .await
        .context("reports: cannot run database migrations")?;
    if owner.service_is_owner() {
        tracing::warn!(
            role = %owner.login,
            "reports logs in as the database owner: set TREVEN_MIGRATE_DATABASE_USER to the owner \
             and give the service its own login role"
        );
    } else {
        let mut connection = store.pool().acquire().await?;
        treven_mesh::postgres::ensure_login_role(
            &mut connection,
            &owner.login,
            owner.login_password.as_ref(),
            &config::LOGIN_ROLE_MEMBER_OF,
        )
        .await
        .context("reports")?;
    }
    store.pool().close().await;
    Ok(())
}

/// Checks the schema is current (applying pending migrations when it logs
/// in as the owner; a login role needs `treven migrate` first), then serves
/// reports on `listener` and runs `config.workers.count` generation workers
/// and the outbox relay until `shutdown`. On shutdown workers stop claiming
/// and give back the job they hold; events still in the outbox are
/// delivered after the next start.
pub async fn serve(
    config: ReportsConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let migrated = treven_mesh::postgres::check_before_serving(
        &config.database,
        "TREVEN_REPORTS_DATABASE_URL",
        &store::MIGRATOR,
    )
    .await?;
    let app = ReportsApp::build(config, keys)?;
    if !migrated {
        // Only the owner can (a service logging in as the owner); a login
        // role needs `treven migrate` first.
        app.store.migrate().await.context(
            "reports: the database has pending migrations and this login cannot apply them: \
             run `treven migrate --target reports` (as the owner, TREVEN_MIGRATE_DATABASE_USER)",
        )?;
    }
    treven_mesh::postgres::open_first_connection(app.store.pool());
    let mut workers: Vec<_> = (0..app.config.workers.count)
        .map(|_| tokio::spawn(app.worker().run(shutdown.clone())))
        .collect();
    workers.push(tokio::spawn(app.relay().run(shutdown.clone())));
    // The queue gauges of the job metrics, and the pool's use.
    tokio::spawn(app.sample_queue(shutdown.clone()));
    treven_mesh::metrics::observe_pool("reports", app.store.pool());
    let service = GrpcService {
        name: "reports",
        routes: app.routes(),
        health_names: vec![SERVICE_NAME],
    };
    let served =
        treven_mesh::server::serve(service, listener, shutdown.clone(), app.config.shutdown).await;
    shutdown.cancel();
    for worker in workers {
        if let Err(error) = worker.await {
            tracing::warn!(%error, "report worker ended abnormally");
        }
    }
    served
}
