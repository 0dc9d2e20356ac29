//! `treven serve`, `treven migrate` and `treven healthcheck`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use treven_agents::AgentsConfig;
use treven_documents::DocumentsConfig;
use treven_gateway::GatewayConfig;
use treven_mesh::config::Env;
use treven_mesh::discovery::ResolveOverrides;
use treven_mesh::keys::MeshKeySource;
use treven_mesh::telemetry::{self, TelemetryConfig};
use treven_mesh::tls::{MeshTlsSource, TrustRoots};
use treven_reports::ReportsConfig;
use treven_tenants::TenantsConfig;

/// A role this binary can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every role below.
    All,
    /// Organisations, users, partners, grants, audit (gRPC :50051).
    Tenants,
    /// Uploads, documents, sources, evidence, artifacts on S3 + DynamoDB (gRPC :50052).
    Documents,
    /// KJ reports, versions, the PII gate, approval, export, and the
    /// generation workers on Postgres (gRPC :50053).
    Reports,
    /// Models, agent kinds and tools, conversations, runs and usage on
    /// DynamoDB + Bedrock (gRPC :50054).
    Agents,
    /// The edge: REST/JSON and gRPC-web on :8080, WebSocket on :8081.
    Gateway,
    /// The agent loop behind the Bedrock AgentCore Runtime contract
    /// (`GET /ping`, `POST /invocations` on :8080). Not part of `all`: it
    /// would take the gateway's port; it runs alone in its own container.
    #[value(alias = "agentcore")]
    AgentRuntime,
}

impl Target {
    fn includes(targets: &[Target], role: Target) -> bool {
        targets
            .iter()
            .any(|t| *t == role || (*t == Target::All && role != Target::AgentRuntime))
    }
}

/// Arguments of `treven serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Roles to serve, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    target: Vec<Target>,
    /// Validate the configuration of these roles exactly as `serve` would,
    /// connect nowhere, and exit: non-zero naming the variable when one is
    /// missing or invalid, or when a `TREVEN_*` variable is set that no role
    /// reads. Prints a JSON summary on success.
    #[arg(long)]
    check_config: bool,
}

/// Arguments of `treven migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Roles whose databases to migrate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    target: Vec<Target>,
}

/// Arguments of `treven healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The gRPC server to ask.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// Service name to check; empty checks the whole server.
    #[arg(long, default_value = "")]
    service: String,
}

