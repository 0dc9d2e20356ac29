//! The data the bench measures on, made through the gateway like the
//! frontend would: a generated report and a conversation.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::stats::emit;

/// Arguments of `treven-load setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    gateway: String,
    /// A Cognito ID token of an analyst.
    #[arg(long, env = "TREVEN_LOAD_BEARER")]
    bearer: String,
    /// How long generation may take.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

/// Creates a report, waits until it is a draft, starts a conversation;
/// prints `{"report_id": …, "conversation_id": …}`.
pub async fn run(args: SetupArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let report = call(
        http.post(format!("{}/api/reports", args.gateway))
            .json(&json!({
                "scope": {
                    "country": "GB",
                    "sector": "agriculture",
                    "exploitationType": "EXPLOITATION_TYPE_LABOUR",
                    "clientType": "ORGANISATION_KIND_FI"
                }
            })),
        &args.bearer,
    )
    .await
    .context("create a report")?;
    let report_id = report["id"]
        .as_str()
        .context("the report has no id")?
        .to_owned();
    let started = Instant::now();
    loop {
        let got = call(
            http.get(format!("{}/api/reports/{report_id}", args.gateway)),
            &args.bearer,
        )
        .await?;
        match got["report"]["status"].as_str() {
            Some("REPORT_STATUS_DRAFT") => break,
            Some("REPORT_STATUS_FAILED") => bail!("generation failed: {got}"),
            _ if started.elapsed() > Duration::from_secs(args.timeout_secs) => {
                bail!("the report was not generated within {}s", args.timeout_secs)
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let conversation = call(
        http.post(format!("{}/api/conversations", args.gateway))
            .json(&json!({ "title": "bench", "context": { "country": "GB" } })),
        &args.bearer,
    )
    .await
    .context("create a conversation")?;
    let conversation_id = conversation["id"]
        .as_str()
        .context("the conversation has no id")?
        .to_owned();
    emit(&json!({ "report_id": report_id, "conversation_id": conversation_id }))
}

async fn call(request: reqwest::RequestBuilder, bearer: &str) -> anyhow::Result<Value> {
    let response = request.bearer_auth(bearer).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}
