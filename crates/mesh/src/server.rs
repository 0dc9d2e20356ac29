//! Server bootstrap shared by every service.
//!
//! [`serve`] mounts a service's routes next to `grpc.health.v1` and server
//! reflection (v1 and v1alpha, so every grpcurl works), runs them on an
//! already-bound listener, and drains on shutdown:
//!
//! 1. health is NOT_SERVING until the server accepts, then SERVING;
//! 2. on shutdown, health turns NOT_SERVING at once, and after
//!    `drain_delay` (time for load balancers to notice) the server stops
//!    accepting and waits for in-flight calls;
//! 3. calls still running after `grace` are dropped.
//!
//! Each server also bounds the calls it runs at once
//! ([`ShutdownPolicy::max_concurrent_requests`]): beyond it, a call of the
//! service is refused at once with RESOURCE_EXHAUSTED (see [`shed`]) rather
//! than queued until memory runs out. Health and reflection are never shed.

pub mod lazy;
pub mod shed;

use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::{ConfigError, Env, Environment};
use crate::telemetry::request_span;

/// Calls one gRPC server runs at once unless `TREVEN_MAX_CONCURRENT_REQUESTS`
/// says otherwise.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;

/// How a server bounds its load and stops.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    /// NOT_SERVING is reported this long before the server stops accepting.
    pub drain_delay: Duration,
    /// In-flight calls get this long to finish after that.
    pub grace: Duration,
    /// Calls of the service (health and reflection excepted) served at once;
    /// more are refused with RESOURCE_EXHAUSTED. A call counts until its
    /// response, stream included, has been sent.
    pub max_concurrent_requests: usize,
}

impl ShutdownPolicy {
    /// Reads `TREVEN_DRAIN_DELAY_SECS` (default 0 locally, 5 in AWS),
    /// `TREVEN_SHUTDOWN_GRACE_SECS` (default 20) and
    /// `TREVEN_MAX_CONCURRENT_REQUESTS` (default
    /// [`DEFAULT_MAX_CONCURRENT_REQUESTS`]).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default_delay = match Environment::from_env(env)? {
            Environment::Local => 0,
            Environment::Dev | Environment::Prod => 5,
        };
        let max_concurrent_requests: usize = env.parse_or(
            "TREVEN_MAX_CONCURRENT_REQUESTS",
            DEFAULT_MAX_CONCURRENT_REQUESTS,
        )?;
        if !(1..=100_000).contains(&max_concurrent_requests) {
            return Err(env.error(
                "TREVEN_MAX_CONCURRENT_REQUESTS",
                "must be between 1 and 100000",
            ));
        }
        Ok(Self {
            drain_delay: env.seconds_or("TREVEN_DRAIN_DELAY_SECS", default_delay, 0..=60)?,
            grace: env.seconds_or("TREVEN_SHUTDOWN_GRACE_SECS", 20, 1..=300)?,
            max_concurrent_requests,
        })
    }
}

/// What one gRPC server serves.
pub struct GrpcService {
    /// Short name for logs (`tenants`).
    pub name: &'static str,
    /// The service's routes (its tonic servers, already intercepted).
    pub routes: Routes,
    /// Full names reported by health, e.g. `treven.tenants.v1.TenantsService`.
    pub health_names: Vec<&'static str>,
}

