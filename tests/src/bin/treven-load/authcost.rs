//! Row 3: what authentication adds to a REST call.
//!
//! Builds the real gateway in this process (from the same `TREVEN_*`
//! environment as `treven serve --target gateway`) and serves it twice on
//! loopback: once through `treven_gateway::server::router`, which verifies
//! the Cognito token, checks the rate limit, resolves the role and mints the
//! mesh context on every request; and once through a router that hands the
//! same REST handler a fixed, pre-built caller. Both call the same upstream
//! with the same request, alternately, so the difference is authentication.
//! The fixed-caller router exists only in this benchmark binary.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::response::IntoResponse as _;
use clap::Args;
use serde::Serialize;
use tokio::net::TcpListener;
use treven_gateway::auth::Identity;
use treven_gateway::caller::Caller;
use treven_gateway::state::Gateway;
use treven_mesh::Role;
use treven_mesh::config::Env;
use treven_mesh::context::ContextVerifier;
use treven_mesh::keys::MeshKeySource;

use crate::stats::{LoadOptions, closed_loop, emit};

/// Arguments of `treven-load rest-auth-cost`.
#[derive(Debug, Args)]
pub struct AuthCostArgs {
    /// The report to GET.
    #[arg(long)]
    report_id: String,
    /// A Cognito ID token of an analyst.
    #[arg(long, env = "TREVEN_LOAD_BEARER")]
    bearer: String,
    /// A mesh context of the same user (what authentication would mint).
    #[arg(long, env = "TREVEN_LOAD_CONTEXT")]
    context: String,
    /// Measured seconds of each variant.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct AuthCost {
    authenticated_p50_us: f64,
    unauthenticated_p50_us: f64,
    errors: u64,
}

/// Serves both routers, loads each at concurrency 1, prints [`AuthCost`].
pub async fn run(args: AuthCostArgs) -> anyhow::Result<()> {
    let env = Env::from_process();
    let config = treven_gateway::GatewayConfig::from_env(&env)?;
    let keys = MeshKeySource::from_env(&env)?.load().await?;
    let verifier: ContextVerifier = keys.verifier(treven_mesh::Principal::Reports);
    let claims = verifier
        .verify(&args.context)
        .context("TREVEN_LOAD_CONTEXT is not a valid mesh context")?;
    let gateway = Gateway::build(config, keys).await?;

    // The same caller every request, its contexts minted by the gateway's
    // key as authentication would.
    let caller = Arc::new(Caller::new(
        Identity {
            sub: claims.user_id().to_owned(),
            org_id: claims.org_id(),
            email: None,
            expires_at: claims.expires_at().timestamp(),
        },
        claims.roles().first().copied().unwrap_or(Role::Viewer),
        "bench".into(),
        gateway.minter.clone(),
    ));
    let authenticated = treven_gateway::server::router(gateway.clone());
    let unauthenticated = axum::Router::new()
        .fallback(fixed_caller)
        .with_state((gateway, caller));
    let with_auth = serve(authenticated).await?;
    let without_auth = serve(unauthenticated).await?;

    let options = LoadOptions {
        concurrency: 1,
        seconds: args.seconds,
        warmup: 0.5,
    };
    let path = format!("/api/reports/{}", args.report_id);
    let a = get_load(
        options,
        format!("http://{with_auth}{path}"),
        args.bearer.clone(),
    )
    .await;
    let b = get_load(
        options,
        format!("http://{without_auth}{path}"),
        String::new(),
    )
    .await;
    emit(&AuthCost {
        authenticated_p50_us: a.0,
        unauthenticated_p50_us: b.0,
        errors: a.1 + b.1,
    })
}

async fn fixed_caller(
    State((gateway, caller)): State<(Gateway, Arc<Caller>)>,
    request: Request,
) -> axum::response::Response {
    treven_gateway::rest::handle(&gateway, &caller, request)
        .await
        .unwrap_or_else(|err| err.into_response())
}

async fn serve(router: axum::Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(address)
}

/// p50 in microseconds and the error count of GETs of `url`.
async fn get_load(options: LoadOptions, url: String, bearer: String) -> (f64, u64) {
    let stats = closed_loop(options, reqwest::Client::new, move |client| {
        let mut request = client.get(&url);
        if !bearer.is_empty() {
            request = request.bearer_auth(&bearer);
        }
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            response.bytes().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    })
    .await;
    (stats.p50_us, stats.errors)
}
