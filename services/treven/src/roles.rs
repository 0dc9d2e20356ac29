//! Every role the binary serves, in one shape.
//!
//! A [`Role`] reads and checks its configuration ([`Role::configure`]); the
//! [`Configured`] role binds its listeners ([`Configured::bind`], port 0 in
//! tests) and the [`Bound`] role serves until shutdown. `treven serve`,
//! `treven migrate`, `--check-config` and the in-process test of every role
//! all iterate [`ROLES`]: adding a role to the binary is one line there.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use treven_agents::AgentsConfig;
use treven_documents::DocumentsConfig;
use treven_gateway::GatewayConfig;
use treven_mesh::CancellationToken;
use treven_mesh::Principal;
use treven_mesh::config::{ConfigError, Env};
use treven_mesh::keys::MeshKeys;
use treven_reports::ReportsConfig;
use treven_tenants::TenantsConfig;

/// What every role gets to run with.
#[derive(Clone)]
pub struct RoleContext {
    /// The mesh keys (context tokens, cursors).
    pub keys: MeshKeys,
    /// The AWS SDK configuration (region, credentials, endpoint), for the
    /// roles that use AWS.
    pub sdk: aws_config::SdkConfig,
    /// Cancelled on SIGTERM/SIGINT; every role then drains.
    pub shutdown: CancellationToken,
}

/// One role of the binary.
pub trait Role: Sync {
    /// Its `--target` name (`tenants`).
    fn name(&self) -> &'static str;
    /// The mesh principal it signs as (its key must be among
    /// `TREVEN_MESH_SIGNING_KEYS`).
    fn principal(&self) -> Principal;
    /// Whether `--target all` includes it (the AgentCore runtime runs alone,
    /// in its own container, on the gateway's port).
    fn in_all(&self) -> bool {
        true
    }
    /// Whether it runs a gRPC server (its certificate needs mesh TLS names).
    fn serves_grpc(&self) -> bool;
    /// Whether it calls AWS (S3, DynamoDB, Bedrock) with the SDK.
    fn uses_aws(&self) -> bool {
        false
    }
    /// Reads and validates its configuration.
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError>;
    /// Reads what `treven migrate` needs (the owner's credentials and the
    /// login role) and returns the migration; `None` when it owns no
    /// database.
    fn migration(&self, _env: &Env) -> Result<Option<Migration>, ConfigError> {
        Ok(None)
    }
}

/// A role whose configuration is valid.
pub trait Configured: Send {
    /// The Redis it publishes to or limits with, checked at start.
    fn redis_url(&self) -> Option<&str> {
        None
    }
    /// Binds its listeners; an address that cannot be bound is an error
    /// naming its variable.
    fn bind(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Box<dyn Bound>>>;
}

/// A role with its listeners bound.
pub trait Bound: Send {
    /// The addresses it listens on (the real ports when bound to port 0).
    fn addresses(&self) -> Vec<SocketAddr>;
    /// Serves until `context.shutdown`, then drains.
    fn serve(self: Box<Self>, context: RoleContext) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// Every role, in start order. Adding a role is one line here.
pub static ROLES: [&dyn Role; 6] = [
    &Tenants,
    &Documents,
    &Reports,
    &Agents,
    &Gateway,
    &AgentRuntime,
];

/// The role named `name`.
pub fn role(name: &str) -> Option<&'static dyn Role> {
    ROLES.iter().copied().find(|role| role.name() == name)
}

async fn listen(variable: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("{variable}: cannot listen on {address}"))
}

fn local_address(listener: &TcpListener) -> Vec<SocketAddr> {
    listener.local_addr().into_iter().collect()
}

/// A configured role whose only listener is one gRPC (or HTTP) port, served
/// by `serve`.
struct OneListener<C> {
    variable: &'static str,
    address: SocketAddr,
    config: C,
    serve: ServeFn<C>,
    redis_url: Option<String>,
}

