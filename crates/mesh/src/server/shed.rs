//! Load shedding: a bound on the calls one server runs at once.
//!
//! [`ConcurrencyLimitLayer`] lets at most `limit` calls of a service run;
//! the next one is answered at once with RESOURCE_EXHAUSTED (`RATE_LIMITED`,
//! HTTP 429 at the gateway) and a message saying to retry, as a proper gRPC
//! status: nothing queues, so an overloaded server degrades by refusing
//! calls instead of by growing memory until it is killed. A call holds its
//! slot until its response body has ended, so a long server stream or a
//! 50 MB client stream counts for as long as it runs.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ErrorCode, ServiceError};

/// Refuses calls beyond a limit in flight (see the module docs). Clones
/// share one limit, so one layer bounds every route it wraps together.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    service: &'static str,
    limit: usize,
    slots: Arc<Semaphore>,
    shed: Arc<AtomicU64>,
}

impl ConcurrencyLimitLayer {
    /// At most `limit` calls of `service` (its short name, for logs and the
    /// refusal's message) at once.
    pub fn new(service: &'static str, limit: usize) -> Self {
        Self {
            service,
            limit,
            slots: Arc::new(Semaphore::new(limit)),
            shed: Arc::new(AtomicU64::new(0)),
        }
    }

    fn refusal(&self, path: &str) -> tonic::Status {
        let shed = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
        // One line per hundred refusals: an overload must not also flood the logs.
        if shed % 100 == 1 {
            tracing::warn!(
                service = self.service,
                limit = self.limit,
                shed_total = shed,
                path,
                "shedding load: too many calls in flight"
            );
        }
        ServiceError::new(
            ErrorCode::RateLimited,
            format!(
                "{} is serving its limit of {} concurrent calls; retry shortly",
                self.service, self.limit
            ),
        )
        .into()
    }
}

impl<S> tower::Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service of [`ConcurrencyLimitLayer`].
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limits: ConcurrencyLimitLayer,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for ConcurrencyLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<SlotBody<ResBody>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.limits.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let future = self.inner.call(request);
                Box::pin(async move {
                    let response = future.await?;
                    Ok(response.map(|body| SlotBody {
                        inner: Some(body),
                        slot: Some(slot),
                    }))
                })
            }
            Err(_) => {
                let status = self.limits.refusal(request.uri().path());
                Box::pin(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// A response body that holds its call's slot until it ends (or is
/// dropped); the refusal's body is empty.
#[derive(Debug)]
pub struct SlotBody<B> {
    inner: Option<B>,
    slot: Option<OwnedSemaphorePermit>,
}

impl<B> Default for SlotBody<B> {
    fn default() -> Self {
        Self {
            inner: None,
            slot: None,
        }
    }
}

impl<B> Body for SlotBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;
    use tonic::Code;
    use tonic::server::NamedService;
    use tonic::service::Routes;
    use tonic_health::pb::health_client::HealthClient;
    use treven_proto::treven::tenants::v1::GetMeRequest;
    use treven_proto::treven::tenants::v1::tenants_service_client::TenantsServiceClient;

    use super::*;
    use crate::server::{GrpcService, ShutdownPolicy, serve};

    /// Answers every call of the tenants service after `delay` (NOT_FOUND,
    /// so a call that reached it is told apart from a shed one).
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
        entered: Arc<AtomicUsize>,
    }

    impl NamedService for Slow {
        const NAME: &'static str = "treven.tenants.v1.TenantsService";
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(tonic::Status::not_found("slow handler done").into_http())
            })
        }
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_are_refused_at_once_while_health_stays_served() {
        let delay = Duration::from_millis(1500);
        let entered = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let service = GrpcService {
            name: "slow",
            routes: Routes::new(Slow {
                delay,
                entered: entered.clone(),
            }),
            health_names: vec![],
        };
        let policy = ShutdownPolicy {
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(1),
            max_concurrent_requests: 2,
        };
        tokio::spawn(serve(service, listener, shutdown.clone(), policy));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect_lazy();
        let call = || {
            let mut client = TenantsServiceClient::new(channel.clone());
            async move { client.get_me(GetMeRequest::default()).await }
        };

        // Two slow calls take both slots.
        let running = [tokio::spawn(call()), tokio::spawn(call())];
        let start = Instant::now();
        while entered.load(Ordering::SeqCst) < 2 {
            assert!(start.elapsed() < delay, "the slow calls did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // The third is refused without waiting for a slot.
        let start = Instant::now();
        let refused = call().await.expect_err("shed");
        assert!(start.elapsed() < delay / 3, "took {:?}", start.elapsed());
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert_eq!(ErrorCode::of_status(&refused), ErrorCode::RateLimited);
        assert!(refused.message().contains("retry"), "{refused:?}");
        assert_eq!(entered.load(Ordering::SeqCst), 2, "the refused call ran");

        // Health is outside the limit.
        let health = HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health answers while the service is saturated")
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // The slow calls complete normally and give their slots back.
        for running in running {
            let status = running.await.expect("joined").expect_err("not found");
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
        }
        let status = call().await.expect_err("not found");
        assert_eq!(
            status.code(),
            Code::NotFound,
            "a slot is free again: {status:?}"
        );
        shutdown.cancel();
    }
}
