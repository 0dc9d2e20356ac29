//! Channels to other services.
//!
//! Addresses are static `http://host:port` URLs from configuration for now
//! (DNS re-resolution across Cloud Map records comes with the gateway). Every
//! channel has a connect timeout and a per-call deadline, which tonic sends
//! as `grpc-timeout` so the callee can stop work nobody waits for.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::config::{ConfigError, Env};

/// Connect and call limits of a channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Deadline of each call made on the channel.
    pub call_timeout: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// A lazily connecting channel to `url` (connections open on first use and
/// reopen after failures).
pub fn channel(url: &str, options: ChannelOptions) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(options.connect_timeout)
        .timeout(options.call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy())
}

/// Reads a service URL such as `TREVEN_TENANTS_URL`, checking it parses.
pub fn service_url(env: &Env, variable: &str, default: &str) -> Result<String, ConfigError> {
    let url = env.get(variable).unwrap_or_else(|| default.to_owned());
    Endpoint::from_shared(url.clone())
        .map_err(|e| env.error(variable, format!("not a URL: {e}")))?;
    Ok(url)
}
