//! The caller's deadline, carried through a service to the calls it makes.
//!
//! A gRPC call's `grpc-timeout` says how long its caller will wait. Every
//! mesh server runs each handler inside [`DeadlineLayer`], which remembers
//! when that time runs out; [`crate::context::attach_context`], which every
//! outbound call goes through, then sends the smaller of the call's own
//! timeout and what is left. So a gateway request with 2 s left never makes
//! reports wait 10 s on tenants, and no call site can forget.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// What is left of the deadline of the call being served, if it had one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Parses a `grpc-timeout` value (`TimeoutValue TimeoutUnit`: at most 8
/// digits, then `H`, `M`, `S`, `m`, `u` or `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats `duration` as a `grpc-timeout` value (milliseconds, rounded up,
/// so a deadline is never shortened to zero by rounding).
pub fn format_grpc_timeout(duration: Duration) -> String {
    let millis = duration.as_micros().div_ceil(1000).min(99_999_999);
    format!("{millis}m")
}

/// Sets `grpc-timeout` on an outgoing request to the smaller of its own
/// timeout (if set) and what is left of the served call's deadline.
pub fn bound_outgoing(metadata: &mut tonic::metadata::MetadataMap) {
    let Some(left) = remaining() else { return };
    let own = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    let timeout = own.map_or(left, |own| own.min(left));
    if let Ok(value) = format_grpc_timeout(timeout).parse() {
        metadata.insert("grpc-timeout", value);
    }
}

/// A tower layer that runs each request inside the deadline its
/// `grpc-timeout` header gives.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let future = self.inner.call(request);
        match timeout {
            Some(timeout) => Box::pin(DEADLINE.scope(Instant::now() + timeout, future)),
            None => Box::pin(future),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_refuse_nonsense() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("5"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(parse_grpc_timeout("-1S"), None);
        assert_eq!(parse_grpc_timeout("1x"), None);
        assert_eq!(format_grpc_timeout(Duration::from_micros(1)), "1m");
    }

    #[tokio::test]
    async fn an_outgoing_call_gets_the_smaller_of_its_timeout_and_the_deadline_left() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("grpc-timeout", "10000m".parse().expect("ascii"));
        bound_outgoing(&mut metadata);
        assert_eq!(
            metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()),
            Some("10000m"),
            "outside a served call nothing changes"
        );
        DEADLINE
            .scope(Instant::now() + Duration::from_millis(300), async {
                bound_outgoing(&mut metadata);
            })
            .await;
        let sent = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .expect("set");
        assert!(sent <= Duration::from_millis(300), "{sent:?}");
        let mut unset = tonic::metadata::MetadataMap::new();
        DEADLINE
            .scope(Instant::now() + Duration::from_secs(2), async {
                bound_outgoing(&mut unset);
            })
            .await;
        assert!(
            unset.get("grpc-timeout").is_some(),
            "a deadline is always sent"
        );
    }

    #[tokio::test]
    async fn a_served_call_runs_inside_the_deadline_its_caller_sent() {
        use tower::{Layer as _, Service as _, ServiceExt as _};
        let handler = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(remaining())
        });
        let mut served = DeadlineLayer.layer(handler);
        let with_deadline = http::Request::builder()
            .header("grpc-timeout", "300m")
            .body(())
            .expect("request");
        let left = served
            .ready()
            .await
            .expect("ready")
            .call(with_deadline)
            .await
            .expect("infallible")
            .expect("a deadline in scope");
        assert!(
            left <= Duration::from_millis(300) && left > Duration::from_millis(100),
            "{left:?}"
        );
        let without = http::Request::builder().body(()).expect("request");
        let left = served
            .ready()
            .await
            .expect("ready")
            .call(without)
            .await
            .expect("infallible");
        assert_eq!(left, None, "no deadline, none invented");
    }
}
