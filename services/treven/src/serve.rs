//! `treven serve`, `treven migrate` and `treven healthcheck`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use treven_mesh::config::{ConfigError, Env};
use treven_mesh::discovery::ResolveOverrides;
use treven_mesh::keys::MeshKeySource;
use treven_mesh::telemetry::{self, TelemetryConfig};
use treven_mesh::tls::{MeshTlsSource, TrustRoots};

use crate::admin_port::AdminPort;
use crate::roles::{self, Role, RoleContext};

/// The `--target` list: role names (see [`crate::roles::ROLES`]), `all`
/// (every role but the AgentCore runtime) and the alias `agentcore`.
fn parse_target(raw: &str) -> Result<String, String> {
    let name = match raw.trim() {
        "agentcore" => "agent-runtime",
        other => other,
    };
    if name == "all" || roles::role(name).is_some() {
        return Ok(name.to_owned());
    }
    let known: Vec<&str> = roles::ROLES.iter().map(|r| r.name()).collect();
    Err(format!(
        "unknown role {raw:?}; roles: all, {}",
        known.join(", ")
    ))
}

/// The roles `targets` names, in start order.
fn selected(targets: &[String]) -> Vec<&'static dyn Role> {
    roles::ROLES
        .iter()
        .copied()
        .filter(|role| {
            targets
                .iter()
                .any(|t| t == role.name() || (t == "all" && role.in_all()))
        })
        .collect()
}

