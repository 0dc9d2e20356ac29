//! Configuration of the gateway.

use std::net::SocketAddr;
use std::time::Duration;

use treven_mesh::client::service_url;
use treven_mesh::config::{ConfigError, Env, Environment};
use treven_mesh::server::ShutdownPolicy;

/// Configuration of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `TREVEN_GATEWAY_ADDR`: REST + gRPC-web (default port 8080).
    pub listen: SocketAddr,
    /// `TREVEN_GATEWAY_WS_ADDR`: WebSocket (default port 8081).
    pub ws_listen: SocketAddr,
    /// Limits and timings of WebSocket connections.
    pub ws: WsConfig,
    /// `TREVEN_COGNITO_ISSUER`: `https://cognito-idp.<region>.amazonaws.com/<pool>`.
    pub issuer: String,
    /// `TREVEN_COGNITO_CLIENT_ID`: the app client tokens are issued to.
    pub client_id: String,
    /// `TREVEN_COGNITO_JWKS_URL` (default `<issuer>/.well-known/jwks.json`).
    pub jwks_url: String,
    /// `TREVEN_JWKS_MIN_REFRESH_SECS`: how often an unknown `kid` may refetch keys.
    pub jwks_min_refresh: Duration,
    /// `TREVEN_ROLE_CACHE_SECS`: how long a role looked up in tenants is reused.
    pub role_ttl: Duration,
    /// `TREVEN_TENANTS_URL`.
    pub tenants_url: String,
    /// `TREVEN_DOCUMENTS_URL`.
    pub documents_url: String,
    /// `TREVEN_REPORTS_URL`.
    pub reports_url: String,
    /// `TREVEN_AGENTS_URL`.
    pub agents_url: String,
    /// `TREVEN_REDIS_URL`.
    pub redis_url: String,
    /// `TREVEN_RATE_LIMIT_PER_MINUTE`: calls per user per minute (bucket size).
    pub rate_limit_per_minute: u64,
    /// `TREVEN_ORG_RATE_LIMIT_PER_MINUTE`: calls per organisation per minute
    /// (default ten users' worth).
    pub org_rate_limit_per_minute: u64,
    /// `TREVEN_CORS_ORIGINS`: browser origins allowed to call the API
    /// (comma-separated, e.g. `https://app.treven.example`); none by default.
    pub cors_origins: Vec<String>,
    /// `TREVEN_GATEWAY_REFLECTION`: route from the descriptors each service
    /// serves through reflection, read at start-up and refreshed (the
    /// built-in set fills gaps).
    pub reflection: bool,
    /// `TREVEN_GATEWAY_REFLECTION_REFRESH_SECS`: how often reflection is
    /// asked again, so routes follow the services' descriptors without a
    /// gateway restart (30 s; 1–3600).
    pub reflection_refresh: Duration,
    /// `TREVEN_MAX_BODY_BYTES` of a REST request.
    pub max_body_bytes: usize,
    /// `TREVEN_UPSTREAM_TIMEOUT_SECS`: deadline of each call to a service.
    pub upstream_timeout: Duration,
    /// `TREVEN_MAX_STREAMS_PER_CONNECTION`: requests one connection may have
    /// in flight at once (HTTP/2 streams); more wait (default 100).
    pub max_streams_per_connection: usize,
    /// Drain and grace periods.
    pub shutdown: ShutdownPolicy,
}

/// Limits and timings of the WebSocket listener (`TREVEN_WS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsConfig {
    /// `TREVEN_WS_PING_SECS` (default 20): a ping is sent this often.
    pub ping_interval: Duration,
    /// `TREVEN_WS_IDLE_TIMEOUT_SECS` (default 60, more than the ping
    /// interval): a connection from which nothing (not even a pong) arrived
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// `TREVEN_WS_QUEUE_EVENTS` (default 256, 1–65536): events waiting to be
    /// written to one connection; a client that lets it fill is dropped.
    pub queue_events: usize,
    /// `TREVEN_WS_MAX_MESSAGE_BYTES` (default 65536, 1 KiB–16 MiB): the
    /// largest message or frame a client may send.
    pub max_message_bytes: usize,
    /// `TREVEN_WS_MAX_SUBSCRIPTIONS` (default 32, 1–1000) per connection.
    pub max_subscriptions: usize,
    /// `TREVEN_WS_MAX_CONNECTIONS` (default 10000) per gateway instance.
    pub max_connections: usize,
    /// `TREVEN_WS_REPLAY_MAX` (default 100, 0–1000): events replayed on
    /// resume; a client that missed more is told to reload.
    pub replay_max: usize,
    /// `TREVEN_WS_SEND_TIMEOUT_SECS` (default 10): a write that does not
    /// complete in this long drops the connection.
    pub send_timeout: Duration,
    /// `TREVEN_GATEWAY_WS_RECHECK_SECS` (default 5, 1–300): how often each
    /// connection asks tenants again whether its user is still a member and
    /// with which role; a removed user's connection is closed, a demoted
    /// user's subscriptions are checked again with the new role.
    pub recheck_interval: Duration,
}

