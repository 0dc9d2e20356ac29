//! gRPC load on one channel (HTTP/2 multiplexed, as services call each other).

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use treven_mesh::context::attach_context;
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
    /// `grpc.health.v1.Health/Check` of the whole server, no context.
    Health,
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
    /// A mesh context token (`treven admin mint-context`).
    #[arg(long, env = "TREVEN_LOAD_CONTEXT", default_value = "")]
    context: String,
    #[command(flatten)]
    load: LoadOptions,
}

/// Runs the load and prints its [`crate::stats::LoadStats`].
pub async fn run(args: GrpcArgs) -> anyhow::Result<()> {
    let channel: Channel = Endpoint::from_shared(format!("http://{}", args.addr))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    let stats = match args.call {
        Call::GetReport => {
            let (id, context) = (args.id.clone(), args.context.clone());
            closed_loop(
                args.load,
                || ReportsServiceClient::new(channel.clone()),
                move |client| {
                    let mut client = client.clone();
                    let (id, context) = (id.clone(), context.clone());
                    async move {
                        let mut request = tonic::Request::new(GetReportRequest { id, version: 0 });
                        attach_context(&mut request, &context).map_err(|e| e.to_string())?;
                        client
                            .get_report(request)
                            .await
                            .map(drop)
                            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
                    }
                },
            )
            .await
        }
        Call::GetMe => {
            let context = args.context.clone();
            closed_loop(
                args.load,
                || TenantsServiceClient::new(channel.clone()),
                move |client| {
                    let mut client = client.clone();
                    let context = context.clone();
                    async move {
                        let mut request = tonic::Request::new(GetMeRequest {});
                        attach_context(&mut request, &context).map_err(|e| e.to_string())?;
                        client
                            .get_me(request)
                            .await
                            .map(drop)
                            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
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
                            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
                    }
                },
            )
            .await
        }
    };
    emit(&stats)
}
