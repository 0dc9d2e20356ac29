//! Idle WebSocket connections and the gateway memory they cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::stats::emit;

/// Arguments of `treven-load ws-idle`.
#[derive(Debug, Args)]
pub struct WsIdleArgs {
    /// `ws://host:port/ws`.
    #[arg(long)]
    url: String,
    /// A Cognito ID token, sent in `Sec-WebSocket-Protocol` as the browser does.
    #[arg(long, env = "TREVEN_LOAD_BEARER")]
    bearer: String,
    /// Connections to open.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// The gateway process whose resident memory is read before and after.
    #[arg(long)]
    pid: u32,
    /// Seconds to hold the connections idle before reading memory again.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
}

/// What `ws-idle` measured.
#[derive(Debug, Serialize)]
struct WsIdleStats {
    connected: usize,
    failed: usize,
    first_error: Option<String>,
    open_after_hold: usize,
    seconds_to_connect: f64,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    /// Connections per GiB of the whole gateway RSS at the end.
    connections_per_gib_rss: f64,
    /// Connections per GiB of the RSS the connections added.
    connections_per_gib_added: f64,
}

/// Opens the connections, holds them, prints [`WsIdleStats`].
pub async fn run(args: WsIdleArgs) -> anyhow::Result<()> {
    let rss_before = rss_bytes(args.pid)?;
    let open = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let started = Instant::now();
    let mut handshakes = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (url, bearer, gate, open) = (
            args.url.clone(),
            args.bearer.clone(),
            gate.clone(),
            open.clone(),
        );
        handshakes.spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| e.to_string())?;
            let protocols = HeaderValue::from_str(&format!("treven.v1, bearer.{bearer}"))
                .map_err(|e| e.to_string())?;
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocols);
            let (socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| e.to_string())?;
            open.fetch_add(1, Ordering::SeqCst);
            // Read forever: answers the gateway's pings, notices a close.
            tokio::spawn(async move {
                let (_, mut read) = socket.split();
                while let Some(Ok(_)) = read.next().await {}
                open.fetch_sub(1, Ordering::SeqCst);
            });
            Ok::<(), String>(())
        });
    }
    let (mut connected, mut failed, mut first_error) = (0, 0, None);
    while let Some(joined) = handshakes.join_next().await {
        match joined {
            Ok(Ok(())) => connected += 1,
            Ok(Err(err)) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err.to_string());
            }
        }
    }
    let seconds_to_connect = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let rss_after = rss_bytes(args.pid)?;
    let open_after_hold = open.load(Ordering::SeqCst);
    let gib = (1u64 << 30) as f64;
    let added = rss_after.saturating_sub(rss_before).max(1) as f64;
    emit(&WsIdleStats {
        connected,
        failed,
        first_error,
        open_after_hold,
        seconds_to_connect,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        connections_per_gib_rss: open_after_hold as f64 / (rss_after as f64 / gib),
        connections_per_gib_added: open_after_hold as f64 / (added / gib),
    })
}

/// Resident set size of `pid`, from `/proc/<pid>/status` (`VmRSS`, in kB).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .context("no VmRSS line")
}
