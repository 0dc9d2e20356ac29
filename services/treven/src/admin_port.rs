//! The admin HTTP port of a process serving a gRPC role (tenants,
//! documents, reports, agents): `GET /metrics` (Prometheus text of
//! everything the process records, see [`treven_mesh::metrics`]) and
//! `GET /healthz`, nothing else. The gateway serves both on its own :8080;
//! the AgentCore runtime exposes only its contract's port, so its metrics
//! leave over OTLP.
//!
//! `TREVEN_ADMIN_ADDR` says where: locally a free loopback port unless set
//! (several processes of a test or of `cargo xtask prodlike` never collide;
//! `cargo xtask dev` sets `127.0.0.1:9464`), in AWS `0.0.0.0:9464`, which
//! the task's CloudWatch agent sidecar scrapes over the task's loopback.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use treven_mesh::CancellationToken;
use treven_mesh::config::{ConfigError, Env, Environment};

/// The admin port in AWS (the Prometheus exporters' customary port).
pub const AWS_ADMIN_PORT: u16 = 9464;

/// Where the admin port listens.
#[derive(Debug, Clone, Copy)]
pub struct AdminPort {
    listen: SocketAddr,
}

impl AdminPort {
    /// Reads `TREVEN_ADMIN_ADDR` (default: a free port on 127.0.0.1 locally,
    /// `0.0.0.0:9464` in AWS).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = match Environment::from_env(env)? {
            Environment::Local => SocketAddr::from(([127, 0, 0, 1], 0)),
            Environment::Dev | Environment::Prod => {
                SocketAddr::from(([0, 0, 0, 0], AWS_ADMIN_PORT))
            }
        };
        Ok(Self {
            listen: env.socket_addr_or("TREVEN_ADMIN_ADDR", default)?,
        })
    }

    /// Binds it; a port in use is an error naming the variable.
    pub async fn bind(self) -> anyhow::Result<TcpListener> {
        TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("TREVEN_ADMIN_ADDR: cannot listen on {}", self.listen))
    }
}

/// `/metrics` and `/healthz`.
pub fn router() -> Router {
    Router::new().route("/metrics", get(metrics)).route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    )
}

async fn metrics() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, treven_mesh::metrics::CONTENT_TYPE)],
        treven_mesh::metrics::render(),
    )
}

/// Serves the admin port until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the admin port failed")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_admin_port_defaults_to_a_free_loopback_port_locally_and_9464_in_aws() {
        let local = AdminPort::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(local.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        let aws = AdminPort::from_env(&Env::from_pairs([("TREVEN_ENV", "prod")])).unwrap();
        assert_eq!(aws.listen.port(), AWS_ADMIN_PORT);
        let bad =
            AdminPort::from_env(&Env::from_pairs([("TREVEN_ADMIN_ADDR", "nowhere")])).unwrap_err();
        assert_eq!(bad.variable, "TREVEN_ADMIN_ADDR");
    }
}
