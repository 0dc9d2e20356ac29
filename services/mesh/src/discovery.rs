//! Channels that follow DNS: in AWS a service name such as
//! `tenants.treven.internal` (Cloud Map) resolves to the addresses of its
//! running tasks. [`discovered_channel`] re-resolves it periodically and
//! adds and removes endpoints of a balanced channel, so a new task takes
//! traffic and a dead one stops receiving it without a restart. IP-literal
//! URLs (local runs) get a plain channel.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::transport::channel::Change;

use crate::client::ChannelOptions;

/// Resolves a `host:port` to socket addresses.
pub trait Resolve: Send + Sync + 'static {
    /// The current addresses of `host:port`.
    fn resolve(
        &self,
        host_port: &str,
    ) -> futures::future::BoxFuture<'_, std::io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host_port: &str,
    ) -> futures::future::BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
        let host_port = host_port.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host(host_port).await?.collect()) })
    }
}

/// A channel to `url` (`http://host:port`) that re-resolves `host` every
/// `refresh` with `resolver` and balances across the addresses found. A
/// resolution failure keeps the last known addresses.
pub fn discovered_channel(
    url: &str,
    options: ChannelOptions,
    refresh: Duration,
    resolver: Arc<dyn Resolve>,
) -> Result<Channel, tonic::transport::Error> {
    // An unparsable URL falls through to the plain channel, which reports it.
    let parsed: http::Uri = url.parse().unwrap_or_default();
    let scheme = parsed.scheme_str().unwrap_or("http").to_owned();
    let Some(authority) = parsed.authority().map(|a| a.as_str().to_owned()) else {
        return crate::client::channel(url, options);
    };
    if authority.parse::<SocketAddr>().is_ok() {
        return crate::client::channel(url, options);
    }
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            match resolver.resolve(&authority).await {
                Ok(addresses) => {
                    let current: HashSet<SocketAddr> = addresses.into_iter().collect();
                    for gone in known.difference(&current) {
                        tracing::info!(service = %authority, address = %gone, "endpoint removed");
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in current.difference(&known) {
                        let Ok(endpoint) =
                            crate::client::endpoint(&format!("{scheme}://{new}"), options)
                        else {
                            continue;
                        };
                        tracing::info!(service = %authority, address = %new, "endpoint added");
                        if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    known = current;
                }
                Err(error) => {
                    tracing::warn!(service = %authority, %error, "resolution failed, keeping the last addresses")
                }
            }
            tokio::time::sleep(refresh).await;
        }
    });
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A resolver whose answer the test changes.
    struct Scripted(Mutex<Vec<SocketAddr>>);

    impl Resolve for Scripted {
        fn resolve(
            &self,
            _: &str,
        ) -> futures::future::BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
            let answer = self.0.lock().map(|a| a.clone()).unwrap_or_default();
            Box::pin(async move { Ok(answer) })
        }
    }

    /// A gRPC health server; dropping the token stops it.
    async fn health_server() -> (SocketAddr, tokio_util::sync::CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (_, service) = tonic_health::server::health_reporter();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stopped.cancelled_owned(),
                )
                .await
        });
        (address, stop)
    }

    async fn healthy(channel: &Channel) -> bool {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn new_tasks_are_picked_up_and_dead_ones_dropped_without_a_restart() {
        let (first, stop_first) = health_server().await;
        let resolver = Arc::new(Scripted(Mutex::new(vec![first])));
        let options = ChannelOptions {
            connect_timeout: Duration::from_millis(300),
            call_timeout: Duration::from_secs(2),
        };
        let channel = discovered_channel(
            "http://tenants.treven.internal:50051",
            options,
            Duration::from_millis(50),
            resolver.clone(),
        )
        .expect("channel");
        let mut ok = false;
        for _ in 0..40 {
            if healthy(&channel).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "calls reach the first task");

        // A new task appears in DNS and the first one dies.
        let (second, _stop_second) = health_server().await;
        *resolver.0.lock().expect("lock") = vec![second];
        stop_first.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..5 {
            assert!(healthy(&channel).await, "calls go to the new task");
        }
    }

    #[test]
    fn ip_literals_do_not_start_a_resolver() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let channel = discovered_channel(
                "http://127.0.0.1:1",
                ChannelOptions::default(),
                Duration::from_secs(1),
                Arc::new(SystemResolver),
            );
            assert!(channel.is_ok());
        });
    }
}