/// Serves `service` on `listener` with health and reflection until
/// `shutdown` is cancelled, then drains per `policy`.
pub async fn serve(
    service: GrpcService,
    listener: TcpListener,
    shutdown: CancellationToken,
    policy: ShutdownPolicy,
) -> anyhow::Result<()> {
    let name = service.name;
    let address = listener.local_addr().context("listener address")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let set_all = |status: ServingStatus| {
        let health = health.clone();
        let names = service.health_names.clone();
        async move {
            health.set_service_status("", status).await;
            for name in names {
                health.set_service_status(name, status).await;
            }
        }
    };
    set_all(ServingStatus::NotServing).await;

    // Reflection knows the Treven protos, health, and google.rpc error
    // details, so grpcurl can describe every call and decode every error; it
    // lists only what this server serves.
    let served_names = service.health_names.clone();
    let reflection = move || {
        let advertised = served_names.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        advertised.fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(treven_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                ),
            |builder, name| builder.with_service_name(name),
        )
    };
    // Built on first use: only engineers ask, and building them decodes
    // every descriptor set (see `lazy`).
    let reflection_v1 = {
        let reflection = reflection.clone();
        lazy::BuiltOnFirstCall::new(move || reflection().build_v1())
    };
    let reflection_v1alpha = lazy::BuiltOnFirstCall::new(move || reflection().build_v1alpha());

    let router = tonic::transport::Server::builder()
        // One server span per request, continuing the caller's W3C trace and
        // carrying trace and request ids into every log line.
        .trace_fn(request_span)
        // Dead peers are noticed and their streams freed.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_routes(Routes::from(
            service
                .routes
                .into_axum_router()
                // Requests breaking their proto's buf.validate rules are
                // marked here and refused by the access table once the
                // caller is admitted, before the handler runs (see
                // `crate::validate::RuleViolation`).
                .layer(
                    crate::validate::ValidateLayer::new()
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
                )
                // Each handler knows its caller's deadline, so the calls it
                // makes carry what is left of it (see `crate::deadline`).
                .layer(crate::deadline::DeadlineLayer)
                // The call's span lasts until its response (a stream
                // included) is sent, and records its gRPC status.
                .layer(crate::trace::GrpcStatusLayer)
                // Outermost: a call beyond the limit is refused before any
                // work (context check, decoding) is spent on it.
                .layer(shed::ConcurrencyLimitLayer::new(
                    name,
                    policy.max_concurrent_requests,
                ))
                // Around everything: RED metrics of every call, shed ones
                // (RESOURCE_EXHAUSTED) included.
                .layer(crate::metrics::RpcMetricsLayer::new()),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let draining = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            set_all(ServingStatus::NotServing).await;
            tracing::info!(service = name, "not serving, draining");
            tokio::time::sleep(policy.drain_delay).await;
        }
    };
    // In AWS every mesh server speaks TLS only (the leaf certificate comes
    // from the mesh CA, see `crate::tls`); locally it may be plaintext.
    let tls = crate::tls::installed();
    set_all(ServingStatus::Serving).await;
    tracing::info!(service = name, %address, tls = tls.is_some(), "serving");
    match tls {
        Some(tls) => {
            let acceptor = tls
                .server_acceptor(shutdown.clone())
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let incoming = tls_incoming(listener, acceptor);
            run_until_drained(name, router, incoming, draining, &shutdown, policy).await?;
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            run_until_drained(name, router, incoming, draining, &shutdown, policy).await?;
        }
    }
    tracing::info!(service = name, "stopped");
    Ok(())
}

/// Serves `incoming` until `draining` completes, then gives in-flight calls
/// the grace period.
async fn run_until_drained<I, IO, IE>(
    name: &'static str,
    router: tonic::transport::server::Router,
    incoming: I,
    draining: impl Future<Output = ()>,
    shutdown: &CancellationToken,
    policy: ShutdownPolicy,
) -> anyhow::Result<()>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = router.serve_with_incoming_shutdown(incoming, draining);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.with_context(|| format!("{name} server failed"))?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(policy.drain_delay + policy.grace).await;
        } => {
            tracing::warn!(service = name, grace_secs = policy.grace.as_secs(), "grace period over, dropping calls still running");
        }
    }
    Ok(())
}

/// Accepted connections after their TLS handshake. Handshakes run in their
/// own tasks (bounded by a timeout), so a slow or hostile client cannot hold
/// up the accept loop; a failed handshake is logged and dropped.
fn tls_incoming(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> tokio_stream::wrappers::ReceiverStream<
    Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    let (accepted, incoming) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (socket, peer) = tokio::select! {
                () = accepted.closed() => return,
                result = listener.accept() => match result {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            let (acceptor, accepted) = (acceptor.clone(), accepted.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let _ = accepted.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::info!(%peer, error = %crate::tls::describe_tls_error(&error), "tls handshake refused");
                    }
                    Err(_) => tracing::info!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(incoming)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_limit_defaults_per_server_and_refuses_nonsense_naming_the_variable() {
        let policy =
            ShutdownPolicy::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
        assert_eq!(
            policy.max_concurrent_requests,
            DEFAULT_MAX_CONCURRENT_REQUESTS
        );
        let set = |value: &str| {
            ShutdownPolicy::from_env(&Env::from_pairs([(
                "TREVEN_MAX_CONCURRENT_REQUESTS",
                value,
            )]))
        };
        assert_eq!(set("64").expect("valid").max_concurrent_requests, 64);
        for bad in ["0", "-1", "lots", "100001"] {
            let error = set(bad).expect_err(bad);
            assert_eq!(error.variable, "TREVEN_MAX_CONCURRENT_REQUESTS", "{bad}");
        }
    }
}
