//! Channels that follow DNS: in AWS a service name such as
//! `tenants.treven.internal` (Cloud Map) resolves to the addresses of its
//! running tasks. [`discovered_upstream`] re-resolves it periodically and
//! adds and removes endpoints of a balanced channel, so a new task takes
//! traffic and a dead one stops receiving it without a restart. IP-literal
//! URLs (local runs) get a plain channel.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
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

/// The system resolver (`getaddrinfo` through tokio), after the overrides
/// of `TREVEN_RESOLVE` (see [`ResolveOverrides`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host_port: &str,
    ) -> futures::future::BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
        let overridden = OVERRIDES
            .read()
            .ok()
            .and_then(|o| o.0.get(host_port).copied());
        let host_port = host_port.to_owned();
        Box::pin(async move {
            match overridden {
                Some(address) => Ok(vec![address]),
                None => Ok(tokio::net::lookup_host(host_port).await?.collect()),
            }
        })
    }
}

/// Fixed answers for some `host:port` names, like curl's `--resolve`:
/// `TREVEN_RESOLVE=tenants.treven.internal:50051=127.0.0.1:41234,…`. The
/// production-shape test uses it to run the synthesized tasks, with their
/// Cloud Map URLs and TLS names unchanged, on loopback ports.
#[derive(Debug, Clone, Default)]
pub struct ResolveOverrides(std::collections::BTreeMap<String, SocketAddr>);

static OVERRIDES: std::sync::RwLock<ResolveOverrides> =
    std::sync::RwLock::new(ResolveOverrides(std::collections::BTreeMap::new()));

impl ResolveOverrides {
    /// Reads `TREVEN_RESOLVE` (unset: no overrides).
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let Some(raw) = env.get("TREVEN_RESOLVE") else {
            return Ok(Self::default());
        };
        let mut map = std::collections::BTreeMap::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, address) = entry.split_once('=').ok_or_else(|| {
                env.error(
                    "TREVEN_RESOLVE",
                    format!("{entry:?} is not host:port=ip:port"),
                )
            })?;
            let address: SocketAddr = address.parse().map_err(|e| {
                env.error("TREVEN_RESOLVE", format!("{address:?} is not ip:port: {e}"))
            })?;
            map.insert(name.to_owned(), address);
        }
        Ok(Self(map))
    }

    /// Makes these the overrides of this process.
    pub fn install(self) {
        if let Ok(mut installed) = OVERRIDES.write() {
            *installed = self;
        }
    }
}

/// A balanced channel to one service and the handle of its discovery loop.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Calls go here.
    pub channel: Channel,
    /// Present when the channel follows DNS or a list of addresses (absent
    /// for a single IP-literal URL, which has nothing to re-resolve).
    pub refresher: Option<Refresher>,
}

/// Asks an [`Upstream`]'s discovery loop for a round now (resolve, probe,
/// update the balancer) instead of at its next tick.
#[derive(Debug, Clone)]
pub struct Refresher {
    wake: Arc<Notify>,
    rounds: watch::Receiver<Rounds>,
}

/// Numbers of the discovery rounds started and finished so far.
#[derive(Debug, Clone, Copy, Default)]
struct Rounds {
    started: u64,
    finished: u64,
}

impl Refresher {
    /// Wakes the loop and waits (at most `limit`) for a round that started
    /// after this call to finish: a caller that just failed to reach an
    /// endpoint can then retry knowing the balancer no longer holds it.
    pub async fn refresh_now(&self, limit: Duration) {
        let mut rounds = self.rounds.clone();
        let started_before = rounds.borrow().started;
        self.wake.notify_one();
        let _ = tokio::time::timeout(limit, rounds.wait_for(|r| r.finished > started_before)).await;
    }
}

