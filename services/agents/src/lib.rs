//! The agents service: model providers (Bedrock first, Gemini second, an
//! offline provider for development) behind a circuit breaker, the agent
//! kinds and their tools, analysts' conversations, agent runs, KJ report
//! generation, PII detection and token metering per organisation.
//!
//! Layers, arrows one way: `api` (gRPC and the AgentCore Runtime contract,
//! proto ⇄ domain; mounted only here) → [`app`] (one file per use case) →
//! [`agent`] (the tool loop) and [`tools`] → [`store`] (DynamoDB),
//! [`clients`] (documents and reports calls), [`provider`] (models) →
//! `treven_mesh`. [`model`] and [`generator`] hold domain types.

pub mod agent;
mod api;
pub mod app;
pub mod clients;
pub mod config;
pub mod generator;
pub mod guardrail;
pub mod model;
pub mod policy;
pub mod provider;
pub mod provision;
pub mod redaction;
pub mod store;
pub mod tools;

/// The AgentCore Runtime HTTP contract (`GET /ping`, `POST /invocations`).
pub use api::runtime;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::service::Routes;
use treven_mesh::CancellationToken;
use treven_mesh::client::ChannelOptions;
use treven_mesh::discovery::upstream;
use treven_mesh::events::EventPublisher;
use treven_mesh::keys::MeshKeys;
use treven_mesh::pagination::CursorCodec;
use treven_mesh::server::GrpcService;
use treven_mesh::{Principal, Signer};
use treven_proto::treven::agents::v1::agents_service_server::AgentsServiceServer;

pub use clients::ReportsClient;
pub use config::AgentsConfig;

use crate::app::{Agents, AuditLog};
use crate::clients::{Documents, ReportsLookup};
use crate::config::ProviderKind;
use crate::provider::Provider;
use crate::provider::bedrock::BedrockProvider;
use crate::provider::gemini::GeminiProvider;
use crate::provider::offline::OfflineProvider;
use crate::provider::router::Router;
use crate::store::Store;

/// The full gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "treven.agents.v1.AgentsService";
/// Largest request message (DetectPii takes up to 1 MiB of text).
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

fn provider(
    kind: ProviderKind,
    config: &AgentsConfig,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(match kind {
        ProviderKind::Offline => Arc::new(OfflineProvider::with_latency(config.offline_latency)),
        ProviderKind::Bedrock => Arc::new(BedrockProvider::new(&config.bedrock, sdk)),
        ProviderKind::Gemini => {
            let gemini = config
                .gemini
                .clone()
                .context("gemini selected without configuration")?;
            Arc::new(GeminiProvider::new(gemini).context("gemini http client")?)
        }
    })
}

/// The model router of `config`.
pub fn model_router(config: &AgentsConfig, sdk: &aws_config::SdkConfig) -> anyhow::Result<Router> {
    let primary = provider(config.primary, config, sdk)?;
    let secondary = config
        .secondary
        .map(|kind| provider(kind, config, sdk))
        .transpose()?;
    Ok(Router::new(primary, secondary, config.breaker))
}

/// The service over explicit parts (tests swap the router, the reports
/// lookup or the event publisher).
pub fn build_with(
    config: &AgentsConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    router: Router,
    reports: Box<dyn ReportsLookup>,
    events: Option<EventPublisher>,
    guardrail: Option<guardrail::Guardrail>,
    signer: Signer,
) -> anyhow::Result<Agents> {
    let options = ChannelOptions {
        connect_timeout: std::time::Duration::from_secs(3),
        call_timeout: std::time::Duration::from_secs(30),
    };
    let documents = Documents::new(
        upstream("TREVEN_DOCUMENTS_URL", &config.documents_url, options)
            .context("documents url")?,
        signer.clone(),
    );
    let cursors = CursorCodec::new(signer.key(), "agents");
    let audit = AuditLog::new(
        upstream("TREVEN_TENANTS_URL", &config.tenants_url, options).context("tenants url")?,
        signer.clone(),
    );
    Ok(Agents::new(
        Store::new(dynamodb, config.table.clone()),
        router,
        documents,
        reports,
        events,
        guardrail,
        cursors,
        config.limits,
    )
    .with_audit_log(audit))
}

/// The service wired from `config` and `sdk`, calling other services with
/// tokens minted by `signer` (the agents key, or the AgentCore runtime's).
pub fn build(
    config: &AgentsConfig,
    sdk: &aws_config::SdkConfig,
    signer: Signer,
) -> anyhow::Result<Agents> {
    let reports = ReportsClient::new(
        upstream(
            "TREVEN_REPORTS_URL",
            &config.reports_url,
            ChannelOptions::default(),
        )
        .context("reports url")?,
        signer.clone(),
    );
    let events = match &config.redis_url {
        Some(url) => Some(EventPublisher::connect_lazy(url).context("redis url")?),
        None => {
            tracing::info!(
                "TREVEN_REDIS_URL unset: chat events are not published to WebSocket clients"
            );
            None
        }
    };
    let guardrail = config.bedrock.guardrail_id.clone().map(|id| {
        guardrail::Guardrail::new(
            provider::bedrock::client(&config.bedrock, sdk),
            id,
            config.bedrock.guardrail_version.clone(),
        )
    });
    build_with(
        config,
        aws_sdk_dynamodb::Client::new(sdk),
        model_router(config, sdk)?,
        Box::new(reports),
        events,
        guardrail,
        signer,
    )
}

/// The agents gRPC routes, behind the access table ([`policy::POLICY`]).
pub fn routes(agents: Agents, keys: &MeshKeys) -> Routes {
    let server = AgentsServiceServer::new(api::grpc::AgentsGrpc::new(agents))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    Routes::new(policy::POLICY.guard(server, keys.verifier(Principal::Agents)))
}

/// Serves agents (gRPC) on `listener` until `shutdown`.
pub async fn serve(
    config: AgentsConfig,
    sdk: &aws_config::SdkConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let policy = config.shutdown;
    let agents = build(&config, sdk, keys.require_signer(Principal::Agents)?)?;
    tracing::info!(primary = ?config.primary, secondary = ?config.secondary, "agents models");
    if config.secondary.is_none() {
        tracing::info!(primary = ?config.primary, "no secondary model configured: running on the primary alone, no failover");
    }
    let service = GrpcService {
        name: "agents",
        routes: routes(agents, keys),
        health_names: vec![SERVICE_NAME],
    };
    treven_mesh::server::serve(service, listener, shutdown, policy).await
}

/// Serves the AgentCore Runtime contract (`GET /ping`, `POST /invocations`)
/// on `listener` until `shutdown`; in-flight streams get the grace period.
pub async fn serve_agent_runtime(
    config: AgentsConfig,
    sdk: &aws_config::SdkConfig,
    keys: &MeshKeys,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grace = config.shutdown.grace;
    let agents = build(&config, sdk, keys.require_signer(Principal::AgentRuntime)?)?;
    let app = runtime::router(agents, keys.verifier(Principal::AgentRuntime));
    tracing::info!(address = ?listener.local_addr().ok(), "agent runtime listening");
    let stopped = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stopped.cancelled().await;
    });
    tokio::select! {
        result = server => result.context("agent runtime server"),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("agent runtime grace period over; dropping streams");
            Ok(())
        }
    }
}
