//! Baseline servers and the start-up measurement of row 8.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use treven_testkit::bedrock::{BedrockFake, Script, Usage};

use crate::stats::emit;
use crate::ws::rss_bytes;

/// Arguments of `treven-load bedrock-fake`.
#[derive(Debug, Args)]
pub struct BedrockFakeArgs {
    /// Delay before the first (and only) text delta of each reply.
    #[arg(long, default_value_t = 1000)]
    first_token_ms: u64,
    /// Replies queued (each request consumes one).
    #[arg(long, default_value_t = 10_000)]
    replies: usize,
}

/// Serves the fake until killed; prints `{"endpoint": …}` once listening.
pub async fn bedrock_fake(args: BedrockFakeArgs) -> anyhow::Result<()> {
    let fake = BedrockFake::start().await;
    let script = Script::text(["Recruitment moved to closed messaging groups this quarter."])
        .token_delay(Duration::from_millis(args.first_token_ms))
        .usage(Usage::new(120, 12));
    for _ in 0..args.replies {
        fake.push(script.clone());
    }
    emit(&serde_json::json!({ "endpoint": fake.endpoint() }))?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Arguments of `treven-load bare-health`.
#[derive(Debug, Args)]
pub struct BareHealthArgs {
    /// Where to listen.
    #[arg(long)]
    addr: SocketAddr,
}

/// A tonic server with nothing but `grpc.health.v1`, SERVING at once.
pub async fn bare_health(args: BareHealthArgs) -> anyhow::Result<()> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        .add_service(service)
        .serve(args.addr)
        .await
        .context("serve")
}

/// Arguments of `treven-load startup`.
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// The `host:port` the command serves gRPC health on.
    #[arg(long)]
    addr: String,
    /// Seconds to wait after SERVING before reading the idle RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// The command to start (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StartupStats {
    to_serving_ms: f64,
    idle_rss_bytes: u64,
}

/// Starts the command, times it to SERVING, reads its idle RSS, stops it.
pub async fn startup(args: StartupArgs) -> anyhow::Result<()> {
    let (program, rest) = args.command.split_first().context("a command")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = child.id().context("the child's pid")?;
    let url = format!("http://{}", args.addr);
    let to_serving = loop {
        if started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("{program} was not SERVING within 60 s");
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{program} exited with {status} before SERVING");
        }
        if serving(&url).await {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let idle_rss_bytes = rss_bytes(pid)?;
    child.kill().await.ok();
    emit(&StartupStats {
        to_serving_ms: to_serving.as_secs_f64() * 1e3,
        idle_rss_bytes,
    })
}

async fn serving(url: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|response| response.get_ref().status == ServingStatus::Serving as i32)
}
