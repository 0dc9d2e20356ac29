//! Time to first token, side by side: the same reply streamed through the
//! gateway and the agents service, and straight from the Bedrock fake with
//! the real SDK. The difference is what the platform adds.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, Message,
};
use clap::Args;
use futures::StreamExt as _;
use serde::Serialize;

use crate::stats::{emit, percentile_us};

/// Arguments of `treven-load ttft`.
#[derive(Debug, Args)]
pub struct TtftArgs {
    /// The gateway's `POST /api/conversations/{id}/messages` URL.
    #[arg(long)]
    url: String,
    /// A Cognito ID token.
    #[arg(long, env = "TREVEN_LOAD_BEARER")]
    bearer: String,
    /// The Bedrock fake's endpoint, e.g. `http://127.0.0.1:9400`.
    #[arg(long)]
    bedrock: String,
    /// The model id to ask the fake for directly.
    #[arg(long, default_value = "eu.anthropic.claude-opus-4-5-20251101-v1:0")]
    model: String,
    /// Measurements of each kind (alternated).
    #[arg(long, default_value_t = 7)]
    repetitions: usize,
}

#[derive(Debug, Serialize)]
struct TtftStats {
    repetitions: usize,
    gateway_p50_ms: f64,
    bedrock_p50_ms: f64,
    added_ms: f64,
    /// Added time over the fake's own time to first token.
    added_ratio: f64,
}

/// Measures both paths `repetitions` times and prints [`TtftStats`].
pub async fn run(args: TtftArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let bedrock = aws_sdk_bedrockruntime::Client::from_conf(
        aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-2"))
            .endpoint_url(&args.bedrock)
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .build(),
    );
    let (mut through_gateway, mut direct) = (Vec::new(), Vec::new());
    for round in 0..args.repetitions {
        through_gateway.push(gateway_ttft(&http, &args, round).await?);
        direct.push(bedrock_ttft(&bedrock, &args.model).await?);
    }
    through_gateway.sort_unstable();
    direct.sort_unstable();
    let gateway_p50_ms = percentile_us(&through_gateway, 0.5) / 1e3;
    let bedrock_p50_ms = percentile_us(&direct, 0.5) / 1e3;
    let added_ms = gateway_p50_ms - bedrock_p50_ms;
    emit(&TtftStats {
        repetitions: args.repetitions,
        gateway_p50_ms,
        bedrock_p50_ms,
        added_ms,
        added_ratio: added_ms / bedrock_p50_ms,
    })
}

/// Sends a message and times the first text delta of the NDJSON stream.
async fn gateway_ttft(
    http: &reqwest::Client,
    args: &TtftArgs,
    round: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = http
        .post(&args.url)
        .bearer_auth(&args.bearer)
        .json(&serde_json::json!({ "content": format!("What changed in recruitment this quarter? ({round})") }))
        .send()
        .await
        .context("send message through the gateway")?;
    anyhow::ensure!(
        response.status().is_success(),
        "gateway answered {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    while let Some(chunk) = body.next().await {
        seen.extend_from_slice(&chunk.context("read the reply stream")?);
        if memchr_text_delta(&seen) {
            let first = started.elapsed();
            // Drain the rest so the reply completes like a browser's would.
            while body.next().await.is_some() {}
            return Ok(first);
        }
    }
    anyhow::bail!(
        "the reply ended without a text delta: {}",
        String::from_utf8_lossy(&seen)
    )
}

fn memchr_text_delta(seen: &[u8]) -> bool {
    seen.windows(b"\"textDelta\"".len())
        .any(|w| w == b"\"textDelta\"")
}

/// Asks the fake directly and times the first content block delta.
async fn bedrock_ttft(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(
            "What changed in recruitment this quarter?".into(),
        ))
        .build()
        .context("message")?;
    let mut output = client
        .converse_stream()
        .model_id(model)
        .messages(message)
        .send()
        .await
        .context("ConverseStream on the fake")?;
    let mut first = None;
    while let Some(event) = output
        .stream
        .recv()
        .await
        .context("read the event stream")?
    {
        if first.is_none() && matches!(event, ConverseStreamOutput::ContentBlockDelta(_)) {
            first = Some(started.elapsed());
        }
    }
    first.context("the fake sent no content block delta")
}
