//! Channels to other services.
//!
//! [`crate::discovery::upstream`] is how every role reaches another: the service's URL
//! (`https://tenants.treven.internal:50051` in AWS) is re-resolved and
//! balanced across its tasks ([`crate::discovery`]), `https` URLs speak TLS
//! with the mesh CA and verify the service's name ([`crate::tls`]), and a
//! background probe reports a peer that refuses TLS by the variable that
//! named it. Every channel has a connect timeout and a per-call deadline,
//! which tonic sends as `grpc-timeout` so the callee can stop work nobody
//! waits for (bounded further by the served call's deadline, see
//! [`crate::deadline`]).

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::config::{ConfigError, Env, Environment};

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
/// reopen after failures). A comma-separated list of URLs gives a channel
/// balanced across them (the gateway's upstreams also probe such a list:
/// see [`crate::discovery`]).
pub fn channel(url: &str, options: ChannelOptions) -> Result<Channel, tonic::transport::Error> {
    if url.contains(',') {
        let endpoints = url
            .split(',')
            .map(|part| endpoint(part.trim(), options))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Channel::balance_list(endpoints.into_iter()));
    }
    Ok(endpoint(url, options)?.connect_lazy())
}

/// The endpoint every mesh connection uses: connect timeout, per-call
/// deadline, no Nagle, and HTTP/2 keep-alives so dead peers are noticed; an
/// `https` URL speaks TLS with the mesh CA, verifying the URL's host.
pub fn endpoint(url: &str, options: ChannelOptions) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = base_endpoint(url, options)?;
    let host = endpoint.uri().host().unwrap_or_default().to_owned();
    with_mesh_tls(endpoint, &host)
}

/// The endpoint of one task of a service: `address` is dialled, `host` (the
/// service's DNS name) is what its certificate must carry.
pub fn endpoint_at(
    scheme: &str,
    host: &str,
    address: SocketAddr,
    options: ChannelOptions,
) -> Result<Endpoint, tonic::transport::Error> {
    with_mesh_tls(
        base_endpoint(&format!("{scheme}://{address}"), options)?,
        host,
    )
}

fn base_endpoint(url: &str, options: ChannelOptions) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(options.connect_timeout)
        .timeout(options.call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10)))
}

fn with_mesh_tls(endpoint: Endpoint, host: &str) -> Result<Endpoint, tonic::transport::Error> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    // `service_url` refuses an https URL without a mesh CA, so this is set
    // in every process that reaches here with one.
    match crate::tls::installed() {
        Some(tls) => endpoint.tls_config(tls.client_config(host)),
        None => Ok(endpoint),
    }
}

/// Reads a service URL such as `TREVEN_TENANTS_URL` (or a comma-separated
/// list of them, one per instance), checking each parses. Outside local
/// runs the URL is required and must be `https` (the mesh is TLS-only in
/// AWS); an `https` URL needs the mesh CA (`TREVEN_MESH_CA_SEED`).
pub fn service_url(env: &Env, variable: &str, default: &str) -> Result<String, ConfigError> {
    let environment = Environment::from_env(env)?;
    let url = match env.get(variable) {
        Some(url) => url,
        None if environment == Environment::Local => default.to_owned(),
        None => return env.required(variable),
    };
    let has_ca = env.get("TREVEN_MESH_CA_SEED").is_some()
        || env.get("TREVEN_MESH_CA_SEED_SECRET_ID").is_some();
    for part in url.split(',') {
        let endpoint = Endpoint::from_shared(part.trim().to_owned())
            .map_err(|e| env.error(variable, format!("not a URL: {e}")))?;
        let https = endpoint.uri().scheme_str() == Some("https");
        if !https && environment != Environment::Local {
            return Err(env.error(
                variable,
                "must be an https:// URL outside local runs: the mesh is TLS-only in AWS",
            ));
        }
        if https && !has_ca {
            return Err(env.error(
                variable,
                "is https:// but no mesh CA is configured (TREVEN_MESH_CA_SEED)",
            ));
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_to_a_server_that_never_answers_ends_at_the_deadline() {
        // A peer that accepts connections and then says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let _peer = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let options = ChannelOptions {
            connect_timeout: Duration::from_millis(500),
            call_timeout: Duration::from_millis(300),
        };
        let channel = channel(&format!("http://{address}"), options).expect("valid url");
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let started = std::time::Instant::now();
        let result = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await;
        assert!(result.is_err(), "no answer is an error");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the deadline: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn service_urls_are_checked() {
        let env = Env::from_pairs([("TREVEN_TENANTS_URL", "not a url")]);
        let error =
            service_url(&env, "TREVEN_TENANTS_URL", "http://127.0.0.1:50051").expect_err("bad");
        assert_eq!(error.variable, "TREVEN_TENANTS_URL");
        let env = Env::from_pairs::<&str, &str>([]);
        assert_eq!(
            service_url(&env, "TREVEN_TENANTS_URL", "http://127.0.0.1:50051")
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:50051")
        );
    }
}
