//! HTTP load: GET one URL, keep-alive connections, one per worker.

use clap::Args;

use crate::stats::{LoadOptions, closed_loop, emit};

/// Arguments of `treven-load rest`.
#[derive(Debug, Args)]
pub struct RestArgs {
    /// The URL to GET.
    #[arg(long)]
    url: String,
    /// A Cognito ID token sent as `Authorization: Bearer`.
    #[arg(long, env = "TREVEN_LOAD_BEARER", default_value = "")]
    bearer: String,
    /// The status every response must have to count as a success.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    #[command(flatten)]
    load: LoadOptions,
}

/// Runs the load and prints its [`crate::stats::LoadStats`].
pub async fn run(args: RestArgs) -> anyhow::Result<()> {
    let (url, bearer, expect) = (args.url, args.bearer, args.expect_status);
    let stats = closed_loop(
        args.load,
        || {
            // One connection per worker, as `concurrency` browsers would have.
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap_or_default()
        },
        move |client| {
            let mut request = client.get(&url);
            if !bearer.is_empty() {
                request = request.bearer_auth(&bearer);
            }
            async move {
                let response = request.send().await.map_err(|err| err.to_string())?;
                let status = response.status().as_u16();
                // Read the whole body: the cost of encoding it is part of the call.
                let body = response.bytes().await.map_err(|err| err.to_string())?;
                if status == expect {
                    Ok(())
                } else {
                    Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ))
                }
            }
        },
    )
    .await;
    emit(&stats)
}
