//! gRPC load on one channel (HTTP/2 multiplexed, as services call each other).

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use treven_mesh::Principal;
use treven_mesh::config::Env;
use treven_mesh::context::{MeshContext, Signer, attach_context};
use treven_mesh::keys::MeshKeySource;
use treven_proto::treven::agents::v1::DetectPiiRequest;
use treven_proto::treven::agents::v1::agents_service_client::AgentsServiceClient;
use treven_proto::treven::reports::v1::GetReportRequest;
use treven_proto::treven::reports::v1::reports_service_client::ReportsServiceClient;
use treven_proto::treven::tenants::v1::GetMeRequest;
use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

use crate::stats::{LoadOptions, closed_loop, emit};

/// Which RPC to call.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Call {
    /// `ReportsService/GetReport` of `--id`, with the mesh context.
    GetReport,
    /// `TenantsService/GetMe`, with the mesh context.
    GetMe,
    /// `AgentsService/DetectPii` of an empty text, with the mesh context:
    /// authenticated, authorised, validated and traced like any call, but
    /// touching no store (row 9).
    DetectPii,
    /// `grpc.health.v1.Health/Check` of the whole server, no context.
    Health,
}

impl Call {
    /// The service a context for this call must be minted for.
    fn audience(self) -> Principal {
        match self {
            Call::GetReport => Principal::Reports,
            Call::GetMe | Call::Health => Principal::Tenants,
            Call::DetectPii => Principal::Agents,
        }
    }
}

/// Arguments of `treven-load grpc`.
#[derive(Debug, Args)]
pub struct GrpcArgs {
    /// `host:port` of the server.
    #[arg(long)]
    addr: String,
    /// The RPC.
    #[arg(long, value_enum)]
    call: Call,
    /// The report id for `get-report`.
    #[arg(long, default_value = "")]
    id: String,
    /// A mesh context token (`treven admin mint-context`), presented on
    /// every call unless `--fresh-context-as` is given.
    #[arg(long, env = "TREVEN_LOAD_CONTEXT", default_value = "")]
    context: String,
    /// Mint a new token for every call as this principal (its key from
    /// `TREVEN_MESH_SIGNING_KEYS`), acting for the user of `--context`, as
    /// the gateway and the services do for every real call; by default the
    /// one `--context` token is presented on every call.
    #[arg(long)]
    fresh_context_as: Option<Principal>,
    #[command(flatten)]
    load: LoadOptions,
}

/// Where each call's mesh context token comes from.
#[derive(Clone)]
enum Tokens {
    /// The same token every call.
    Fixed(String),
    /// A new token per call, as `signer`, for the user of `context`.
    Fresh {
        signer: Box<Signer>,
        context: Box<MeshContext>,
        audience: Principal,
    },
}

impl Tokens {
    async fn from_args(args: &GrpcArgs) -> anyhow::Result<Self> {
        let Some(principal) = args.fresh_context_as else {
            return Ok(Tokens::Fixed(args.context.clone()));
        };
        let audience = args.call.audience();
        let keys = MeshKeySource::from_env(&Env::from_process())?
            .load()
            .await?;
        let signer = keys.require_signer(principal)?;
        let context = keys
            .verifier(audience)
            .verify(&args.context)
            .context("TREVEN_LOAD_CONTEXT is not a valid mesh context for this call")?;
        Ok(Tokens::Fresh {
            signer: Box::new(signer),
            context: Box::new(context),
            audience,
        })
    }

    /// The token of the next call.
    fn next(&self) -> String {
        match self {
            Tokens::Fixed(token) => token.clone(),
            Tokens::Fresh {
                signer,
                context,
                audience,
            } => signer.onward(context, *audience),
        }
    }

    /// `message` as a request carrying the next token.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(message);
        attach_context(&mut request, &self.next()).map_err(|e| e.to_string())?;
        Ok(request)
    }
}

fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Runs the load and prints its [`crate::stats::LoadStats`].
pub async fn run(args: GrpcArgs) -> anyhow::Result<()> {
    let channel: Channel = Endpoint::from_shared(format!("http://{}", args.addr))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    let tokens = Tokens::from_args(&args).await?;
    let stats = match args.call {
        Call::GetReport => {
            let id = args.id.clone();
            closed_loop(
                args.load,
                || ReportsServiceClient::new(channel.clone()),
                move |client| {
                    let mut client = client.clone();
                    let request = tokens.request(GetReportRequest {
                        id: id.clone(),
                        version: 0,
                    });
                    async move {
                        client
                            .get_report(request?)
                            .await
                            .map(drop)
                            .map_err(status_text)
                    }
                },
            )
            .await
        }
        Call::GetMe => {
            closed_loop(
                args.load,
                || TenantsServiceClient::new(channel.clone()),
                move |client| {
                    let mut client = client.clone();
                    let request = tokens.request(GetMeRequest {});
                    async move { client.get_me(request?).await.map(drop).map_err(status_text) }
                },
            )
            .await
        }
        Call::DetectPii => {
            closed_loop(
                args.load,
                || AgentsServiceClient::new(channel.clone()),
                move |client| {
                    let mut client = client.clone();
                    let request = tokens.request(DetectPiiRequest {
                        text: String::new(),
                    });
                    async move {
                        let reply = client.detect_pii(request?).await.map_err(status_text)?;
                        if reply.get_ref().findings.is_empty() {
                            Ok(())
                        } else {
                            Err("findings in an empty text".to_owned())
                        }
                    }
                },
            )
            .await
        }
        Call::Health => {
            closed_loop(
                args.load,
                || HealthClient::new(channel.clone()),
                |client| {
                    let mut client = client.clone();
                    async move {
                        client
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .map(drop)
                            .map_err(status_text)
                    }
                },
            )
            .await
        }
    };
    emit(&stats)
}