/// Arguments of `treven serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Roles to serve, comma-separated: tenants, documents, reports,
    /// agents, gateway (REST + gRPC-web on :8080, WebSocket on :8081),
    /// agent-runtime (alias agentcore: the AgentCore Runtime contract on
    /// :8080, its own container), or all (every role but agent-runtime).
    #[arg(long, value_delimiter = ',', default_value = "all", value_parser = parse_target)]
    target: Vec<String>,
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
    /// Roles whose databases to migrate, comma-separated. Each connects to
    /// its database (`TREVEN_<ROLE>_DATABASE_URL`) as the owner
    /// (`TREVEN_MIGRATE_DATABASE_USER`, `TREVEN_MIGRATE_DATABASE_PASSWORD`),
    /// applies the migrations, then creates or updates the service's login
    /// role: the user of that URL, with `TREVEN_<ROLE>_DATABASE_PASSWORD`
    /// (or `TREVEN_DATABASE_PASSWORD`) as its password.
    #[arg(long, value_delimiter = ',', default_value = "all", value_parser = parse_target)]
    target: Vec<String>,
    /// Validate the configuration exactly as `migrate` would, connect
    /// nowhere, and exit (non-zero naming the variable, as `serve
    /// --check-config`).
    #[arg(long)]
    check_config: bool,
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
    let roles = selected(&args.target);
    // Validate every setting before anything starts, so a bad value stops the
    // process with the variable's name.
    let telemetry_config = TelemetryConfig::from_env(&env)?;
    let key_source = MeshKeySource::from_env(&env)?;
    let serves_grpc = roles.iter().any(|role| role.serves_grpc());
    let mesh_tls = MeshTlsSource::from_env(&env, serves_grpc)?;
    let trust_roots = TrustRoots::from_env(&env)?;
    let overrides = ResolveOverrides::from_env(&env)?;
    let configured = roles
        .iter()
        .map(|role| Ok((role.name(), role.configure(&env)?)))
        .collect::<Result<Vec<_>, ConfigError>>()?;
    // The gRPC roles get the admin port (`/metrics`, `/healthz`): one per
    // process, whatever roles it serves. The gateway serves both on :8080;
    // the AgentCore runtime exposes only its contract's port, so its
    // metrics leave over OTLP.
    let admin_port = if roles.iter().any(|role| role.serves_grpc()) {
        Some(AdminPort::from_env(&env)?)
    } else {
        None
    };
    if args.check_config {
        return check_config(&env, &args.target);
    }

    // Spans name the role that made them (`service.name`); a process
    // serving several roles is `treven`.
    let service_name = match roles.as_slice() {
        [role] => role.name(),
        _ => "treven",
    };
    let telemetry = telemetry::init(&telemetry_config, service_name)?;
    // Every gRPC server validates requests against the protos' rules:
    // compiled beside the start-up's I/O (keys, Redis, Postgres) rather
    // than after it.
    if serves_grpc {
        treven_mesh::validate::compile_mesh_rules_in_background();
    }
    // The AWS SDK's configuration (its HTTP client reads the system's
    // trust roots) loads while the keys, the mesh TLS and Redis are checked.
    let sdk = roles
        .iter()
        .any(|role| role.uses_aws())
        .then(|| tokio::spawn(aws_sdk()));
    let keys = key_source.load().await?;
    // Each role signs as its own principal: its key must be here.
    for role in &roles {
        keys.require_signer(role.principal())
            .with_context(|| format!("role {}", role.name()))?;
    }
    // TLS on every hop: installed before any server or channel is built.
    treven_mesh::tls::install(mesh_tls.load().await?);
    treven_mesh::tls::install_trust_roots(trust_roots);
    overrides.install();
    // One check per Redis, however many roles share it.
    let redis_urls: std::collections::BTreeSet<&str> = configured
        .iter()
        .filter_map(|(_, role)| role.redis_url())
        .collect();
    for url in redis_urls {
        treven_mesh::events::check_redis(url, "TREVEN_REDIS_URL").await?;
    }
    let context = RoleContext {
        keys,
        sdk: match sdk {
            Some(loading) => loading.await.context("loading the AWS SDK configuration")?,
            None => aws_config::SdkConfig::builder().build(),
        },
        shutdown: treven_mesh::shutdown::on_signals(),
    };
    // Bind everything first: a port in use stops the process before any
    // role serves.
    let mut bound = Vec::new();
    for (name, role) in configured {
        let role = role.bind().await?;
        tracing::info!(role = name, addresses = ?role.addresses(), "listening");
        bound.push((name, role));
    }
    let admin_listener = match admin_port {
        Some(port) => {
            let listener = port.bind().await?;
            tracing::info!(address = ?listener.local_addr().ok(), "admin port listening (/metrics, /healthz)");
            Some(listener)
        }
        None => None,
    };
    let mut running = tokio::task::JoinSet::new();
    if let Some(listener) = admin_listener {
        running.spawn(crate::admin_port::serve(listener, context.shutdown.clone()));
    }
    for (name, role) in bound {
        let served = role.serve(context.clone());
        running.spawn(async move { served.await.with_context(|| format!("role {name}")) });
    }

    // One role failing stops the others: a half-up process is worse than a
    // restart.
    let mut outcome = Ok(());
    while let Some(finished) = running.join_next().await {
        let result = finished.context("a role panicked").and_then(|r| r);
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "role stopped with an error");
            context.shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    telemetry.shutdown();
    outcome
}

/// Region, credentials and endpoint from the standard AWS environment (task
/// role in ECS; `AWS_ENDPOINT_URL` for the emulator).
pub(crate) async fn aws_sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(
            aws_config::meta::region::RegionProviderChain::default_provider().or_else("eu-west-2"),
        )
        .load()
        .await
}

/// The end of `serve --check-config`: every `TREVEN_*` variable that is set
/// must have been read by the roles' configuration.
fn check_config(env: &Env, targets: &[String]) -> anyhow::Result<()> {
    let unread = env.unread_treven_variables();
    let roles = targets.to_vec();
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

/// Applies the migrations of the requested roles that own a database, and
/// exits.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let env = Env::from_process();
    let migrations = selected(&args.target)
        .into_iter()
        .map(|role| Ok(role.migration(&env)?.map(|m| (role.name(), m))))
        .collect::<Result<Vec<_>, ConfigError>>()?;
    if args.check_config {
        return check_config(&env, &args.target);
    }
    treven_mesh::tls::install_crypto_provider();
    for (name, migration) in migrations.into_iter().flatten() {
        migration()
            .await
            .with_context(|| format!("{name} migrations"))?;
        println!("{name}: migrations applied, login role ready");
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
