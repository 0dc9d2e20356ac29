//! A gRPC service built on its first call: server reflection, which only
//! engineers' `grpcurl` asks, is not built while a process starts (decoding
//! every descriptor set twice, for v1 and v1alpha, took a tenth of
//! `treven serve`'s start-up CPU and stayed in memory unused; #18, row 8).
//!
//! Written here rather than taken from a crate: tower has no service built
//! on first call that keeps tonic's `NamedService` (the route) of the
//! service it builds.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Service, ServiceExt as _};

/// `S`, built by `build` when the first call arrives (once, then shared by
/// every clone). A build that fails answers INTERNAL naming the service.
pub struct BuiltOnFirstCall<S, F> {
    built: Arc<OnceLock<Result<S, String>>>,
    build: Arc<F>,
}

impl<S, F> BuiltOnFirstCall<S, F> {
    /// A service that `build` makes when first called.
    pub fn new(build: F) -> Self {
        Self {
            built: Arc::new(OnceLock::new()),
            build: Arc::new(build),
        }
    }

    /// Whether the first call has built it.
    pub fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

impl<S, F> Clone for BuiltOnFirstCall<S, F> {
    fn clone(&self) -> Self {
        Self {
            built: Arc::clone(&self.built),
            build: Arc::clone(&self.build),
        }
    }
}

impl<S: NamedService, F> NamedService for BuiltOnFirstCall<S, F> {
    const NAME: &'static str = S::NAME;
}

impl<S, F, E> Service<http::Request<Body>> for BuiltOnFirstCall<S, F>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Fn() -> Result<S, E>,
    E: std::fmt::Display,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The built service is made ready in `call` (tonic's generated
        // servers always are).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let built = self
            .built
            .get_or_init(|| (self.build)().map_err(|e| format!("{}: {e}", S::NAME)));
        match built {
            Ok(service) => Box::pin(service.clone().oneshot(request)),
            Err(reason) => {
                let status = tonic::Status::internal(reason.clone());
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request() -> http::Request<Body> {
        http::Request::builder()
            .uri("/grpc.health.v1.Health/Check")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn it_is_built_once_on_the_first_call_and_shared_by_clones() {
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&builds);
        let mut service = BuiltOnFirstCall::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, Infallible>(tonic_health::server::health_reporter().1)
        });
        let mut clone = service.clone();
        assert!(!service.is_built());
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 0);

        let first = service.call(request()).await.unwrap();
        assert_eq!(first.status(), http::StatusCode::OK);
        let second = clone.call(request()).await.unwrap();
        assert_eq!(second.status(), http::StatusCode::OK);
        assert!(clone.is_built());
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        fn route_of<S: NamedService>(_: &S) -> &'static str {
            S::NAME
        }
        assert_eq!(route_of(&service), "grpc.health.v1.Health");
    }

    #[tokio::test]
    async fn a_build_that_fails_answers_internal() {
        let mut service = BuiltOnFirstCall::new(|| {
            Err::<
                tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
                _,
            >("no descriptors")
        });
        let response = service.call(request()).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("no descriptors"), "{status:?}");
    }
}