/// A role's database migration, as the owner (see [`Role::migration`]).
pub type Migration = Box<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send>;

type ServeFn<C> =
    Box<dyn FnOnce(C, RoleContext, TcpListener) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

impl<C> OneListener<C> {
    /// Serves `config` with `serve(config, context, listener)` on the address
    /// `variable` named.
    fn new<F, Fut>(variable: &'static str, address: SocketAddr, config: C, serve: F) -> Self
    where
        F: FnOnce(C, RoleContext, TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            variable,
            address,
            config,
            serve: Box::new(move |config, context, listener| {
                Box::pin(serve(config, context, listener))
            }),
            redis_url: None,
        }
    }

    /// The Redis it uses, checked at start.
    fn with_redis(mut self, url: Option<String>) -> Self {
        self.redis_url = url;
        self
    }
}

struct OneBound<C> {
    listener: TcpListener,
    config: C,
    serve: ServeFn<C>,
}

impl<C: Send + 'static> Configured for OneListener<C> {
    fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
    }
    fn bind(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Box<dyn Bound>>> {
        Box::pin(async move {
            let listener = listen(self.variable, self.address).await?;
            Ok(Box::new(OneBound {
                listener,
                config: self.config,
                serve: self.serve,
            }) as Box<dyn Bound>)
        })
    }
}

impl<C: Send + 'static> Bound for OneBound<C> {
    fn addresses(&self) -> Vec<SocketAddr> {
        local_address(&self.listener)
    }

    fn serve(self: Box<Self>, context: RoleContext) -> BoxFuture<'static, anyhow::Result<()>> {
        (self.serve)(self.config, context, self.listener)
    }
}

/// Organisations, users, partners, grants, audit (gRPC :50051, Postgres).
struct Tenants;

impl Role for Tenants {
    fn name(&self) -> &'static str {
        "tenants"
    }

    fn principal(&self) -> Principal {
        Principal::Tenants
    }
    fn serves_grpc(&self) -> bool {
        true
    }
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError> {
        let config = TenantsConfig::from_env(env)?;
        let address = config.listen;
        Ok(Box::new(OneListener::new(
            "TREVEN_TENANTS_ADDR",
            address,
            config,
            |config, context, listener| async move {
                treven_tenants::serve(config, &context.keys, listener, context.shutdown).await
            },
        )))
    }
    fn migration(&self, env: &Env) -> Result<Option<Migration>, ConfigError> {
        let owner = treven_tenants::owner_config(env)?;
        Ok(Some(Box::new(move || {
            let owner = owner.clone();
            Box::pin(async move { treven_tenants::migrate(&owner).await })
        })))
    }
}

/// Uploads, documents, sources, evidence, artifacts (gRPC :50052, S3 +
/// DynamoDB).
struct Documents;

impl Role for Documents {
    fn name(&self) -> &'static str {
        "documents"
    }

    fn principal(&self) -> Principal {
        Principal::Documents
    }
    fn uses_aws(&self) -> bool {
        true
    }
    fn serves_grpc(&self) -> bool {
        true
    }
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError> {
        let config = DocumentsConfig::from_env(env)?;
        let address = config.listen;
        Ok(Box::new(OneListener::new(
            "TREVEN_DOCUMENTS_ADDR",
            address,
            config,
            |config, context, listener| async move {
                treven_documents::serve(
                    config,
                    &context.sdk,
                    &context.keys,
                    listener,
                    context.shutdown,
                )
                .await
            },
        )))
    }
}

/// KJ reports, versions, the PII gate, approval, export and the generation
/// workers (gRPC :50053, Postgres).
struct Reports;

