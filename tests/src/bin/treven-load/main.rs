//! `treven-load`: the load generator and baseline servers behind
//! `cargo xtask bench`.
//!
//! Each subcommand does one measurement and prints one JSON object on
//! stdout, so the orchestrator (xtask) can run rows side by side and compute
//! ratios. Written in Rust because no Debian, PyPI or npm tool speaks gRPC
//! with our mesh-context metadata, WebSocket with our subprotocol token, and
//! REST in one process; `wrk`-style open-loop features are not needed since
//! every row is a closed-loop comparison at a fixed concurrency.

mod authcost;
mod grpc;
mod rest;
mod servers;
mod setup;
mod stats;
mod ttft;
mod ws;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generator and baseline servers of `cargo xtask bench`.
#[derive(Debug, Parser)]
#[command(name = "treven-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop gRPC load: GetReport, GetMe or a bare health check.
    Grpc(grpc::GrpcArgs),
    /// Closed-loop HTTP load on one URL (GET), with or without a bearer token.
    Rest(rest::RestArgs),
    /// Holds idle WebSocket connections open and reports when all are up.
    WsIdle(ws::WsIdleArgs),
    /// Time to first token: through the gateway versus straight from Bedrock.
    Ttft(ttft::TtftArgs),
    /// A Bedrock fake that streams a fixed reply with a set first-token delay.
    BedrockFake(servers::BedrockFakeArgs),
    /// A bare tonic server with only `grpc.health.v1`: the baseline of row 8.
    BareHealth(servers::BareHealthArgs),
    /// Starts a server command, times it to SERVING and reads its idle RSS.
    Startup(servers::StartupArgs),
    /// Creates the report and conversation the other commands measure on.
    Setup(setup::SetupArgs),
    /// REST p50 with and without authentication, in-process gateway (row 3).
    RestAuthCost(authcost::AuthCostArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Grpc(args) => grpc::run(args).await,
            Command::Rest(args) => rest::run(args).await,
            Command::WsIdle(args) => ws::run(args).await,
            Command::Ttft(args) => ttft::run(args).await,
            Command::BedrockFake(args) => servers::bedrock_fake(args).await,
            Command::BareHealth(args) => servers::bare_health(args).await,
            Command::Startup(args) => servers::startup(args).await,
            Command::Setup(args) => setup::run(args).await,
            Command::RestAuthCost(args) => authcost::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