/// Serves the requested roles until the first SIGTERM/SIGINT, then drains.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let env = Env::from_process();
    // Validate every setting before anything starts, so a bad value stops the
    // process with the variable's name.
    let telemetry_config = TelemetryConfig::from_env(&env)?;
    let key_source = MeshKeySource::from_env(&env)?;
    let serves_grpc = [
        Target::Tenants,
        Target::Documents,
        Target::Reports,
        Target::Agents,
    ]
    .into_iter()
    .any(|role| Target::includes(&args.target, role));
    let mesh_tls = MeshTlsSource::from_env(&env, serves_grpc)?;
    let trust_roots = TrustRoots::from_env(&env)?;
    let overrides = ResolveOverrides::from_env(&env)?;
    let tenants_config = if Target::includes(&args.target, Target::Tenants) {
        Some(TenantsConfig::from_env(&env)?)
    } else {
        None
    };
    let documents_config = if Target::includes(&args.target, Target::Documents) {
        Some(DocumentsConfig::from_env(&env)?)
    } else {
        None
    };

    let reports_config = if Target::includes(&args.target, Target::Reports) {
        Some(ReportsConfig::from_env(&env)?)
    } else {
        None
    };
    let agents_config = if Target::includes(&args.target, Target::Agents)
        || Target::includes(&args.target, Target::AgentRuntime)
    {
        Some(AgentsConfig::from_env(&env)?)
    } else {
        None
    };
    let gateway_config = if Target::includes(&args.target, Target::Gateway) {
        Some(GatewayConfig::from_env(&env)?)
    } else {
        None
    };

    if args.check_config {
        return check_config(&env, &args.target);
    }

    let telemetry = telemetry::init(&telemetry_config, "treven")?;
    let keys = key_source.load().await?;
    // TLS on every hop: installed before any server or channel is built.
    treven_mesh::tls::install(mesh_tls.load().await?);
    treven_mesh::tls::install_trust_roots(trust_roots);
    overrides.install();
    for url in [
        reports_config.as_ref().map(|c| c.redis_url.as_str()),
        gateway_config.as_ref().map(|c| c.redis_url.as_str()),
        agents_config.as_ref().and_then(|c| c.redis_url.as_deref()),
    ]
    .into_iter()
    .flatten()
    {
        treven_mesh::events::check_redis(url, "TREVEN_REDIS_URL").await?;
    }
    let shutdown = treven_mesh::shutdown::on_signals();

    let mut roles = tokio::task::JoinSet::new();
    if let Some(config) = tenants_config {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("TREVEN_TENANTS_ADDR: cannot listen on {}", config.listen))?;
        let (keys, shutdown) = (keys.clone(), shutdown.clone());
        roles.spawn(async move { treven_tenants::serve(config, &keys, listener, shutdown).await });
    }
    // Region, credentials and endpoint come from the standard AWS environment
    // (task role in ECS; AWS_ENDPOINT_URL for the emulator).
    let sdk = if documents_config.is_some() || agents_config.is_some() {
        Some(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(
                    aws_config::meta::region::RegionProviderChain::default_provider()
                        .or_else("eu-west-2"),
                )
                .load()
                .await,
        )
    } else {
        None
    };
    if let (Some(config), Some(sdk)) = (documents_config, sdk.clone()) {
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!("TREVEN_DOCUMENTS_ADDR: cannot listen on {}", config.listen)
        })?;
        let (keys, shutdown) = (keys.clone(), shutdown.clone());
        roles.spawn(async move {
            treven_documents::serve(config, &sdk, &keys, listener, shutdown).await
        });
    }
    if let Some(config) = reports_config {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("TREVEN_REPORTS_ADDR: cannot listen on {}", config.listen))?;
        let (keys, shutdown) = (keys.clone(), shutdown.clone());
        roles.spawn(async move { treven_reports::serve(config, &keys, listener, shutdown).await });
    }
    if let (Some(config), Some(sdk)) = (agents_config, sdk) {
        if Target::includes(&args.target, Target::Agents) {
            let listener = TcpListener::bind(config.listen).await.with_context(|| {
                format!("TREVEN_AGENTS_ADDR: cannot listen on {}", config.listen)
            })?;
            let (config, sdk, keys, shutdown) =
                (config.clone(), sdk.clone(), keys.clone(), shutdown.clone());
            roles.spawn(async move {
                treven_agents::serve(config, &sdk, &keys, listener, shutdown).await
            });
        }
        if Target::includes(&args.target, Target::AgentRuntime) {
            let listener = TcpListener::bind(config.runtime_listen)
                .await
                .with_context(|| {
                    format!(
                        "TREVEN_AGENT_RUNTIME_ADDR: cannot listen on {}",
                        config.runtime_listen
                    )
                })?;
            let (keys, shutdown) = (keys.clone(), shutdown.clone());
            roles.spawn(async move {
                treven_agents::serve_agent_runtime(config, &sdk, &keys, listener, shutdown).await
            });
        }
    }

    if let Some(config) = gateway_config {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("TREVEN_GATEWAY_ADDR: cannot listen on {}", config.listen))?;
        let ws_listener = TcpListener::bind(config.ws_listen).await.with_context(|| {
            format!(
                "TREVEN_GATEWAY_WS_ADDR: cannot listen on {}",
                config.ws_listen
            )
        })?;
        let policy = config.shutdown;
        let gateway = treven_gateway::state::Gateway::build(config, keys.clone()).await?;
        {
            let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
            roles.spawn(async move {
                treven_gateway::ws::serve_ws(gateway, ws_listener, shutdown, policy).await
            });
        }
        let shutdown = shutdown.clone();
        roles.spawn(async move {
            treven_gateway::server::serve(gateway, listener, shutdown, policy).await
        });
    }

    // One role failing stops the others: a half-up process is worse than a
    // restart.
    let mut outcome = Ok(());
    while let Some(finished) = roles.join_next().await {
        let result = finished.context("a role panicked").and_then(|r| r);
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "role stopped with an error");
            shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    telemetry.shutdown();
    outcome
}

/// The end of `serve --check-config`: every `TREVEN_*` variable that is set
/// must have been read by the roles' configuration.
fn check_config(env: &Env, targets: &[Target]) -> anyhow::Result<()> {
    let unread = env.unread_treven_variables();
    let roles: Vec<String> = targets
        .iter()
        .filter_map(|t| t.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect();
    if let Some(first) = unread.first() {
        anyhow::bail!(
            "{first}: set but not read by target {} (unread: {})",
            roles.join(","),
            unread.join(", ")
        );
    }
    let read: Vec<String> = env
        .read_names()
        .into_iter()
        .filter(|name| env.get(name).is_some())
        .collect();
    println!(
        "{}",
        serde_json::json!({"ok": true, "targets": roles, "read": read})
    );
    Ok(())
}

/// Applies migrations and exits.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let env = Env::from_process();
    treven_mesh::tls::install_crypto_provider();
    if Target::includes(&args.target, Target::Tenants) {
        let config = TenantsConfig::from_env(&env)?;
        let store = treven_tenants::store::PgStore::connect_lazy(config.database, &config.pool);
        store.migrate().await.context("tenants migrations")?;
        println!("tenants: migrations applied");
    }
    if Target::includes(&args.target, Target::Reports) {
        let config = ReportsConfig::from_env(&env)?;
        treven_reports::migrate(&config)
            .await
            .context("reports migrations")?;
        println!("reports: migrations applied");
    }
    Ok(())
}

/// Asks `grpc.health.v1.Health/Check`; fails unless SERVING.
pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    // With a mesh CA in the environment (every ECS task in AWS) the server
    // speaks TLS only: check it as a client would, by its first name.
    let env = Env::from_process();
    let endpoint = match MeshTlsSource::from_env(&env, true)?.load().await? {
        Some(tls) => {
            treven_mesh::tls::install_crypto_provider();
            let name = tls.names().first().cloned().unwrap_or_default();
            tonic::transport::Endpoint::from_shared(format!("https://{}", args.addr))?
                .tls_config(tls.client_config(&name))?
        }
        None => tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))?,
    };
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service,
        })
        .await?
        .into_inner();
    match response.status() {
        ServingStatus::Serving => Ok(()),
        status => anyhow::bail!("{} reports {status:?}", args.addr),
    }
}