impl Role for Reports {
    fn name(&self) -> &'static str {
        "reports"
    }

    fn principal(&self) -> Principal {
        Principal::Reports
    }
    fn serves_grpc(&self) -> bool {
        true
    }
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError> {
        let config = ReportsConfig::from_env(env)?;
        let (address, redis_url) = (config.listen, config.redis_url.clone());
        Ok(Box::new(
            OneListener::new(
                "TREVEN_REPORTS_ADDR",
                address,
                config,
                |config, context, listener| async move {
                    treven_reports::serve(config, &context.keys, listener, context.shutdown).await
                },
            )
            .with_redis(Some(redis_url)),
        ))
    }
    fn migration(&self, env: &Env) -> Result<Option<Migration>, ConfigError> {
        let owner = treven_reports::owner_config(env)?;
        Ok(Some(Box::new(move || {
            let owner = owner.clone();
            Box::pin(async move { treven_reports::migrate(&owner).await })
        })))
    }
}

/// Models, agent kinds and tools, conversations, runs, usage (gRPC :50054,
/// DynamoDB + Bedrock).
struct Agents;

impl Role for Agents {
    fn name(&self) -> &'static str {
        "agents"
    }

    fn principal(&self) -> Principal {
        Principal::Agents
    }
    fn uses_aws(&self) -> bool {
        true
    }
    fn serves_grpc(&self) -> bool {
        true
    }
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError> {
        let config = AgentsConfig::from_env(env)?;
        let (address, redis_url) = (config.listen, config.redis_url.clone());
        Ok(Box::new(
            OneListener::new(
                "TREVEN_AGENTS_ADDR",
                address,
                config,
                |config, context, listener| async move {
                    treven_agents::serve(
                        config,
                        &context.sdk,
                        &context.keys,
                        listener,
                        context.shutdown,
                    )
                    .await
                },
            )
            .with_redis(redis_url),
        ))
    }
}

/// The agent loop behind the Bedrock AgentCore Runtime contract (`GET
/// /ping`, `POST /invocations` on :8080), its own container.
struct AgentRuntime;

impl Role for AgentRuntime {
    fn name(&self) -> &'static str {
        "agent-runtime"
    }

    fn principal(&self) -> Principal {
        Principal::AgentRuntime
    }
    fn uses_aws(&self) -> bool {
        true
    }
    fn in_all(&self) -> bool {
        false
    }
    fn serves_grpc(&self) -> bool {
        false
    }
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError> {
        let config = AgentsConfig::from_env(env)?;
        let address = config.runtime_listen;
        Ok(Box::new(OneListener::new(
            "TREVEN_AGENT_RUNTIME_ADDR",
            address,
            config,
            |config, context, listener| async move {
                treven_agents::serve_agent_runtime(
                    config,
                    &context.sdk,
                    &context.keys,
                    listener,
                    context.shutdown,
                )
                .await
            },
        )))
    }
}

/// The edge: REST/JSON and gRPC-web on :8080, WebSocket on :8081.
struct Gateway;

impl Role for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn principal(&self) -> Principal {
        Principal::Gateway
    }
    fn serves_grpc(&self) -> bool {
        false
    }
    fn configure(&self, env: &Env) -> Result<Box<dyn Configured>, ConfigError> {
        Ok(Box::new(GatewayConfigured(GatewayConfig::from_env(env)?)))
    }
}

struct GatewayConfigured(GatewayConfig);

struct GatewayBound {
    config: GatewayConfig,
    api: TcpListener,
    ws: TcpListener,
}

impl Configured for GatewayConfigured {
    fn redis_url(&self) -> Option<&str> {
        Some(&self.0.redis_url)
    }
    fn bind(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Box<dyn Bound>>> {
        Box::pin(async move {
            let config = self.0;
            let api = listen("TREVEN_GATEWAY_ADDR", config.listen).await?;
            let ws = listen("TREVEN_GATEWAY_WS_ADDR", config.ws_listen).await?;
            Ok(Box::new(GatewayBound { config, api, ws }) as Box<dyn Bound>)
        })
    }
}

impl Bound for GatewayBound {
    fn addresses(&self) -> Vec<SocketAddr> {
        let mut addresses = local_address(&self.api);
        addresses.extend(local_address(&self.ws));
        addresses
    }