/// Whether `status` says the call never reached a server: the connection was
/// refused, so nothing was sent and any call, write or not, may be retried
/// on another endpoint.
pub fn is_unreachable(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// A channel to the service named by `variable` at `url`: re-resolved every
/// few seconds and balanced across its tasks, with a background TLS probe
/// (see [`probe_in_background`]).
pub fn upstream(
    variable: &'static str,
    url: &str,
    options: ChannelOptions,
) -> Result<Channel, tonic::transport::Error> {
    let upstream = discovered_upstream(
        url,
        options,
        Duration::from_secs(5),
        Arc::new(SystemResolver),
    )?;
    probe_in_background(variable, url);
    Ok(upstream.channel)
}

/// Checks, once, that the first task of an `https` upstream completes a TLS
/// handshake with the mesh CA, and logs an error naming `variable` and the
/// peer when it does not (a plaintext server, a certificate from another CA
/// or for another name) — the calls themselves would only say UNAVAILABLE.
/// A service that is not up yet is retried for a minute.
pub fn probe_in_background(variable: &'static str, url: &str) {
    let Some(tls) = crate::tls::installed() else {
        return;
    };
    let Some(first) = url.split(',').next() else {
        return;
    };
    let Ok(uri) = first.trim().parse::<http::Uri>() else {
        return;
    };
    if uri.scheme_str() != Some("https") {
        return;
    }
    let (Some(host), Some(authority)) = (uri.host().map(str::to_owned), uri.authority()) else {
        return;
    };
    let target = match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{host}:443"),
    };
    tokio::spawn(async move {
        let limit = Duration::from_secs(5);
        for _ in 0..30 {
            let address = SystemResolver
                .resolve(&target)
                .await
                .ok()
                .and_then(|a| a.into_iter().next());
            if let Some(address) = address {
                match tls.probe(variable, &host, address, limit).await {
                    Ok(()) => {
                        tracing::info!(variable, peer = %target, "upstream speaks mesh tls");
                        return;
                    }
                    Err(crate::tls::ProbeError::Refused(problem)) => {
                        tracing::error!(variable, peer = %target, problem, "upstream refused by mesh tls");
                        return;
                    }
                    Err(crate::tls::ProbeError::Unreachable(_)) => {}
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

/// A channel to `url` that balances across the addresses of its host and
/// keeps them current.
///
/// - `http://host:port` (a DNS name): `host` is re-resolved with `resolver`
///   every `refresh` (a resolution failure keeps the last known addresses);
/// - `http://10.0.0.1:50051,http://10.0.0.2:50051`: a fixed list of
///   addresses, balanced the same way;
/// - a single IP-literal URL (local runs): a plain channel.
///
/// Each round also probes every address with a TCP connect and leaves out
/// those that refuse, so a dead task stops receiving calls before DNS
/// forgets it; when none answers, all are kept (calls then fail fast with
/// UNAVAILABLE instead of waiting for an endpoint).
pub fn discovered_upstream(
    url: &str,
    options: ChannelOptions,
    refresh: Duration,
    resolver: Arc<dyn Resolve>,
) -> Result<Upstream, tonic::transport::Error> {
    let (scheme, host, target, resolver) = match static_addresses(url) {
        Some((scheme, addresses)) => {
            let listed = addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let resolver: Arc<dyn Resolve> = Arc::new(Fixed(addresses));
            // IP literals: the certificate must carry the address itself.
            let host = static_host(url).unwrap_or_default();
            (scheme, host, listed, resolver)
        }
        None => {
            // An unparsable URL falls through to the plain channel, which
            // reports it.
            let parsed: http::Uri = url.parse().unwrap_or_default();
            let scheme = parsed.scheme_str().unwrap_or("http").to_owned();
            let Some(authority) = parsed.authority().map(|a| a.as_str().to_owned()) else {
                return plain(url, options);
            };
            if authority.parse::<SocketAddr>().is_ok() {
                return plain(url, options);
            }
            let host = parsed.host().unwrap_or_default().to_owned();
            (scheme, host, authority, resolver)
        }
    };
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let wake = Arc::new(Notify::new());
    let (rounds_tx, rounds) = watch::channel(Rounds::default());
    let probe_timeout = options.connect_timeout.min(Duration::from_millis(500));
    let woken = wake.clone();
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        let mut round = 0;
        loop {
            round += 1;
            rounds_tx.send_modify(|r| r.started = round);
            match resolver.resolve(&target).await {
                Ok(addresses) => {
                    let current = reachable(addresses, probe_timeout).await;
                    for gone in known.difference(&current) {
                        tracing::info!(service = %target, address = %gone, "endpoint removed");
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in current.difference(&known) {
                        let Ok(endpoint) =
                            crate::client::endpoint_at(&scheme, &host, *new, options)
                        else {
                            continue;
                        };
                        tracing::info!(service = %target, address = %new, "endpoint added");
                        if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    known = current;
                }
                Err(error) => {
                    tracing::warn!(service = %target, %error, "resolution failed, keeping the last addresses")
                }
            }
            rounds_tx.send_modify(|r| r.finished = round);
            tokio::select! {
                () = tokio::time::sleep(refresh) => {}
                () = woken.notified() => {}
            }
        }
    });
    Ok(Upstream {
        channel,
        refresher: Some(Refresher { wake, rounds }),
    })
}

fn plain(url: &str, options: ChannelOptions) -> Result<Upstream, tonic::transport::Error> {
    Ok(Upstream {
        channel: crate::client::channel(url, options)?,
        refresher: None,
    })
}

/// The scheme and addresses of a comma-separated list of IP-literal URLs,
/// `None` unless `url` is such a list of at least two.
fn static_addresses(url: &str) -> Option<(String, Vec<SocketAddr>)> {
    if !url.contains(',') {
        return None;
    }
    let mut scheme = None;
    let mut addresses = Vec::new();
    for part in url.split(',') {
        let parsed: http::Uri = part.trim().parse().ok()?;
        let this = parsed.scheme_str().unwrap_or("http").to_owned();
        if scheme.get_or_insert_with(|| this.clone()) != &this {
            return None;
        }
        addresses.push(parsed.authority()?.as_str().parse().ok()?);
    }
    Some((scheme?, addresses))
}

/// The host of the first URL of a list.
fn static_host(url: &str) -> Option<String> {
    let first: http::Uri = url.split(',').next()?.trim().parse().ok()?;
    Some(first.host()?.trim_matches(['[', ']']).to_owned())
}

/// A resolver of a fixed list of addresses.
struct Fixed(Vec<SocketAddr>);

impl Resolve for Fixed {
    fn resolve(&self, _: &str) -> futures::future::BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
        let addresses = self.0.clone();
        Box::pin(async move { Ok(addresses) })
    }
}

/// The addresses that accept a TCP connection within `timeout`; all of them
/// when none does.
async fn reachable(addresses: Vec<SocketAddr>, timeout: Duration) -> HashSet<SocketAddr> {
    let probes = addresses.iter().map(|address| async move {
        let open = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await;
        (*address, matches!(open, Ok(Ok(_))))
    });
    let results = futures::future::join_all(probes).await;
    let alive: HashSet<SocketAddr> = results
        .iter()
        .filter(|(_, open)| *open)
        .map(|(address, _)| *address)
        .collect();
    if alive.is_empty() {
        addresses.into_iter().collect()
    } else {
        alive
    }
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
        let channel = discovered_upstream(
            "http://tenants.treven.internal:50051",
            options,
            Duration::from_millis(50),
            resolver.clone(),
        )
        .expect("channel")
        .channel;
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

    #[tokio::test]
    async fn a_dead_endpoint_of_a_list_costs_at_most_one_retry_per_call() {
        let (first, stop_first) = health_server().await;
        let (second, _stop_second) = health_server().await;
        let options = ChannelOptions {
            connect_timeout: Duration::from_millis(300),
            call_timeout: Duration::from_secs(2),
        };
        // A refresh interval far beyond the test: only refresh_now probes.
        let upstream = discovered_upstream(
            &format!("http://{first},http://{second}"),
            options,
            Duration::from_secs(3600),
            Arc::new(SystemResolver),
        )
        .expect("upstream");
        let refresher = upstream.refresher.clone().expect("a list is discovered");
        refresher.refresh_now(Duration::from_secs(2)).await;
        for _ in 0..10 {
            assert!(healthy(&upstream.channel).await, "both tasks answer");
        }

        stop_first.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut retried = 0;
        for _ in 0..20 {
            let mut client =
                tonic_health::pb::health_client::HealthClient::new(upstream.channel.clone());
            let request = || tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            if let Err(status) = client.check(request()).await {
                assert!(
                    is_unreachable(&status),
                    "only refused connections fail: {status:?}"
                );
                retried += 1;
                refresher.refresh_now(Duration::from_secs(2)).await;
                client
                    .check(request())
                    .await
                    .expect("the retry goes to the live task");
            }
        }
        assert!(
            retried <= 2,
            "the dead task leaves the balancer at the first refused call ({retried} retries)"
        );
    }

    #[test]
    fn only_refused_connections_count_as_unreachable() {
        assert!(!is_unreachable(&tonic::Status::unavailable("draining")));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mut status = tonic::Status::unavailable("tcp connect error");
        status.set_source(Arc::new(refused));
        assert!(is_unreachable(&status));
    }

    #[test]
    fn lists_need_ip_literals_of_one_scheme() {
        assert!(static_addresses("http://127.0.0.1:1,http://127.0.0.1:2").is_some());
        assert!(static_addresses("http://127.0.0.1:1").is_none());
        assert!(static_addresses("http://a.internal:1,http://127.0.0.1:2").is_none());
        assert!(static_addresses("http://127.0.0.1:1,https://127.0.0.1:2").is_none());
    }

    #[test]
    fn ip_literals_do_not_start_a_resolver() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let upstream = discovered_upstream(
                "http://127.0.0.1:1",
                ChannelOptions::default(),
                Duration::from_secs(1),
                Arc::new(SystemResolver),
            )
            .expect("a plain channel");
            assert!(upstream.refresher.is_none(), "nothing to re-resolve");
        });
    }
}