impl WsConfig {
    /// Reads and validates the `TREVEN_WS_*` variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ping_interval = env.seconds_or("TREVEN_WS_PING_SECS", 20, 1..=300)?;
        let idle_timeout = env.seconds_or("TREVEN_WS_IDLE_TIMEOUT_SECS", 60, 2..=3600)?;
        if idle_timeout <= ping_interval {
            return Err(env.error(
                "TREVEN_WS_IDLE_TIMEOUT_SECS",
                "must be longer than TREVEN_WS_PING_SECS",
            ));
        }
        let bounded = |name: &str, default: usize, range: std::ops::RangeInclusive<usize>| {
            let value: usize = env.parse_or(name, default)?;
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(env.error(
                    name,
                    format!(
                        "must be between {} and {}, got {value}",
                        range.start(),
                        range.end()
                    ),
                ))
            }
        };
        Ok(Self {
            ping_interval,
            idle_timeout,
            queue_events: bounded("TREVEN_WS_QUEUE_EVENTS", 256, 1..=65_536)?,
            max_message_bytes: bounded(
                "TREVEN_WS_MAX_MESSAGE_BYTES",
                64 * 1024,
                1024..=16 * 1024 * 1024,
            )?,
            max_subscriptions: bounded("TREVEN_WS_MAX_SUBSCRIPTIONS", 32, 1..=1000)?,
            max_connections: bounded("TREVEN_WS_MAX_CONNECTIONS", 10_000, 1..=1_000_000)?,
            replay_max: bounded("TREVEN_WS_REPLAY_MAX", 100, 0..=1000)?,
            send_timeout: env.seconds_or("TREVEN_WS_SEND_TIMEOUT_SECS", 10, 1..=300)?,
            recheck_interval: env.seconds_or("TREVEN_GATEWAY_WS_RECHECK_SECS", 5, 1..=300)?,
        })
    }
}

impl GatewayConfig {
    /// Reads and validates the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let issuer = env
            .required("TREVEN_COGNITO_ISSUER")?
            .trim_end_matches('/')
            .to_owned();
        if !issuer.starts_with("https://") && !issuer.starts_with("http://") {
            return Err(env.error("TREVEN_COGNITO_ISSUER", "must be the pool's issuer URL"));
        }
        let jwks_url = env
            .get("TREVEN_COGNITO_JWKS_URL")
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        Ok(Self {
            listen: env.socket_addr_or("TREVEN_GATEWAY_ADDR", environment.default_listen(8080))?,
            ws_listen: env
                .socket_addr_or("TREVEN_GATEWAY_WS_ADDR", environment.default_listen(8081))?,
            ws: WsConfig::from_env(env)?,
            client_id: env.required("TREVEN_COGNITO_CLIENT_ID")?,
            issuer,
            jwks_url,
            jwks_min_refresh: env.seconds_or("TREVEN_JWKS_MIN_REFRESH_SECS", 60, 1..=3600)?,
            role_ttl: env.seconds_or("TREVEN_ROLE_CACHE_SECS", 30, 1..=600)?,
            tenants_url: service_url(env, "TREVEN_TENANTS_URL", &local(50051))?,
            documents_url: service_url(env, "TREVEN_DOCUMENTS_URL", &local(50052))?,
            reports_url: service_url(env, "TREVEN_REPORTS_URL", &local(50053))?,
            agents_url: service_url(env, "TREVEN_AGENTS_URL", &local(50054))?,
            redis_url: treven_mesh::events::redis_url(env)?,
            rate_limit_per_minute: env.parse_or("TREVEN_RATE_LIMIT_PER_MINUTE", 600u64)?,
            org_rate_limit_per_minute: env.parse_or(
                "TREVEN_ORG_RATE_LIMIT_PER_MINUTE",
                10 * env.parse_or("TREVEN_RATE_LIMIT_PER_MINUTE", 600u64)?,
            )?,
            cors_origins: match env.get("TREVEN_CORS_ORIGINS") {
                None => Vec::new(),
                Some(list) => {
                    let origins: Vec<String> = list
                        .split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect();
                    if origins.iter().any(|o| {
                        !(o.starts_with("https://") || o.starts_with("http://")) || o == "*"
                    }) {
                        return Err(env.error(
                            "TREVEN_CORS_ORIGINS",
                            "must list http(s) origins; * is not allowed",
                        ));
                    }
                    origins
                }
            },
            reflection: env.parse_or("TREVEN_GATEWAY_REFLECTION", false)?,
            reflection_refresh: env.seconds_or(
                "TREVEN_GATEWAY_REFLECTION_REFRESH_SECS",
                30,
                1..=3600,
            )?,
            max_body_bytes: env.parse_or("TREVEN_MAX_BODY_BYTES", 1024 * 1024usize)?,
            upstream_timeout: env.seconds_or("TREVEN_UPSTREAM_TIMEOUT_SECS", 30, 1..=300)?,
            max_streams_per_connection: match env
                .parse_or("TREVEN_MAX_STREAMS_PER_CONNECTION", 100usize)?
            {
                0 => {
                    return Err(
                        env.error("TREVEN_MAX_STREAMS_PER_CONNECTION", "must be at least 1")
                    );
                }
                n => n,
            },
            shutdown: ShutdownPolicy::from_env(env)?,
        })
    }
}