    fn serve(self: Box<Self>, context: RoleContext) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let policy = self.config.shutdown;
            let gateway = treven_gateway::state::Gateway::build(self.config, context.keys).await?;
            let ws = tokio::spawn(treven_gateway::ws::serve_ws(
                gateway.clone(),
                self.ws,
                context.shutdown.clone(),
                policy,
            ));
            let api =
                treven_gateway::server::serve(gateway, self.api, context.shutdown.clone(), policy)
                    .await;
            // The WebSocket listener stops with the same shutdown; a failing
            // REST server stops it too.
            context.shutdown.cancel();
            let ws = ws.await.context("the WebSocket listener panicked")?;
            api.and(ws)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::HashMap;
    use std::time::Duration;

    use treven_mesh::keys::MeshKeySource;
    use treven_testkit::{Moto, TestDatabase};

    use super::*;

    async fn grpc_serving(address: SocketAddr) -> bool {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        else {
            return false;
        };
        let check = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        check.is_ok_and(|r| r.into_inner().status == 1)
    }

    async fn http_ok(url: &str) -> bool {
        reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Every role of [`ROLES`] configured, bound on port 0 and served in one
    /// process exactly the way `treven serve` does it; each answers its
    /// health check, and all stop cleanly on shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_role_starts_in_process_the_same_way() {
        let database = TestDatabase::create("roles").await;
        let moto = Moto::start();
        let mut pairs: Vec<(&str, String)> = MeshKeys::generate().env().to_vec();
        pairs.extend([
            ("TREVEN_TENANTS_DATABASE_URL", database.url.clone()),
            ("TREVEN_REPORTS_DATABASE_URL", database.url.clone()),
            (
                "TREVEN_COGNITO_ISSUER",
                "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_roles".to_owned(),
            ),
            ("TREVEN_COGNITO_CLIENT_ID", "roles-test".to_owned()),
        ]);
        for variable in [
            "TREVEN_TENANTS_ADDR",
            "TREVEN_DOCUMENTS_ADDR",
            "TREVEN_REPORTS_ADDR",
            "TREVEN_AGENTS_ADDR",
            "TREVEN_GATEWAY_ADDR",
            "TREVEN_GATEWAY_WS_ADDR",
            "TREVEN_AGENT_RUNTIME_ADDR",
        ] {
            pairs.push((variable, "127.0.0.1:0".to_owned()));
        }
        pairs.extend(moto.aws_env());
        let env = Env::from_pairs(pairs);
        let context = RoleContext {
            keys: MeshKeySource::from_env(&env).unwrap().load().await.unwrap(),
            sdk: moto.sdk().await,
            shutdown: CancellationToken::new(),
        };

        let mut addresses = HashMap::new();
        let mut running = Vec::new();
        for role in ROLES {
            let name = role.name();
            let configured = role
                .configure(&env)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let bound = configured
                .bind()
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            addresses.insert(role.name(), bound.addresses());
            running.push((role.name(), tokio::spawn(bound.serve(context.clone()))));
        }

        let serving = async {
            for name in ["tenants", "documents", "reports", "agents"] {
                while !grpc_serving(addresses[name][0]).await {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for address in &addresses["gateway"] {
                while !http_ok(&format!("http://{address}/healthz")).await {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let runtime = addresses["agent-runtime"][0];
            while !http_ok(&format!("http://{runtime}/ping")).await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("every role serves within a minute");

        context.shutdown.cancel();
        for (name, role) in running {
            tokio::time::timeout(Duration::from_secs(30), role)
                .await
                .unwrap_or_else(|_| panic!("{name} stops within the grace period"))
                .expect("no panic")
                .unwrap_or_else(|e| panic!("{name} stopped with {e:#}"));
        }
        database.drop().await;
    }
}
